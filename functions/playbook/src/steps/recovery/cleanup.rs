//! `ec2-forensics cleanup` and the `cleanup-case` function: the playbook's
//! recovery. Once the forensic work is done and the report issued, what the
//! case made and no longer needs goes, in a safe order ([`ResourceKind`]'s):
//!
//! 1. each workstation: termination protection off, terminated;
//! 2. each evidence volume made from a copy (once its workstation is gone);
//! 3. the forensic account's permission on each shared snapshot, then the
//!    sharing copies and the workload-side snapshots, once their forensic
//!    copies are complete;
//! 4. each KMS grant to the forensic account (retired by it, the grant's
//!    retiring principal; never revoked, so no other grant on a workload
//!    key can be touched), once the copy that needed it is complete;
//! 5. the case's DNS Firewall rule groups (their rules first) and domain
//!    lists, once no VPC is associated with them (a release ends the
//!    association; a rule group still associated contains the instance's
//!    DNS and stays);
//! 6. each forensic copy past its retention date.
//!
//! It never touches the evidence objects (S3 Object Lock keeps them), a
//! forensic copy before its retention date, and nothing of the evidence
//! (evidence volumes, snapshots, sharing copies, forensic copies) while the
//! case is under a legal hold or its policy (the case's, or the responder's
//! now) says `legalHold`. Each workstation, volume and snapshot is checked
//! to carry the case's tags before it is removed: an id in a Case is never
//! enough to destroy something. A snapshot found gone before clean-up
//! deleted it is not recorded as removed (it went some other way, and
//! `verify` keeps saying it is missing). A dry run lists what would go and
//! what stays, and why, and changes nothing.
//!
//! The case comes from its latest signed manifest, and a chain of manifests
//! with any problem is refused: a destructive step acts on nothing `verify`
//! would not vouch for. Every removal is recorded in the Case (`cleanups`,
//! custody) and the case is sealed again, so `verify` holds afterwards.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, CreateVolumePermission, CreateVolumePermissionModifications, Filter,
    Snapshot, Tag,
};
use serde::Serialize;
use serde_json::json;

use super::{one_at_a_time, seal_again, sealed_case, SealedCase};
use crate::aws::{Clients, Responder};
use crate::case::custody::{entry, now_utc, parse_rfc3339};
use crate::case::Case;
use crate::case::{CaseCleanup, CaseResource, KeptResource, Removal, ResourceKind};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::disk::{
    describe_snapshots, EVIDENCE_ROLE, FORENSIC_COPY_ROLE, SHARING_COPY_ROLE,
};
use crate::steps::workstation::{EVIDENCE_VOLUME_ROLE, WORKSTATION_ROLE};
use crate::steps::{CASE_TAG, ROLE_TAG};

/// The step name in custody entries.
pub const STEP: &str = "cleanup-case";
/// How long a removal waits for a workstation to end or a volume to come
/// free, polling every [`POLL`].
const WAIT: std::time::Duration = std::time::Duration::from_secs(180);
const POLL: std::time::Duration = std::time::Duration::from_secs(5);
/// The snapshot state clean-up records for a snapshot it deleted.
pub const DELETED: &str = "deleted";

/// What a clean-up would do (a dry run) or did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPlan {
    /// What goes, in order.
    pub remove: Vec<CaseResource>,
    /// What stays, and why.
    pub keep: Vec<KeptResource>,
}

/// What `cleanup` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupOutcome {
    /// The case.
    pub case_id: String,
    /// Only planned: nothing was changed.
    pub dry_run: bool,
    /// The plan.
    pub plan: CleanupPlan,
    /// What was done (not on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CaseCleanup>,
    /// The manifest version the seal after it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_manifest_version: Option<String>,
    /// Under a hold, the objects that seal wrote, each held as well.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sealed_objects: Vec<crate::case::HeldObject>,
    /// Every planned removal is done.
    pub complete: bool,
}

/// Seconds since the epoch of an RFC 3339 time.
fn seconds(text: &str) -> Option<i64> {
    parse_rfc3339(text).map(|t| t.secs())
}

/// When the forensic copy's retention ends: its start (else the case's
/// opening) plus the retention days.
fn retained_until(started: Option<&str>, case: &Case, days: u32) -> Option<i64> {
    let from = started
        .and_then(seconds)
        .or_else(|| case.custody.first().and_then(|e| seconds(&e.at)))?;
    Some(from + i64::from(days) * 86_400)
}

/// Why the case's evidence is held, if it is (`legal_hold_now`: the
/// responder's policy says `legalHold` today).
pub fn held_because(case: &Case, legal_hold_now: bool) -> Option<String> {
    if let Some(hold) = case.hold() {
        return Some(format!(
            "under the legal hold {} placed at {} ({})",
            hold.placed_by, hold.placed_at, hold.reason
        ));
    }
    if case.policy.legal_hold {
        return Some("the case's policy says legalHold: its evidence is kept".to_owned());
    }
    legal_hold_now
        .then(|| "the responder's policy says legalHold: every case's evidence is kept".to_owned())
}

/// What clean-up removes from `case` and what it keeps, with why (pure).
/// `now` in seconds since the epoch; `retention_days` the evidence's;
/// `legal_hold_now` the responder's policy's `legalHold`.
pub fn plan(
    case: &Case,
    forensic_account: &str,
    now: i64,
    retention_days: u32,
    legal_hold_now: bool,
) -> CleanupPlan {
    let workload_account = case
        .incident
        .account
        .clone()
        .unwrap_or_else(|| forensic_account.to_owned());
    let gone: Vec<(ResourceKind, String)> = case
        .cleanups
        .iter()
        .flat_map(|c| c.removals.iter())
        .filter(|r| r.removed)
        .map(|r| (r.resource.kind, r.resource.id.clone()))
        .collect();
    let held = held_because(case, legal_hold_now);
    let mut remove = Vec::new();
    let mut keep = Vec::new();
    let mut add =
        |kind: ResourceKind, id: &str, account: &str, on: Option<String>, why: Option<String>| {
            if gone.contains(&(kind, id.to_owned())) {
                return;
            }
            let resource = CaseResource {
                kind,
                id: id.to_owned(),
                account: account.to_owned(),
                on,
            };
            match why {
                Some(why) => keep.push(KeptResource { resource, why }),
                None => remove.push(resource),
            }
        };
    for ws in &case.workstations {
        if let Some(id) = &ws.instance_id {
            add(ResourceKind::Workstation, id, forensic_account, None, None);
        }
    }
    for ev in &case.evidence_volumes {
        if let Some(id) = &ev.volume_id {
            add(
                ResourceKind::EvidenceVolume,
                id,
                forensic_account,
                None,
                held.clone(),
            );
        }
    }
    for v in &case.snapshots {
        let copy_complete = v.copy.as_ref().is_some_and(|c| c.is_completed());
        let not_copied = (!copy_complete).then(|| {
            format!(
                "the forensic copy of {} is not complete: the workload-side evidence is all there is",
                v.volume_id
            )
        });
        let evidence_why = held.clone().or_else(|| not_copied.clone());
        if let Some(sharing) = &v.sharing {
            if let (Some(shared), Some(with)) = (&sharing.source_snapshot_id, &sharing.shared_with)
            {
                add(
                    ResourceKind::SnapshotPermission,
                    shared,
                    &workload_account,
                    Some(with.clone()),
                    not_copied.clone(),
                );
            }
            if let Some(copy) = &sharing.re_encrypted {
                add(
                    ResourceKind::SharingCopy,
                    &copy.snapshot_id,
                    &workload_account,
                    None,
                    evidence_why.clone(),
                );
            }
        }
        add(
            ResourceKind::WorkloadSnapshot,
            &v.snapshot.snapshot_id,
            &workload_account,
            None,
            evidence_why.clone(),
        );
        if let Some(grant) = v.sharing.as_ref().and_then(|s| s.grant.as_ref()) {
            add(
                ResourceKind::KeyGrant,
                &grant.grant_id,
                &workload_account,
                Some(grant.key_arn.clone()),
                not_copied.clone(),
            );
        }
    }
    for isolation in &case.isolation {
        for block in &isolation.dns_firewall {
            if let Some(group) = &block.rule_group_id {
                add(
                    ResourceKind::DnsRuleGroup,
                    group,
                    &workload_account,
                    block.domain_list_id.clone(),
                    None,
                );
            }
            if let Some(list) = &block.domain_list_id {
                add(
                    ResourceKind::DnsDomainList,
                    list,
                    &workload_account,
                    None,
                    None,
                );
            }
        }
    }
    for v in &case.snapshots {
        let Some(copy) = &v.copy else { continue };
        let until = retained_until(copy.started_at.as_deref(), case, retention_days);
        let why = held.clone().or_else(|| match until {
            Some(until) if now >= until => None,
            Some(until) => Some(format!(
                "retained until {}",
                crate::case::custody::rfc3339(aws_smithy_types::DateTime::from_secs(until))
            )),
            None => Some("its retention date is not known".to_owned()),
        });
        add(
            ResourceKind::ForensicCopy,
            &copy.snapshot_id,
            forensic_account,
            None,
            why,
        );
    }
    remove.sort_by_key(|r| r.kind);
    CleanupPlan { remove, keep }
}

/// Whether `tags` say the resource is the case's, in `role`.
fn tagged(tags: &[Tag], case_id: &str, role: &str) -> bool {
    let has = |k: &str, v: &str| {
        tags.iter()
            .any(|t| t.key() == Some(k) && t.value() == Some(v))
    };
    has(CASE_TAG, case_id) && has(ROLE_TAG, role)
}

fn not_the_cases(kind: ResourceKind, id: &str, case_id: &str, role: &str) -> String {
    format!(
        "{id} does not carry {CASE_TAG}={case_id} and {ROLE_TAG}={role}: not touched ({kind:?})"
    )
}

/// A removal's result: `Ok(detail)` when gone, `Err(detail)` when not.
type Step = std::result::Result<String, String>;

async fn remove_workstation(ec2: &aws_sdk_ec2::Client, id: &str, case_id: &str) -> Step {
    let described = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .aws("DescribeInstances", Some(id));
    let instance = match described {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned(),
        Err(e)
            if e.aws_code()
                .is_some_and(|c| c.starts_with("InvalidInstanceID")) =>
        {
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some(instance) = instance else {
        return Ok("already gone".into());
    };
    if crate::steps::is_terminated(&instance) {
        return Ok("already terminated".into());
    }
    if !tagged(instance.tags(), case_id, WORKSTATION_ROLE) {
        return Err(not_the_cases(
            ResourceKind::Workstation,
            id,
            case_id,
            WORKSTATION_ROLE,
        ));
    }
    ec2.modify_instance_attribute()
        .instance_id(id)
        .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .aws("ModifyInstanceAttribute", Some(id))
        .map_err(|e| e.to_string())?;
    ec2.terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .aws("TerminateInstances", Some(id))
        .map_err(|e| e.to_string())?;
    Ok("termination protection off, terminated".into())
}

/// Waits until no workstation of `ids` is running any more (terminated or gone).
async fn workstations_ended(ec2: &aws_sdk_ec2::Client, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let Ok(out) = ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
        else {
            return;
        };
        let running = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .any(|i| !crate::steps::is_terminated(i));
        if !running {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn remove_volume(ec2: &aws_sdk_ec2::Client, id: &str, case_id: &str) -> Step {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let described = ec2
            .describe_volumes()
            .filters(Filter::builder().name("volume-id").values(id).build())
            .send()
            .await
            .aws("DescribeVolumes", None)
            .map_err(|e| e.to_string())?;
        let Some(volume) = described.volumes().first() else {
            return Ok("already gone".into());
        };
        if !tagged(volume.tags(), case_id, EVIDENCE_VOLUME_ROLE) {
            return Err(not_the_cases(
                ResourceKind::EvidenceVolume,
                id,
                case_id,
                EVIDENCE_VOLUME_ROLE,
            ));
        }
        let state = volume.state().map(|s| s.as_str()).unwrap_or_default();
        if state == "available" {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "still {state} after {} s: not deleted",
                WAIT.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    ec2.delete_volume()
        .volume_id(id)
        .send()
        .await
        .aws("DeleteVolume", None)
        .map_err(|e| e.to_string())?;
    Ok("deleted".into())
}

async fn snapshot_of(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> std::result::Result<Option<Snapshot>, String> {
    describe_snapshots(ec2, &[id.to_owned()])
        .await
        .map(|found| found.into_iter().next())
        .map_err(|e| e.to_string())
}

async fn remove_snapshot(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    case_id: &str,
    kind: ResourceKind,
    role: &str,
) -> Step {
    let Some(snapshot) = snapshot_of(ec2, id).await? else {
        return Err(
            "missing before clean-up deleted it: not recorded as removed (`verify` says it is missing)"
                .into(),
        );
    };
    if !tagged(snapshot.tags(), case_id, role) {
        return Err(not_the_cases(kind, id, case_id, role));
    }
    ec2.delete_snapshot()
        .snapshot_id(id)
        .send()
        .await
        .aws("DeleteSnapshot", None)
        .map_err(|e| e.to_string())?;
    Ok("deleted".into())
}

async fn remove_permission(ec2: &aws_sdk_ec2::Client, id: &str, grantee: &str) -> Step {
    if snapshot_of(ec2, id).await?.is_none() {
        return Ok("the snapshot is already gone".into());
    }
    ec2.modify_snapshot_attribute()
        .snapshot_id(id)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .create_volume_permission(
            CreateVolumePermissionModifications::builder()
                .remove(CreateVolumePermission::builder().user_id(grantee).build())
                .build(),
        )
        .send()
        .await
        .aws("ModifySnapshotAttribute", None)
        .map_err(|e| e.to_string())?;
    Ok(format!("create-volume permission of {grantee} removed"))
}

async fn remove_grant(forensic: &Clients, grant_id: &str, key: &str) -> Step {
    match forensic
        .kms
        .retire_grant()
        .key_id(key)
        .grant_id(grant_id)
        .send()
        .await
        .aws("RetireGrant", None)
    {
        Ok(_) => Ok("retired by the forensic account (its retiring principal)".into()),
        Err(e) if e.aws_code().is_some_and(|c| c == "NotFoundException") => {
            Ok("already retired or revoked".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn remove_rule_group(r53: &aws_sdk_route53resolver::Client, group: &str) -> Step {
    let associations = r53
        .list_firewall_rule_group_associations()
        .firewall_rule_group_id(group)
        .send()
        .await
        .aws("ListFirewallRuleGroupAssociations", None)
        .map_err(|e| e.to_string())?;
    let live: Vec<String> = associations
        .firewall_rule_group_associations()
        .iter()
        .filter(|a| a.status().map(|s| s.as_str()) != Some("DELETING"))
        .map(|a| a.vpc_id().unwrap_or_default().to_owned())
        .collect();
    if !live.is_empty() {
        return Err(format!(
            "still associated with {}: it blocks the suspect's domain there; release the instance first",
            live.join(", ")
        ));
    }
    let rules = r53
        .list_firewall_rules()
        .firewall_rule_group_id(group)
        .send()
        .await;
    let rules = match rules {
        Ok(rules) => rules,
        Err(e) => {
            let e = PlaybookError::from_sdk("ListFirewallRules", None, &e);
            if e.aws_code()
                .is_some_and(|c| c == "ResourceNotFoundException")
            {
                return Ok("already gone".into());
            }
            return Err(e.to_string());
        }
    };
    for rule in rules.firewall_rules() {
        r53.delete_firewall_rule()
            .firewall_rule_group_id(group)
            .set_firewall_domain_list_id(rule.firewall_domain_list_id().map(str::to_owned))
            .send()
            .await
            .aws("DeleteFirewallRule", None)
            .map_err(|e| e.to_string())?;
    }
    r53.delete_firewall_rule_group()
        .firewall_rule_group_id(group)
        .send()
        .await
        .aws("DeleteFirewallRuleGroup", None)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} rule(s) and the group deleted",
        rules.firewall_rules().len()
    ))
}

async fn remove_domain_list(r53: &aws_sdk_route53resolver::Client, list: &str) -> Step {
    match r53
        .delete_firewall_domain_list()
        .firewall_domain_list_id(list)
        .send()
        .await
    {
        Ok(_) => Ok("deleted".into()),
        Err(e) => {
            let e = PlaybookError::from_sdk("DeleteFirewallDomainList", None, &e);
            if e.aws_code()
                .is_some_and(|c| c == "ResourceNotFoundException")
            {
                Ok("already gone".into())
            } else {
                Err(e.to_string())
            }
        }
    }
}

/// Carries out `plan` on the case (module docs), in order. A removal that
/// fails is recorded and the rest go on, except that evidence volumes wait
/// for their workstations to end.
async fn apply(responder: &Responder, case: &Case, plan: &CleanupPlan) -> Result<Vec<Removal>> {
    let case_id = case.case_id.as_str();
    let forensic = &responder.clients;
    let workload = responder
        .workload_for(case.incident.account.as_deref(), case_id)
        .await?;
    let mut removals = Vec::new();
    let mut terminated = Vec::new();
    let mut waited = false;
    for resource in &plan.remove {
        if resource.kind > ResourceKind::Workstation && !waited {
            workstations_ended(&forensic.ec2, &terminated).await;
            waited = true;
        }
        let id = resource.id.as_str();
        let done = match resource.kind {
            ResourceKind::Workstation => {
                let done = remove_workstation(&forensic.ec2, id, case_id).await;
                if done.is_ok() {
                    terminated.push(id.to_owned());
                }
                done
            }
            ResourceKind::EvidenceVolume => remove_volume(&forensic.ec2, id, case_id).await,
            ResourceKind::SnapshotPermission => {
                let grantee = resource.on.as_deref().unwrap_or_default();
                remove_permission(&workload.clients.ec2, id, grantee).await
            }
            ResourceKind::SharingCopy => {
                remove_snapshot(
                    &workload.clients.ec2,
                    id,
                    case_id,
                    resource.kind,
                    SHARING_COPY_ROLE,
                )
                .await
            }
            ResourceKind::WorkloadSnapshot => {
                remove_snapshot(
                    &workload.clients.ec2,
                    id,
                    case_id,
                    resource.kind,
                    EVIDENCE_ROLE,
                )
                .await
            }
            ResourceKind::KeyGrant => {
                let key = resource.on.as_deref().unwrap_or_default();
                remove_grant(forensic, id, key).await
            }
            ResourceKind::DnsRuleGroup => {
                remove_rule_group(&workload.clients.route53resolver, id).await
            }
            ResourceKind::DnsDomainList => {
                remove_domain_list(&workload.clients.route53resolver, id).await
            }
            ResourceKind::ForensicCopy => {
                remove_snapshot(
                    &forensic.ec2,
                    id,
                    case_id,
                    resource.kind,
                    FORENSIC_COPY_ROLE,
                )
                .await
            }
        };
        let (removed, detail) = match done {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        removals.push(Removal {
            resource: resource.clone(),
            removed,
            detail,
            at: now_utc(),
        });
    }
    Ok(removals)
}

/// Marks in the Case what is gone: snapshots `deleted` (the manifest says
/// so, and `verify` expects them gone), workstations `terminated`, volumes
/// `deleted`.
fn mark_removed(case: &mut Case, removals: &[Removal]) {
    for r in removals.iter().filter(|r| r.removed) {
        let id = r.resource.id.as_str();
        match r.resource.kind {
            ResourceKind::Workstation => {
                for ws in &mut case.workstations {
                    if ws.instance_id.as_deref() == Some(id) {
                        ws.state = "terminated".into();
                    }
                }
            }
            ResourceKind::EvidenceVolume => {
                for ev in &mut case.evidence_volumes {
                    if ev.volume_id.as_deref() == Some(id) {
                        ev.state = DELETED.into();
                        ev.attached = false;
                    }
                }
            }
            ResourceKind::SharingCopy
            | ResourceKind::WorkloadSnapshot
            | ResourceKind::ForensicCopy => {
                for v in &mut case.snapshots {
                    for s in v.snapshots_mut() {
                        if s.snapshot_id == id {
                            s.state = DELETED.into();
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Cleans up the sealed case `case_id` for `actor` (module docs); with
/// `dry_run`, only the plan.
pub async fn cleanup(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    dry_run: bool,
) -> Result<CleanupOutcome> {
    if dry_run {
        return clean(responder, actor, case_id, true).await;
    }
    one_at_a_time(responder, case_id, actor, || {
        clean(responder, actor, case_id, false)
    })
    .await
}

async fn clean(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    dry_run: bool,
) -> Result<CleanupOutcome> {
    let SealedCase {
        mut case,
        manifest_version_id,
        chain_problems,
        ..
    } = sealed_case(responder, case_id).await?;
    if chain_problems > 0 {
        return Err(PlaybookError::InvalidCase(format!(
            "{chain_problems} check(s) of the case's chain of manifests fail: nothing is removed for a case `verify` does not vouch for (run `ec2-forensics verify --case-id {case_id}`)"
        )));
    }
    if case.incident.region != responder.region {
        return Err(PlaybookError::WrongRegion {
            expected: responder.region.clone(),
            found: case.incident.region.clone(),
        });
    }
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs();
    let plan = plan(
        &case,
        &responder.identity.account,
        now,
        responder.config.retention.days,
        responder.policy.legal_hold,
    );
    if dry_run {
        return Ok(CleanupOutcome {
            case_id: case_id.to_owned(),
            dry_run: true,
            complete: true,
            plan,
            cleanup: None,
            sealed_manifest_version: None,
            sealed_objects: Vec::new(),
        });
    }
    let at = now_utc();
    let removals = apply(responder, &case, &plan).await?;
    let failed = removals.iter().filter(|r| !r.removed).count();
    mark_removed(&mut case, &removals);
    let record = CaseCleanup {
        by: actor.to_owned(),
        at,
        removals,
        kept: plan.keep.clone(),
    };
    case.record(entry(
        STEP,
        actor,
        format!(
            "clean-up: {} removed, {} NOT removed, {} kept",
            record.removals.len() - failed,
            failed,
            record.kept.len()
        ),
        &[
            "DescribeInstances",
            "ModifyInstanceAttribute",
            "TerminateInstances",
            "DescribeVolumes",
            "DeleteVolume",
            "DescribeSnapshots",
            "ModifySnapshotAttribute",
            "DeleteSnapshot",
            "RetireGrant",
            "ListFirewallRuleGroupAssociations",
            "ListFirewallRules",
            "DeleteFirewallRule",
            "DeleteFirewallRuleGroup",
            "DeleteFirewallDomainList",
        ],
        json!({ "manifestVersion": manifest_version_id }),
        json!({ "removals": record.removals, "kept": record.kept }),
        None,
    ));
    case.cleanups.push(record.clone());
    // Security Hub hears of it (a note; never blocks: its answer is recorded).
    let case =
        crate::steps::security_hub::tell(responder, case, crate::case::FindingMoment::CleanedUp)
            .await?;
    let (_, sealed, sealed_objects) = seal_again(responder, case, &manifest_version_id)
        .await
        .map_err(|err| {
            PlaybookError::InvalidCase(format!(
                "the clean-up ran ({} removed) but the case was not sealed again: {err}",
                record.removals.len() - failed
            ))
        })?;
    Ok(CleanupOutcome {
        case_id: case_id.to_owned(),
        dry_run: false,
        complete: failed == 0,
        plan,
        cleanup: Some(record),
        sealed_manifest_version: Some(sealed),
        sealed_objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::evidence::{KeyGrant, Sharing, SnapshotProgress};
    use crate::case::{LegalHold, VolumeEvidence, Workstation};

    fn progress(id: &str, state: &str, started: &str) -> SnapshotProgress {
        SnapshotProgress {
            snapshot_id: id.into(),
            state: state.into(),
            started_at: Some(started.into()),
            ..SnapshotProgress::default()
        }
    }

    fn case_with(copy_state: &str) -> Case {
        let mut case = crate::case::example_case();
        case.incident.account = Some("111122223333".into());
        case.workstations.push(Workstation {
            availability_zone: "us-east-1a".into(),
            subnet_id: "subnet-1".into(),
            image_id: "ami-1".into(),
            instance_id: Some("i-0workstation".into()),
            state: "running".into(),
            agent: None,
            launched_at: None,
            command_id: None,
            command_sent_at: None,
            command_ended_at: None,
            command_timeout_seconds: None,
            archive_uploads: Default::default(),
            scripts: Default::default(),
            reason: None,
        });
        case.evidence_volumes.push(crate::case::EvidenceVolume {
            source_volume_id: "vol-0suspect".into(),
            instance_id: "i-0suspect".into(),
            copy_snapshot_id: "snap-0copy".into(),
            availability_zone: "us-east-1a".into(),
            volume_id: Some("vol-0evidence".into()),
            state: "in-use".into(),
            device: None,
            attached: true,
            reason: None,
        });
        case.snapshots.push(VolumeEvidence {
            instance_id: "i-0suspect".into(),
            volume_id: "vol-0suspect".into(),
            snapshot: progress("snap-0workload", "completed", "2026-01-01T00:00:00Z"),
            sharing: Some(Sharing {
                shared_with: Some("444455556666".into()),
                source_snapshot_id: Some("snap-0sharing".into()),
                re_encrypted: Some(progress(
                    "snap-0sharing",
                    "completed",
                    "2026-01-01T00:00:00Z",
                )),
                grant: Some(KeyGrant {
                    key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
                    grant_id: "grant-1".into(),
                    name: "ec2-forensics-case".into(),
                    grantee_principal: "arn:aws:iam::444455556666:root".into(),
                    retiring_principal: "arn:aws:iam::444455556666:root".into(),
                    operations: vec!["Decrypt".into()],
                }),
                verified_private: true,
                ready: true,
                actions: vec![],
            }),
            copy: Some(progress("snap-0copy", copy_state, "2026-01-01T00:00:00Z")),
            ..VolumeEvidence::default()
        });
        case
    }

    fn kinds(plan: &CleanupPlan) -> Vec<(ResourceKind, String)> {
        plan.remove.iter().map(|r| (r.kind, r.id.clone())).collect()
    }

    fn kept(plan: &CleanupPlan, id: &str) -> String {
        plan.keep
            .iter()
            .find(|k| k.resource.id == id)
            .map(|k| k.why.clone())
            .unwrap_or_else(|| panic!("{id} is not kept: {plan:#?}"))
    }

    const JAN_2026: i64 = 1_767_225_600;
    const DAY: i64 = 86_400;

    #[test]
    fn a_finished_case_loses_everything_but_its_evidence_in_a_safe_order() {
        let case = case_with("completed");
        let plan = plan(&case, "444455556666", JAN_2026 + 10 * DAY, 90, false);
        assert_eq!(
            kinds(&plan),
            vec![
                (ResourceKind::Workstation, "i-0workstation".into()),
                (ResourceKind::EvidenceVolume, "vol-0evidence".into()),
                (ResourceKind::SnapshotPermission, "snap-0sharing".into()),
                (ResourceKind::SharingCopy, "snap-0sharing".into()),
                (ResourceKind::WorkloadSnapshot, "snap-0workload".into()),
                (ResourceKind::KeyGrant, "grant-1".into()),
            ]
        );
        assert_eq!(plan.remove[2].on.as_deref(), Some("444455556666"));
        assert_eq!(plan.remove[4].account, "111122223333");
        assert!(kept(&plan, "snap-0copy").starts_with("retained until 2026-04-01"));

        // Past the retention date the copy goes too, last.
        let later = plan_at(&case, JAN_2026 + 91 * DAY);
        assert_eq!(
            later.remove.last().map(|r| (r.kind, r.id.as_str())),
            Some((ResourceKind::ForensicCopy, "snap-0copy"))
        );
    }

    fn plan_at(case: &Case, now: i64) -> CleanupPlan {
        plan(case, "444455556666", now, 90, false)
    }

    #[test]
    fn nothing_of_the_evidence_goes_under_a_hold_or_before_the_copy_is_complete() {
        let mut case = case_with("completed");
        case.holds.push(LegalHold {
            reason: "matter 17".into(),
            placed_by: "arn:aws:iam::444455556666:user/counsel".into(),
            placed_at: "2026-01-02T00:00:00Z".into(),
            objects: vec![],
            copies: vec![],
            released: None,
        });
        let held = plan_at(&case, JAN_2026 + 400 * DAY);
        for id in [
            "vol-0evidence",
            "snap-0sharing",
            "snap-0workload",
            "snap-0copy",
        ] {
            assert!(kept(&held, id).contains("legal hold"), "{id}");
            assert!(
                !held
                    .remove
                    .iter()
                    .any(|r| r.id == id && r.kind != ResourceKind::SnapshotPermission),
                "{id}"
            );
        }
        // The workstation and the grant are no evidence.
        assert!(held
            .remove
            .iter()
            .any(|r| r.kind == ResourceKind::Workstation));
        assert!(held.remove.iter().any(|r| r.kind == ResourceKind::KeyGrant));

        case.holds.clear();
        case.policy.legal_hold = true;
        assert!(kept(&plan_at(&case, JAN_2026 + 400 * DAY), "snap-0copy").contains("legalHold"));
        // The responder's policy today, whatever the case's said.
        case.policy.legal_hold = false;
        let today = plan(&case, "444455556666", JAN_2026 + 400 * DAY, 90, true);
        assert!(kept(&today, "snap-0copy").contains("responder's policy"));

        let copying = case_with("pending");
        let plan = plan_at(&copying, JAN_2026 + DAY);
        for id in ["snap-0sharing", "snap-0workload", "grant-1"] {
            assert!(kept(&plan, id).contains("not complete"), "{id}");
        }
    }

    #[test]
    fn what_an_earlier_cleanup_removed_is_not_planned_again() {
        let mut case = case_with("completed");
        case.cleanups.push(CaseCleanup {
            by: "arn:aws:iam::444455556666:user/a".into(),
            at: "2026-02-01T00:00:00Z".into(),
            removals: vec![Removal {
                resource: CaseResource {
                    kind: ResourceKind::Workstation,
                    id: "i-0workstation".into(),
                    account: "444455556666".into(),
                    on: None,
                },
                removed: true,
                detail: "terminated".into(),
                at: "2026-02-01T00:00:00Z".into(),
            }],
            kept: vec![],
        });
        let plan = plan_at(&case, JAN_2026 + 10 * DAY);
        assert!(!plan
            .remove
            .iter()
            .any(|r| r.kind == ResourceKind::Workstation));
        assert_eq!(plan.remove[0].kind, ResourceKind::EvidenceVolume);
    }

    // DNS Firewall and grants: moto has no DNS Firewall, and no cross-account
    // grants; these answer as the Route 53 Resolver and KMS API references say.
    mod mocked {
        use super::super::*;
        use aws_sdk_route53resolver::operation as r53;
        use aws_sdk_route53resolver::types::{
            FirewallRule, FirewallRuleGroupAssociation, FirewallRuleGroupAssociationStatus,
        };
        use aws_smithy_mocks::{mock, mock_client, RuleMode};

        fn associations(
            status: Option<FirewallRuleGroupAssociationStatus>,
        ) -> aws_smithy_mocks::Rule {
            mock!(aws_sdk_route53resolver::Client::list_firewall_rule_group_associations)
                .match_requests(|r| r.firewall_rule_group_id() == Some("rslvr-frg-1"))
                .then_output(move || {
                    let mut out = r53::list_firewall_rule_group_associations::ListFirewallRuleGroupAssociationsOutput::builder();
                    if let Some(status) = status.clone() {
                        out = out.firewall_rule_group_associations(
                            FirewallRuleGroupAssociation::builder()
                                .vpc_id("vpc-0suspect")
                                .status(status)
                                .build(),
                        );
                    }
                    out.build()
                })
        }

        #[tokio::test]
        async fn a_rule_group_still_associated_stays_and_a_free_one_goes_rule_first() {
            let associated = associations(Some(FirewallRuleGroupAssociationStatus::Complete));
            let r53 = mock_client!(aws_sdk_route53resolver, RuleMode::MatchAny, &[&associated]);
            let kept = remove_rule_group(&r53, "rslvr-frg-1").await;
            assert!(
                kept.as_ref().is_err_and(|why| why.contains("vpc-0suspect")),
                "{kept:?}"
            );
            assert_eq!(associated.num_calls(), 1, "nothing deleted while it blocks");

            let free = associations(None);
            let rules =
                mock!(aws_sdk_route53resolver::Client::list_firewall_rules).then_output(|| {
                    r53::list_firewall_rules::ListFirewallRulesOutput::builder()
                        .firewall_rules(
                            FirewallRule::builder()
                                .firewall_rule_group_id("rslvr-frg-1")
                                .firewall_domain_list_id("rslvr-fdl-1")
                                .build(),
                        )
                        .build()
                });
            let delete_rule = mock!(aws_sdk_route53resolver::Client::delete_firewall_rule)
                .match_requests(|r| {
                    r.firewall_rule_group_id() == Some("rslvr-frg-1")
                        && r.firewall_domain_list_id() == Some("rslvr-fdl-1")
                })
                .then_output(|| {
                    r53::delete_firewall_rule::DeleteFirewallRuleOutput::builder().build()
                });
            let delete_group = mock!(aws_sdk_route53resolver::Client::delete_firewall_rule_group)
                .match_requests(|r| r.firewall_rule_group_id() == Some("rslvr-frg-1"))
                .then_output(|| {
                    r53::delete_firewall_rule_group::DeleteFirewallRuleGroupOutput::builder()
                        .build()
                });
            let r53 = mock_client!(
                aws_sdk_route53resolver,
                RuleMode::Sequential,
                &[&free, &rules, &delete_rule, &delete_group]
            );
            let gone = remove_rule_group(&r53, "rslvr-frg-1").await;
            assert_eq!(gone.as_deref(), Ok("1 rule(s) and the group deleted"));
            assert_eq!((delete_rule.num_calls(), delete_group.num_calls()), (1, 1));
        }

        #[tokio::test]
        async fn a_grant_is_retired_by_the_forensic_account_and_never_revoked() {
            use aws_sdk_kms::operation::retire_grant;
            let refused = mock!(aws_sdk_kms::Client::retire_grant)
                .match_requests(|r| {
                    r.grant_id() == Some("grant-1")
                        && r.key_id() == Some("arn:aws:kms:us-east-1:111122223333:key/k")
                })
                .then_error(|| {
                    retire_grant::RetireGrantError::generic(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("AccessDeniedException")
                            .message("not the retiring principal")
                            .build(),
                    )
                });
            let mut forensic = crate::aws::Clients::new(&aws_config::SdkConfig::builder().build());
            forensic.kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, &[&refused]);
            let done = remove_grant(
                &forensic,
                "grant-1",
                "arn:aws:kms:us-east-1:111122223333:key/k",
            )
            .await;
            assert!(
                done.as_ref()
                    .is_err_and(|why| why.contains("RetireGrant was denied")),
                "{done:?}"
            );
            assert_eq!(refused.num_calls(), 1, "one retire, no revoke");
        }
    }
}
