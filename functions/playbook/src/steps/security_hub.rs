//! update-findings: Security Hub hears back about a case opened from a
//! GuardDuty or Security Hub finding (`BatchUpdateFindings`).
//!
//! - When the case opens, the finding's workflow becomes `NOTIFIED`; every
//!   update writes a note (the case id, what happened, the `status` command)
//!   and the user-defined field `ec2ForensicsCaseId`.
//! - Never `RESOLVED` or `SUPPRESSED`: closing a finding is the analyst's
//!   decision. The type cannot say otherwise, and the function's IAM policy
//!   denies both (`securityhub:ASFFSyntaxPath/Workflow.Status`).
//! - The call goes to the finding's own account (the workload role; a member
//!   account may update its own findings) and Region.
//! - A failure is recorded in the Case (`findingUpdates`) and never fails the
//!   step: Security Hub is told, it is not a condition of containment.
//! - The note is made of what the responder decided and did (the case id,
//!   the decision, instance ids, counts), never of finding text.

use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, NoteUpdate, WorkflowStatus, WorkflowUpdate,
};

use serde_json::Value;

use crate::aws::clients::{Clients, Responder};
use crate::aws::lambda::run_case_step;
use crate::case::custody::{entry, now_utc};
use crate::case::{
    Action, Case, FindingMoment, FindingNotUpdated, FindingRef, FindingSource, FindingUpdate,
};
use crate::error::{PlaybookError, Result};

/// The step's name in custody entries.
pub const STEP: &str = "update-findings";
/// Who the notes name (`Note.UpdatedBy`).
pub const UPDATED_BY: &str = "ec2-forensics";
/// The user-defined field that names the case.
pub const CASE_FIELD: &str = "ec2ForensicsCaseId";
/// `BatchUpdateFindings` takes at most 100 findings a request.
pub const FINDINGS_PER_REQUEST: usize = 100;
/// Security Hub's limit on a note's text.
pub const NOTE_LIMIT: usize = 512;
/// Rounds for findings Security Hub reports unprocessed with an error a
/// retry can clear (a concurrent update, an internal failure).
pub const ROUNDS: u32 = 3;
/// The whole update's time, retries included. The opening's update runs
/// beside protect-instance and the snapshots in a `Parallel`, which ends
/// when its last branch does: a slow Security Hub may hold containment
/// back by this much at most, and is recorded as not told.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// The findings Security Hub knows the case by: the Security Hub finding
/// itself, or a GuardDuty finding under GuardDuty's product ARN in its
/// Region (Security Hub uses the GuardDuty finding's ARN as its `Id`).
/// None for a manual case, an alarm or a state change, or an identifier
/// that is not what Security Hub would accept.
pub fn finding_refs(case: &Case) -> Vec<FindingRef> {
    let incident = &case.incident;
    let reference = match incident.source {
        FindingSource::SecurityHub => incident.product_arn.clone().map(|product_arn| FindingRef {
            id: incident.finding_id.clone(),
            product_arn,
        }),
        FindingSource::GuardDuty => {
            guardduty_product(&incident.finding_id).map(|product_arn| FindingRef {
                id: incident.finding_id.clone(),
                product_arn,
            })
        }
        _ => None,
    };
    reference.filter(acceptable).into_iter().collect()
}

/// `arn:PARTITION:securityhub:REGION::product/aws/guardduty` for a
/// GuardDuty finding ARN (`arn:PARTITION:guardduty:REGION:ACCOUNT:detector/...`).
fn guardduty_product(finding_arn: &str) -> Option<String> {
    let parts: Vec<&str> = finding_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "guardduty", region, _account, resource]
            if resource.starts_with("detector/") && is_name(partition) && is_name(region) =>
        {
            Some(format!(
                "arn:{partition}:securityhub:{region}::product/aws/guardduty"
            ))
        }
        _ => None,
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An identifier Security Hub could hold: an `Id` of 1 to 512 printable
/// characters, and a Security Hub product ARN.
fn acceptable(reference: &FindingRef) -> bool {
    let printable = |text: &str| text.chars().all(|c| !c.is_control());
    let id_ok = (1..=512).contains(&reference.id.chars().count()) && printable(&reference.id);
    let parts: Vec<&str> = reference.product_arn.splitn(6, ':').collect();
    let product_ok = match parts.as_slice() {
        ["arn", partition, "securityhub", region, account, resource] => {
            is_name(partition)
                && is_name(region)
                && (account.is_empty()
                    || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
                && resource.starts_with("product/")
                && resource.len() <= 256
                && printable(resource)
        }
        _ => false,
    };
    id_ok && product_ok
}

/// The note for `moment`: what the responder decided and did, and the
/// command that shows the rest. At most 512 characters.
pub fn note_text(case: &Case, moment: FindingMoment) -> String {
    let what = match moment {
        FindingMoment::Opened => opened(case),
        FindingMoment::ContainmentEnded => containment_ended(case),
        FindingMoment::Released => released(case),
    };
    let status = format!(
        " Status: ec2-forensics status --case-id {} --region {}",
        case.case_id, case.incident.region
    );
    let head = format!("ec2-forensics case {}: ", case.case_id);
    let room = NOTE_LIMIT.saturating_sub(head.chars().count() + status.chars().count());
    let what: String = if what.chars().count() > room {
        let kept: String = what.chars().take(room.saturating_sub(3)).collect();
        format!("{kept}...")
    } else {
        what
    };
    format!("{head}{what}{status}")
}

fn instances(case: &Case) -> String {
    case.incident.instance_ids.join(", ")
}

fn opened(case: &Case) -> String {
    let dry = if case.decision.dry_run {
        " (dry run: nothing is changed)"
    } else {
        ""
    };
    match (&case.decision.action, &case.approval) {
        (Action::Respond, _) => format!(
            "the policy decided to respond: containing and acquiring evidence of {}{dry}.",
            instances(case)
        ),
        (Action::Approve, None) => format!(
            "waiting for a person's approval before containing {}{dry}.",
            instances(case)
        ),
        (Action::Approve, Some(approval)) if approval.proceed => format!(
            "approved; containing and acquiring evidence of {}{dry}.",
            instances(case)
        ),
        (Action::Approve, Some(_)) => "not approved: nothing was changed.".to_owned(),
        (Action::Observe, _) => format!(
            "the policy decided to observe {}: recorded, nothing changed.",
            instances(case)
        ),
        (Action::Ignore, _) => "the policy ignores this finding.".to_owned(),
    }
}

fn containment_ended(case: &Case) -> String {
    match &case.containment {
        Some(c) if c.contained => format!(
            "contained: {} isolated and read back at {}. Evidence acquisition goes on.",
            instances(case),
            c.verified_at.as_deref().unwrap_or("an unrecorded time")
        ),
        Some(c) => format!(
            "NOT contained ({} of {} instances not verified isolated). A responder must act.",
            c.not_contained.len().max(1),
            case.incident.instance_ids.len()
        ),
        None => "NOT contained: isolation did not run to the end. A responder must act.".to_owned(),
    }
}

fn released(case: &Case) -> String {
    let restored = case.release.iter().filter(|r| r.complete).count();
    let total = case.incident.instance_ids.len();
    if !case.release.is_empty() && restored == case.release.len() {
        format!("released after review: {restored} of {total} instances restored as before containment and read back.")
    } else {
        format!(
            "release incomplete: {restored} of {total} instances restored; the rest stay contained."
        )
    }
}

/// The update-findings Lambda's input: `{"moment": ..., "case": Case}`, or
/// `{"moment": ..., "branchOf": Case}` in a `Parallel` branch.
pub async fn from_input(responder: &Responder, mut input: Value) -> Result<Value> {
    let moment = input
        .as_object_mut()
        .and_then(|o| o.remove("moment"))
        .ok_or_else(|| PlaybookError::InvalidCase("update-findings needs a moment".into()))?;
    let moment: FindingMoment = serde_json::from_value(moment)
        .map_err(|e| PlaybookError::InvalidCase(format!("update-findings moment: {e}")))?;
    let input = match input.as_object_mut().and_then(|o| o.remove("case")) {
        Some(case) => case,
        None => input,
    };
    run_case_step(input, |case| tell(responder, case, moment)).await
}

/// Tells Security Hub about `moment` of the case from the finding's own
/// account, and records what it answered. Never fails for what Security Hub
/// or the workload role did or said: the record in `findingUpdates` (and a
/// custody entry) says it.
pub async fn tell(responder: &Responder, case: Case, moment: FindingMoment) -> Result<Case> {
    let Some(update) = planned(&case, moment) else {
        return Ok(case);
    };
    if update.dry_run {
        return Ok(
            update_findings(&responder.clients, &responder.identity.actor, case, update).await,
        );
    }
    match responder.workload(&case).await {
        Ok(workload) => Ok(update_findings(&workload.clients, &workload.actor, case, update).await),
        Err(err) => {
            let mut update = update;
            update.error = Some(format!("{}: {err}", err.error_type()));
            Ok(recorded(case, update, &responder.identity.actor))
        }
    }
}

/// The update `moment` calls for, before it is sent: none when Security Hub
/// does not know the case's finding.
pub fn planned(case: &Case, moment: FindingMoment) -> Option<FindingUpdate> {
    let findings = finding_refs(case);
    if findings.is_empty() {
        return None;
    }
    Some(FindingUpdate {
        moment,
        at: now_utc(),
        workflow_status: (moment == FindingMoment::Opened).then(|| "NOTIFIED".to_owned()),
        note: note_text(case, moment),
        findings,
        updated: Vec::new(),
        not_updated: Vec::new(),
        error: None,
        requests: 0,
        dry_run: case.decision.dry_run,
    })
}

/// Sends `update` with `clients` (the finding's account) and records it; a
/// dry run's is recorded only.
pub async fn update_findings(
    clients: &Clients,
    actor: &str,
    case: Case,
    mut update: FindingUpdate,
) -> Case {
    if !update.dry_run {
        send(clients, &case.case_id, &mut update).await;
    }
    recorded(case, update, actor)
}

fn recorded(mut case: Case, update: FindingUpdate, actor: &str) -> Case {
    let action = if update.dry_run {
        format!("would tell Security Hub (dry run): {:?}", update.moment)
    } else if update.complete() {
        format!("told Security Hub: {:?}", update.moment)
    } else {
        format!("Security Hub not told (fully): {:?}", update.moment)
    };
    case.record(entry(
        STEP,
        actor,
        action,
        &["securityhub:BatchUpdateFindings"],
        serde_json::json!({
            "moment": update.moment,
            "findings": update.findings,
            "workflowStatus": update.workflow_status,
            "note": update.note,
        }),
        serde_json::json!({
            "updated": update.updated.len(),
            "notUpdated": update.not_updated,
            "error": update.error,
            "requests": update.requests,
        }),
        None,
    ));
    case.finding_updates.push(update);
    case
}

/// Sends the update, 100 findings a request, and retries what Security Hub
/// reports it could not do yet.
async fn send(clients: &Clients, case_id: &str, update: &mut FindingUpdate) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut pending = update.findings.clone();
    for round in 1..=ROUNDS {
        let mut retry = Vec::new();
        for chunk in pending.chunks(FINDINGS_PER_REQUEST) {
            update.requests += 1;
            let answer =
                tokio::time::timeout_at(deadline, request(clients, case_id, update, chunk))
                    .await
                    .unwrap_or_else(|_| {
                        Err(PlaybookError::ServiceUnavailable {
                            operation: "BatchUpdateFindings".into(),
                            message: format!(
                                "no answer within {} s; not waited for longer",
                                DEADLINE.as_secs()
                            ),
                        })
                    });
            match answer {
                Ok((updated, not_updated)) => {
                    update.updated.extend(updated);
                    for failure in not_updated {
                        if round < ROUNDS && retriable(&failure.error_code) {
                            retry.push(failure.finding);
                        } else {
                            update.not_updated.push(failure);
                        }
                    }
                }
                Err(err) => {
                    update.error = Some(format!("{}: {err}", err.error_type()));
                    return;
                }
            }
        }
        if retry.is_empty() {
            return;
        }
        pending = retry;
    }
}

fn retriable(code: &str) -> bool {
    matches!(code, "ConcurrentUpdateError" | "InternalFailure")
}

async fn request(
    clients: &Clients,
    case_id: &str,
    update: &FindingUpdate,
    chunk: &[FindingRef],
) -> Result<(Vec<FindingRef>, Vec<FindingNotUpdated>)> {
    let mut call = clients
        .securityhub
        .batch_update_findings()
        .note(
            NoteUpdate::builder()
                .text(&update.note)
                .updated_by(UPDATED_BY)
                .build(),
        )
        .user_defined_fields(CASE_FIELD, case_id);
    if update.workflow_status.is_some() {
        // The one status this responder ever sets.
        call = call.workflow(
            WorkflowUpdate::builder()
                .status(WorkflowStatus::Notified)
                .build(),
        );
    }
    for finding in chunk {
        call = call.finding_identifiers(
            AwsSecurityFindingIdentifier::builder()
                .id(&finding.id)
                .product_arn(&finding.product_arn)
                .build(),
        );
    }
    let answer = call
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("BatchUpdateFindings", None, &e))?;
    let to_ref = |f: &AwsSecurityFindingIdentifier| FindingRef {
        id: f.id().unwrap_or_default().to_owned(),
        product_arn: f.product_arn().unwrap_or_default().to_owned(),
    };
    let updated = answer.processed_findings().iter().map(to_ref).collect();
    let not_updated = answer
        .unprocessed_findings()
        .iter()
        .map(|u| FindingNotUpdated {
            finding: u.finding_identifier().map(to_ref).unwrap_or(FindingRef {
                id: String::new(),
                product_arn: String::new(),
            }),
            error_code: u.error_code().unwrap_or_default().to_owned(),
            error_message: u.error_message().unwrap_or_default().to_owned(),
        })
        .collect();
    Ok((updated, not_updated))
}
