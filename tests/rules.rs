//! The EventBridge rules of `infra/aws/template.yaml` against every event in
//! `events/`, matched by quamina (an EventBridge-compatible matcher), after
//! quamina itself is checked against the matching rules the EventBridge user
//! guide documents. Each event must start exactly the rules it should: a
//! non-EC2 GuardDuty finding, an archived Security Hub record, an unrelated
//! alarm and a bare finding (no EventBridge envelope) start none.

use std::collections::{BTreeMap, BTreeSet};

use quamina::Quamina;
use serde_json::{json, Value};
use system_tests::repo_root;
use system_tests::template::{load_template, resolve};

fn matcher(patterns: &[(&str, Value)]) -> Quamina<String> {
    let mut q = Quamina::new();
    for (id, pattern) in patterns {
        q.add_pattern((*id).to_owned(), &pattern.to_string())
            .unwrap_or_else(|e| panic!("pattern {id} is not valid: {e:?}"));
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
    // null matches null; it is not a missing field, and not the empty string.
    let null = json!({"detail": {"x": [null]}});
    assert!(matches(null.clone(), json!({"detail": {"x": null}})));
    assert!(!matches(null.clone(), json!({"detail": {}})));
    assert!(!matches(null, json!({"detail": {"x": ""}})));
}

/// Rule name -> pattern, from the dispatch function's EventBridge events.
fn template_rules() -> BTreeMap<String, Value> {
    let template = load_template("infra/aws/template.yaml");
    let events = template["Resources"]["Dispatch"]["Properties"]["Events"]
        .as_object()
        .expect("Dispatch has Events")
        .clone();
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
    (
        "guardduty-ssh-bruteforce-victim.json",
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
    ("securityhub-archived-record.json", &[]),
    (
        "securityhub-custom-action.json",
        &["SecurityHubCustomAction"],
    ),
    ("cloudwatch-alarm-cpu-mining.json", &["CryptoMiningAlarm"]),
    ("cloudwatch-alarm-unrelated.json", &[]),
    ("cloudwatch-alarm-back-to-ok.json", &[]),
    ("ec2-state-change-stopping.json", &["InstanceStateChange"]),
    ("manual-request.json", &[]),
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
            "InstanceStateChange"
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
