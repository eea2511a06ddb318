//! `start-run`, behind a Lambda function URL with `AWS_IAM` auth: the one
//! door through which a person starts a bulk run. AWS authenticates the
//! caller; the function writes that identity into the request as its
//! requester (whatever the body says), stamps the time, names the execution
//! by the request's bulk id, and MACs that id with the approval key. The
//! bulk state machine's plan step refuses any run without that MAC, or with
//! a stale one: a `StartExecution` by anyone else, in anyone's name, plans
//! nothing. The approval function then refuses the requester's own approval.
//! Whoever may `lambda:InvokeFunctionUrl` on this function is a requester.

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::Responder;
use crate::case::approval::request_mac_message;
use crate::case::bulk::BulkRequest;
use crate::case::custody::{now_utc, seconds_between};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::approval::{
    answer_verifies, authenticated, from_url_event, http_answer, http_status, sign_answer,
};

/// How long a started request stays good for its plan step: the plan runs
/// seconds after the start; an older request is a replay.
pub const REQUEST_FRESH_SECONDS: i64 = 900;

/// What a requester sends to the start function's URL. Who sends it is not
/// in it: AWS says who signed the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StartRequest {
    /// A bulk run: its `requestedBy` and `requestedAt` are the function's.
    Bulk(BulkRequest),
}

/// What the start function answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The run's id (its execution's name).
    pub run_id: String,
    /// Its execution.
    pub execution_arn: String,
    /// Who asked, as AWS authenticated them.
    pub requested_by: String,
    /// When (the function's clock).
    pub requested_at: String,
}

/// Starts a bulk run as `requester` (an identity AWS authenticated).
pub async fn start_bulk(
    responder: &Responder,
    mut request: BulkRequest,
    requester: &str,
) -> Result<Started> {
    responder.check_scope(request.account.as_deref(), &request.region)?;
    let key = responder
        .config
        .approval_mac_key
        .as_deref()
        .ok_or_else(|| {
            PlaybookError::Configuration(
                "APPROVAL_MAC_KEY is not set: no run can be vouched for without it".into(),
            )
        })?;
    let machine = responder
        .bulk_state_machine_arn
        .as_deref()
        .ok_or_else(|| PlaybookError::Configuration("BULK_STATE_MACHINE_ARN is not set".into()))?;
    request.requested_by = Some(requester.to_owned());
    request.requested_at = now_utc();
    let run_id = request.bulk_id();
    let mac = sign_answer(responder, key, request_mac_message(&run_id)).await?;
    let started = responder
        .clients
        .sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(&run_id)
        .input(json!({ "request": request, "requestMac": mac }).to_string())
        .send()
        .await
        .aws("StartExecution", None)?;
    tracing::info!(run_id = %run_id, requester, "bulk run started");
    Ok(Started {
        run_id,
        execution_arn: started.execution_arn().to_owned(),
        requested_by: requester.to_owned(),
        requested_at: request.requested_at,
    })
}

/// Checks, in the plan step, that the run came through the start function:
/// its MAC over the run id verifies, and the request is fresh. Fails closed
/// without a key.
pub async fn check_requester(
    responder: &Responder,
    request: &BulkRequest,
    request_mac: Option<&str>,
) -> Result<()> {
    let key = responder
        .config
        .approval_mac_key
        .as_deref()
        .ok_or_else(|| {
            PlaybookError::NotAuthenticated(
                "APPROVAL_MAC_KEY is not set: the requester cannot be verified".into(),
            )
        })?;
    let run_id = request.bulk_id();
    let Some(mac) = request_mac else {
        return Err(PlaybookError::NotAuthenticated(format!(
            "{run_id} carries no start function MAC: runs start through the start function (`ec2-forensics bulk --execute`), never by StartExecution"
        )));
    };
    if !answer_verifies(responder, key, request_mac_message(&run_id), mac).await? {
        return Err(PlaybookError::NotAuthenticated(format!(
            "{run_id}: the start function's MAC does not verify over this request (altered, or not the start function's)"
        )));
    }
    match seconds_between(&request.requested_at, &now_utc()) {
        Some(age) if (-60..=REQUEST_FRESH_SECONDS).contains(&age) => Ok(()),
        age => Err(PlaybookError::NotAuthenticated(format!(
            "{run_id} was asked for at {} ({} s ago): older than {REQUEST_FRESH_SECONDS} s, a replay",
            request.requested_at,
            age.map_or("unknown".to_owned(), |a| a.to_string())
        ))),
    }
}

/// The start function URL's answer to one request.
pub async fn start_from_url(
    responder: &Responder,
    request: LambdaFunctionUrlRequest,
) -> LambdaFunctionUrlResponse {
    let (requester, body) = match authenticated(request) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let asked: StartRequest = match serde_json::from_str(&body) {
        Ok(asked) => asked,
        Err(e) => {
            return http_answer(
                400,
                json!({"errorType": "InvalidRequest", "errorMessage": format!("the request is not {{\"bulk\": {{...}}}}: {e}")}),
            )
        }
    };
    let started = match asked {
        StartRequest::Bulk(request) => start_bulk(responder, request, &requester).await,
    };
    match started {
        Ok(started) => http_answer(200, json!(started)),
        Err(err) => http_answer(
            http_status(&err),
            json!({"errorType": err.error_type(), "errorMessage": err.to_string()}),
        ),
    }
}

/// [`start_from_url`] for the Lambda adapter.
pub async fn start_from_url_event(responder: &Responder, event: Value) -> Result<Value> {
    from_url_event(event, |request| start_from_url(responder, request)).await
}
