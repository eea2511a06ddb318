//! A memory capture whose upload completed keeps the image's version id in
//! the Case before the read-back (which may take minutes for a large image),
//! and a retry after a completion whose Case was lost (the Lambda cut off)
//! finds the stored image instead of marking the capture failed. S3 and SSM
//! are mocked; the read-back hashes what S3 returns.

use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::list_parts::ListPartsOutput;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::Part;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::json;

mod common;
use playbook::aws::{Clients, Config, Responder, Workload};
use playbook::case::custody::sha256_hex;
use playbook::case::{Case, MemoryCapture, MemoryStatus};
use playbook::findings::case_id;
use playbook::steps::memory::check_memory;

const INSTANCE: &str = "i-0123456789abcdef0";
const IMAGE: &[u8] = b"a compressed LiME image";
const PLAN: u64 = 8 * 1024 * 1024;

fn avml() -> String {
    "a".repeat(64)
}

fn case() -> Case {
    let mut case = common::responding_case(
        |i| case_id(i.detected_by, &i.finding_id),
        json!({
            "source": "GuardDuty", "findingId": "f-retry", "findingType": "Backdoor:EC2/C&CActivity.B",
            "title": "t", "severity": 8.0, "account": "123456789012", "region": "us-east-1",
            "instanceIds": [INSTANCE], "detectedBy": "GuardDuty", "rawReference": "r"
        }),
    );
    let mut capture = MemoryCapture::new(INSTANCE);
    capture.command_id = Some("cmd-1".into());
    capture.key = Some(format!("cases/{}/memory/{INSTANCE}.lime", case.case_id));
    capture.upload_id = Some("upload-1".into());
    capture.part_size = Some(PLAN);
    capture.avml_sha256 = Some(avml());
    case.memory.push(capture);
    case
}

fn succeeded() -> Rule {
    let line = json!({
        "imageSize": IMAGE.len(), "imageSha256": sha256_hex(IMAGE), "avmlSha256": avml(),
        "partSize": PLAN,
        "parts": [{"partNumber": 1, "size": IMAGE.len(), "md5": "m", "etag": "e1"}]
    });
    mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(move || {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::Success)
            .response_code(0)
            .standard_output_content(format!("capturing\n{line}\n"))
            .build()
    })
}

fn stored_case() -> Rule {
    mock!(aws_sdk_s3::Client::put_object)
        .then_output(|| PutObjectOutput::builder().version_id("case-v").build())
}

fn read_back() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.version_id() == Some("image-v1"))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(IMAGE))
                .content_length(IMAGE.len() as i64)
                .version_id("image-v1")
                .build()
        })
}

fn responder(s3: Vec<&Rule>, ssm: &Rule) -> (Responder, Workload) {
    let clients = Clients {
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &s3),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[ssm]),
        ..common::quiet_clients()
    };
    let responder = common::responder(
        clients.clone(),
        "check-command",
        Config {
            evidence_bucket: Some("evidence".into()),
            ..Config::default()
        },
    );
    let workload = Workload {
        clients,
        actor: responder.identity.actor.clone(),
        account: responder.identity.account.clone(),
    };
    (responder, workload)
}

#[tokio::test]
async fn the_version_id_is_kept_before_the_read_back() {
    let parts = mock!(aws_sdk_s3::Client::list_parts).then_output(|| {
        ListPartsOutput::builder()
            .parts(
                Part::builder()
                    .part_number(1)
                    .size(IMAGE.len() as i64)
                    .e_tag("\"e1\"")
                    .build(),
            )
            .build()
    });
    let complete = mock!(aws_sdk_s3::Client::complete_multipart_upload).then_output(|| {
        CompleteMultipartUploadOutput::builder()
            .version_id("image-v1")
            .build()
    });
    let (ssm, put, get) = (succeeded(), stored_case(), read_back());
    let (responder, workload) = responder(vec![&parts, &complete, &put, &get], &ssm);

    let first = check_memory(&responder, &workload, case())
        .await
        .expect("first check");
    let capture = &first.memory[0];
    assert_eq!(
        capture.status,
        MemoryStatus::Running,
        "{:?}",
        capture.reason
    );
    assert_eq!(capture.version_id.as_deref(), Some("image-v1"));
    assert_eq!(
        get.num_calls(),
        0,
        "no read-back in the check that completed"
    );
    assert!(first.errors.is_empty(), "{:?}", first.errors);

    let second = check_memory(&responder, &workload, first)
        .await
        .expect("second check");
    let capture = &second.memory[0];
    assert_eq!(
        capture.status,
        MemoryStatus::Captured,
        "{:?}",
        capture.reason
    );
    assert!(capture.verified);
    assert_eq!(capture.proves.len(), 3, "{:?}", capture.proves);
    assert!(
        capture.proves[2].starts_with("not attested"),
        "{:?}",
        capture.proves
    );
    assert_eq!(complete.num_calls(), 1, "completed once");
}

#[tokio::test]
async fn a_retry_after_a_lost_completion_finds_the_stored_image() {
    let gone = mock!(aws_sdk_s3::Client::list_parts).then_error(|| {
        aws_sdk_s3::operation::list_parts::ListPartsError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("NoSuchUpload")
                .message("The specified upload does not exist.")
                .build(),
        )
    });
    let head = mock!(aws_sdk_s3::Client::head_object)
        .then_output(|| HeadObjectOutput::builder().version_id("image-v1").build());
    let (ssm, put, get) = (succeeded(), stored_case(), read_back());
    let (responder, workload) = responder(vec![&gone, &head, &put, &get], &ssm);

    let first = check_memory(&responder, &workload, case())
        .await
        .expect("first check");
    assert_eq!(
        first.memory[0].status,
        MemoryStatus::Running,
        "{:?}",
        first.memory[0].reason
    );
    assert_eq!(first.memory[0].version_id.as_deref(), Some("image-v1"));
    let second = check_memory(&responder, &workload, first)
        .await
        .expect("second check");
    assert_eq!(
        second.memory[0].status,
        MemoryStatus::Captured,
        "{:?}",
        second.memory[0].reason
    );
    assert!(second.errors.is_empty(), "{:?}", second.errors);
}
