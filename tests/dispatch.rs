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

    let mut redelivered = event;
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
}
