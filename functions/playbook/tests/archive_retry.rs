//! check-command reads a volume's results back from S3. S3 failing for a
//! moment (503 SlowDown) fails the check, which the state machine retries,
//! instead of recording the volume as not analysed: a completed archive is
//! then found at its newest version on the retry. S3 and SSM are mocked.

use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use serde_json::json;

mod common;
use playbook::aws::{Clients, Config};
use playbook::case::Case;
use playbook::findings::case_id;
use playbook::steps::analysis::check_analysis;

const VOLUME: &str = "vol-0aaaaaaaaaaaaaaa1";
const SOURCE: &str = "vol-0bbbbbbbbbbbbbbb2";

fn case() -> Case {
    let mut case = common::responding_case(
        |i| case_id(i.detected_by, &i.finding_id),
        json!({
            "source": "GuardDuty", "findingId": "f-archive", "findingType": "Backdoor:EC2/C&CActivity.B",
            "title": "t", "severity": 8.0, "account": "123456789012", "region": "us-east-1",
            "instanceIds": ["i-0123456789abcdef0"], "detectedBy": "GuardDuty", "rawReference": "r"
        }),
    );
    case.workstations = vec![serde_json::from_value(json!({
        "availabilityZone": "us-east-1a", "subnetId": "subnet-1", "imageId": "ami-1",
        "instanceId": "i-0ffffffffffffffff", "state": "running", "agent": "Online",
        "commandId": "cmd-analysis", "commandSentAt": "2026-11-30T10:00:00Z",
        "archiveUploads": {VOLUME: "upload-1"}
    }))
    .expect("a workstation record")];
    case.evidence_volumes = vec![serde_json::from_value(json!({
        "sourceVolumeId": SOURCE, "instanceId": "i-0123456789abcdef0",
        "copySnapshotId": "snap-1", "availabilityZone": "us-east-1a",
        "volumeId": VOLUME, "state": "in-use", "attached": true
    }))
    .expect("an evidence volume record")];
    case
}

#[tokio::test]
async fn a_moment_of_s3_failure_fails_the_check_not_the_volume() {
    let report = json!({"volumes": [{
        "volumeId": VOLUME, "status": "analysed", "device": "/dev/nvme1n1", "error": "",
        "findings": {"size": 2, "sha256": "0".repeat(64)},
        "archive": {"size": 3, "sha256": "1".repeat(64), "partSize": 268435456, "parts": []},
        "indicators": 0, "unchanged": true
    }]});
    let ssm = mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(move || {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::Success)
            .response_code(0)
            .standard_output_content(format!("{report}\n"))
            .build()
    });
    let slow = mock!(aws_sdk_s3::Client::head_object).then_error(|| {
        HeadObjectError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("SlowDown")
                .message("Please reduce your request rate.")
                .build(),
        )
    });
    let clients = Clients {
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&slow]),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[&ssm]),
        ..common::quiet_clients()
    };
    let responder = common::responder(
        clients,
        "check-command",
        Config {
            evidence_bucket: Some("evidence".into()),
            ..Config::default()
        },
    );
    let err = check_analysis(&responder, case())
        .await
        .expect_err("the check fails for the state machine to retry");
    assert!(err.is_transient(), "{err}");
    assert!(slow.num_calls() >= 1, "the results were being read");
}
