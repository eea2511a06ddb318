//! Security Hub hears back (update-findings), with aws-smithy-mocks: moto
//! 5.2.5 has no BatchUpdateFindings (the local stack's bench adds one, see
//! infra/local/moto_bench.py; the end-to-end test reads the finding back).

use std::sync::{Arc, Mutex};

use aws_sdk_securityhub::operation::batch_update_findings::{
    BatchUpdateFindingsInput, BatchUpdateFindingsOutput,
};
use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, BatchUpdateFindingsUnprocessedFinding, WorkflowStatus,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

mod common;
use playbook::aws::Clients;
use playbook::case::{Case, FindingMoment, FindingRef, FindingUpdate};
use playbook::steps::security_hub::{
    finding_refs, note_text, planned, update_findings, NOTE_LIMIT,
};

const GUARDDUTY_ARN: &str = "arn:aws:guardduty:eu-west-1:111111111111:detector/d1/finding/f1";
const ACTOR: &str =
    "arn:aws:sts::111111111111:assumed-role/ec2-forensics-workload/ec2-forensics-gd-1";

fn guardduty_case() -> Case {
    common::responding_case(
        |_| "gd-sechub".into(),
        serde_json::json!({
            "source": "GuardDuty", "findingId": GUARDDUTY_ARN,
            "findingType": "Backdoor:EC2/C&CActivity.B",
            "title": "<b>ignore previous notes</b> RESOLVED", "severity": 8.0,
            "account": "111111111111", "region": "eu-west-1",
            "instanceIds": ["i-0123456789abcdef0"],
            "detectedBy": "GuardDuty", "rawReference": "test"
        }),
    )
}

fn security_hub_case(id: &str, product_arn: &str) -> Case {
    common::responding_case(
        |_| "sh-sechub".into(),
        serde_json::json!({
            "source": "SecurityHub", "findingId": id, "productArn": product_arn,
            "findingType": "TTPs/Execution", "title": "t", "severity": 8.0,
            "account": "111111111111", "region": "us-east-1",
            "instanceIds": ["i-0123456789abcdef0"],
            "detectedBy": "SecurityHub", "rawReference": "test"
        }),
    )
}

/// Clients whose Security Hub answers with `rules`, recording each request.
fn clients(rules: &[&Rule]) -> Clients {
    Clients {
        securityhub: mock_client!(aws_sdk_securityhub, RuleMode::Sequential, rules),
        ..common::quiet_clients()
    }
}

fn recorder() -> Arc<Mutex<Vec<BatchUpdateFindingsInput>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn processed(ids: &[FindingRef]) -> BatchUpdateFindingsOutput {
    BatchUpdateFindingsOutput::builder()
        .set_processed_findings(Some(ids.iter().map(identifier).collect()))
        .set_unprocessed_findings(Some(Vec::new()))
        .build()
}

fn identifier(f: &FindingRef) -> AwsSecurityFindingIdentifier {
    AwsSecurityFindingIdentifier::builder()
        .id(&f.id)
        .product_arn(&f.product_arn)
        .build()
}

fn unprocessed(f: &FindingRef, code: &str) -> BatchUpdateFindingsOutput {
    BatchUpdateFindingsOutput::builder()
        .set_processed_findings(Some(Vec::new()))
        .unprocessed_findings(
            BatchUpdateFindingsUnprocessedFinding::builder()
                .finding_identifier(identifier(f))
                .error_code(code)
                .error_message("as Security Hub says")
                .build(),
        )
        .build()
}

fn recording(
    seen: &Arc<Mutex<Vec<BatchUpdateFindingsInput>>>,
) -> impl Fn(&BatchUpdateFindingsInput) -> bool {
    let seen = Arc::clone(seen);
    move |r: &BatchUpdateFindingsInput| {
        seen.lock().unwrap().push(r.clone());
        true
    }
}

#[tokio::test]
async fn an_opened_guardduty_case_notifies_its_finding_and_names_the_case() {
    let case = guardduty_case();
    let refs = finding_refs(&case);
    assert_eq!(
        refs,
        vec![FindingRef {
            id: GUARDDUTY_ARN.into(),
            product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
        }],
        "Security Hub knows a GuardDuty finding by its ARN under GuardDuty's product in its Region"
    );
    let seen = recorder();
    let answer = refs.clone();
    let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .match_requests(recording(&seen))
        .then_output(move || processed(&answer));
    let update = planned(&case, FindingMoment::Opened).unwrap();
    let case = update_findings(&clients(&[&rule]), ACTOR, case, update).await;

    let requests = seen.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.finding_identifiers().len(), 1);
    assert_eq!(request.finding_identifiers()[0].id(), Some(GUARDDUTY_ARN));
    assert_eq!(
        request.workflow().and_then(|w| w.status()),
        Some(&WorkflowStatus::Notified)
    );
    let note = request.note().and_then(|n| n.text()).unwrap();
    assert!(note.starts_with("ec2-forensics case gd-sechub: "), "{note}");
    assert!(
        note.contains("ec2-forensics status --case-id gd-sechub --region eu-west-1"),
        "{note}"
    );
    assert!(note.contains("i-0123456789abcdef0"), "{note}");
    assert!(
        !note.contains("ignore previous") && !note.contains("<b>"),
        "finding text in the note: {note}"
    );
    assert_eq!(
        request.note().and_then(|n| n.updated_by()),
        Some("ec2-forensics")
    );
    assert_eq!(
        request
            .user_defined_fields()
            .and_then(|f| f.get("ec2ForensicsCaseId"))
            .map(String::as_str),
        Some("gd-sechub")
    );

    let record = case.finding_updates.last().unwrap();
    assert!(record.complete(), "{record:?}");
    assert_eq!(record.requests, 1);
    assert_eq!(record.workflow_status.as_deref(), Some("NOTIFIED"));
    let custody = case.custody.last().unwrap();
    assert_eq!(custody.step, "update-findings");
    assert_eq!(custody.actor, ACTOR);
    assert_eq!(custody.calls, vec!["securityhub:BatchUpdateFindings"]);
}

#[tokio::test]
async fn only_the_opening_sets_a_workflow_status_and_it_is_never_a_resolution() {
    let mut case = guardduty_case();
    case.containment = Some(playbook::case::Containment {
        stage: playbook::case::IsolationStage::Full,
        contained: false,
        verified_at: None,
        not_contained: vec!["i-0123456789abcdef0: ENI eni-1 still in sg-1".into()],
        not_blocked: Vec::new(),
    });
    for moment in [
        FindingMoment::Opened,
        FindingMoment::ContainmentEnded,
        FindingMoment::Released,
    ] {
        let seen = recorder();
        let answer = finding_refs(&case);
        let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
            .match_requests(recording(&seen))
            .then_output(move || processed(&answer));
        let update = planned(&case, moment).unwrap();
        case = update_findings(&clients(&[&rule]), ACTOR, case, update).await;
        let status = seen.lock().unwrap()[0]
            .workflow()
            .and_then(|w| w.status())
            .cloned();
        match moment {
            FindingMoment::Opened => assert_eq!(status, Some(WorkflowStatus::Notified)),
            _ => assert_eq!(status, None, "{moment:?} changed the workflow"),
        }
    }
    let notes: Vec<&str> = case
        .finding_updates
        .iter()
        .map(|u| u.note.as_str())
        .collect();
    assert!(notes[1].contains("NOT contained"), "{}", notes[1]);
    assert!(notes[2].contains("release incomplete"), "{}", notes[2]);
}

#[tokio::test]
async fn access_denied_is_recorded_in_the_case_and_never_raised() {
    let case = guardduty_case();
    let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .sequence()
        .http_status(
            403,
            Some(r#"{"__type":"AccessDeniedException","Message":"not allowed"}"#.into()),
        )
        .repeatedly()
        .build();
    let update = planned(&case, FindingMoment::Opened).unwrap();
    let case = update_findings(&clients(&[&rule]), ACTOR, case, update).await;
    let record = case.finding_updates.last().unwrap();
    assert!(!record.complete());
    let error = record.error.as_deref().unwrap();
    assert!(error.starts_with("AccessDenied: "), "{error}");
    assert!(case
        .custody
        .last()
        .unwrap()
        .action
        .starts_with("Security Hub not told"));
}

#[tokio::test]
async fn a_concurrent_update_is_retried_and_a_missing_finding_is_recorded() {
    let case = guardduty_case();
    let finding = finding_refs(&case).remove(0);
    let (first, second) = (finding.clone(), finding.clone());
    let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .sequence()
        .output(move || unprocessed(&first, "ConcurrentUpdateError"))
        .output(move || processed(std::slice::from_ref(&second)))
        .build();
    let update = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let told = update_findings(&clients(&[&rule]), ACTOR, case.clone(), update).await;
    let record = told.finding_updates.last().unwrap();
    assert!(record.complete(), "{record:?}");
    assert_eq!(record.requests, 2);

    let missing = finding.clone();
    let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .then_output(move || unprocessed(&missing, "FindingNotFound"));
    let update = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let told = update_findings(&clients(&[&rule]), ACTOR, case, update).await;
    let record = told.finding_updates.last().unwrap();
    assert!(!record.complete());
    assert_eq!(record.requests, 1, "FindingNotFound is not retried");
    assert_eq!(record.not_updated[0].error_code, "FindingNotFound");
    assert_eq!(record.not_updated[0].finding, finding);
}

#[tokio::test]
async fn findings_go_100_to_a_request() {
    let case = guardduty_case();
    let findings: Vec<FindingRef> = (0..150)
        .map(|n| FindingRef {
            id: format!("{GUARDDUTY_ARN}{n}"),
            product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
        })
        .collect();
    let seen = recorder();
    let rule = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .match_requests(recording(&seen))
        .sequence()
        .output(|| processed(&[]))
        .repeatedly()
        .build();
    let update = FindingUpdate {
        findings,
        ..planned(&case, FindingMoment::Released).unwrap()
    };
    let case = update_findings(&clients(&[&rule]), ACTOR, case, update).await;
    let sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.finding_identifiers().len())
        .collect();
    assert_eq!(sizes, vec![100, 50]);
    assert_eq!(case.finding_updates.last().unwrap().requests, 2);
}

#[tokio::test]
async fn a_dry_run_records_what_it_would_send_and_sends_nothing() {
    let mut case = guardduty_case();
    case.decision.dry_run = true;
    let update = planned(&case, FindingMoment::Opened).unwrap();
    // The quiet clients answer nothing: a request would fail the update.
    let case = update_findings(&common::quiet_clients(), ACTOR, case, update).await;
    let record = case.finding_updates.last().unwrap();
    assert!(record.dry_run);
    assert_eq!(record.requests, 0);
    assert!(record.error.is_none());
    assert!(record.note.contains("dry run"), "{}", record.note);
}

#[test]
fn identifiers_security_hub_would_not_hold_are_never_sent() {
    // Manual cases and alarms have no Security Hub finding.
    let mut manual = guardduty_case();
    manual.incident.source = playbook::case::FindingSource::Manual;
    assert!(finding_refs(&manual).is_empty());
    // A GuardDuty id that is not a finding ARN names no product.
    let mut bare = guardduty_case();
    bare.incident.finding_id = "5eb7a3b1c2d4".into();
    assert!(finding_refs(&bare).is_empty());
    let mut odd = guardduty_case();
    odd.incident.finding_id = "arn:aws:guardduty:EU WEST:111111111111:detector/d/finding/f".into();
    assert!(finding_refs(&odd).is_empty());
    // A Security Hub finding: its own product ARN, if it is one.
    let good = security_hub_case(
        "f-1",
        "arn:aws:securityhub:us-east-1:111111111111:product/111111111111/default",
    );
    assert_eq!(finding_refs(&good).len(), 1);
    for (id, product) in [
        ("f-1", "arn:aws:s3:::bucket"),
        ("f-1", "arn:aws:securityhub:us-east-1:1111:product/x/y"),
        ("f-1", "arn:aws:securityhub:us-east-1::hub/default"),
        (
            "line\nbreak",
            "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        ),
        ("", "arn:aws:securityhub:us-east-1::product/aws/guardduty"),
    ] {
        assert!(
            finding_refs(&security_hub_case(id, product)).is_empty(),
            "{id:?} {product:?} accepted"
        );
    }
    let long = "x".repeat(513);
    assert!(finding_refs(&security_hub_case(
        &long,
        "arn:aws:securityhub:us-east-1::product/aws/guardduty"
    ))
    .is_empty());
}

#[test]
fn a_note_fits_security_hubs_limit_whatever_the_case() {
    let mut case = guardduty_case();
    case.incident.instance_ids = (0..200).map(|n| format!("i-{n:017x}")).collect();
    for moment in [
        FindingMoment::Opened,
        FindingMoment::ContainmentEnded,
        FindingMoment::Released,
    ] {
        let note = note_text(&case, moment);
        assert!(
            note.chars().count() <= NOTE_LIMIT,
            "{} characters",
            note.chars().count()
        );
        assert!(
            note.ends_with("--region eu-west-1"),
            "the status command survives: {note}"
        );
    }
}
