//! dispatch: one EventBridge event in, one state machine execution per finding out.
//!
//! The execution name is the case id, so Step Functions itself refuses a second
//! execution of the same case: a finding delivered twice is one case.

use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use serde::Serialize;
use serde_json::Value;

use crate::error::{PlaybookError, Result};
use crate::findings::{parse_event, ParseContext};
use crate::responder::Responder;

/// What happened to one finding of the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispatched {
    /// The case id (execution name).
    pub case_id: String,
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
        let started = responder
            .clients
            .sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .name(&finding.case_id)
            .input(finding.event.to_string())
            .send()
            .await;
        let dispatched = match started {
            Ok(out) => {
                tracing::info!(case_id = %finding.case_id, execution = %out.execution_arn(), "case started");
                Dispatched {
                    case_id: finding.case_id,
                    status: DispatchStatus::Started,
                    execution_arn: Some(out.execution_arn().to_owned()),
                }
            }
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(StartExecutionError::ExecutionAlreadyExists(_))
                ) =>
            {
                tracing::info!(case_id = %finding.case_id, "duplicate finding: the case already has an execution");
                Dispatched {
                    case_id: finding.case_id,
                    status: DispatchStatus::Duplicate,
                    execution_arn: None,
                }
            }
            Err(err) => return Err(PlaybookError::from_sdk("StartExecution", None, &err)),
        };
        cases.push(dispatched);
    }
    let skipped: Vec<String> = parsed.skipped.iter().map(ToString::to_string).collect();
    for why in &skipped {
        tracing::info!(reason = %why, "finding skipped");
    }
    Ok(DispatchReport { cases, skipped })
}
