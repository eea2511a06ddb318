//! Security Hub hears back (update-findings), with aws-smithy-mocks: moto
//! 5.2.5 has no BatchUpdateFindings (the local stack's bench adds one, see
//! infra/local/moto_bench.py; the end-to-end test reads the finding back).

use std::sync::{Arc, Mutex};

use aws_sdk_securityhub::operation::batch_update_findings::{
    BatchUpdateFindingsInput, BatchUpdateFindingsOutput,
};
use aws_sdk_securityhub::operation::get_findings::GetFindingsOutput;
use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingIdentifier, BatchUpdateFindingsUnprocessedFinding, Note,
    Workflow, WorkflowStatus,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

mod common;
use playbook::aws::Clients;
use playbook::case::{Case, FindingMoment, FindingRef, FindingUpdate};
use playbook::steps::security_hub::{
    finding_refs, note_text, planned, planned_again, tell, update_findings, NOTE_LIMIT,
};

const GUARDDUTY_ARN: &str = "arn:aws:guardduty:eu-west-1:111111111111:detector/d1/finding/f1";
/// Security Hub's answer to a caller its policies do not allow.
const ACCESS_DENIED: &str = r#"{"__type":"AccessDeniedException","Message":"not allowed"}"#;
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

fn contained(mut case: Case) -> Case {
    case.containment = Some(playbook::case::Containment {
        stage: playbook::case::IsolationStage::Full,
        contained: true,
        verified_at: Some("2026-11-30T10:00:05Z".into()),
        not_contained: Vec::new(),
        not_blocked: Vec::new(),
    });
    case
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

/// Clients whose Security Hub answers with `rules`.
fn clients(rules: &[&Rule]) -> Clients {
    Clients {
        securityhub: mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, rules),
        ..common::quiet_clients()
    }
}

fn recorder() -> Arc<Mutex<Vec<BatchUpdateFindingsInput>>> {
    Arc::new(Mutex::new(Vec::new()))
}

/// GetFindings: each finding with `status` and a note by `note_by`.
fn found(findings: &[FindingRef], status: &str, note_by: Option<&str>) -> Rule {
    let findings = findings.to_vec();
    let (status, note_by) = (status.to_owned(), note_by.map(str::to_owned));
    mock!(aws_sdk_securityhub::Client::get_findings)
        .sequence()
        .output(move || {
            GetFindingsOutput::builder()
                .set_findings(Some(
                    findings
                        .iter()
                        .map(|f| {
                            let finding = AwsSecurityFinding::builder()
                                .id(&f.id)
                                .product_arn(&f.product_arn)
                                .workflow(
                                    Workflow::builder()
                                        .status(WorkflowStatus::from(status.as_str()))
                                        .build(),
                                );
                            match &note_by {
                                Some(by) => finding.note(
                                    Note::builder()
                                        .text("mine")
                                        .updated_by(by)
                                        .updated_at("2026-11-30T09:00:00Z")
                                        .build(),
                                ),
                                None => finding,
                            }
                            .build()
                        })
                        .collect(),
                ))
                .build()
        })
        .repeatedly()
        .build()
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

/// BatchUpdateFindings accepting every finding it is sent, recording each request.
fn accepting(seen: &Arc<Mutex<Vec<BatchUpdateFindingsInput>>>, refs: &[FindingRef]) -> Rule {
    let seen = Arc::clone(seen);
    let refs = refs.to_vec();
    mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .sequence()
        .output(move || processed(&refs))
        .repeatedly()
        .build()
}

/// Sends `moment` of `case` where Security Hub holds its finding as
/// `status` with a note by `note_by`; the requests and the Case.
async fn told(
    case: Case,
    moment: FindingMoment,
    status: &str,
    note_by: Option<&str>,
) -> (Vec<BatchUpdateFindingsInput>, Case) {
    let seen = recorder();
    let get = found(&finding_refs(&case), status, note_by);
    let update = accepting(&seen, &finding_refs(&case));
    let plan = planned(&case, moment).unwrap();
    let case = update_findings(&clients(&[&get, &update]), ACTOR, case, plan).await;
    let requests = seen.lock().unwrap().clone();
    (requests, case)
}

#[tokio::test]
async fn containment_takes_a_new_guardduty_finding_on_and_names_the_case() {
    let case = contained(guardduty_case());
    assert_eq!(
        finding_refs(&case),
        vec![FindingRef {
            id: GUARDDUTY_ARN.into(),
            product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
        }],
        "Security Hub knows a GuardDuty finding by its ARN under GuardDuty's product in its Region"
    );
    let (requests, case) = told(case, FindingMoment::ContainmentEnded, "NEW", None).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.finding_identifiers()[0].id(), Some(GUARDDUTY_ARN));
    assert_eq!(
        request.workflow().and_then(|w| w.status()),
        Some(&WorkflowStatus::Notified)
    );
    let note = request.note().and_then(|n| n.text()).unwrap();
    assert!(
        note.starts_with("ec2-forensics case gd-sechub: contained: i-0123456789abcdef0 isolated"),
        "{note}"
    );
    assert!(
        note.contains("ec2-forensics status --case-id gd-sechub --region eu-west-1"),
        "{note}"
    );
    assert_eq!(
        request.note().and_then(|n| n.updated_by()),
        Some("ec2-forensics")
    );
    let fields = request.user_defined_fields().unwrap();
    assert_eq!(
        fields.get("ec2ForensicsCaseId").map(String::as_str),
        Some("gd-sechub")
    );
    assert_eq!(
        fields.get("ec2ForensicsState").map(String::as_str),
        Some("contained")
    );

    let record = case.finding_updates.last().unwrap();
    assert!(record.accepted(), "{record:?}");
    assert_eq!(record.notified, vec![GUARDDUTY_ARN.to_owned()]);
    assert_eq!(record.requests, 2, "GetFindings, then BatchUpdateFindings");
    let custody = case.custody.last().unwrap();
    assert_eq!(custody.step, "update-findings");
    assert_eq!(custody.actor, ACTOR);
}

#[tokio::test]
async fn a_workflow_status_an_analyst_set_is_never_changed() {
    for status in ["RESOLVED", "SUPPRESSED", "NOTIFIED"] {
        let (requests, case) = told(
            contained(guardduty_case()),
            FindingMoment::ContainmentEnded,
            status,
            None,
        )
        .await;
        assert_eq!(requests.len(), 1);
        assert!(requests[0].workflow().is_none(), "{status} was changed");
        assert!(requests[0].note().is_some(), "the note is still written");
        let record = case.finding_updates.last().unwrap();
        assert!(
            record.notified.is_empty() && record.accepted(),
            "{record:?}"
        );
    }
}

#[tokio::test]
async fn a_finding_is_taken_on_once_per_case() {
    let (_, case) = told(
        contained(guardduty_case()),
        FindingMoment::ContainmentEnded,
        "NEW",
        None,
    )
    .await;
    assert_eq!(case.finding_updates[0].notified.len(), 1);
    // Later the analyst set it back to NEW (Security Hub shows NEW again):
    // the responder does not take it on a second time.
    let (requests, case) = told(case, FindingMoment::ContainmentEnded, "NEW", None).await;
    assert!(requests[0].workflow().is_none(), "NOTIFIED twice");
    assert!(case.finding_updates[1].notified.is_empty());
}

#[tokio::test]
async fn an_analysts_note_is_kept_and_the_state_still_told() {
    let (requests, case) = told(
        contained(guardduty_case()),
        FindingMoment::ContainmentEnded,
        "NEW",
        Some("arn:aws:iam::111111111111:user/alice"),
    )
    .await;
    assert!(requests[0].note().is_none(), "alice's note overwritten");
    assert_eq!(
        requests[0]
            .user_defined_fields()
            .and_then(|f| f.get("ec2ForensicsState"))
            .map(String::as_str),
        Some("contained")
    );
    let record = case.finding_updates.last().unwrap();
    assert_eq!(record.notes_kept, vec![GUARDDUTY_ARN.to_owned()]);
    assert!(record.accepted());
    // The responder's own earlier note is its to replace.
    let (requests, _) = told(
        contained(guardduty_case()),
        FindingMoment::ContainmentEnded,
        "NOTIFIED",
        Some("ec2-forensics"),
    )
    .await;
    assert!(requests[0].note().is_some());
}

#[tokio::test]
async fn only_an_approval_wait_and_containment_take_a_finding_on() {
    let mut observed = guardduty_case();
    observed.decision.action = playbook::case::Action::Observe;
    let mut awaiting = guardduty_case();
    awaiting.decision.action = playbook::case::Action::Approve;
    let mut released = contained(guardduty_case());
    released.release.push(
        serde_json::from_value(serde_json::json!({
            "instanceId": "i-0123456789abcdef0", "actions": [], "notes": [], "complete": true,
            "releasedAt": "2026-11-30T11:00:00Z"
        }))
        .unwrap(),
    );
    for (case, moment, notified, state) in [
        (observed, FindingMoment::Opened, false, "observed"),
        (
            awaiting.clone(),
            FindingMoment::Opened,
            true,
            "awaiting-approval",
        ),
        (awaiting, FindingMoment::NotApproved, false, "not-approved"),
        (released, FindingMoment::Released, false, "released"),
    ] {
        let (requests, case) = told(case, moment, "NEW", None).await;
        let status = requests[0].workflow().and_then(|w| w.status()).cloned();
        assert_eq!(status.is_some(), notified, "{moment:?}: {status:?}");
        if let Some(status) = status {
            assert_eq!(status, WorkflowStatus::Notified, "the only status ever set");
        }
        assert_eq!(case.finding_updates[0].state, state);
    }
}

#[tokio::test]
async fn access_denied_is_recorded_in_the_case_and_never_raised() {
    let case = contained(guardduty_case());
    let get = found(&finding_refs(&case), "NEW", None);
    let denied = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .sequence()
        .http_status(403, Some(ACCESS_DENIED.into()))
        .repeatedly()
        .build();
    let update = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let case = update_findings(&clients(&[&get, &denied]), ACTOR, case, update).await;
    let record = case.finding_updates.last().unwrap();
    assert!(!record.accepted());
    let error = record.error.as_deref().unwrap();
    assert!(error.starts_with("AccessDenied: "), "{error}");
    assert!(case
        .custody
        .last()
        .unwrap()
        .action
        .starts_with("Security Hub not (fully) told"));

    // Not even allowed to read: recorded the same way, nothing sent.
    let case = contained(guardduty_case());
    let get = mock!(aws_sdk_securityhub::Client::get_findings)
        .sequence()
        .http_status(403, Some(ACCESS_DENIED.into()))
        .repeatedly()
        .build();
    let update = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let case = update_findings(&clients(&[&get]), ACTOR, case, update).await;
    let record = case.finding_updates.last().unwrap();
    assert!(record
        .error
        .as_deref()
        .unwrap()
        .starts_with("AccessDenied: "));
    assert_eq!(record.requests, 1);
}

#[tokio::test]
async fn a_concurrent_update_is_retried_and_a_missing_finding_is_recorded() {
    let case = contained(guardduty_case());
    let finding = finding_refs(&case).remove(0);
    let (first, second) = (finding.clone(), finding.clone());
    let get = found(&finding_refs(&case), "NEW", None);
    let seen = recorder();
    let watch = {
        let seen = Arc::clone(&seen);
        move |r: &BatchUpdateFindingsInput| {
            seen.lock().unwrap().push(r.clone());
            true
        }
    };
    let update = mock!(aws_sdk_securityhub::Client::batch_update_findings)
        .match_requests(watch)
        .sequence()
        .output(move || unprocessed(&first, "ConcurrentUpdateError"))
        .output(move || processed(std::slice::from_ref(&second)))
        .build();
    let plan = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let told = update_findings(&clients(&[&get, &update]), ACTOR, case.clone(), plan).await;
    let record = told.finding_updates.last().unwrap();
    assert!(record.accepted(), "{record:?}");
    assert_eq!(record.requests, 3, "the read, the update, its retry");
    // Someone else updated the finding meanwhile: the retry sends where the
    // case stands only, never the workflow or a note over theirs; and the
    // workflow the first request carried was not accepted.
    let requests = seen.lock().unwrap().clone();
    assert!(requests[0].workflow().is_some() && requests[0].note().is_some());
    assert!(requests[1].workflow().is_none() && requests[1].note().is_none());
    assert!(requests[1].user_defined_fields().is_some());
    assert!(
        record.notified.is_empty(),
        "NOTIFIED was never accepted: {record:?}"
    );
    drop(requests);

    // Security Hub does not hold the finding: nothing is sent, and it is said.
    let none = found(&[], "NEW", None);
    let plan = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let told = update_findings(&clients(&[&none]), ACTOR, case, plan).await;
    let record = told.finding_updates.last().unwrap();
    assert!(!record.accepted());
    assert_eq!(record.requests, 1);
    assert_eq!(record.not_updated[0].error_code, "FindingNotFound");
    assert_eq!(record.not_updated[0].finding, finding);
}

/// GuardDuty's finding reaches Security Hub minutes after the case
/// contains: the containment update finds nothing; before the seal the same
/// update goes again, takes the finding on and names the case; then nothing
/// more is sent.
#[tokio::test]
async fn an_update_security_hub_could_not_take_goes_again_before_the_seal() {
    let case = contained(guardduty_case());
    assert!(
        planned_again(&case).is_none(),
        "nothing told yet: nothing again"
    );
    let none = found(&[], "NEW", None);
    let plan = planned(&case, FindingMoment::ContainmentEnded).unwrap();
    let case = update_findings(&clients(&[&none]), ACTOR, case, plan).await;
    assert_eq!(
        case.finding_updates[0].not_updated[0].error_code,
        "FindingNotFound"
    );

    let again = planned_again(&case).expect("the missed update again");
    assert!(again.again && again.takes_on, "{again:?}");
    assert_eq!(again.moment, FindingMoment::ContainmentEnded);
    assert_eq!(again.findings, finding_refs(&case));
    let seen = recorder();
    let get = found(&finding_refs(&case), "NEW", None);
    let update = accepting(&seen, &finding_refs(&case));
    let case = update_findings(&clients(&[&get, &update]), ACTOR, case, again).await;
    let record = case.finding_updates.last().unwrap();
    assert!(record.accepted() && record.again, "{record:?}");
    assert_eq!(record.notified, vec![GUARDDUTY_ARN.to_owned()]);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]
            .workflow()
            .and_then(|w| w.status())
            .map(|s| s.as_str()),
        Some("NOTIFIED")
    );
    assert!(requests[0]
        .note()
        .unwrap()
        .text()
        .unwrap()
        .contains("contained"));
    assert!(
        planned_again(&case).is_none(),
        "accepted: nothing goes a third time"
    );

    let mut dry = contained(guardduty_case());
    dry.decision.dry_run = true;
    let plan = planned(&dry, FindingMoment::ContainmentEnded).unwrap();
    let dry = update_findings(&clients(&[]), ACTOR, dry, plan).await;
    assert!(
        planned_again(&dry).is_none(),
        "a dry run sends nothing, again"
    );
}

#[tokio::test]
async fn findings_go_100_to_a_request() {
    let case = contained(guardduty_case());
    let findings: Vec<FindingRef> = (0..150)
        .map(|n| FindingRef {
            id: format!("{GUARDDUTY_ARN}{n}"),
            product_arn: "arn:aws:securityhub:eu-west-1::product/aws/guardduty".into(),
        })
        .collect();
    let seen = recorder();
    let get = found(&findings, "NEW", None);
    let update = accepting(&seen, &findings);
    let plan = FindingUpdate {
        findings,
        ..planned(&case, FindingMoment::Released).unwrap()
    };
    let case = update_findings(&clients(&[&get, &update]), ACTOR, case, plan).await;
    let sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.finding_identifiers().len())
        .collect();
    assert_eq!(sizes, vec![100, 50]);
    // Reads of 20 ids each (Security Hub's limit on a filter's values), then
    // the two updates.
    assert_eq!(case.finding_updates.last().unwrap().requests, 8 + 2);
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

#[tokio::test]
async fn a_workload_account_the_responder_may_not_act_in_is_recorded_not_raised() {
    // The case's account (111111111111) is not one the responder may act in.
    let responder = common::responder(
        common::quiet_clients(),
        "update-findings",
        playbook::aws::Config {
            workload_role_name: Some("ec2-forensics-workload".into()),
            ..playbook::aws::Config::default()
        },
    );
    let case = tell(
        &responder,
        contained(guardduty_case()),
        FindingMoment::ContainmentEnded,
    )
    .await
    .expect("never raised");
    let record = case.finding_updates.last().unwrap();
    assert!(!record.accepted());
    assert_eq!(record.requests, 0);
    assert!(record.error.is_some(), "{record:?}");
    assert_eq!(case.custody.last().unwrap().actor, responder.identity.actor);
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
