//! The normalised finding and the policy's decision about it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingSource {
    /// An Amazon GuardDuty finding delivered by EventBridge.
    GuardDuty,
    /// An AWS Security Hub finding (imported, or sent by a custom action).
    SecurityHub,
    /// A CloudWatch alarm on an instance metric entering ALARM.
    CloudWatchAlarm,
    /// An EC2 instance state-change notification.
    Ec2StateChange,
    /// A responder asked for it by hand.
    Manual,
    /// An instance launched from an image the policy's `approvedImages`
    /// does not approve (`check-ami`, on CloudTrail's `RunInstances`).
    ApprovedImagePolicy,
}

impl FindingSource {
    /// Short prefix of case ids from this source, so an id says where it came from.
    pub fn case_prefix(self) -> &'static str {
        match self {
            Self::GuardDuty => "gd",
            Self::SecurityHub => "sh",
            Self::CloudWatchAlarm => "cw",
            Self::Ec2StateChange => "ec2",
            Self::Manual => "man",
            Self::ApprovedImagePolicy => "ami",
        }
    }
}

/// The normalised finding: the same fields whatever the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Where the finding came from.
    pub source: FindingSource,
    /// The source's own id for the finding (finding ARN, alarm ARN + time, ...).
    pub finding_id: String,
    /// The source's finding type, e.g. `CryptoCurrency:EC2/BitcoinTool.B!DNS`.
    pub finding_type: String,
    /// One-line human title.
    pub title: String,
    /// Severity on a 0-10 scale, whatever scale the source uses.
    pub severity: f64,
    /// The account the instance lives in; `None` when a manual request named none
    /// (the responder's own account is then meant).
    pub account: Option<String>,
    /// The region the instance lives in.
    pub region: String,
    /// The instances the finding is about.
    pub instance_ids: Vec<String>,
    /// GuardDuty's `resourceRole` (ACTOR or TARGET) where the source says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_role: Option<String>,
    /// The source marked this finding as a sample (generated for testing).
    #[serde(default)]
    pub sample: bool,
    /// The instance's tags as the finding reported them at detection time.
    /// Only these can exempt an instance: live tags can be changed by whoever
    /// holds the stolen credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The instances' tags as EC2 reports them now (triage reads them). They
    /// can demand approval, never exempt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live_tags: BTreeMap<String, String>,
    /// The service that detected the finding: GuardDuty for a GuardDuty
    /// finding imported into Security Hub. The case id is derived from it, so
    /// one finding is one case whichever way it arrives.
    pub detected_by: FindingSource,
    /// Security Hub `RecordState` (ACTIVE, ARCHIVED), or ARCHIVED for an
    /// archived GuardDuty finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_state: Option<String>,
    /// Security Hub `Workflow.Status` (NEW, NOTIFIED, RESOLVED, SUPPRESSED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_status: Option<String>,
    /// The domain the finding names (the query of a GuardDuty `!DNS` finding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The instance state the finding reported, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_state: Option<String>,
    /// The instance's launch time as the finding reported it (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_launch_time: Option<String>,
    /// When the source observed the activity (UTC, RFC 3339), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// Who asked for a manual case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Why a manual case was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where to find the original: the EventBridge event id and the finding's ARN or id.
    pub raw_reference: String,
    /// The product that reported an ASFF finding (`ProductArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_arn: Option<String>,
    /// Every ASFF `Types` entry of the finding (the first is `findingType`
    /// unless GuardDuty's own type was restored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asff_types: Vec<String>,
    /// The ASFF `Compliance.Status` when the finding has a `Compliance` block
    /// (`present` when the block names no status): a control or rule result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<String>,
    /// A person chose this finding (a Security Hub custom action): the
    /// response is their decision, whatever the finding indicates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chosen_by_person: bool,
    /// What the source says came from outside: the instance's ports that were
    /// probed or attacked and the remote addresses, as reported.
    #[serde(default, skip_serializing_if = "OutsideActivity::is_empty")]
    pub outside_activity: OutsideActivity,
}

/// Activity from outside that a finding reports against the instance: the
/// local ports and the remote addresses, as the source reported them (not verified).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutsideActivity {
    /// The instance's ports that were probed or connected to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_ports: Vec<u16>,
    /// The remote addresses the activity came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_addresses: Vec<String>,
}

impl OutsideActivity {
    /// Whether the finding reported nothing of the kind.
    pub fn is_empty(&self) -> bool {
        self.local_ports.is_empty() && self.remote_addresses.is_empty()
    }
}

/// What a finding indicates about the instance it names. Decided before any
/// severity test: only an indicator of compromise can start a response
/// (unless a person chose the finding, or the policy opts its type in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Indication {
    /// An indicator of compromise: the instance acted, or hosts something malicious.
    Compromised,
    /// The instance is only the passive target of outside activity (probed,
    /// brute-forced from outside): nothing says it was compromised.
    Exposed,
    /// A weakness: posture, configuration, a vulnerability, a failed control
    /// (GuardDuty's `Policy` findings, Security Hub controls, Config rules,
    /// Inspector, Patch Manager). Worth fixing; not an intrusion.
    Weakness,
    /// Nothing known says which.
    Unclassified,
}

/// How triage classified a finding, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    /// What the finding indicates.
    pub indication: Indication,
    /// The table entry or rule that decided, in words (e.g.
    /// `GuardDuty table: Recon:EC2/PortProbeUnprotectedPort as TARGET`).
    pub decided_by: String,
}

/// A plain incident for unit tests: one running instance, nothing optional set.
#[cfg(test)]
pub(crate) fn example_incident(
    source: FindingSource,
    finding_type: &str,
    severity: f64,
) -> Incident {
    Incident {
        source,
        finding_id: "finding-1".into(),
        finding_type: finding_type.into(),
        title: "example".into(),
        severity,
        account: Some("123456789012".into()),
        region: "us-east-1".into(),
        instance_ids: vec!["i-0123456789abcdef0".into()],
        resource_role: None,
        sample: false,
        tags: BTreeMap::new(),
        live_tags: BTreeMap::new(),
        detected_by: source,
        record_state: None,
        workflow_status: None,
        domain: None,
        instance_state: Some("running".into()),
        instance_launch_time: None,
        observed_at: None,
        requested_by: None,
        reason: None,
        raw_reference: "example".into(),
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: false,
        outside_activity: OutsideActivity::default(),
    }
}

/// What triage decided to do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Run the playbook: capture, protect, contain.
    Respond,
    /// Run the playbook once a person approves.
    Approve,
    /// Record the finding, change nothing.
    Observe,
    /// Not a case for this responder.
    Ignore,
}

/// The policy's decision with the reason a person can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The policy asked for a dry run: steps report what they would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// For `approve`: how long the approval gate waits (the state machine's
    /// `TimeoutSecondsPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_seconds: Option<u64>,
    /// What the finding indicates, decided before any severity test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
}
