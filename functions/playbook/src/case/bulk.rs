//! A bulk run: many instances at once (a worm, a mining campaign), as the
//! playbook's backlog asks for "a prepared way to remove a large number of
//! instances".
//!
//! Pure data: what was asked ([`BulkRequest`]), what it resolves to before
//! anything changes ([`BulkPlan`], shown to a person), and what a subnet cut
//! did ([`SubnetCut`]), so that its release puts back exactly what was there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::actions::ActionRecord;
use super::custody::sha256_json;

/// What a bulk run does to what it selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulkAction {
    /// The whole playbook per instance: one case (one execution of the
    /// forensics state machine) each.
    Contain,
    /// The fast cut: each affected subnet's network ACL association moves to
    /// a prepared deny-all ACL of its VPC, one call per subnet.
    QuarantineSubnets,
    /// Evidence first: an instance is terminated only when every one of its
    /// volumes has a completed snapshot, unless the approver says otherwise.
    Terminate,
    /// Undoes a `quarantine-subnets` run (`releaseOf`): each subnet that run
    /// holds goes back to the ACL it had, read back.
    ReleaseSubnets,
    /// After a false positive: each selected case (`caseIds`) is released
    /// from its own record (the Case its execution holds), read back, and
    /// sealed again.
    ReleaseCases,
}

impl BulkAction {
    /// The action as the command line and the state machine name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contain => "contain",
            Self::QuarantineSubnets => "quarantine-subnets",
            Self::Terminate => "terminate",
            Self::ReleaseSubnets => "release-subnets",
            Self::ReleaseCases => "release-cases",
        }
    }
}

/// Which instances a bulk run is about: the union of every selector given.
/// An empty selection selects nothing (never "everything").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// Instance ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    /// Tags, `key=value`: instances carrying the tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Auto Scaling group names: their member instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_scaling_groups: Vec<String>,
    /// Subnet ids: the instances in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// VPC ids: the instances in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<String>,
    /// Finding events (GuardDuty, Security Hub, CloudWatch, manual requests),
    /// each parsed as a trigger is: the instances they name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Value>,
    /// Case ids (`release-cases`): the cases to release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub case_ids: Vec<String>,
}

impl Selection {
    /// Whether no selector is given.
    pub fn is_empty(&self) -> bool {
        self.instance_ids.is_empty()
            && self.tags.is_empty()
            && self.auto_scaling_groups.is_empty()
            && self.subnets.is_empty()
            && self.vpcs.is_empty()
            && self.findings.is_empty()
            && self.case_ids.is_empty()
    }
}

/// A bulk run as a person asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    /// What to do.
    pub action: BulkAction,
    /// To which instances.
    pub selection: Selection,
    /// Why, for the record (part of every case a `contain` run opens).
    pub reason: String,
    /// The Region of the instances.
    pub region: String,
    /// Their account (the responder's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `quarantine-subnets` may cut subnets that hold other network
    /// interfaces (instances outside the selection, NAT gateways, load
    /// balancer nodes, endpoints) only with this set.
    #[serde(default)]
    pub whole_subnet: bool,
    /// Who asked (an identity AWS authenticated, or the CLI caller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When it was asked (UTC): part of the bulk id, so a repeat is a new run.
    pub requested_at: String,
    /// For `release-subnets`: the `quarantine-subnets` run to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_of: Option<String>,
    /// For `terminate`: the plan asks the approver to accept terminating
    /// instances without a completed snapshot of every volume. Said in the
    /// plan and the approval request; without it such an instance is left
    /// running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_snapshots: bool,
}

/// How every bulk run id starts (no case id does: theirs start with the
/// finding source, `gd-`, `sh-`, `man-`...).
pub const BULK_ID_PREFIX: &str = "bulk-";

impl BulkRequest {
    /// The run's id (its execution name): stable for one request. The
    /// hash is of the request's canonical JSON (keys sorted), so the id the
    /// CLI names the execution with and the one the plan step computes from
    /// the execution's input agree whatever order a finding's keys arrive in
    /// and whichever build serialises it; serde_json writes a number the same
    /// way after a round trip.
    pub fn bulk_id(&self) -> String {
        format!("{BULK_ID_PREFIX}{}", &sha256_json(self)[..24])
    }
}

/// One selected instance, as read before anything changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedInstance {
    /// Instance id.
    pub instance_id: String,
    /// Its state when read (`running`, `stopped`...).
    pub state: String,
    /// Its VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Its primary subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Every subnet one of its network interfaces is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<String>,
    /// Which selectors chose it (`instance-id`, `tag:env=prod`, `asg:web`...).
    pub selected_by: Vec<String>,
    /// The finding event that chose it, when one did: its case is opened
    /// from that finding (the same case id as if the finding had come alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<Value>,
}

/// A network interface in an affected subnet that the selection does not
/// cover: cutting the subnet cuts it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bystander {
    /// The network interface.
    pub network_interface_id: String,
    /// The instance it is attached to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// EC2's interface type (`interface`, `nat_gateway`, `network_load_balancer`, ...).
    pub interface_type: String,
    /// Its description as EC2 holds it (shown as reported text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A subnet that `quarantine-subnets` would cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedSubnet {
    /// The subnet.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The selected instances with an interface in it.
    pub selected: Vec<String>,
    /// What else would be cut with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bystanders: Vec<Bystander>,
}

/// Something selected that the run leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// What (an instance id, an Auto Scaling group, a finding's index).
    pub target: String,
    /// Why it is left alone.
    pub why: String,
}

/// A bulk run resolved: exactly what would change, shown before anything
/// does. The items list the Distributed Map reads is made from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkPlan {
    /// The run's id (its execution name).
    pub bulk_id: String,
    /// The request it resolves.
    pub request: BulkRequest,
    /// The instances the run acts on.
    pub instances: Vec<PlannedInstance>,
    /// For `quarantine-subnets`: the subnets to cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<PlannedSubnet>,
    /// The VPCs to prepare once before the map (their deny-all ACL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<String>,
    /// For `release-cases`: the cases to release, with what each restores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<PlannedCase>,
    /// Selected but left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Why the run cannot go ahead as asked; a plan with any refusal starts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
    /// How many items the Distributed Map runs at once (see `bulk::concurrency`).
    pub max_concurrency: u32,
    /// What the run cannot do, said before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// When the plan was read.
    pub planned_at: String,
}

impl BulkPlan {
    /// Whether the run may start: something to act on and no refusal.
    pub fn ready(&self) -> bool {
        self.refusals.is_empty() && self.item_count() > 0
    }

    /// How many items the Distributed Map runs: subnets for a subnet cut,
    /// instances otherwise.
    pub fn item_count(&self) -> usize {
        match self.request.action {
            BulkAction::QuarantineSubnets | BulkAction::ReleaseSubnets => self.subnets.len(),
            BulkAction::Contain | BulkAction::Terminate => self.instances.len(),
            BulkAction::ReleaseCases => self.cases.len(),
        }
    }
}

/// A case `release-cases` would release, read from its execution's Case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCase {
    /// The case.
    pub case_id: String,
    /// Its instances.
    pub instances: Vec<String>,
    /// What the release puts back, as the Case recorded it before
    /// containment (each restoration reads the current state first).
    pub restores: Vec<String>,
    /// What stays on purpose.
    pub keeps: Vec<String>,
    /// Findings that joined the case after its execution ended: a person
    /// should read them before approving the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_findings: Vec<String>,
    /// The execution the Case was read from.
    pub execution_arn: String,
    /// SHA-256 of that Case (canonical JSON): the release acts on exactly
    /// the Case the approver was shown, or not at all.
    pub case_sha256: String,
}

/// What the Distributed Map reads for one case of `release-cases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseItem {
    /// The run.
    pub bulk_id: String,
    /// The case to release.
    pub case_id: String,
    /// The account (the responder's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Who asked (verified by the plan step: the start function's MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Why, in the requester's words.
    pub reason: String,
    /// The execution the plan read the Case from.
    pub execution_arn: String,
    /// SHA-256 of the Case the plan read (canonical JSON).
    pub case_sha256: String,
}

/// What the Distributed Map reads for one subnet of `quarantine-subnets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetItem {
    /// The run.
    pub bulk_id: String,
    /// The subnet to cut.
    pub subnet_id: String,
    /// Its VPC (checked again before the cut).
    pub vpc_id: String,
    /// The account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Whether the plan allowed bystanders in this subnet.
    #[serde(default)]
    pub whole_subnet: bool,
    /// The selected instances in the subnet: without `whole_subnet`, any
    /// other network interface found there at cut time stops the cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<String>,
}

/// The deny-all network ACL of one VPC, prepared before the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineAcl {
    /// The VPC.
    pub vpc_id: String,
    /// The ACL (none in a dry run that would create it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_acl_id: Option<String>,
    /// Read back: every entry denies, in both directions.
    pub verified: bool,
    /// How it was found or made.
    pub action: ActionRecord,
}

/// One subnet cut: what was there before, what is there now, read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetCut {
    /// The run that cut it.
    pub bulk_id: String,
    /// The subnet.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The ACL the subnet was associated with before the cut: release puts
    /// it back. Unknown only when the subnet was found already cut by
    /// another run, which then holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_acl_id: Option<String>,
    /// The association that the cut replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_association_id: Option<String>,
    /// The deny-all ACL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_acl_id: Option<String>,
    /// The association the cut made (release replaces exactly this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// Another run that already holds the subnet's cut: this run neither
    /// made it nor releases it, but relies on it (recorded on the hold, so
    /// the holder's release is refused until this run's release lets go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// Read back: the subnet is associated with a deny-only ACL of its VPC.
    pub verified: bool,
    /// When it was read back so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Every change, or why none was made.
    pub actions: Vec<ActionRecord>,
}

/// One subnet released: the original ACL association put back, read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetRelease {
    /// The subnet.
    pub subnet_id: String,
    /// The ACL it is associated with again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_acl_id: Option<String>,
    /// Read back on the original ACL.
    pub restored: bool,
    /// The run relied on another run's cut of the subnet and no longer does:
    /// its part is undone, and the cut stays the holder's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reliance_ended: bool,
    /// Every change, or why none was made.
    pub actions: Vec<ActionRecord>,
}

/// Counts of a run's items by how they ended, for `status`.
pub type ItemCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(finding: Value) -> BulkRequest {
        BulkRequest {
            action: BulkAction::Contain,
            selection: Selection {
                findings: vec![finding],
                ..Selection::default()
            },
            reason: "worm".into(),
            region: "us-east-1".into(),
            account: None,
            whole_subnet: false,
            requested_by: Some("arn:aws:iam::111122223333:user/alice".into()),
            requested_at: "2026-11-30T16:00:00Z".into(),
            release_of: None,
            without_snapshots: false,
        }
    }

    /// The plan step recomputes the id from the execution's input and
    /// refuses a run not named by it: the id must survive the trip through
    /// Step Functions (serialised by the CLI, parsed and re-serialised by the
    /// Lambda) whatever the finding's key order and number forms.
    #[test]
    fn the_bulk_id_survives_the_round_trip_through_the_execution_input() {
        let text = r#"{"detail":{"severity":8.0,"type":"CryptoCurrency:EC2/BitcoinTool.B!DNS",
            "count":1e2,"big":18446744073709551616,"tiny":-0.0,"neg":-12,
            "resource":{"instanceDetails":{"instanceId":"i-0abc"}},"text":"caf\u00e9 \ud83d\ude00"},
            "account":"111122223333","id":"x"}"#;
        let asked = request(serde_json::from_str(text).unwrap());
        let sent = serde_json::to_string(&asked).unwrap();
        let received: BulkRequest = serde_json::from_str(&sent).unwrap();
        assert_eq!(received.bulk_id(), asked.bulk_id());
        let again: BulkRequest =
            serde_json::from_str(&serde_json::to_string(&received).unwrap()).unwrap();
        assert_eq!(again.bulk_id(), asked.bulk_id());

        // The same finding with its keys in another order is the same run.
        let reordered = r#"{"id":"x","account":"111122223333","detail":{"text":"café 😀","neg":-12,
            "tiny":-0.0,"big":18446744073709551616,"count":100.0,
            "resource":{"instanceDetails":{"instanceId":"i-0abc"}},
            "type":"CryptoCurrency:EC2/BitcoinTool.B!DNS","severity":8.0}}"#;
        assert_eq!(
            request(serde_json::from_str(reordered).unwrap()).bulk_id(),
            asked.bulk_id()
        );
        // Another finding, or another time, is another run.
        assert_ne!(
            request(serde_json::json!({"id": "y"})).bulk_id(),
            asked.bulk_id()
        );
        let mut later = asked.clone();
        later.requested_at = "2026-11-30T16:00:01Z".into();
        assert_ne!(later.bulk_id(), asked.bulk_id());
        assert!(asked.bulk_id().starts_with(BULK_ID_PREFIX));
        assert_eq!(asked.bulk_id().len(), BULK_ID_PREFIX.len() + 24);
    }
}
