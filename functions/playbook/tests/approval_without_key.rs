//! record-approval with no approval MAC key configured: nothing can be
//! verified, so nothing counts as an answer (fail closed). An approval that
//! arrives then, MAC or not, is recorded as no answer and the policy's
//! `onApprovalTimeout` decides; the case does not proceed on it. S3 is mocked
//! (the Case is written); no KMS call may be made.

use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use serde_json::json;

mod common;
use playbook::aws::{Clients, Config};
use playbook::case::{ApprovalOutcome, Case};
use playbook::steps::approval::record_approval;

#[tokio::test]
async fn with_no_mac_key_an_approval_is_no_answer() {
    let mut case = common::responding_case(
        |_| "gd-0123456789abcdef01234567".into(),
        json!({
            "source": "GuardDuty", "findingId": "f-1", "findingType": "Backdoor:EC2/C&CActivity.B",
            "title": "t", "severity": 8.0, "account": "123456789012", "region": "us-east-1",
            "instanceIds": ["i-0123456789abcdef0"], "detectedBy": "GuardDuty", "rawReference": "r"
        }),
    );
    case.decision.action = playbook::case::Action::Approve;
    let put = mock!(aws_sdk_s3::Client::put_object)
        .then_output(|| PutObjectOutput::builder().version_id("v1").build());
    let responder = common::responder(
        Clients {
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&put]),
            ..common::quiet_clients()
        },
        "record",
        Config {
            evidence_bucket: Some("evidence".into()),
            approval_mac_key: None,
            ..Config::default()
        },
    );
    let approval = json!({
        "outcome": "approved",
        "by": "arn:aws:sts::123456789012:assumed-role/SocApprover/alice",
        "at": "2026-11-30T08:00:00Z",
        "mac": "bm90IGEgcmVhbCBtYWM="
    });
    let input = json!({
        "case": serde_json::to_value(&case).unwrap(),
        "answer": approval,
        "execution": "arn:aws:states:us-east-1:123456789012:execution:forensics:gd-0123456789abcdef01234567"
    });
    let recorded: Case = record_approval(&responder, input).await.expect("recorded");
    let approval = recorded.approval.expect("the gate's answer is recorded");
    let answer = approval.answer.expect("an answer record");
    assert_eq!(answer.outcome, ApprovalOutcome::NotRequested);
    assert!(
        answer
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no approval MAC key is configured")),
        "{:?}",
        answer.reason
    );
    assert_eq!(answer.by, None, "no one is recorded as having approved");
    assert_eq!(put.num_calls(), 1, "the Case is written");
}
