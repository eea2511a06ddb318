//! Every example event in `events/` parses and triages to the expected incident
//! and decision under the default policy; malformed input gets a typed error.

use playbook::case::{Action, FindingSource, Indication};
use playbook::findings::{parse_event, ParseContext};
use playbook::policy::Policy;
use playbook::steps::triage::triage_offline;
use serde_json::{json, Value};
use system_tests::repo_root;

const INSTANCE: &str = "i-0a1b2c3d4e5f60718";

struct Expected {
    file: &'static str,
    source: FindingSource,
    finding_type: &'static str,
    severity: f64,
    instance: &'static str,
    role: Option<&'static str>,
    indication: Indication,
    action: Action,
}

fn expectations() -> Vec<Expected> {
    use Action::*;
    use FindingSource::*;
    use Indication::*;
    let e = |file, source, finding_type, severity, role, indication, action| Expected {
        file,
        source,
        finding_type,
        severity,
        instance: INSTANCE,
        role,
        indication,
        action,
    };
    vec![
        // GuardDuty labels the mining instance TARGET in DNS findings: it made the query.
        e(
            "guardduty-crypto-mining-dns.json",
            GuardDuty,
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
            8.0,
            Some("TARGET"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-backdoor-c2-epoch-launch-time.json",
            GuardDuty,
            "Backdoor:EC2/C&CActivity.B",
            8.0,
            Some("ACTOR"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-ssh-bruteforce-victim.json",
            GuardDuty,
            "UnauthorizedAccess:EC2/SSHBruteForce",
            5.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        // Someone probes an open EMR port: GuardDuty rates it High, the
        // instance did nothing.
        e(
            "guardduty-port-probe-emr.json",
            GuardDuty,
            "Recon:EC2/PortProbeEMRUnprotectedPort",
            8.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        e(
            "guardduty-port-probe-unprotected.json",
            GuardDuty,
            "Recon:EC2/PortProbeUnprotectedPort",
            5.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        e(
            "guardduty-rdp-bruteforce-target.json",
            GuardDuty,
            "UnauthorizedAccess:EC2/RDPBruteForce",
            2.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        e(
            "guardduty-rdp-bruteforce-actor.json",
            GuardDuty,
            "UnauthorizedAccess:EC2/RDPBruteForce",
            8.0,
            Some("ACTOR"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-portscan-actor.json",
            GuardDuty,
            "Recon:EC2/Portscan",
            5.0,
            Some("ACTOR"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-tor-client.json",
            GuardDuty,
            "UnauthorizedAccess:EC2/TorClient",
            8.0,
            Some("ACTOR"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-runtime-reverse-shell.json",
            GuardDuty,
            "Execution:Runtime/ReverseShell",
            8.0,
            Some("TARGET"),
            Compromised,
            Respond,
        ),
        e(
            "guardduty-malware-protection-malicious-file.json",
            GuardDuty,
            "Execution:EC2/MaliciousFile",
            8.0,
            Some("TARGET"),
            Compromised,
            Respond,
        ),
        Expected {
            instance: "i-99999999",
            ..e(
                "guardduty-sample-finding.json",
                GuardDuty,
                "Backdoor:EC2/Spambot",
                5.0,
                Some("TARGET"),
                Compromised,
                Ignore,
            )
        },
        e(
            "securityhub-imported-two-findings.json",
            SecurityHub,
            "Backdoor:EC2/C&CActivity.B!DNS",
            // GuardDuty's own 8 (FindingProviderFields.Severity.Original),
            // not the deprecated Normalized 60.
            8.0,
            Some("TARGET"),
            Compromised,
            Respond,
        ),
        // GuardDuty's port probe through Security Hub: its ASFF type is a
        // posture one, GuardDuty's own type decides.
        e(
            "securityhub-guardduty-port-probe.json",
            SecurityHub,
            "Recon:EC2/PortProbeUnprotectedPort",
            5.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        // The Imported event Security Hub sends after update-findings set
        // the finding NOTIFIED with its note: the same finding, and no rule
        // delivers it again (tests/rules.rs).
        e(
            "securityhub-after-update.json",
            SecurityHub,
            "Recon:EC2/PortProbeUnprotectedPort",
            5.0,
            Some("TARGET"),
            Exposed,
            Observe,
        ),
        // A threat the responder released, still NEW (the update that would
        // have taken it on failed, or an analyst set it back): triage would
        // respond again, and no rule delivers it (tests/rules.rs).
        e(
            "securityhub-after-update-still-new.json",
            SecurityHub,
            "TTPs/Execution",
            9.0,
            None,
            Compromised,
            Respond,
        ),
        e(
            "securityhub-custom-action.json",
            SecurityHub,
            "Unusual Behaviors/VM/Suspicious outbound traffic",
            9.0,
            None,
            Compromised,
            Respond,
        ),
        // A person chose a posture finding: their decision, recorded as such.
        e(
            "securityhub-custom-action-on-control-failure.json",
            SecurityHub,
            "Software and Configuration Checks/Industry and Regulatory Standards",
            7.0,
            None,
            Weakness,
            Respond,
        ),
        e(
            "securityhub-control-failure-imdsv2.json",
            SecurityHub,
            "Software and Configuration Checks/Industry and Regulatory Standards",
            7.0,
            None,
            Weakness,
            Ignore,
        ),
        e(
            "securityhub-inspector-cve.json",
            SecurityHub,
            "Software and Configuration Checks/Vulnerabilities/CVE",
            9.0,
            None,
            Weakness,
            Ignore,
        ),
        e(
            "securityhub-config-rule.json",
            SecurityHub,
            "Software and Configuration Checks",
            4.0,
            None,
            Weakness,
            Ignore,
        ),
        e(
            "securityhub-patch-manager.json",
            SecurityHub,
            "Software & Configuration Checks/Patch Management/Compliance",
            7.0,
            None,
            Weakness,
            Ignore,
        ),
        e(
            "securityhub-edr-execution.json",
            SecurityHub,
            "TTPs/Execution",
            9.0,
            None,
            Compromised,
            Respond,
        ),
        e(
            "cloudwatch-alarm-cpu-mining.json",
            CloudWatchAlarm,
            "CloudWatchAlarm:ALARM/ec2-forensics-crypto-mining-demo-web-1-cpu",
            5.0,
            None,
            Compromised,
            Respond,
        ),
        // No rule delivers this alarm (its name does not follow the
        // crypto-mining convention: tests/rules.rs), and triage agrees: an
        // alarm that says nothing of compromise is only observed.
        e(
            "cloudwatch-alarm-unrelated.json",
            CloudWatchAlarm,
            "CloudWatchAlarm:ALARM/demo-web-1-disk-almost-full",
            5.0,
            None,
            Unclassified,
            Observe,
        ),
        // Back to OK: no rule delivers it, and triage would only observe it.
        e(
            "cloudwatch-alarm-back-to-ok.json",
            CloudWatchAlarm,
            "CloudWatchAlarm:OK/ec2-forensics-crypto-mining-demo-web-1-cpu",
            0.0,
            None,
            Unclassified,
            Observe,
        ),
        e(
            "ec2-state-change-stopping.json",
            Ec2StateChange,
            "EC2StateChange:stopping",
            3.0,
            None,
            Unclassified,
            Observe,
        ),
        e(
            "manual-request.json",
            Manual,
            "Manual",
            10.0,
            None,
            Unclassified,
            Respond,
        ),
        // The console's JSON view and the S3 export give the finding without
        // its EventBridge envelope.
        e(
            "guardduty-bare-finding.json",
            GuardDuty,
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
            8.0,
            Some("TARGET"),
            Compromised,
            Respond,
        ),
        // What check-ami starts a case with (never an EventBridge rule's):
        // the policy's approvedImages.onUnapproved decides, notify by default.
        e(
            "ec2-forensics-unapproved-launch.json",
            ApprovedImagePolicy,
            "UnapprovedImage/RunInstances",
            5.0,
            None,
            Unclassified,
            Approve,
        ),
        e(
            "securityhub-archived-record.json",
            SecurityHub,
            "Backdoor:EC2/C&CActivity.B!DNS",
            8.0,
            Some("TARGET"),
            Compromised,
            Ignore,
        ),
    ]
}

/// Events that are valid but name no EC2 instance, with the expected error type.
const NOT_EC2: &[(&str, &str)] = &[("guardduty-access-key-not-ec2.json", "NoInstanceInFinding")];

/// check-ami's input, never a finding: CloudTrail's RunInstances calls.
const LAUNCHES: &[&str] = &[
    "cloudtrail-run-instances.json",
    "cloudtrail-run-instances-denied.json",
];

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("events").join(file)).expect("event file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

fn ctx() -> ParseContext {
    ParseContext {
        default_region: Some("us-east-1".into()),
        default_account: None,
    }
}

#[test]
fn every_event_file_has_an_expectation() {
    let mut known: Vec<&str> = expectations().iter().map(|e| e.file).collect();
    known.extend(NOT_EC2.iter().map(|(f, _)| *f));
    known.extend(LAUNCHES);
    for entry in std::fs::read_dir(repo_root().join("events")).expect("events/ exists") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            known.contains(&name.as_str()),
            "events/{name} has no expectation in tests/events.rs"
        );
    }
}

#[test]
fn every_event_triages_to_the_expected_incident_and_decision() {
    for expected in expectations() {
        let report = triage_offline(&load(expected.file), &ctx(), &Policy::default())
            .unwrap_or_else(|e| panic!("{}: {e}", expected.file));
        let incident = &report.incident;
        let file = expected.file;
        assert_eq!(incident.source, expected.source, "{file}");
        assert_eq!(incident.finding_type, expected.finding_type, "{file}");
        assert_eq!(incident.severity, expected.severity, "{file}");
        assert_eq!(
            incident.instance_ids,
            vec![expected.instance.to_owned()],
            "{file}"
        );
        assert_eq!(incident.resource_role.as_deref(), expected.role, "{file}");
        assert_eq!(incident.region, "us-east-1", "{file}");
        assert_eq!(
            report.decision.action, expected.action,
            "{file}: {}",
            report.decision.reason
        );
        assert!(!report.decision.reason.is_empty(), "{file}");
        let classification = report
            .decision
            .classification
            .as_ref()
            .unwrap_or_else(|| panic!("{file}: the decision records no classification"));
        assert_eq!(
            classification.indication, expected.indication,
            "{file}: {}",
            classification.decided_by
        );
        // The case id names the detecting service: a GuardDuty finding imported
        // into Security Hub is the GuardDuty finding's case.
        let prefix = format!("{}-", incident.detected_by.case_prefix());
        if incident.finding_type.contains(":EC2/") {
            assert_eq!(incident.detected_by, FindingSource::GuardDuty, "{file}");
        }
        assert!(
            report.case_id.starts_with(&prefix),
            "{file}: {}",
            report.case_id
        );
        if expected.source != FindingSource::Manual {
            assert_eq!(incident.account.as_deref(), Some("123456789012"), "{file}");
        }
    }
}

#[test]
fn events_without_an_instance_get_a_typed_error() {
    for (file, error_type) in NOT_EC2 {
        let err = parse_event(&load(file), &ctx()).expect_err(file);
        assert_eq!(err.error_type(), *error_type, "{file}: {err}");
    }
}

#[test]
fn launch_time_as_epoch_millis_and_as_text_both_normalise() {
    let epoch = triage_offline(
        &load("guardduty-backdoor-c2-epoch-launch-time.json"),
        &ctx(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        epoch.incident.instance_launch_time.as_deref(),
        Some("2025-11-20T07:02:11Z")
    );
    let text = triage_offline(
        &load("guardduty-crypto-mining-dns.json"),
        &ctx(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        text.incident.instance_launch_time.as_deref(),
        Some("2026-11-20T07:02:11Z")
    );
}

#[test]
fn security_hub_event_splits_per_finding_and_skips_the_non_ec2_one() {
    let parsed = parse_event(&load("securityhub-imported-two-findings.json"), &ctx()).unwrap();
    assert_eq!(parsed.findings.len(), 1);
    assert_eq!(parsed.skipped.len(), 1);
    assert!(
        parsed.skipped[0].to_string().contains("AwsS3Bucket"),
        "{}",
        parsed.skipped[0]
    );
    let narrowed = &parsed.findings[0].event;
    assert_eq!(
        narrowed["detail"]["findings"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(narrowed["detail-type"], "Security Hub Findings - Imported");
}

#[test]
fn a_redelivered_or_updated_finding_is_the_same_case() {
    let first = load("guardduty-crypto-mining-dns.json");
    let mut again = first.clone();
    again["id"] = json!("another-eventbridge-delivery");
    again["detail"]["service"]["count"] = json!(18);
    again["detail"]["updatedAt"] = json!("2026-11-28T10:14:01.201Z");
    let a = triage_offline(&first, &ctx(), &Policy::default()).unwrap();
    let b = triage_offline(&again, &ctx(), &Policy::default()).unwrap();
    assert_eq!(a.case_id, b.case_id);
    let other = load("guardduty-backdoor-c2-epoch-launch-time.json");
    assert_ne!(
        a.case_id,
        triage_offline(&other, &ctx(), &Policy::default())
            .unwrap()
            .case_id
    );
}

#[test]
fn malformed_events_get_typed_errors_naming_the_problem() {
    let mut no_detail = load("guardduty-crypto-mining-dns.json");
    no_detail.as_object_mut().unwrap().remove("detail");
    let mut findings_not_a_list = load("securityhub-custom-action.json");
    findings_not_a_list["detail"]["findings"] = json!({"Id": "x"});
    let mut alarm_without_instance = load("cloudwatch-alarm-cpu-mining.json");
    alarm_without_instance["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]
        ["dimensions"] = json!({"AutoScalingGroupName": "web"});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!("just a string"),
            "InvalidFinding",
            "not a JSON object",
        ),
        (no_detail, "InvalidFinding", "detail"),
        (findings_not_a_list, "InvalidFinding", "not a list"),
        (alarm_without_instance, "NoInstanceInFinding", "InstanceId"),
        (
            json!({"detail-type": "Object Created", "source": "aws.s3", "detail": {}}),
            "UnsupportedEvent",
            "Object Created",
        ),
        (
            json!({"instanceId": "i-0a1b2c3d4e5f60718; rm -rf /"}),
            "InvalidFinding",
            "not an EC2 instance id",
        ),
    ];
    for (event, error_type, mentions) in cases {
        let err = parse_event(&event, &ctx()).expect_err(&event.to_string());
        assert_eq!(err.error_type(), error_type, "{err}");
        assert!(
            err.to_string().contains(mentions),
            "{err} should mention {mentions}"
        );
    }
}

#[test]
fn a_bare_finding_and_its_eventbridge_delivery_are_one_case() {
    let bare = triage_offline(
        &load("guardduty-bare-finding.json"),
        &ctx(),
        &Policy::default(),
    )
    .expect("bare finding");
    let delivered = triage_offline(
        &load("guardduty-crypto-mining-dns.json"),
        &ctx(),
        &Policy::default(),
    )
    .expect("event");
    assert_eq!(bare.case_id, delivered.case_id);
}

#[test]
fn a_dns_finding_names_its_domain_for_the_dns_firewall_option() {
    let report = triage_offline(
        &load("guardduty-crypto-mining-dns.json"),
        &ctx(),
        &Policy::default(),
    )
    .expect("event");
    assert_eq!(
        report.incident.domain.as_deref(),
        Some("pool.minexmr.example")
    );
    let manual =
        triage_offline(&load("manual-request.json"), &ctx(), &Policy::default()).expect("manual");
    assert_eq!(manual.incident.domain, None);
}

/// The posture findings of `events/`, whichever way they arrive (an Imported
/// event, the bare finding, `GetFindings` output), at any severity, on a
/// production instance, under a policy with no severity floor: never a
/// response and never an approval request. Only a person's custom action is.
#[test]
fn no_posture_finding_reaches_respond_or_approve_but_through_the_custom_action() {
    let posture = [
        "securityhub-control-failure-imdsv2.json",
        "securityhub-inspector-cve.json",
        "securityhub-config-rule.json",
        "securityhub-patch-manager.json",
    ];
    let lenient = Policy {
        min_severity: 0.0,
        ..Policy::default()
    };
    for file in posture {
        let event = load(file);
        let mut finding = event["detail"]["findings"][0].clone();
        finding["Severity"] = json!({"Label": "CRITICAL", "Original": "CRITICAL"});
        finding["FindingProviderFields"]["Severity"] = finding["Severity"].clone();
        finding["Resources"][0]["Tags"]["Environment"] = json!("production");
        let mut imported = event.clone();
        imported["detail"]["findings"] = json!([finding.clone()]);
        let routes = [
            ("imported", imported.clone()),
            ("bare", finding.clone()),
            ("GetFindings", json!({"Findings": [finding.clone()]})),
        ];
        for (route, shape) in routes {
            for policy in [Policy::default(), lenient.clone()] {
                let report = triage_offline(&shape, &ctx(), &policy)
                    .unwrap_or_else(|e| panic!("{file} {route}: {e}"));
                assert_eq!(
                    report.decision.action,
                    Action::Ignore,
                    "{file} {route}: {}",
                    report.decision.reason
                );
                assert!(
                    report.decision.reason.contains("a weakness"),
                    "{file} {route}: {}",
                    report.decision.reason
                );
            }
        }
        let mut chosen = load("securityhub-custom-action.json");
        chosen["detail"]["findings"] = json!([finding]);
        let report = triage_offline(&chosen, &ctx(), &Policy::default()).expect("custom action");
        assert_eq!(
            report.decision.action,
            Action::Approve,
            "{file}: a production instance still waits for approval: {}",
            report.decision.reason
        );
        assert!(
            report.decision.reason.contains("a person approves first"),
            "{}",
            report.decision.reason
        );
    }
    let chosen = triage_offline(
        &load("securityhub-custom-action-on-control-failure.json"),
        &ctx(),
        &Policy::default(),
    )
    .expect("custom action");
    assert_eq!(chosen.decision.action, Action::Respond);
    assert!(
        chosen.decision.reason.contains(
            "a person chose this finding: Security Hub custom action Start EC2 forensics"
        ),
        "{}",
        chosen.decision.reason
    );
}

/// Every way an instance is only the target of outside activity is observed,
/// with what reached it, whatever its severity.
#[test]
fn an_instance_only_attacked_from_outside_is_observed_with_port_and_source() {
    for (file, ports, source) in [
        ("guardduty-port-probe-emr.json", "8088", "203.0.113.45"),
        (
            "guardduty-port-probe-unprotected.json",
            "22, 3389",
            "203.0.113.45, 203.0.113.46",
        ),
        (
            "guardduty-rdp-bruteforce-target.json",
            "3389",
            "203.0.113.77",
        ),
        (
            "guardduty-ssh-bruteforce-victim.json",
            "22",
            "198.51.100.200",
        ),
        (
            "securityhub-guardduty-port-probe.json",
            "22",
            "203.0.113.45",
        ),
    ] {
        let mut event = load(file);
        if event["detail"]["severity"].is_number() {
            event["detail"]["severity"] = json!(8.9);
        }
        let report = triage_offline(&event, &ctx(), &Policy::default()).expect(file);
        assert_eq!(report.decision.action, Action::Observe, "{file}");
        let reason = &report.decision.reason;
        assert!(
            reason.contains("target of outside activity"),
            "{file}: {reason}"
        );
        assert!(
            reason.contains(&format!("port(s) {ports} from {source}")),
            "{file}: {reason}"
        );
    }
    // The same probe, direct or through Security Hub, is one case.
    let direct = triage_offline(
        &load("guardduty-port-probe-unprotected.json"),
        &ctx(),
        &Policy::default(),
    )
    .unwrap();
    let via_hub = triage_offline(
        &load("securityhub-guardduty-port-probe.json"),
        &ctx(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(direct.case_id, via_hub.case_id);
}

#[test]
fn a_runinstances_call_is_read_and_is_never_a_finding_by_itself() {
    use playbook::findings::{launch_finding_id, parse_launch, unapproved_launch_event};
    let event = load("cloudtrail-run-instances.json");
    let launch = parse_launch(&event).expect("a launch");
    assert_eq!(
        launch.instances,
        vec![(INSTANCE.to_owned(), "ami-0bad0bad0bad0bad0".to_owned())]
    );
    assert_eq!(
        (launch.account.as_str(), launch.region.as_str()),
        ("123456789012", "us-east-1")
    );
    assert_eq!(
        launch.launched_by.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/developer/someone")
    );
    assert!(launch.error.is_none());
    let err = parse_event(&event, &ctx()).expect_err("only check-ami reads it");
    assert_eq!(err.error_type(), "UnsupportedEvent");

    let denied = parse_launch(&load("cloudtrail-run-instances-denied.json")).expect("read");
    assert_eq!(
        denied.error.as_deref(),
        Some("Client.UnauthorizedOperation")
    );
    assert!(denied.instances.is_empty());

    // check-ami's event for it is what triage reads: the same case for the
    // same call, whichever delivery.
    let opened = unapproved_launch_event(
        &launch,
        &[(
            INSTANCE.into(),
            "ami-0bad0bad0bad0bad0".into(),
            "its owner 999988887777 is not approved".into(),
        )],
    );
    let parsed = parse_event(&opened, &ctx()).expect("a finding");
    let incident = &parsed.findings[0].incident;
    assert_eq!(incident.source, FindingSource::ApprovedImagePolicy);
    assert_eq!(incident.finding_id, launch_finding_id(&launch.event_id));
    assert!(
        incident.tags.is_empty(),
        "the launcher's tags exempt nothing"
    );
    assert_eq!(
        parsed.findings[0].case_id,
        parse_event(&load("ec2-forensics-unapproved-launch.json"), &ctx())
            .expect("the example")
            .findings[0]
            .case_id
    );

    // Another event, another account in its detail, another Region: refused.
    let mut other = event.clone();
    other["detail"]["recipientAccountId"] = "999988887777".into();
    assert_eq!(
        parse_launch(&other).unwrap_err().error_type(),
        "InvalidFinding"
    );
    let mut elsewhere = event.clone();
    elsewhere["detail"]["awsRegion"] = "eu-west-1".into();
    assert_eq!(
        parse_launch(&elsewhere).unwrap_err().error_type(),
        "InvalidFinding"
    );
    let mut terminate = event;
    terminate["detail"]["eventName"] = "TerminateInstances".into();
    assert_eq!(
        parse_launch(&terminate).unwrap_err().error_type(),
        "UnsupportedEvent"
    );
}
