//! The EventBridge rules of `infra/aws/template.yaml` against every event in
//! `events/`, matched by quamina (an EventBridge-compatible matcher), after
//! quamina itself is checked against the matching rules the EventBridge user
//! guide documents. Each event must start exactly the rules it should: a
//! non-EC2 GuardDuty finding, an archived Security Hub record, an unrelated
//! alarm and a bare finding (no EventBridge envelope) start none.

use std::collections::{BTreeMap, BTreeSet};

use playbook::case::{Action, Indication};
use playbook::findings::ParseContext;
use playbook::policy::Policy;
use playbook::steps::triage::triage_offline;
use quamina::Quamina;
use serde_json::{json, Value};
use system_tests::patterns::expand_or;
use system_tests::repo_root;
use system_tests::template::{load_template, resolve};

/// A matcher holding every pattern under its id; a pattern with `$or` is
/// held as its expansions, all under the same id.
fn matcher(patterns: &[(&str, Value)]) -> Quamina<String> {
    let mut q = Quamina::new();
    for (id, pattern) in patterns {
        for expansion in expand_or(pattern) {
            q.add_pattern((*id).to_owned(), &expansion.to_string())
                .unwrap_or_else(|e| panic!("pattern {id} is not valid: {e:?}"));
        }
    }
    q
}

fn matched(q: &Quamina<String>, event: &Value) -> BTreeSet<String> {
    q.matches_for_event(event.to_string().as_bytes())
        .expect("the event is JSON")
        .into_iter()
        .collect()
}

fn matches(pattern: Value, event: Value) -> bool {
    !matched(&matcher(&[("p", pattern)]), &event).is_empty()
}

/// The matching rules of the EventBridge user guide ("Event patterns",
/// "Arrays in event patterns", "Content filtering"), each as an example.
#[test]
fn quamina_follows_the_documented_eventbridge_matching() {
    // Only the fields a pattern names are matched; the rest of the event is ignored.
    assert!(matches(
        json!({"source": ["aws.ec2"], "detail": {"state": ["terminated"]}}),
        json!({"source": "aws.ec2", "detail-type": "x", "detail": {"state": "terminated", "other": 1}})
    ));
    // Every field of the pattern must be in the event, with the same nesting.
    assert!(!matches(
        json!({"detail": {"state": ["terminated"]}}),
        json!({"state": "terminated"})
    ));
    // The values of one field are alternatives (OR); fields are all required (AND).
    let p = json!({"source": ["aws.ec2", "aws.fargate"], "detail-type": ["A"]});
    assert!(matches(
        p.clone(),
        json!({"source": "aws.fargate", "detail-type": "A"})
    ));
    assert!(!matches(
        p,
        json!({"source": "aws.fargate", "detail-type": "B"})
    ));
    // Matching is exact and case-sensitive.
    assert!(!matches(
        json!({"source": ["aws.ec2"]}),
        json!({"source": "AWS.EC2"})
    ));
    // An array in the event matches when it intersects the pattern's values.
    assert!(matches(
        json!({"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}),
        json!({"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x", "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]})
    ));
    // Arrays of objects are descended into: any element may match.
    let findings = json!({"detail": {"findings": {"Resources": {"Type": ["AwsEc2Instance"]}}}});
    assert!(matches(
        findings.clone(),
        json!({"detail": {"findings": [
            {"Resources": [{"Type": "AwsS3Bucket"}]},
            {"Resources": [{"Type": "AwsIamRole"}, {"Type": "AwsEc2Instance"}]}
        ]}})
    ));
    assert!(!matches(
        findings,
        json!({"detail": {"findings": [{"Resources": [{"Type": "AwsS3Bucket"}]}]}})
    ));
    // Prefix matching.
    let alarm = json!({"detail": {"alarmName": [{"prefix": "ec2-forensics-crypto-mining-"}]}});
    assert!(matches(
        alarm.clone(),
        json!({"detail": {"alarmName": "ec2-forensics-crypto-mining-web"}})
    ));
    assert!(!matches(
        alarm,
        json!({"detail": {"alarmName": "web-ec2-forensics-crypto-mining-"}})
    ));
    // anything-but matches any other value, but not a missing field.
    let but = json!({"state": [{"anything-but": ["running"]}]});
    assert!(matches(but.clone(), json!({"state": "stopping"})));
    assert!(!matches(but.clone(), json!({"state": "running"})));
    assert!(!matches(but, json!({"other": 1})));
    // exists: false matches only when the field is absent.
    let absent = json!({"detail": {"sample": [{"exists": false}]}});
    assert!(matches(absent.clone(), json!({"detail": {"x": 1}})));
    assert!(!matches(absent, json!({"detail": {"sample": true}})));
    // Numeric matching compares numbers, not their text.
    let numeric = json!({"detail": {"severity": [{"numeric": [">=", 7]}]}});
    assert!(matches(
        numeric.clone(),
        json!({"detail": {"severity": 8.0}})
    ));
    assert!(!matches(numeric, json!({"detail": {"severity": 5}})));
    // Suffix matching.
    let product = json!({"ProductArn": [{"suffix": "::product/aws/guardduty"}]});
    assert!(matches(
        product.clone(),
        json!({"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty"})
    ));
    assert!(!matches(
        product,
        json!({"ProductArn": "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"})
    ));
    // exists works on leaves: a finding without Compliance.Status matches
    // `exists: false`, one with it does not, inside an array of findings too.
    let no_compliance =
        json!({"detail": {"findings": {"Compliance": {"Status": [{"exists": false}]}}}});
    assert!(matches(
        no_compliance.clone(),
        json!({"detail": {"findings": [{"Types": ["TTPs/Execution"]}]}})
    ));
    assert!(!matches(
        no_compliance,
        json!({"detail": {"findings": [{"Compliance": {"Status": "FAILED"}}]}})
    ));
    // $or: any alternative, together with the rest of its object
    // ("$or matching"; held here as its expansions).
    let either = json!({"source": ["aws.ec2"], "$or": [
        {"detail": {"state": ["stopping"]}},
        {"detail": {"reason": [{"prefix": "user"}]}}
    ]});
    assert!(matches(
        either.clone(),
        json!({"source": "aws.ec2", "detail": {"state": "stopping"}})
    ));
    assert!(matches(
        either.clone(),
        json!({"source": "aws.ec2", "detail": {"reason": "user initiated"}})
    ));
    assert!(!matches(
        either.clone(),
        json!({"source": "aws.ec2", "detail": {"state": "running", "reason": "scheduled"}})
    ));
    assert!(!matches(
        either,
        json!({"source": "aws.s3", "detail": {"state": "stopping"}})
    ));
    // null matches null; it is not a missing field, and not the empty string.
    let null = json!({"detail": {"x": [null]}});
    assert!(matches(null.clone(), json!({"detail": {"x": null}})));
    assert!(!matches(null.clone(), json!({"detail": {}})));
    assert!(!matches(null, json!({"detail": {"x": ""}})));
}

/// Rule name -> pattern, from the EventBridge events of dispatch and check-ami.
fn template_rules() -> BTreeMap<String, Value> {
    let template = load_template("infra/aws/template.yaml");
    let mut events = template["Resources"]["Dispatch"]["Properties"]["Events"]
        .as_object()
        .expect("Dispatch has Events")
        .clone();
    events.extend(
        template["Resources"]["CheckAmi"]["Properties"]["Events"]
            .as_object()
            .expect("CheckAmi has Events")
            .clone(),
    );
    let action = &template["Resources"]["StartForensicsAction"]["Properties"];
    let action_arn = format!(
        "arn:aws:securityhub:us-east-1:123456789012:action/custom/{}",
        action["Id"].as_str().expect("the custom action's Id")
    );
    events
        .into_iter()
        .filter(|(_, e)| e["Type"] == "EventBridgeRule")
        .map(|(name, e)| {
            let pattern = resolve(&e["Properties"]["Pattern"], &|tag, arg| {
                assert_eq!(
                    (tag, arg),
                    ("GetAtt", "StartForensicsAction.ActionTargetArn"),
                    "the only intrinsic in a pattern is the custom action's ARN"
                );
                Value::String(action_arn.clone())
            });
            (name, pattern)
        })
        .collect()
}

/// Which rules each example event must start.
const EXPECTED: &[(&str, &[&str])] = &[
    ("guardduty-crypto-mining-dns.json", &["GuardDutyFinding"]),
    (
        "guardduty-backdoor-c2-epoch-launch-time.json",
        &["GuardDutyFinding"],
    ),
    // Every GuardDuty finding on an instance reaches triage, whose table
    // decides: probes and brute force against the instance are only observed.
    (
        "guardduty-ssh-bruteforce-victim.json",
        &["GuardDutyFinding"],
    ),
    ("guardduty-port-probe-emr.json", &["GuardDutyFinding"]),
    (
        "guardduty-port-probe-unprotected.json",
        &["GuardDutyFinding"],
    ),
    (
        "guardduty-rdp-bruteforce-target.json",
        &["GuardDutyFinding"],
    ),
    ("guardduty-rdp-bruteforce-actor.json", &["GuardDutyFinding"]),
    ("guardduty-portscan-actor.json", &["GuardDutyFinding"]),
    ("guardduty-tor-client.json", &["GuardDutyFinding"]),
    (
        "guardduty-runtime-reverse-shell.json",
        &["GuardDutyFinding"],
    ),
    (
        "guardduty-malware-protection-malicious-file.json",
        &["GuardDutyFinding"],
    ),
    // Samples are the policy's to drop (ignoreSamples), so the rule lets them through.
    ("guardduty-sample-finding.json", &["GuardDutyFinding"]),
    ("guardduty-access-key-not-ec2.json", &[]),
    ("guardduty-bare-finding.json", &[]),
    (
        "securityhub-imported-two-findings.json",
        &["SecurityHubImported"],
    ),
    (
        "securityhub-guardduty-port-probe.json",
        &["SecurityHubImported"],
    ),
    ("securityhub-edr-execution.json", &["SecurityHubImported"]),
    // Posture never invokes dispatch.
    ("securityhub-control-failure-imdsv2.json", &[]),
    ("securityhub-inspector-cve.json", &[]),
    ("securityhub-config-rule.json", &[]),
    ("securityhub-patch-manager.json", &[]),
    ("securityhub-archived-record.json", &[]),
    // The events Security Hub sends after update-findings' own updates
    // (NOTIFIED, or still NEW when the update that would have taken it on
    // failed, or an analyst set it back): the responder never restarts
    // itself on a finding that names its case.
    ("securityhub-after-update.json", &[]),
    ("securityhub-after-update-still-new.json", &[]),
    (
        "securityhub-custom-action.json",
        &["SecurityHubCustomAction"],
    ),
    // A person chose it: the custom action is theirs, whatever the finding.
    (
        "securityhub-custom-action-on-control-failure.json",
        &["SecurityHubCustomAction"],
    ),
    ("cloudwatch-alarm-cpu-mining.json", &["CryptoMiningAlarm"]),
    ("cloudwatch-alarm-unrelated.json", &[]),
    ("cloudwatch-alarm-back-to-ok.json", &[]),
    ("ec2-state-change-stopping.json", &["InstanceStateChange"]),
    ("manual-request.json", &[]),
    // Launches reach check-ami; a refused call launched nothing.
    ("cloudtrail-run-instances.json", &["ImageLaunched"]),
    ("cloudtrail-run-instances-denied.json", &[]),
    // What check-ami starts an execution with: no rule ever sees it.
    ("ec2-forensics-unapproved-launch.json", &[]),
];

#[test]
fn every_example_event_starts_exactly_the_rules_it_should() {
    let rules = template_rules();
    assert_eq!(
        rules.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "GuardDutyFinding",
            "SecurityHubImported",
            "SecurityHubCustomAction",
            "CryptoMiningAlarm",
            "InstanceStateChange",
            "ImageLaunched"
        ]),
        "the template's rules"
    );
    let patterns: Vec<(&str, Value)> = rules.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let q = matcher(&patterns);

    let dir = repo_root().join("events");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("events/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let expected: BTreeMap<&str, &[&str]> = EXPECTED.iter().copied().collect();
    for file in &files {
        let want = expected.get(file.as_str()).unwrap_or_else(|| {
            panic!("events/{file} is not in EXPECTED: say which rules it starts")
        });
        let event: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap())
            .unwrap_or_else(|e| panic!("events/{file}: {e}"));
        let got = matched(&q, &event);
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(got, want, "events/{file}");
    }
    for (file, _) in EXPECTED {
        assert!(files.iter().any(|f| f == file), "events/{file} is missing");
    }
}

/// The rules and triage agree on every example event: what triage would
/// respond to (or ask approval for) under the default policy is delivered by
/// some rule, and a weakness reaches dispatch only through the custom action.
#[test]
fn the_rules_and_triage_agree_on_every_example_event() {
    let rules = template_rules();
    let patterns: Vec<(&str, Value)> = rules.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let q = matcher(&patterns);
    let ctx = ParseContext {
        default_region: Some("us-east-1".into()),
        default_account: None,
    };
    let mut checked = 0;
    for (file, _) in EXPECTED {
        let event: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("events").join(file)).unwrap(),
        )
        .unwrap();
        if event.get("detail-type").is_none() {
            continue; // not an EventBridge event: no rule can see it
        }
        let Ok(report) = triage_offline(&event, &ctx, &Policy::default()) else {
            continue;
        };
        let delivered = matched(&q, &event);
        let indication = report
            .decision
            .classification
            .as_ref()
            .map(|c| c.indication);
        // A finding that names its case (update-findings' field) opened it
        // already: the rules never deliver it again (the feedback loop).
        let names_its_case = event
            .pointer("/detail/findings/0/UserDefinedFields/ec2ForensicsCaseId")
            .is_some();
        if names_its_case {
            assert!(delivered.is_empty(), "events/{file}: delivered again");
        }
        if matches!(report.decision.action, Action::Respond | Action::Approve)
            && report.incident.source != playbook::case::FindingSource::Manual
            && report.incident.source != playbook::case::FindingSource::ApprovedImagePolicy
            && !names_its_case
        {
            assert!(
                !delivered.is_empty(),
                "events/{file}: triage responds, but no rule delivers it"
            );
        }
        // The other way: what the Security Hub rule delivers from products
        // other than GuardDuty, triage reads as threat detection too.
        if delivered.contains("SecurityHubImported")
            && report.incident.detected_by != playbook::case::FindingSource::GuardDuty
        {
            assert!(
                matches!(
                    indication,
                    Some(Indication::Compromised | Indication::Exposed)
                ),
                "events/{file}: delivered as threat detection, triaged {indication:?}"
            );
        }
        if indication == Some(Indication::Weakness) {
            assert!(
                delivered.is_empty()
                    || delivered == BTreeSet::from(["SecurityHubCustomAction".to_owned()]),
                "events/{file}: a weakness reaches dispatch through {delivered:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} events were compared");
}
