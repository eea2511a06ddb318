//! The scheduled readiness function on the local stack: the emulated
//! account has no trail, no GuardDuty, no Security Hub and an evidence
//! bucket under GOVERNANCE, and an event waits in the dead-letter queue.
//! The deployed function checks every enabled Region, returns each gap
//! with its fix, and publishes the same to the approval topic, where the
//! local inbox (an SQS queue subscribed to it) receives it.

use system_tests::LocalStack;

#[tokio::test]
async fn the_scheduled_readiness_run_publishes_each_gap_to_the_approval_topic() {
    let stack = LocalStack::start(None);
    let forensic = stack.forensic_env();
    let dead_letters = forensic
        .get("DEAD_LETTER_QUEUE_URL")
        .expect("forensic.env names the dead-letter queue")
        .clone();
    let clients = stack.clients().await;
    clients
        .sqs
        .send_message()
        .queue_url(&dead_letters)
        .message_body(r#"{"source": "aws.guardduty", "detail-type": "GuardDuty Finding"}"#)
        .send()
        .await
        .expect("SendMessage");

    // What EventBridge's schedule delivers.
    let scheduled = serde_json::json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-01T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/ec2-forensics-ReadinessDaily"],
        "detail": {}
    });
    let report = stack.invoke("readiness", &scheduled);
    let checks = report["checks"].as_array().expect("checks");
    let verdict = |name: &str, region: Option<&str>| {
        checks
            .iter()
            .find(|c| c["check"] == name && c["region"].as_str() == region)
            .unwrap_or_else(|| panic!("{name} {region:?}: {report:#}"))
    };
    let regions = report["regions"].as_array().expect("regions");
    assert!(regions.len() > 1, "every enabled Region: {regions:?}");
    for (name, region) in [
        ("cloudtrail.trail", None),
        ("guardduty.detector", Some("us-east-1")),
        ("guardduty.detector", Some("eu-west-1")),
        ("securityhub.hub", Some("us-east-1")),
        ("dead-letter.queue", None),
    ] {
        let c = verdict(name, region);
        assert_eq!(c["verdict"], "fail", "{c:#}");
        assert!(!c["fix"].as_str().unwrap_or_default().is_empty(), "{c:#}");
    }
    // GOVERNANCE can be lifted by whoever may bypass it: a warning.
    let lock = verdict("evidence.object-lock", None);
    assert_eq!(lock["verdict"], "warn", "{lock:#}");
    assert!(
        lock["found"].as_str().unwrap().contains("GOVERNANCE"),
        "{lock:#}"
    );
    // The local inbox is a confirmed subscriber.
    assert_eq!(verdict("approval.topic", None)["verdict"], "pass");
    let failed = report["failed"].as_u64().expect("failed");

    let messages = stack.approval_messages();
    let published: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("ec2-forensics readiness: "))
        .collect();
    assert_eq!(published.len(), 1, "{messages:#?}");
    let text = published[0];
    assert!(
        text.starts_with(&format!(
            "ec2-forensics readiness: NOT ready ({failed} failed,"
        )),
        "{text}"
    );
    for line in [
        "- cloudtrail.trail: ",
        "- guardduty.detector [eu-west-1]: ",
        "- dead-letter.queue: 1 message(s)",
        "\nWARNED\n",
        "- evidence.object-lock: ",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("  fix: "), "{text}");
}
