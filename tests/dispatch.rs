//! dispatch against the moto server's Step Functions: one execution per EC2
//! finding, named by case id; a duplicate delivery starts nothing.

use playbook::policy::Policy;
use playbook::steps::dispatch::{dispatch, DispatchStatus};
use system_tests::{event_for, Moto};

async fn state_machine(moto: &Moto) -> String {
    let clients = moto.clients().await;
    clients
        .sfn
        .create_state_machine()
        .name("forensics")
        .definition(
            r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":600,"End":true}}}"#,
        )
        .role_arn("arn:aws:iam::123456789012:role/forensics-state-machine")
        .send()
        .await
        .expect("state machine created")
        .state_machine_arn()
        .to_owned()
}

#[tokio::test]
async fn a_finding_starts_one_execution_and_a_duplicate_starts_none() {
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);

    let event = event_for("guardduty-crypto-mining-dns.json", "i-0a1b2c3d4e5f60718");
    let first = dispatch(&responder, event.clone()).await.expect("dispatch");
    assert_eq!(first.cases.len(), 1);
    assert_eq!(first.cases[0].status, DispatchStatus::Started);
    let execution = first.cases[0].execution_arn.clone().expect("execution arn");
    assert!(
        execution.ends_with(&first.cases[0].case_id),
        "the execution is named by case id: {execution}"
    );

    let mut redelivered = event;
    redelivered["id"] = "a-second-eventbridge-delivery".into();
    redelivered["detail"]["service"]["count"] = 18.into();
    let second = dispatch(&responder, redelivered)
        .await
        .expect("a duplicate is not an error");
    assert_eq!(second.cases[0].case_id, first.cases[0].case_id);
    assert_eq!(second.cases[0].status, DispatchStatus::Duplicate);

    let executions = responder
        .clients
        .sfn
        .list_executions()
        .state_machine_arn(responder.state_machine_arn.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(executions.executions().len(), 1, "one case, one execution");
    let input = responder
        .clients
        .sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap()
        .input()
        .unwrap_or_default()
        .to_owned();
    assert!(
        input.contains("CryptoCurrency:EC2/BitcoinTool.B!DNS"),
        "the execution gets the finding"
    );
}

#[tokio::test]
async fn a_security_hub_event_starts_one_execution_per_ec2_finding() {
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);
    let event = event_for(
        "securityhub-imported-two-findings.json",
        "i-0a1b2c3d4e5f60718",
    );
    let report = dispatch(&responder, event).await.expect("dispatch");
    assert_eq!(report.cases.len(), 1);
    assert_eq!(
        report.skipped.len(),
        1,
        "the S3 finding is skipped, with why"
    );
    assert!(report.skipped[0].contains("AwsS3Bucket"));
}

#[tokio::test]
async fn dispatch_without_a_state_machine_or_with_a_bad_event_fails_typed() {
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    let event = event_for("guardduty-crypto-mining-dns.json", "i-0a1b2c3d4e5f60718");
    let err = dispatch(&responder, event)
        .await
        .expect_err("no state machine");
    assert_eq!(err.error_type(), "ConfigurationError");

    responder.state_machine_arn = Some(state_machine(&moto).await);
    let err = dispatch(
        &responder,
        event_for("guardduty-access-key-not-ec2.json", "x"),
    )
    .await
    .expect_err("not EC2");
    assert_eq!(err.error_type(), "NoInstanceInFinding");
}

#[tokio::test]
async fn after_an_aborted_attempt_a_new_delivery_starts_a_suffixed_one() {
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);
    let event = event_for("guardduty-crypto-mining-dns.json", "i-0a1b2c3d4e5f60718");
    let first = dispatch(&responder, event.clone()).await.expect("dispatch");
    let first_arn = first.cases[0].execution_arn.clone().unwrap();
    responder
        .clients
        .sfn
        .stop_execution()
        .execution_arn(&first_arn)
        .send()
        .await
        .expect("the first attempt is aborted");

    let mut redelivered = event;
    redelivered["id"] = "delivered-after-the-abort".into();
    let second = dispatch(&responder, redelivered.clone())
        .await
        .expect("dispatch");
    assert_eq!(second.cases[0].status, DispatchStatus::Started);
    assert_eq!(second.cases[0].attempt, 2);
    assert_eq!(
        second.cases[0].case_id, first.cases[0].case_id,
        "the same case"
    );
    let second_arn = second.cases[0].execution_arn.clone().unwrap();
    assert!(
        second_arn.ends_with(&format!("{}-2", first.cases[0].case_id)),
        "{second_arn}"
    );

    redelivered["id"] = "delivered-while-attempt-two-runs".into();
    let third = dispatch(&responder, redelivered).await.expect("dispatch");
    assert_eq!(
        third.cases[0].status,
        DispatchStatus::Duplicate,
        "a running attempt still makes a new delivery a duplicate"
    );
    assert_eq!(
        third.cases[0].execution_arn.as_deref(),
        Some(second_arn.as_str())
    );
}

/// The attack: a case failed after containing part of it, a person released
/// it as a false positive, and GuardDuty emits the same finding again (its
/// count grows). Dispatch must not start another attempt that contains the
/// instance again; an unreleased failed case still gets its new attempt.
#[tokio::test]
async fn a_released_case_is_not_tried_again_by_a_new_delivery() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);
    let dynamodb = &responder.clients.dynamodb;
    dynamodb
        .create_table()
        .table_name("leases")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("instance")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("instance")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table");
    responder.config.lease_table = Some("leases".into());

    let event = event_for("guardduty-crypto-mining-dns.json", "i-0a1b2c3d4e5f60718");
    let first = dispatch(&responder, event.clone()).await.expect("dispatch");
    let case_id = first.cases[0].case_id.clone();
    let first_arn = first.cases[0].execution_arn.clone().unwrap();
    responder
        .clients
        .sfn
        .stop_execution()
        .execution_arn(&first_arn)
        .send()
        .await
        .expect("the first attempt is aborted");
    // What release-cases records once every instance reads back released.
    let s = |v: &str| AttributeValue::S(v.into());
    dynamodb
        .put_item()
        .table_name("leases")
        .item("instance", s(&format!("released:{case_id}")))
        .item("caseId", s(&case_id))
        .item("bulkId", s("release-after-a-false-positive"))
        .item("releasedAt", s("2026-11-30T12:00:00Z"))
        .item("executionArn", s(&first_arn))
        .send()
        .await
        .expect("the release mark");

    let mut redelivered = event.clone();
    redelivered["id"] = "re-emitted-after-the-release".into();
    let again = dispatch(&responder, redelivered).await.expect("dispatch");
    assert_eq!(again.cases[0].status, DispatchStatus::Released);
    assert_eq!(again.cases[0].case_id, case_id);
    assert_eq!(
        again.cases[0].execution_arn.as_deref(),
        Some(first_arn.as_str()),
        "names the released attempt"
    );
    let executions = responder
        .clients
        .sfn
        .list_executions()
        .state_machine_arn(responder.state_machine_arn.as_deref().unwrap())
        .send()
        .await
        .expect("executions");
    assert_eq!(
        executions.executions().len(),
        1,
        "no second attempt was started: {:?}",
        executions.executions()
    );

    // Another case, failed but never released, is tried again.
    let mut other = event_for("guardduty-crypto-mining-dns.json", "i-0ffeeffeeffeeffee");
    for field in ["id", "arn"] {
        let named = other["detail"][field].as_str().unwrap().replace(
            "c2c7a0b2e7f94d0a8f5bd1c6e9a37e11",
            "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d",
        );
        other["detail"][field] = named.into();
    }
    let started = dispatch(&responder, other.clone()).await.expect("dispatch");
    responder
        .clients
        .sfn
        .stop_execution()
        .execution_arn(started.cases[0].execution_arn.as_deref().unwrap())
        .send()
        .await
        .expect("aborted");
    let mut other_again = other;
    other_again["id"] = "other-redelivered".into();
    let retried = dispatch(&responder, other_again).await.expect("dispatch");
    assert_ne!(retried.cases[0].case_id, case_id);
    assert_eq!(retried.cases[0].status, DispatchStatus::Started);
    assert_eq!(retried.cases[0].attempt, 2);

    // 90 days on, Step Functions has forgotten the case's executions and
    // its name is free again (a fresh state machine stands for that): the
    // release mark alone still keeps the re-emitted finding from
    // containing the instance again.
    let forgetful = moto
        .clients()
        .await
        .sfn
        .create_state_machine()
        .name("forensics-90-days-on")
        .definition(
            r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":600,"End":true}}}"#,
        )
        .role_arn("arn:aws:iam::123456789012:role/forensics-state-machine")
        .send()
        .await
        .expect("state machine created")
        .state_machine_arn()
        .to_owned();
    responder.state_machine_arn = Some(forgetful.clone());
    let mut months_later = event;
    months_later["id"] = "re-emitted-90-days-later".into();
    let late = dispatch(&responder, months_later).await.expect("dispatch");
    assert_eq!(late.cases[0].status, DispatchStatus::Released, "{late:?}");
    let executions = responder
        .clients
        .sfn
        .list_executions()
        .state_machine_arn(&forgetful)
        .send()
        .await
        .expect("executions");
    assert!(
        executions.executions().is_empty(),
        "{:?}",
        executions.executions()
    );
}

/// A release mark that cannot be read never holds a containment back: the
/// lesser harm is containing a released instance again.
#[tokio::test]
async fn an_unreadable_release_mark_does_not_stop_a_case() {
    let moto = Moto::start();
    let mut responder = moto.responder(Policy::default()).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);
    responder.config.lease_table = Some("no-such-table".into());
    let event = event_for("guardduty-crypto-mining-dns.json", "i-0a1b2c3d4e5f60718");
    let report = dispatch(&responder, event).await.expect("dispatch");
    assert_eq!(
        report.cases[0].status,
        DispatchStatus::Started,
        "{report:?}"
    );
    assert_eq!(report.cases[0].attempt, 1);
}

async fn run_on(responder: &playbook::Responder, image: &str) -> String {
    responder
        .clients
        .ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned()
}

async fn image_named(responder: &playbook::Responder, instance: &str, name: &str) -> String {
    responder
        .clients
        .ec2
        .create_image()
        .instance_id(instance)
        .name(name)
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .unwrap()
        .to_owned()
}

/// CloudTrail's RunInstances event for `instance` launched from `image`.
fn launched(instance: &str, image: &str, event_id: &str) -> serde_json::Value {
    let mut event = system_tests::event_for("cloudtrail-run-instances.json", instance);
    event["detail"]["eventID"] = event_id.into();
    event["detail"]["responseElements"]["instancesSet"]["items"][0]["imageId"] = image.into();
    event["detail"]["requestParameters"]["instancesSet"]["items"][0]["imageId"] = image.into();
    event
}

/// check-ami against moto: a launch from an approved image opens nothing; a
/// launch from an unapproved one opens one case (once, however often the
/// event comes), whose execution triage reads as `ApprovedImagePolicy`.
/// Attacks: an image deregistered right after the launch (nothing shows it
/// approved); the launch event of another account; a policy with nothing to
/// judge by (refused, never "approved").
#[tokio::test]
async fn a_launch_from_an_unapproved_image_opens_one_case() {
    use playbook::case::policy::ApprovedImages;
    use playbook::steps::launches::check_launch;
    let moto = Moto::start();
    let account = "123456789012";
    let policy = Policy {
        approved_images: ApprovedImages {
            owners: vec![account.into()],
            name_patterns: vec!["golden-*".into()],
            ..ApprovedImages::default()
        },
        ..Policy::default()
    };
    let mut responder = moto.responder(policy).await;
    responder.state_machine_arn = Some(state_machine(&moto).await);
    let amazon = system_tests::linux_image(&responder.clients).await;
    let builder = run_on(&responder, &amazon).await;
    let golden = image_named(&responder, &builder, "golden-web-2026-11").await;
    let rogue = image_named(&responder, &builder, "miner").await;
    let workstation = image_named(&responder, &builder, "forensic-workstation").await;
    let gone = image_named(&responder, &builder, "golden-web-old").await;
    responder
        .clients
        .ssm
        .put_parameter()
        .name("/ec2-forensics/golden-ami")
        .value(&workstation)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("PutParameter");
    responder.config.golden_ami_parameter = Some("/ec2-forensics/golden-ami".into());

    let approved = run_on(&responder, &golden).await;
    let report = check_launch(&responder, launched(&approved, &golden, "ev-golden"))
        .await
        .expect("checked");
    assert!(
        report.case.is_none() && report.instances[0].approved,
        "{report:?}"
    );
    // The responder's own workstation runs the golden AMI: never a case.
    let ours = run_on(&responder, &workstation).await;
    let report = check_launch(&responder, launched(&ours, &workstation, "ev-ws"))
        .await
        .expect("checked");
    assert!(report.case.is_none(), "{report:?}");

    let mining = run_on(&responder, &rogue).await;
    let event = launched(&mining, &rogue, "ev-rogue");
    let report = check_launch(&responder, event.clone())
        .await
        .expect("checked");
    let case = report.case.clone().expect("a case opens");
    assert_eq!(case.status, DispatchStatus::Started);
    assert!(case.case_id.starts_with("ami-"), "{}", case.case_id);
    assert!(
        report.instances[0]
            .why
            .contains("matches no approved pattern"),
        "{report:?}"
    );
    let execution = responder
        .clients
        .sfn
        .describe_execution()
        .execution_arn(case.execution_arn.as_deref().unwrap())
        .send()
        .await
        .expect("the execution");
    let input: serde_json::Value =
        serde_json::from_str(execution.input().unwrap()).expect("JSON input");
    let parsed = playbook::findings::parse_event(&input, &Default::default()).expect("parsed");
    let incident = &parsed.findings[0].incident;
    assert_eq!(
        incident.source,
        playbook::case::FindingSource::ApprovedImagePolicy
    );
    assert_eq!(incident.instance_ids, vec![mining.clone()]);
    assert_eq!(parsed.findings[0].case_id, case.case_id);
    // EventBridge delivers the same call again: the same case, not another.
    // (Identical input: Step Functions answers with the running execution,
    // which dispatch calls a duplicate only when it began over a quarter
    // second before, for the two clocks; what counts is that no other
    // execution starts.)
    let again = check_launch(&responder, event).await.expect("checked");
    let again = again.case.expect("the same case");
    assert_eq!(again.case_id, case.case_id);
    assert_eq!(again.execution_arn, case.execution_arn);
    assert_eq!(again.attempt, 1);

    // Deregistered right after the launch: nothing shows it approved.
    let on_gone = run_on(&responder, &gone).await;
    responder
        .clients
        .ec2
        .deregister_image()
        .image_id(&gone)
        .send()
        .await
        .expect("DeregisterImage");
    let report = check_launch(&responder, launched(&on_gone, &gone, "ev-gone"))
        .await
        .expect("checked");
    assert!(report.case.is_some(), "{report:?}");
    assert!(
        report.instances[0]
            .why
            .contains("nothing shows it approved"),
        "{report:?}"
    );

    // Another account's launch is not the responder's to judge.
    let mut elsewhere = launched(&mining, &rogue, "ev-elsewhere");
    elsewhere["account"] = "999988887777".into();
    elsewhere["detail"]["recipientAccountId"] = "999988887777".into();
    let err = check_launch(&responder, elsewhere).await.unwrap_err();
    assert_eq!(err.error_type(), "WrongAccount");
    // A refused call launched nothing: nothing judged, nothing opened.
    let denied = system_tests::event_for("cloudtrail-run-instances-denied.json", &mining);
    let report = check_launch(&responder, denied).await.expect("read");
    assert!(report.failed_call.is_some() && report.case.is_none());
    // No criterion: refused, never "approved".
    responder.policy.approved_images = ApprovedImages::default();
    let err = check_launch(&responder, launched(&mining, &rogue, "ev-x"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidPolicy");
}
