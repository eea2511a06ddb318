//! dispatch: one EventBridge event in, one state machine execution per finding out.
//!
//! The execution name is the case id, so Step Functions itself refuses a second
//! execution of the same case: a finding delivered twice is one case. When the
//! case's earlier execution failed, was aborted or timed out, a new delivery
//! starts a fresh attempt named `<case id>-2`, `-3`...; a running or
//! successful execution still makes the delivery a duplicate. A case whose
//! containment a person released through the deployed stack (`release-cases`,
//! after a false positive) is never tried again by a delivery: its release
//! mark is read before any attempt, since a re-emitted finding about it would
//! otherwise contain the instance again (at once once Step Functions has
//! forgotten the case's executions, 90 days after they ended).

use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::types::ExecutionStatus;
use serde::Serialize;
use serde_json::Value;

use crate::aws::Responder;
use crate::error::{PlaybookError, Result};
use crate::findings::{parse_event, ParseContext};
use crate::steps::bulk::release_cases::released;

/// What happened to one finding of the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispatched {
    /// The case id.
    pub case_id: String,
    /// Which attempt at the case this is (1 unless earlier executions
    /// failed; 0 for a released case: nothing was attempted).
    pub attempt: u32,
    /// `started`, or `duplicate` when an execution of this case already exists.
    pub status: DispatchStatus,
    /// The execution, when one was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

/// Whether dispatch started a new execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DispatchStatus {
    /// A new execution runs the case.
    Started,
    /// The case already has an execution: this delivery is a duplicate.
    Duplicate,
    /// A person released the case's containment (`release-cases`): a
    /// delivery never contains it again, however long ago its executions
    /// ended (a person starts a new case by hand if the activity is real
    /// after all).
    Released,
}

/// Attempts at one case before a delivery gives up starting another.
pub const MAX_ATTEMPTS: u32 = 5;

/// The execution name of attempt `attempt` at a case.
pub fn execution_name(case_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        case_id.to_owned()
    } else {
        format!("{case_id}-{attempt}")
    }
}

/// The ARN of the execution named `name` of a state machine.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// Whether an execution in `status` means a new delivery is a duplicate:
/// only a failed, aborted or timed-out attempt may be tried again.
pub fn blocks_a_new_attempt(status: &ExecutionStatus) -> bool {
    !matches!(
        status,
        ExecutionStatus::Failed | ExecutionStatus::Aborted | ExecutionStatus::TimedOut
    )
}

/// Dispatch's answer: every finding's outcome, and the findings skipped with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchReport {
    /// One entry per EC2 finding of the event.
    pub cases: Vec<Dispatched>,
    /// Findings of the event that are not about an EC2 instance.
    pub skipped: Vec<String>,
}

/// Starts one execution per EC2 finding of `event`.
pub async fn dispatch(responder: &Responder, event: Value) -> Result<DispatchReport> {
    let state_machine = responder
        .state_machine_arn
        .as_deref()
        .ok_or_else(|| PlaybookError::Configuration("STATE_MACHINE_ARN is not set".into()))?;
    let ctx = ParseContext {
        default_region: Some(responder.region.clone()),
        default_account: Some(responder.identity.account.clone()),
    };
    let parsed = parse_event(&event, &ctx)?;
    let mut cases = Vec::with_capacity(parsed.findings.len());
    for finding in parsed.findings {
        cases.push(start_case(responder, state_machine, &finding.case_id, &finding.event).await?);
    }
    let skipped: Vec<String> = parsed.skipped.iter().map(ToString::to_string).collect();
    for why in &skipped {
        tracing::info!(reason = %why, "finding skipped");
    }
    Ok(DispatchReport { cases, skipped })
}

/// Starts the first attempt at the case that is not already taken by a
/// failed, aborted or timed-out execution.
pub(crate) async fn start_case(
    responder: &Responder,
    state_machine: &str,
    case_id: &str,
    input: &Value,
) -> Result<Dispatched> {
    let sfn = &responder.clients.sfn;
    // Before any attempt: Step Functions forgets an execution 90 days after
    // it ended and its name is free again, so the execution history alone
    // would let a finding re-emitted after that contain a released instance.
    // A mark that cannot be read is taken as none: containing a released
    // instance again is the lesser harm than missing a compromise.
    let release = released(responder, case_id).await.unwrap_or_else(|err| {
        tracing::warn!(case_id, error = %err, "the release mark could not be read: the case goes on");
        None
    });
    if let Some(release) = release {
        tracing::warn!(
            case_id,
            released_by = %release.bulk_id,
            released_at = %release.released_at,
            execution = %release.execution_arn,
            "the case was released: this delivery does not contain it again"
        );
        return Ok(Dispatched {
            case_id: case_id.to_owned(),
            attempt: 0,
            status: DispatchStatus::Released,
            execution_arn: Some(release.execution_arn),
        });
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let name = execution_name(case_id, attempt);
        let sent_at = std::time::SystemTime::now();
        let started = sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .name(&name)
            .input(input.to_string())
            .send()
            .await;
        let err = match started {
            Ok(out) => {
                // StartExecution is idempotent for a standard workflow: the
                // same name and input as a running execution answers with that
                // execution (its own start date) instead of starting another.
                let status = if started_before(out.start_date(), sent_at) {
                    tracing::info!(case_id, execution = %out.execution_arn(), "duplicate finding: the same delivery is already running");
                    DispatchStatus::Duplicate
                } else {
                    tracing::info!(case_id, attempt, execution = %out.execution_arn(), "case started");
                    DispatchStatus::Started
                };
                return Ok(Dispatched {
                    case_id: case_id.to_owned(),
                    attempt,
                    status,
                    execution_arn: Some(out.execution_arn().to_owned()),
                });
            }
            Err(err) => err,
        };
        if !matches!(
            err.as_service_error(),
            Some(StartExecutionError::ExecutionAlreadyExists(_))
        ) {
            return Err(PlaybookError::from_sdk("StartExecution", None, &err));
        }
        let arn = execution_arn(state_machine, &name);
        let earlier = sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(|e| PlaybookError::from_sdk("DescribeExecution", None, &e))?;
        if blocks_a_new_attempt(earlier.status()) {
            tracing::info!(case_id, execution = %arn, status = ?earlier.status(), "duplicate finding: the case already has an execution");
            return Ok(Dispatched {
                case_id: case_id.to_owned(),
                attempt,
                status: DispatchStatus::Duplicate,
                execution_arn: Some(arn),
            });
        }
        tracing::info!(case_id, execution = %arn, status = ?earlier.status(), "the earlier attempt ended unsuccessfully: trying again");
    }
    Err(PlaybookError::InvalidCase(format!(
        "case {case_id} already failed {MAX_ATTEMPTS} times: start it by hand after looking at why"
    )))
}

/// Whether an execution StartExecution answered with began before the call
/// was sent (by more than a quarter second, for the two clocks): an
/// execution already running with the same name and input.
fn started_before(start: &aws_smithy_types::DateTime, sent_at: std::time::SystemTime) -> bool {
    let sent = sent_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    start.as_secs_f64() < sent - 0.25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_started_before_the_call_is_the_running_execution() {
        let now = std::time::SystemTime::now();
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(started_before(
            &aws_smithy_types::DateTime::from_secs_f64(secs - 60.0),
            now
        ));
        assert!(!started_before(
            &aws_smithy_types::DateTime::from_secs_f64(secs),
            now
        ));
        assert!(!started_before(
            &aws_smithy_types::DateTime::from_secs_f64(secs + 0.5),
            now
        ));
    }

    #[test]
    fn attempts_after_the_first_are_suffixed_and_only_ended_failures_allow_one() {
        assert_eq!(execution_name("gd-abc", 1), "gd-abc");
        assert_eq!(execution_name("gd-abc", 2), "gd-abc-2");
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:1:stateMachine:forensics",
                "gd-abc-2"
            ),
            "arn:aws:states:us-east-1:1:execution:forensics:gd-abc-2"
        );
        assert!(blocks_a_new_attempt(&ExecutionStatus::Running));
        assert!(blocks_a_new_attempt(&ExecutionStatus::Succeeded));
        assert!(!blocks_a_new_attempt(&ExecutionStatus::Failed));
        assert!(!blocks_a_new_attempt(&ExecutionStatus::Aborted));
        assert!(!blocks_a_new_attempt(&ExecutionStatus::TimedOut));
    }
}
