//! `release-cases`: after a false positive, a person undoes what the
//! deployed stack's containment changed, through the deployed stack.
//!
//! The run starts through the start function (the requester is who AWS
//! authenticated) and another person approves it, as every bulk run. Each
//! case is released from its own record: the Case its forensics execution
//! handed on, read from that execution's history (never a `case.json` in
//! the bucket, which anyone who can write the bucket could change). Then
//! `release-instance` restores what containment changed, read back, and
//! `seal-evidence` seals the case again, the release in its signed custody
//! record. A released case is recorded in the responder's own table, which
//! `status` reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cases::case_record;
use crate::aws::Responder;
use crate::case::bulk::{BulkAction, BulkPlan, BulkRequest, CaseItem, PlannedCase, Skipped};
use crate::case::custody::{entry, now_utc, sha256_json};
use crate::case::{Case, Outcome};
use crate::error::{PlaybookError, Result};
use crate::steps::approval::looks_like_case_id;
use crate::steps::lease::{conditional, epoch_now, lease_key, Leases};

/// The step name in custody entries.
pub const STEP: &str = "release-cases";

/// A case released through the deployed stack, as the responder's table
/// keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    /// The case.
    pub case_id: String,
    /// The run that released it.
    pub bulk_id: String,
    /// Who asked, as AWS authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Who approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When every instance was read back released (UTC).
    pub released_at: String,
    /// The case's execution whose containment was released: a later
    /// attempt that contains the case again is not released by it.
    pub execution_arn: String,
}

fn marker_key(case_id: &str) -> String {
    format!("released:{case_id}")
}

fn claim_key(case_id: &str) -> String {
    format!("releasing:{case_id}")
}

/// How long a run's claim on a case's release lasts if the run dies
/// holding it (a release and a seal take seconds to minutes).
const CLAIM_SECONDS: i64 = 3600;

fn table(responder: &Responder) -> Result<&str> {
    responder.config.lease_table.as_deref().ok_or_else(|| {
        PlaybookError::Configuration(
            "LEASE_TABLE is not set: released cases are recorded there".into(),
        )
    })
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// The case's release, when the deployed stack released the containment of
/// `execution_arn` (the case's latest attempt); a release of an earlier
/// attempt is none.
pub async fn released_of(
    responder: &Responder,
    case_id: &str,
    execution_arn: &str,
) -> Result<Option<Released>> {
    Ok(released(responder, case_id)
        .await?
        .filter(|r| r.execution_arn == execution_arn))
}

/// The case's last release by the deployed stack, of whichever attempt.
pub async fn released(responder: &Responder, case_id: &str) -> Result<Option<Released>> {
    let Some(table) = responder.config.lease_table.as_deref() else {
        return Ok(None);
    };
    let out = responder
        .clients
        .dynamodb
        .get_item()
        .table_name(table)
        .key("instance", s(&marker_key(case_id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("GetItem", None, &e))?;
    Ok(out.item().and_then(|item| {
        Some(Released {
            case_id: text(item, "caseId")?,
            bulk_id: text(item, "bulkId")?,
            requested_by: text(item, "requestedBy"),
            approved_by: text(item, "approvedBy"),
            released_at: text(item, "releasedAt")?,
            execution_arn: text(item, "executionArn")?,
        })
    }))
}

/// What a release of `case` puts back and what it keeps, from the Case's
/// own records: pure.
pub fn outline(case: &Case) -> (Vec<String>, Vec<String>) {
    let mut restores = Vec::new();
    let mut keeps = vec![
        "the evidence: snapshots, forensic copies and stored objects".to_owned(),
        "the custody record, extended by the release and sealed again".to_owned(),
    ];
    for isolation in &case.isolation {
        let id = &isolation.instance_id;
        for eni in &isolation.interfaces {
            restores.push(format!(
                "{id} {}: security groups {}",
                eni.network_interface_id,
                eni.original_group_ids.join(", ")
            ));
        }
        for acl in &isolation.network_acl_entries {
            restores.push(format!(
                "{id}: remove the DENY {} rule {} ({}) on {}, while it is still the responder's",
                acl.cidr,
                acl.rule_number,
                if acl.egress { "outbound" } else { "inbound" },
                acl.network_acl_id
            ));
        }
        for eip in &isolation.elastic_ips {
            restores.push(format!(
                "{id}: Elastic IP {} ({})",
                eip.public_ip.as_deref().unwrap_or("address unknown"),
                eip.allocation_id
            ));
        }
        if let Some(profile) = &isolation.instance_profile {
            restores.push(format!("{id}: instance profile {}", profile.arn));
        }
        for block in &isolation.dns_firewall {
            restores.push(format!(
                "{id}: the DNS Firewall association {} removed",
                block.association_id.as_deref().unwrap_or("(none made)")
            ));
        }
        if let Some(revocation) = &isolation.session_revocation {
            keeps.push(format!(
                "{id}: the session-revocation policy {} on role {} (credentials issued before containment stay dead)",
                revocation.policy_name, revocation.role_name
            ));
        }
    }
    for protection in &case.protection {
        let id = &protection.instance_id;
        let original = &protection.original;
        match original.termination_protection {
            Some(false) if case.policy.release_keeps_termination_protection => keeps.push(format!(
                "{id}: termination protection on (the policy's releaseKeepsTerminationProtection)"
            )),
            Some(value) => restores.push(format!("{id}: termination protection {value}")),
            None => {}
        }
        if let Some(behavior) = &original.shutdown_behavior {
            restores.push(format!("{id}: shutdown behaviour {behavior}"));
        }
        for device in &original.delete_on_termination {
            restores.push(format!(
                "{id}: DeleteOnTermination {} on {}",
                device.delete_on_termination, device.device_name
            ));
        }
        if let Some(group) = &original.auto_scaling_group {
            restores.push(format!(
                "{id}: Auto Scaling group {} membership",
                group.name
            ));
        }
        for target in &original.target_groups {
            restores.push(format!("{id}: target group {}", target.target_group_arn));
        }
        for balancer in &original.load_balancers {
            restores.push(format!("{id}: Classic Load Balancer {balancer}"));
        }
    }
    (restores, keeps)
}

/// Plans `release-cases` in `account`: per case, its execution must have
/// ended, its Case (from that execution) must be of this account and Region
/// and record a containment, and it must not be released already.
pub async fn plan_cases(
    responder: &Responder,
    request: BulkRequest,
    account: &str,
) -> Result<BulkPlan> {
    let mut plan = super::empty_plan(request);
    if plan.request.selection.case_ids.is_empty() {
        plan.refusals
            .push("release-cases needs the case ids to release".into());
    }
    let others = {
        let mut selection = plan.request.selection.clone();
        selection.case_ids.clear();
        !selection.is_empty()
    };
    if others {
        plan.refusals.push(
            "release-cases selects cases only: instance, tag, group, subnet, VPC and finding selectors do not apply".into(),
        );
    }
    let region = plan.request.region.clone();
    for case_id in plan.request.selection.case_ids.clone() {
        if !looks_like_case_id(&case_id) {
            return Err(PlaybookError::InvalidRequest(format!(
                "{case_id:?} is not a case id"
            )));
        }
        let skip = |why: String| Skipped {
            target: case_id.clone(),
            why,
        };
        let Some(record) = case_record(responder, &case_id).await? else {
            plan.skipped.push(skip(
                "the forensics state machine has no execution of this case".into(),
            ));
            continue;
        };
        if record.status == "RUNNING" {
            plan.refusals.push(format!(
                "{case_id} still runs: release it once its execution has ended (or stop it)"
            ));
            continue;
        }
        let Some(case) = record.case else {
            plan.skipped
                .push(skip("its execution handed on no Case".into()));
            continue;
        };
        if case
            .incident
            .account
            .as_deref()
            .is_some_and(|a| a != account)
            || case.incident.region != region
        {
            plan.refusals.push(format!(
                "{case_id} is about account {} and {}, not {account} and {region}",
                case.incident.account.as_deref().unwrap_or("(unknown)"),
                case.incident.region
            ));
            continue;
        }
        if case.decision.dry_run {
            plan.skipped
                .push(skip("a dry run: containment changed nothing".into()));
            continue;
        }
        if case.protection.is_empty() && case.isolation.is_empty() {
            plan.skipped.push(skip(
                "the case records no containment: nothing to release".into(),
            ));
            continue;
        }
        if let Some(done) = released_of(responder, &case_id, &record.execution_arn).await? {
            plan.skipped.push(skip(format!(
                "released already by {} at {}",
                done.bulk_id, done.released_at
            )));
            continue;
        }
        let (restores, keeps) = outline(&case);
        plan.cases.push(PlannedCase {
            case_id: case_id.clone(),
            instances: case.incident.instance_ids.clone(),
            restores,
            keeps,
            later_findings: later_findings(responder, account, &case).await?,
            execution_arn: record.execution_arn.clone(),
            case_sha256: sha256_json(&case),
        });
    }
    if plan.cases.is_empty() && plan.refusals.is_empty() {
        plan.refusals
            .push("no selected case can be released".into());
    }
    plan.max_concurrency = super::max_concurrency(BulkAction::ReleaseCases, plan.cases.len());
    Ok(plan)
}

/// The findings about the case's instances that arrived after its
/// execution ended, as the leases keep them (`finding id (type)`).
async fn later_findings(responder: &Responder, account: &str, case: &Case) -> Result<Vec<String>> {
    let Some(leases) = Leases::of(responder) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for instance in &case.incident.instance_ids {
        let key = lease_key(account, &case.incident.region, instance);
        if let Some(lease) = leases.holder(&key).await? {
            if lease.case_id == case.case_id {
                found.extend(
                    lease
                        .later_findings
                        .iter()
                        .map(|(id, kind)| format!("{instance}: {id} ({kind})")),
                );
            }
        }
    }
    Ok(found)
}

/// The items of a `release-cases` plan.
pub fn case_items(plan: &BulkPlan, account: &str) -> Vec<CaseItem> {
    plan.cases
        .iter()
        .map(|c| CaseItem {
            bulk_id: plan.bulk_id.clone(),
            case_id: c.case_id.clone(),
            account: Some(account.to_owned()),
            requested_by: plan.request.requested_by.clone(),
            reason: plan.request.reason.clone(),
            execution_arn: c.execution_arn.clone(),
            case_sha256: c.case_sha256.clone(),
        })
        .collect()
}

/// Takes the case's release for `bulk_id`: `false` when another run is
/// releasing it now (a claim that has not expired).
async fn claim(responder: &Responder, item: &CaseItem) -> Result<bool> {
    let now = epoch_now();
    let put = responder
        .clients
        .dynamodb
        .put_item()
        .table_name(table(responder)?)
        .item("instance", s(&claim_key(&item.case_id)))
        .item("caseId", s(&item.case_id))
        .item("bulkId", s(&item.bulk_id))
        .item(
            "claimedUntil",
            AttributeValue::N((now + CLAIM_SECONDS).to_string()),
        )
        .item(
            "expiresAt",
            AttributeValue::N((now + CLAIM_SECONDS).to_string()),
        )
        .condition_expression("attribute_not_exists(#key) OR bulkId = :run OR claimedUntil < :now")
        .expression_attribute_names("#key", "instance")
        .expression_attribute_values(":run", s(&item.bulk_id))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .send()
        .await;
    conditional("PutItem", put)
}

/// Ends this run's claim on the case's release.
async fn unclaim(responder: &Responder, item: &CaseItem) -> Result<()> {
    let out = responder
        .clients
        .dynamodb
        .delete_item()
        .table_name(table(responder)?)
        .key("instance", s(&claim_key(&item.case_id)))
        .condition_expression("bulkId = :run")
        .expression_attribute_values(":run", s(&item.bulk_id))
        .send()
        .await;
    conditional("DeleteItem", out).map(|_| ())
}

/// The item's first step: the case's Case from its execution (which must
/// have ended), with the release's request and approval in its custody
/// record, for release-instance.
pub async fn load_case(
    responder: &Responder,
    item: &CaseItem,
    approved_by: Option<&str>,
) -> Result<Case> {
    let record = case_record(responder, &item.case_id)
        .await?
        .ok_or_else(|| {
            PlaybookError::InvalidRequest(format!(
                "{}: the forensics state machine has no execution of this case",
                item.case_id
            ))
        })?;
    if record.status == "RUNNING" {
        return Err(PlaybookError::InvalidRequest(format!(
            "{} runs again: not released",
            item.case_id
        )));
    }
    let mut case = record.case.ok_or_else(|| {
        PlaybookError::InvalidCase(format!("{}: its execution handed on no Case", item.case_id))
    })?;
    // Exactly the Case the approver was shown: the same execution, the same
    // bytes. A later attempt, or a Case changed since, is not released.
    if record.execution_arn != item.execution_arn || sha256_json(&case) != item.case_sha256 {
        return Err(PlaybookError::InvalidRequest(format!(
            "{}: its Case is not the one the approved plan showed (execution {}, now {}): plan the release again",
            item.case_id, item.execution_arn, record.execution_arn
        )));
    }
    let account = item
        .account
        .as_deref()
        .unwrap_or(&responder.identity.account);
    if case.incident.account.as_deref().unwrap_or(account) != account
        || case.incident.region != responder.region
    {
        return Err(PlaybookError::InvalidRequest(format!(
            "{} is about another account or Region than the run's",
            item.case_id
        )));
    }
    if let Some(done) = released_of(responder, &item.case_id, &record.execution_arn).await? {
        return Err(PlaybookError::InvalidRequest(format!(
            "{} was released already by {} at {}",
            item.case_id, done.bulk_id, done.released_at
        )));
    }
    if !claim(responder, item).await? {
        return Err(PlaybookError::InvalidRequest(format!(
            "{}: another run is releasing it now",
            item.case_id
        )));
    }
    let later = later_findings(responder, account, &case).await?;
    if !later.is_empty() {
        case.record(entry(
            STEP,
            &responder.identity.actor,
            format!(
                "findings that joined the case after its execution ended, read before the release: {}",
                later.join("; ")
            ),
            &["GetItem"],
            json!({ "caseId": item.case_id }),
            json!({ "laterFindings": later }),
            None,
        ));
    }
    let requester = item.requested_by.as_deref().unwrap_or("(unknown)");
    let approver = approved_by.unwrap_or("(unknown)");
    case.record(entry(
        STEP,
        &responder.identity.actor,
        format!(
            "release asked for by {requester} and approved by {approver} (run {}): {}",
            item.bulk_id, item.reason
        ),
        &["GetExecutionHistory"],
        json!({ "bulkId": item.bulk_id, "caseId": item.case_id, "reason": item.reason }),
        json!({ "requestedBy": requester, "approvedBy": approver }),
        None,
    ));
    Ok(case)
}

/// The item's last step: whether every instance of the case was read back
/// released; then the release is recorded for `status`.
pub async fn case_released(
    responder: &Responder,
    item: &CaseItem,
    approved_by: Option<&str>,
    case: Case,
) -> Result<Value> {
    let instances: Vec<Value> = case
        .incident
        .instance_ids
        .iter()
        .map(|id| {
            let record = case.release.iter().find(|r| &r.instance_id == id);
            json!({
                "instanceId": id,
                "released": record.is_some_and(|r| r.complete),
                "failed": record.map(|r| r.actions.iter().filter(|a| a.outcome == Outcome::Failed).cloned().collect::<Vec<_>>()).unwrap_or_default(),
                "notes": record.map(|r| r.notes.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let complete = !instances.is_empty() && instances.iter().all(|i| i["released"] == true);
    if complete {
        let at = now_utc();
        let mut put = responder
            .clients
            .dynamodb
            .put_item()
            .table_name(table(responder)?)
            .item("instance", s(&marker_key(&item.case_id)))
            .item("caseId", s(&item.case_id))
            .item("bulkId", s(&item.bulk_id))
            .item("releasedAt", s(&at))
            .item("executionArn", s(&item.execution_arn));
        if let Some(by) = &item.requested_by {
            put = put.item("requestedBy", s(by));
        }
        if let Some(by) = approved_by {
            put = put.item("approvedBy", s(by));
        }
        put.send()
            .await
            .map_err(|e| PlaybookError::from_sdk("PutItem", None, &e))?;
    }
    unclaim(responder, item).await?;
    Ok(json!({
        "caseId": item.case_id,
        "released": complete,
        "instances": instances,
    }))
}
