//! The `cleanup-case` function: recovery through the deployed stack.
//!
//! Only this function and seal-evidence may sign a manifest (their roles
//! are the stack's custody signers), so a hold, its release and a clean-up
//! all run here and seal the case again here. Three ways in:
//!
//! - its function URL (`AWS_IAM` auth, `RECOVERY_URL`): `hold`, `release`
//!   and `cleanup` for a person, whom AWS authenticates and the Case names
//!   as the actor (`ec2-forensics hold` / `cleanup`); IAM decides who may
//!   call it (`lambda:InvokeFunctionUrl`);
//! - EventBridge's daily schedule: every sealed case whose last piece of
//!   work is older than the policy's `cleanupAfterDays` is cleaned up
//!   ([`sweep`]; nothing without that setting);
//! - a direct invocation `{"caseId", "dryRun"}` (cargo-lambda, an
//!   administrator): a clean-up as the function itself. Holds and releases
//!   come only through the URL: they need a person.
//!
//! As for the approval function: whoever may call `lambda:InvokeFunction`
//! on it directly could hand it a made-up function URL event, and with it
//! any caller's name. People get `lambda:InvokeFunctionUrl`, and
//! `lambda:InvokeFunction` only with `lambda:InvokedViaFunctionUrl` true
//! (the `RecoveryUrl` output says so); a direct invoker is an administrator.

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cleanup::{cleanup, plan, STEP as CLEANUP_STEP};
use super::hold::{self, RELEASE_STEP, STEP as HOLD_STEP};
use super::sealed_case;
use crate::aws::Responder;
use crate::case::custody::parse_rfc3339;
use crate::error::{PlaybookError, Result};
use crate::steps::approval::{authenticated, from_url_event, http_answer, http_status};
use crate::steps::evidence::store::EvidenceStore;

/// What a person asks through the function URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Asked {
    /// Place a legal hold.
    #[serde(rename_all = "camelCase")]
    Hold {
        /// The case.
        case_id: String,
        /// Why.
        reason: String,
    },
    /// Release the hold (another person than the one who placed it).
    #[serde(rename_all = "camelCase")]
    Release {
        /// The case.
        case_id: String,
        /// Why.
        reason: String,
    },
    /// Clean up (or only plan it).
    #[serde(rename_all = "camelCase")]
    Cleanup {
        /// The case.
        case_id: String,
        /// Only plan.
        #[serde(default)]
        dry_run: bool,
    },
}

/// Runs what `caller` asked.
pub async fn run(responder: &Responder, caller: &str, asked: Asked) -> Result<Value> {
    Ok(match asked {
        Asked::Hold { case_id, reason } => {
            json!(hold::hold(responder, caller, &case_id, &reason).await?)
        }
        Asked::Release { case_id, reason } => {
            json!(hold::release(responder, caller, &case_id, &reason).await?)
        }
        Asked::Cleanup { case_id, dry_run } => {
            json!(cleanup(responder, caller, &case_id, dry_run).await?)
        }
    })
}

async fn answer_from_url(
    responder: &Responder,
    request: LambdaFunctionUrlRequest,
) -> LambdaFunctionUrlResponse {
    let (caller, body) = match authenticated(request) {
        Ok(authenticated) => authenticated,
        Err(refused) => return *refused,
    };
    let asked: Asked = match serde_json::from_str(&body) {
        Ok(asked) => asked,
        Err(e) => {
            return http_answer(
                400,
                json!({"errorType": "InvalidRequest", "errorMessage": format!("not a recovery request: {e}")}),
            )
        }
    };
    match run(responder, &caller, asked).await {
        Ok(done) => http_answer(200, done),
        Err(err) => http_answer(
            http_status(&err),
            json!({"errorType": err.error_type(), "errorMessage": err.to_string()}),
        ),
    }
}

/// A direct invocation: a clean-up as the function itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Direct {
    case_id: String,
    #[serde(default)]
    dry_run: bool,
}

/// The Lambda's handler (module docs: the three ways in).
pub async fn handle(responder: &Responder, event: Value) -> Result<Value> {
    if event.get("requestContext").is_some() {
        return from_url_event(event, |request| answer_from_url(responder, request)).await;
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.events") {
        return Ok(json!(sweep(responder).await?));
    }
    let direct: Direct = serde_json::from_value(event).map_err(|e| {
        PlaybookError::InvalidRequest(format!(
            "neither a function URL request, a scheduled event nor {{\"caseId\", \"dryRun\"}}: {e}"
        ))
    })?;
    let actor = responder.identity.actor.clone();
    Ok(json!(
        cleanup(responder, &actor, &direct.case_id, direct.dry_run).await?
    ))
}

/// How many case prefixes one scheduled run looks at, and how many cases it
/// cleans up: a run stays inside the function's timeout, and each day's run
/// starts further along the list, so every case is reached in turn.
pub const CASES_LOOKED_AT: usize = 100;
/// See [`CASES_LOOKED_AT`].
pub const CLEANUPS_PER_RUN: usize = 10;

/// What one scheduled run did with one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Swept {
    /// The case.
    pub case_id: String,
    /// `cleaned`, `incomplete`, `skipped` or `failed`.
    pub outcome: String,
    /// Why.
    pub detail: String,
}

/// What a scheduled run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// The policy's `cleanupAfterDays`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_after_days: Option<u32>,
    /// Case prefixes in the bucket.
    pub cases: usize,
    /// Each case looked at.
    pub swept: Vec<Swept>,
}

/// When the case's last piece of work happened (seconds since the epoch):
/// its latest custody entry that is not a hold, a release or a clean-up,
/// nor the seal and the Security Hub note that follow one of those.
fn last_work(case: &crate::case::Case) -> Option<i64> {
    let mut after_recovery = false;
    let mut last = None;
    for e in &case.custody {
        let step = e.step.as_str();
        if [HOLD_STEP, RELEASE_STEP, CLEANUP_STEP].contains(&step) {
            after_recovery = true;
            continue;
        }
        let follows = [crate::steps::evidence::seal::STEP, "update-findings"].contains(&step);
        if after_recovery && follows {
            continue;
        }
        after_recovery = false;
        if let Some(at) = parse_rfc3339(&e.at).map(|t| t.secs()) {
            last = last.max(Some(at));
        }
    }
    last
}

/// The case ids under `cases/` in the evidence bucket, sorted.
async fn case_ids(store: &EvidenceStore) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut pages = store
        .s3()
        .list_objects_v2()
        .bucket(store.bucket())
        .prefix("cases/")
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| PlaybookError::from_sdk("ListObjectsV2", None, &e))?;
        for prefix in page.common_prefixes() {
            if let Some(id) = prefix
                .prefix()
                .and_then(|p| p.strip_prefix("cases/"))
                .and_then(|p| p.strip_suffix('/'))
            {
                ids.push(id.to_owned());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// The scheduled clean-up (module docs). A case is cleaned up when its last
/// work and its last clean-up are both older than `cleanupAfterDays` and
/// something is left to remove; a case whose chain of manifests has any
/// problem, or that is not sealed, is skipped and said so.
pub async fn sweep(responder: &Responder) -> Result<SweepReport> {
    let Some(days) = responder.policy.cleanup_after_days else {
        return Ok(SweepReport {
            cleanup_after_days: None,
            cases: 0,
            swept: Vec::new(),
        });
    };
    let store = EvidenceStore::required(responder)?;
    let ids = case_ids(&store).await?;
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs();
    let start = if ids.is_empty() {
        0
    } else {
        ((now / 86_400) as usize * CASES_LOOKED_AT) % ids.len()
    };
    let actor = responder.identity.actor.clone();
    let mut swept = Vec::new();
    let mut cleaned = 0;
    for id in ids
        .iter()
        .cycle()
        .skip(start)
        .take(ids.len().min(CASES_LOOKED_AT))
    {
        if cleaned >= CLEANUPS_PER_RUN {
            break;
        }
        let mut note = |outcome: &str, detail: String| {
            swept.push(Swept {
                case_id: crate::case::text::plain(id),
                outcome: outcome.to_owned(),
                detail,
            })
        };
        if !crate::steps::approval::looks_like_case_id(id) {
            note("skipped", "not a case id".into());
            continue;
        }
        let sealed = match sealed_case(responder, id).await {
            Ok(sealed) => sealed,
            Err(err) => {
                note("skipped", format!("not a sealed case: {err}"));
                continue;
            }
        };
        let case = &sealed.case;
        let old_enough = |at: Option<i64>| at.is_none_or(|at| now - at >= i64::from(days) * 86_400);
        if !old_enough(last_work(case)) {
            note("skipped", format!("worked on within {days} day(s)"));
            continue;
        }
        let last_cleanup = case
            .cleanups
            .iter()
            .filter_map(|c| parse_rfc3339(&c.at).map(|t| t.secs()))
            .max();
        if !old_enough(last_cleanup) {
            note("skipped", format!("cleaned up within {days} day(s)"));
            continue;
        }
        let planned = plan(
            case,
            &responder.identity.account,
            now,
            responder.config.retention.days,
            responder.policy.legal_hold,
        );
        if planned.remove.is_empty() {
            note(
                "skipped",
                format!("nothing to remove ({} kept)", planned.keep.len()),
            );
            continue;
        }
        cleaned += 1;
        match cleanup(responder, &actor, id, false).await {
            Ok(done) => {
                let removed = done
                    .cleanup
                    .as_ref()
                    .map(|c| c.removals.iter().filter(|r| r.removed).count())
                    .unwrap_or(0);
                note(
                    if done.complete {
                        "cleaned"
                    } else {
                        "incomplete"
                    },
                    format!("{removed} removed, {} kept", done.plan.keep.len()),
                )
            }
            Err(err) => note("failed", err.to_string()),
        }
    }
    Ok(SweepReport {
        cleanup_after_days: Some(days),
        cases: ids.len(),
        swept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_action_and_case() {
        let asked: Asked =
            serde_json::from_str(r#"{"action": "cleanup", "caseId": "gd-1", "dryRun": true}"#)
                .unwrap();
        assert_eq!(
            asked,
            Asked::Cleanup {
                case_id: "gd-1".into(),
                dry_run: true
            }
        );
        let asked: Asked =
            serde_json::from_str(r#"{"action": "release", "caseId": "gd-1", "reason": "closed"}"#)
                .unwrap();
        assert!(matches!(asked, Asked::Release { .. }));
        assert!(serde_json::from_str::<Asked>(
            r#"{"action": "delete-evidence", "caseId": "gd-1"}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Asked>(r#"{"action": "hold", "caseId": "gd-1"}"#).is_err(),
            "a hold needs a reason"
        );
    }

    #[test]
    fn the_last_work_ignores_holds_cleanups_and_their_seals() {
        let mut case = crate::case::example_case();
        let opened = parse_rfc3339(&case.custody[0].at).unwrap().secs();
        let first = case.custody[0].clone();
        let at = |step: &str, at: &str| {
            let mut e = first.clone();
            e.step = step.into();
            e.at = at.into();
            e
        };
        let recovery = [
            at(HOLD_STEP, "2099-01-01T00:00:00Z"),
            at("seal-evidence", "2099-01-01T00:00:01Z"),
            at(CLEANUP_STEP, "2099-01-02T00:00:00Z"),
            at("update-findings", "2099-01-02T00:00:01Z"),
            at("seal-evidence", "2099-01-02T00:00:02Z"),
        ];
        case.custody.extend(recovery);
        assert_eq!(last_work(&case), Some(opened));
        // Work after them counts.
        case.custody
            .push(at("copy-snapshots", "2099-02-01T00:00:00Z"));
        assert_eq!(
            last_work(&case),
            parse_rfc3339("2099-02-01T00:00:00Z").map(|t| t.secs())
        );
    }
}
