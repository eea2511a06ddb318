//! update-findings: Security Hub hears back about a case opened from a
//! GuardDuty or Security Hub finding (`BatchUpdateFindings`).
//!
//! - The finding's workflow becomes `NOTIFIED` when the responder takes the
//!   case on (it waits for a person's approval, or containment ended), and
//!   only from `NEW`: a status an analyst set is theirs. An observed finding
//!   stays `NEW`, in the SOC's queue. Never `RESOLVED` or `SUPPRESSED`:
//!   closing a finding is the analyst's decision. The code cannot say
//!   otherwise, and the IAM policies deny it (`securityhub:ASFFSyntaxPath/...`).
//! - Every update sets the user-defined fields `ec2ForensicsCaseId` and
//!   `ec2ForensicsState`, and writes a note (the case id, what happened, the
//!   `status` command) unless the finding's note is someone else's: a
//!   finding has one note, and an analyst's is kept.
//! - The call goes to the finding's own account (the workload role; a member
//!   account may update its own findings) and Region.
//! - Nothing here is on containment's path: the state machine calls it
//!   before the approval request, on an observe decision, after isolation
//!   ended, and in a release. A failure is recorded in the Case
//!   (`findingUpdates`) and never fails the step.
//! - The note is made of what the responder decided and did (the case id,
//!   the decision, instance ids, counts), never of finding text.

use std::collections::BTreeMap;

use aws_sdk_securityhub::types::{
    AwsSecurityFindingFilters, AwsSecurityFindingIdentifier, NoteUpdate, StringFilter,
    StringFilterComparison, WorkflowStatus, WorkflowUpdate,
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
/// The user-defined field that says where the case stands.
pub const STATE_FIELD: &str = "ec2ForensicsState";
/// `BatchUpdateFindings` takes at most 100 findings a request.
pub const FINDINGS_PER_REQUEST: usize = 100;
/// Security Hub's limit on a note's text.
pub const NOTE_LIMIT: usize = 512;
/// Rounds for findings Security Hub reports unprocessed with an error a
/// retry can clear (a concurrent update, an internal failure).
pub const ROUNDS: u32 = 3;
/// The whole update's time (the workload role, the read, the update and
/// its retries): the approval request, or the evidence steps, wait no
/// longer for Security Hub. What did not happen in time is recorded.
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
        FindingMoment::NotApproved => "not approved: nothing was changed.".to_owned(),
        FindingMoment::ContainmentEnded => containment_ended(case),
        FindingMoment::Released => released(case),
        FindingMoment::CleanedUp => cleaned_up(case),
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

/// Where the case stands, in one word (`ec2ForensicsState`).
pub fn state_word(case: &Case, moment: FindingMoment) -> &'static str {
    match moment {
        FindingMoment::Opened => match case.decision.action {
            Action::Approve => "awaiting-approval",
            Action::Observe => "observed",
            Action::Respond => "responding",
            Action::Ignore => "ignored",
        },
        FindingMoment::NotApproved => "not-approved",
        FindingMoment::ContainmentEnded => match &case.containment {
            Some(c) if c.contained => "contained",
            _ => "not-contained",
        },
        FindingMoment::Released if all_released(case) => "released",
        FindingMoment::Released => "release-incomplete",
        FindingMoment::CleanedUp if cleanup_failures(case) == 0 => "cleaned-up",
        FindingMoment::CleanedUp => "cleanup-incomplete",
    }
}

/// Whether `moment` takes the finding on: `NOTIFIED` (from `NEW` only).
/// An observed finding, a refusal and a release leave the workflow alone.
fn takes_on(case: &Case, moment: FindingMoment) -> bool {
    match moment {
        FindingMoment::Opened => case.decision.action == Action::Approve,
        FindingMoment::ContainmentEnded => true,
        FindingMoment::NotApproved | FindingMoment::Released | FindingMoment::CleanedUp => false,
    }
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
    match case.decision.action {
        Action::Respond => format!(
            "the policy decided to respond: containing and acquiring evidence of {}{dry}.",
            instances(case)
        ),
        Action::Approve => format!(
            "waiting for a person's approval before containing {}{dry}.",
            instances(case)
        ),
        Action::Observe => format!(
            "the policy decided to observe {}: recorded, nothing changed.",
            instances(case)
        ),
        Action::Ignore => "the policy ignores this finding.".to_owned(),
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

/// How many removals of the case's last clean-up failed.
fn cleanup_failures(case: &Case) -> usize {
    case.cleanups
        .last()
        .map_or(0, |c| c.removals.iter().filter(|r| !r.removed).count())
}

fn cleaned_up(case: &Case) -> String {
    let Some(last) = case.cleanups.last() else {
        return "cleaned up.".to_owned();
    };
    let removed = last.removals.iter().filter(|r| r.removed).count();
    let held = if case.hold().is_some() {
        " The evidence is under a legal hold."
    } else {
        ""
    };
    match cleanup_failures(case) {
        0 => format!(
            "cleaned up: {removed} resource(s) the case no longer needed removed, {} kept (evidence, retention).{held}",
            last.kept.len()
        ),
        failed => format!(
            "clean-up incomplete: {removed} removed, {failed} NOT removed, {} kept.{held}",
            last.kept.len()
        ),
    }
}

/// Every instance of the case was restored and read back.
fn all_released(case: &Case) -> bool {
    case.incident.instance_ids.iter().all(|id| {
        case.release
            .iter()
            .any(|r| &r.instance_id == id && r.complete)
    })
}

fn released(case: &Case) -> String {
    let total = case.incident.instance_ids.len();
    let restored = case
        .incident
        .instance_ids
        .iter()
        .filter(|id| {
            case.release
                .iter()
                .any(|r| &r.instance_id == *id && r.complete)
        })
        .count();
    if all_released(case) {
        format!("released after review: {restored} of {total} instances restored as before containment and read back.")
    } else {
        format!(
            "release incomplete: {restored} of {total} instances restored; the rest stay contained."
        )
    }
}

/// The moment `again`: the case's last update, sent again where Security
/// Hub did not take it (see [`planned_again`]).
pub const AGAIN: &str = "again";

/// The update-findings Lambda's input: `{"moment": ..., "case": Case}`;
/// `moment` is a [`FindingMoment`] or [`AGAIN`].
pub async fn from_input(responder: &Responder, mut input: Value) -> Result<Value> {
    let moment = input
        .as_object_mut()
        .and_then(|o| o.remove("moment"))
        .ok_or_else(|| PlaybookError::InvalidCase("update-findings needs a moment".into()))?;
    let moment: Option<FindingMoment> = if moment == AGAIN {
        None
    } else {
        Some(
            serde_json::from_value(moment)
                .map_err(|e| PlaybookError::InvalidCase(format!("update-findings moment: {e}")))?,
        )
    };
    let input = match input.as_object_mut().and_then(|o| o.remove("case")) {
        Some(case) => case,
        None => input,
    };
    run_case_step(input, |case| async move {
        match moment {
            Some(moment) => tell(responder, case, moment).await,
            None => tell_again(responder, case).await,
        }
    })
    .await
}

/// The case's last update again, for the findings Security Hub did not
/// accept it for: none when it accepted all of them, when the last was a
/// dry run, or when the case told Security Hub nothing. A GuardDuty finding
/// reaches Security Hub up to about five minutes after GuardDuty emits it,
/// so a case that contains at once may find it missing (`FindingNotFound`);
/// by the seal, minutes later, it is there. NOTIFIED still only from NEW,
/// only where the moment takes the finding on and no update was accepted
/// with it.
pub fn planned_again(case: &Case) -> Option<FindingUpdate> {
    let last = case.finding_updates.last()?;
    if last.dry_run || last.accepted() {
        return None;
    }
    let mut update = planned(case, last.moment)?;
    update.findings.retain(|f| !last.accepted.contains(f));
    if update.findings.is_empty() {
        return None;
    }
    update.again = true;
    Some(update)
}

/// Sends [`planned_again`], if any, and records it; otherwise the case as it
/// was, nothing sent.
pub async fn tell_again(responder: &Responder, case: Case) -> Result<Case> {
    match planned_again(&case) {
        Some(update) => send_and_record(responder, case, update).await,
        None => Ok(case),
    }
}

/// Tells Security Hub about `moment` of the case from the finding's own
/// account, and records what it answered. Never fails for what Security Hub
/// or the workload role did or said, or for their time: the record in
/// `findingUpdates` (and a custody entry) says it.
pub async fn tell(responder: &Responder, case: Case, moment: FindingMoment) -> Result<Case> {
    match planned(&case, moment) {
        Some(update) => send_and_record(responder, case, update).await,
        None => Ok(case),
    }
}

async fn send_and_record(
    responder: &Responder,
    case: Case,
    mut update: FindingUpdate,
) -> Result<Case> {
    if update.dry_run {
        return Ok(recorded(case, update, &responder.identity.actor));
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    match tokio::time::timeout_at(deadline, responder.workload(&case)).await {
        Ok(Ok(workload)) => {
            Ok(
                update_findings_by(&workload.clients, &workload.actor, case, update, deadline)
                    .await,
            )
        }
        Ok(Err(err)) => {
            update.error = Some(format!("{}: {err}", err.error_type()));
            Ok(recorded(case, update, &responder.identity.actor))
        }
        Err(_) => {
            update.error = Some(late("the workload role"));
            Ok(recorded(case, update, &responder.identity.actor))
        }
    }
}

fn late(what: &str) -> String {
    format!(
        "ServiceUnavailable: no answer from {what} within {} s; not waited for longer",
        DEADLINE.as_secs()
    )
}

/// The update `moment` calls for, before Security Hub is read: none when
/// Security Hub does not know the case's finding.
pub fn planned(case: &Case, moment: FindingMoment) -> Option<FindingUpdate> {
    let findings = finding_refs(case);
    if findings.is_empty() {
        return None;
    }
    Some(FindingUpdate {
        moment,
        at: now_utc(),
        findings,
        state: state_word(case, moment).to_owned(),
        note: note_text(case, moment),
        notified: Vec::new(),
        notes_kept: Vec::new(),
        accepted: Vec::new(),
        not_updated: Vec::new(),
        error: None,
        requests: 0,
        dry_run: case.decision.dry_run,
        again: false,
        // Once NOTIFIED was accepted, never again: the status is the
        // analyst's from then on.
        takes_on: takes_on(case, moment)
            && !case.finding_updates.iter().any(|u| !u.notified.is_empty()),
    })
}

/// Reads the findings, then sends `update` with `clients` (the finding's
/// account), within [`DEADLINE`]; records it. A dry run's is recorded only.
pub async fn update_findings(
    clients: &Clients,
    actor: &str,
    case: Case,
    update: FindingUpdate,
) -> Case {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    update_findings_by(clients, actor, case, update, deadline).await
}

async fn update_findings_by(
    clients: &Clients,
    actor: &str,
    case: Case,
    mut update: FindingUpdate,
    deadline: tokio::time::Instant,
) -> Case {
    if !update.dry_run {
        send(clients, &case.case_id, &mut update, deadline).await;
    }
    recorded(case, update, actor)
}

fn recorded(mut case: Case, update: FindingUpdate, actor: &str) -> Case {
    let again = if update.again { " (again)" } else { "" };
    let action = if update.dry_run {
        format!("would tell Security Hub (dry run): {:?}", update.moment)
    } else if update.accepted() {
        format!("Security Hub accepted: {:?}{again}", update.moment)
    } else {
        format!("Security Hub not (fully) told: {:?}{again}", update.moment)
    };
    case.record(entry(
        STEP,
        actor,
        action,
        &["securityhub:GetFindings", "securityhub:BatchUpdateFindings"],
        serde_json::json!({
            "moment": update.moment,
            "findings": update.findings,
            "state": update.state,
            "note": update.note,
        }),
        serde_json::json!({
            "accepted": update.accepted.len(),
            "notified": update.notified,
            "notesKept": update.notes_kept,
            "notUpdated": update.not_updated,
            "error": update.error,
            "requests": update.requests,
        }),
        None,
    ));
    case.finding_updates.push(update);
    case
}

/// What a finding holds now, as far as the update needs.
#[derive(Debug, Clone, Default)]
struct Current {
    workflow: Option<String>,
    note_by: Option<String>,
}

/// Reads the findings' workflow status and note author (GetFindings, by
/// `Id` and `ProductArn`); a finding Security Hub does not return is absent.
/// Security Hub takes at most 20 values a filter attribute.
const VALUES_PER_FILTER: usize = 20;

async fn current(
    clients: &Clients,
    findings: &[FindingRef],
) -> Result<(BTreeMap<(String, String), Current>, u32)> {
    let equals = |value: &str| {
        StringFilter::builder()
            .value(value)
            .comparison(StringFilterComparison::Equals)
            .build()
    };
    let (mut out, mut requests) = (BTreeMap::new(), 0);
    for chunk in findings.chunks(VALUES_PER_FILTER) {
        let mut filters = AwsSecurityFindingFilters::builder();
        let products: std::collections::BTreeSet<&str> =
            chunk.iter().map(|f| f.product_arn.as_str()).collect();
        for finding in chunk {
            filters = filters.id(equals(&finding.id));
        }
        for product in products {
            filters = filters.product_arn(equals(product));
        }
        let mut pages = clients
            .securityhub
            .get_findings()
            .filters(filters.build())
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            requests += 1;
            let page = page.map_err(|e| PlaybookError::from_sdk("GetFindings", None, &e))?;
            for f in page.findings() {
                let (Some(id), Some(product)) = (f.id(), f.product_arn()) else {
                    continue;
                };
                let current = Current {
                    workflow: f
                        .workflow()
                        .and_then(|w| w.status())
                        .map(|s| s.as_str().to_owned()),
                    note_by: f.note().and_then(|n| n.updated_by()).map(str::to_owned),
                };
                out.insert((id.to_owned(), product.to_owned()), current);
            }
        }
    }
    Ok((out, requests))
}

/// Reads the findings, then sends the update, 100 findings a request, in
/// groups by what each finding gets (the workflow, the note), and retries
/// what Security Hub reports it could not do yet.
async fn send(
    clients: &Clients,
    case_id: &str,
    update: &mut FindingUpdate,
    deadline: tokio::time::Instant,
) {
    let now = match tokio::time::timeout_at(deadline, current(clients, &update.findings)).await {
        Ok(Ok((now, requests))) => {
            update.requests += requests;
            now
        }
        Ok(Err(err)) => {
            update.requests += 1;
            update.error = Some(format!("{}: {err}", err.error_type()));
            return;
        }
        Err(_) => {
            update.error = Some(late("Security Hub (GetFindings)"));
            return;
        }
    };
    // What each finding gets: NOTIFIED only from NEW; the note unless
    // someone else wrote the finding's note.
    let mut groups: BTreeMap<(bool, bool), Vec<FindingRef>> = BTreeMap::new();
    for finding in update.findings.clone() {
        let Some(found) = now.get(&(finding.id.clone(), finding.product_arn.clone())) else {
            update.not_updated.push(FindingNotUpdated {
                finding,
                error_code: "FindingNotFound".into(),
                error_message: "GetFindings returned no such finding".into(),
            });
            continue;
        };
        let notify = update.takes_on && found.workflow.as_deref() == Some("NEW");
        let note = found.note_by.as_deref().is_none_or(|by| by == UPDATED_BY);
        if !note {
            update.notes_kept.push(finding.id.clone());
        }
        groups.entry((notify, note)).or_default().push(finding);
    }
    for ((notify, note), findings) in groups {
        let mut pending = findings;
        for round in 1..=ROUNDS {
            // A retry follows someone else's concurrent update: it sends
            // where the case stands only, never the workflow or a note
            // over what they just wrote.
            let (notify, note) = if round == 1 {
                (notify, note)
            } else {
                (false, false)
            };
            let mut retry = Vec::new();
            for chunk in pending.chunks(FINDINGS_PER_REQUEST) {
                update.requests += 1;
                let call = request(clients, case_id, update, chunk, notify, note);
                let Ok(answer) = tokio::time::timeout_at(deadline, call).await else {
                    update.error = Some(late("Security Hub"));
                    return;
                };
                match answer {
                    Ok((accepted, not_updated)) => {
                        if notify {
                            update
                                .notified
                                .extend(accepted.iter().map(|f| f.id.clone()));
                        }
                        update.accepted.extend(accepted);
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
                break;
            }
            // A concurrent update: let it land first (200 to 500 ms).
            let jitter = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or_default()
                    % 300,
            );
            tokio::time::sleep(std::time::Duration::from_millis(200 + jitter)).await;
            pending = retry;
        }
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
    notify: bool,
    note: bool,
) -> Result<(Vec<FindingRef>, Vec<FindingNotUpdated>)> {
    let mut call = clients
        .securityhub
        .batch_update_findings()
        .user_defined_fields(CASE_FIELD, case_id)
        .user_defined_fields(STATE_FIELD, &update.state);
    if note {
        call = call.note(
            NoteUpdate::builder()
                .text(&update.note)
                .updated_by(UPDATED_BY)
                .build(),
        );
    }
    if notify {
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
    let accepted = answer.processed_findings().iter().map(to_ref).collect();
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
    Ok((accepted, not_updated))
}
