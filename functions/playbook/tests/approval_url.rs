//! The approval function behind its AWS_IAM function URL: the approver is the
//! identity AWS authenticated on the request, never a name the client sends;
//! the token is read from the case's execution history and answers only that
//! case's open wait. Step Functions is mocked; nothing else may be called.

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

mod common;
use common::history_events::{entered, scheduled};
use playbook::aws::{Clients, Config, Responder};
use playbook::steps::approval::answer_from_url_event;

const CASE: &str = "gd-0123456789abcdef01234567";
const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/SocApprover/alice";
const TOKEN: &str = "token-of-this-case";

fn running() -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(|r| {
            r.execution_arn()
                .is_some_and(|a| a.ends_with(&format!(":{CASE}")))
        })
        .then_output(|| {
            DescribeExecutionOutput::builder()
                .execution_arn(format!(
                    "arn:aws:states:us-east-1:123456789012:execution:forensics:{CASE}"
                ))
                .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:forensics")
                .status(ExecutionStatus::Running)
                .start_date(DateTime::from_secs(1))
                .build()
                .unwrap()
        })
}

fn no_second_attempt() -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution).then_error(|| {
        aws_sdk_sfn::operation::describe_execution::DescribeExecutionError::ExecutionDoesNotExist(
            aws_sdk_sfn::types::error::ExecutionDoesNotExist::builder()
                .message("no such execution")
                .build(),
        )
    })
}

fn history(waits_for: &'static str) -> Rule {
    mock!(aws_sdk_sfn::Client::get_execution_history).then_output(move || {
        let parameters = json!({
            "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:request-approval",
            "Payload": {"awaitingCase": waits_for, "timeoutSeconds": 600, "taskToken": TOKEN}
        });
        GetExecutionHistoryOutput::builder()
            .events(entered(1, "AwaitApproval"))
            .events(scheduled(2, &parameters))
            .build()
            .unwrap()
    })
}

fn responder(rules: &[&Rule]) -> Responder {
    Responder {
        state_machine_arn: Some(
            "arn:aws:states:us-east-1:123456789012:stateMachine:forensics".into(),
        ),
        ..common::responder(
            Clients {
                sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules),
                ..common::quiet_clients()
            },
            "ec2-forensics-answer",
            Config::default(),
        )
    }
}

/// A function URL request as Lambda delivers it, signed by `caller` when given.
fn request(caller: Option<&str>, body: Value) -> Value {
    let mut context = json!({
        "accountId": "123456789012", "requestId": "r-1", "apiId": "abc",
        "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.1", "userAgent": "ec2-forensics"},
        "time": "30/Nov/2026:03:00:00 +0000", "timeEpoch": 1_796_000_000_000_u64
    });
    if let Some(arn) = caller {
        context["authorizer"] = json!({"iam": {
            "accessKey": "ASIAEXAMPLE", "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:alice", "userArn": arn, "userId": "AROAEXAMPLE:alice"
        }});
    }
    json!({
        "version": "2.0", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": context,
        "body": body.to_string(), "isBase64Encoded": false
    })
}

fn status_and_body(answer: &Value) -> (i64, Value) {
    let body: Value =
        serde_json::from_str(answer["body"].as_str().expect("a body")).expect("a JSON body");
    (answer["statusCode"].as_i64().expect("a status"), body)
}

#[tokio::test]
async fn the_approver_is_the_identity_aws_authenticated() {
    let sent = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| {
            let output: Value = serde_json::from_str(r.output().unwrap_or("{}")).unwrap();
            r.task_token() == Some(TOKEN)
                && output["by"] == ALICE
                && output["outcome"] == "approved"
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let (execution, none, events) = (running(), no_second_attempt(), history(CASE));
    let responder = responder(&[&execution, &none, &events, &sent]);
    let answer = answer_from_url_event(
        &responder,
        request(
            Some(ALICE),
            json!({"caseId": CASE, "approve": true, "reason": "SOC on call"}),
        ),
    )
    .await
    .unwrap();
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["by"], ALICE);
    assert_eq!(sent.num_calls(), 1);
}

#[tokio::test]
async fn a_client_naming_another_approver_is_refused_and_nothing_is_sent() {
    let sent = mock!(aws_sdk_sfn::Client::send_task_success)
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let (execution, none, events) = (running(), no_second_attempt(), history(CASE));
    let responder = responder(&[&execution, &none, &events, &sent]);
    let forged = json!({"caseId": CASE, "approve": true,
                        "by": "arn:aws:iam::123456789012:user/ciso"});
    let (status, body) = status_and_body(
        &answer_from_url_event(&responder, request(Some(ALICE), forged))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["errorType"].as_str()),
        (400, Some("InvalidRequest")),
        "{body}"
    );
    let (status, body) = status_and_body(
        &answer_from_url_event(
            &responder,
            request(None, json!({"caseId": CASE, "approve": true})),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (status, body["errorType"].as_str()),
        (403, Some("NotAuthenticated")),
        "{body}"
    );
    assert_eq!(sent.num_calls(), 0, "no answer reached Step Functions");
}

#[tokio::test]
async fn a_token_of_another_case_never_answers_this_one() {
    let sent = mock!(aws_sdk_sfn::Client::send_task_success)
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let (execution, none, events) = (
        running(),
        no_second_attempt(),
        history("gd-ffffffffffffffffffffffff"),
    );
    let responder = responder(&[&execution, &none, &events, &sent]);
    let (status, body) = status_and_body(
        &answer_from_url_event(
            &responder,
            request(Some(ALICE), json!({"caseId": CASE, "approve": true})),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (status, body["errorType"].as_str()),
        (409, Some("NotAwaitingApproval")),
        "{body}"
    );
    assert_eq!(sent.num_calls(), 0);
}

#[tokio::test]
async fn a_denial_needs_a_reason_and_an_id_must_be_a_case_id() {
    let responder = responder(&[]);
    for body in [
        json!({"caseId": CASE, "approve": false}),
        json!({"caseId": "gd-1; rm -rf /", "approve": true}),
        json!("not an object"),
    ] {
        let (status, answer) = status_and_body(
            &answer_from_url_event(&responder, request(Some(ALICE), body.clone()))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400, "{body}: {answer}");
    }
}
