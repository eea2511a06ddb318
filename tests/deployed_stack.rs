//! `infra/aws/template.yaml` deployed into the emulator's CloudFormation, as
//! SAM deploys it (aws-sam-translator, then CreateStack; `infra/local/deploy_stack.py`),
//! and a finding run through what was deployed.
//!
//! What the emulator cannot do, and how the test goes around it (test set-up,
//! never product code):
//! - its CloudFormation has no `AWS::SecurityHub::ActionTarget`: that one
//!   resource is left out and its ARN stands in for references to it;
//! - it reads only an inline state machine definition (`sam package` would
//!   upload the file), and ignores `DefinitionSubstitutions`: the same file is
//!   inlined, its substitutions done by the equivalent `Fn::Sub`, whose
//!   emulation reads `$$` as an escaped `$` (CloudFormation does not), so the
//!   context paths (`$$.Execution.Id`) travel under a marker;
//! - it runs no Lambda without Docker, so neither its EventBridge nor its
//!   Step Functions can invoke the deployed functions. The finding is matched
//!   against the rules as deployed (their stored patterns, by quamina) and the
//!   deployed state machine definition (substitutions resolved by
//!   CloudFormation) runs on the local runner, each deployed function ARN
//!   served by the binary the template builds for it;
//! - it ignores the functions' and the state machine's tracing and logging
//!   configuration: those are checked in the template (tests/template.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;
use system_tests::template::load_template;
use system_tests::{event_for, repo_root, LocalStack, Moto};

fn deploy(moto: &Moto) -> Value {
    let out = Command::new(repo_root().join(".venv-sam/bin/python"))
        .arg(repo_root().join("infra/local/deploy_stack.py"))
        .arg(&moto.endpoint)
        .output()
        .expect("deploy_stack.py runs (make setup installs .venv-sam)");
    assert!(
        out.status.success(),
        "deploy_stack.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("deploy_stack.py prints JSON")
}

/// Every Lambda function ARN a definition calls, at any depth.
fn lambda_arns(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.starts_with("arn:aws:lambda:") => {
            found.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| lambda_arns(v, found)),
        Value::Object(map) => map.values().for_each(|v| lambda_arns(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_template_deploys_and_a_finding_runs_through_the_deployed_rules_and_state_machine() {
    let moto = Moto::start();
    let deployed = deploy(&moto);
    assert_eq!(
        deployed["status"], "CREATE_COMPLETE",
        "{:#}",
        deployed["reason"]
    );
    let left_out: BTreeSet<&String> = deployed["leftOut"]
        .as_object()
        .expect("leftOut")
        .keys()
        .collect();
    assert_eq!(
        left_out.into_iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "AnswerApprovalUrl",
            "CleanupCaseUrl",
            "StartForensicsAction",
            "StartRunUrl"
        ],
        "only what the emulator lacks is left out (the bench serves the function URL)"
    );
    for (logical, resource) in deployed["resources"].as_object().expect("resources") {
        assert_eq!(resource["status"], "CREATE_COMPLETE", "{logical}");
    }

    // Functions: as the template says, each with a role of its own.
    let template = load_template("infra/aws/template.yaml");
    let binary_of = |logical: &str| {
        template["Resources"][logical]["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{logical} is a function of the template"))
            .to_owned()
    };
    let functions = deployed["functions"].as_array().expect("functions");
    assert_eq!(functions.len(), 26);
    let mut roles = BTreeSet::new();
    let mut binary_by_arn = BTreeMap::new();
    for f in functions {
        let logical = f["logicalId"].as_str().expect("logical id");
        assert_eq!(f["runtime"], "provided.al2023", "{logical}");
        assert_eq!(
            f["architectures"],
            serde_json::json!(["x86_64"]),
            "{logical}"
        );
        assert_eq!(f["handler"], "bootstrap", "{logical}");
        // All at 128 MB (the footprint bench), except check-command: it
        // hashes a memory image as it reads it back, and CPU comes with size.
        let memory = if logical == "CheckCommand" { 1024 } else { 128 };
        assert_eq!(f["memorySize"], memory, "{logical}");
        assert!(
            roles.insert(f["role"].as_str().expect("role").to_owned()),
            "{logical} shares a role"
        );
        binary_by_arn.insert(
            f["arn"].as_str().expect("arn").to_owned(),
            binary_of(logical),
        );
    }
    let dispatch = functions
        .iter()
        .find(|f| f["logicalId"] == "Dispatch")
        .and_then(|f| f["arn"].as_str())
        .expect("dispatch deployed");

    // The rules, as deployed: dispatch's five deliver to it; check-ami's and
    // sync-alarms' schedule are off until their parameters turn them on;
    // readiness runs daily from the start, and so does cleanup-case (which
    // does nothing until the policy sets cleanupAfterDays).
    let all = deployed["rules"].as_array().expect("rules");
    let (rules, others): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        all.iter().partition(|r| {
            r["logicalId"]
                .as_str()
                .is_some_and(|l| l.starts_with("Dispatch"))
        });
    assert_eq!(rules.len(), 5);
    let mut other_ids: Vec<&str> = others
        .iter()
        .filter_map(|r| r["logicalId"].as_str())
        .collect();
    other_ids.sort();
    assert_eq!(
        other_ids,
        [
            "CheckAmiImageLaunched",
            "CleanupCaseDaily",
            "ReadinessDaily",
            "SyncAlarmsEvery15Minutes"
        ],
        "{all:#?}"
    );
    let arn_of = |logical: &str| {
        functions
            .iter()
            .find(|f| f["logicalId"] == logical)
            .and_then(|f| f["arn"].as_str())
            .unwrap_or_else(|| panic!("{logical} deployed"))
    };
    for rule in &others {
        let daily = match rule["logicalId"].as_str() {
            Some("ReadinessDaily") => Some("Readiness"),
            Some("CleanupCaseDaily") => Some("CleanupCase"),
            _ => None,
        };
        if let Some(function) = daily {
            assert_eq!(rule["state"], "ENABLED", "{rule:#}");
            assert_eq!(rule["schedule"], "rate(1 day)", "{rule:#}");
            assert_eq!(
                rule["targets"],
                serde_json::json!([arn_of(function)]),
                "{rule:#}"
            );
        } else {
            assert_eq!(rule["state"], "DISABLED", "{rule:#}");
        }
    }
    let mut matcher = quamina::Quamina::<String>::new();
    for rule in rules {
        assert_eq!(
            rule["targets"],
            serde_json::json!([dispatch]),
            "{}",
            rule["logicalId"]
        );
        let logical = rule["logicalId"].as_str().expect("logical id").to_owned();
        let expected_state = if logical == "DispatchInstanceStateChange" {
            "DISABLED"
        } else {
            "ENABLED"
        };
        assert_eq!(
            rule["state"], expected_state,
            "{logical}: state changes are off unless the parameter enables them"
        );
        let stored: serde_json::Value = match &rule["pattern"] {
            serde_json::Value::String(text) => serde_json::from_str(text).expect("a JSON pattern"),
            other => other.clone(),
        };
        for expansion in system_tests::patterns::expand_or(&stored) {
            matcher
                .add_pattern(logical.clone(), &expansion.to_string())
                .expect("a valid pattern");
        }
    }
    let stack = LocalStack::start(None);
    let estate = stack.seed("deployed");
    let finding = event_for(
        "guardduty-crypto-mining-dns.json",
        &estate.victim.instance_id,
    );
    let started = matcher
        .matches_for_event(finding.to_string().as_bytes())
        .expect("the finding is JSON");
    assert_eq!(started, ["DispatchGuardDutyFinding"]);
    // As stored, the Security Hub rule still cuts posture from compromise.
    for (file, expected) in [
        ("securityhub-control-failure-imdsv2.json", vec![]),
        ("securityhub-inspector-cve.json", vec![]),
        (
            "securityhub-edr-execution.json",
            vec!["DispatchSecurityHubImported".to_owned()],
        ),
    ] {
        let event = event_for(file, &estate.victim.instance_id);
        let started = matcher
            .matches_for_event(event.to_string().as_bytes())
            .expect("the event is JSON");
        assert_eq!(started, expected, "{file}");
    }

    // The deployed state machine calls every step function, and nothing else.
    let mut definition = deployed["stateMachine"]["definition"].clone();
    let mut called = BTreeSet::new();
    lambda_arns(&definition, &mut called);
    let substituted: BTreeSet<String> = template["Resources"]["Forensics"]["Properties"]
        ["DefinitionSubstitutions"]
        .as_object()
        .expect("substitutions")
        .values()
        .filter_map(|v| {
            v["Fn::GetAtt"]
                .as_str()?
                .strip_suffix(".Arn")
                .map(str::to_owned)
        })
        .collect();
    let steps: BTreeSet<String> = functions
        .iter()
        .filter(|f| substituted.contains(f["logicalId"].as_str().unwrap_or_default()))
        .map(|f| f["arn"].as_str().expect("arn").to_owned())
        .collect();
    assert_eq!(steps.len(), 17);
    assert_eq!(
        called, steps,
        "the deployed definition calls the deployed step functions"
    );

    // Run the finding through it: each deployed ARN served by its binary.
    // deploy_stack.py kept the context paths (`$$.`) from moto's Fn::Sub.
    let mut text = definition
        .to_string()
        .replace("EC2FORENSICS-CONTEXT-OBJECT.", "$$.");
    for (arn, binary) in &binary_by_arn {
        text = text.replace(
            arn,
            &format!("arn:aws:lambda:us-east-1:123456789012:function:{binary}"),
        );
    }
    definition = serde_json::from_str(&text).expect("still JSON");
    let file = stack.file("deployed.asl.json");
    std::fs::write(&file, definition.to_string()).expect("definition written");
    let execution = stack.run_definition(&file, &finding);
    assert_eq!(execution.status, "SUCCEEDED", "{execution:#?}");
    assert_eq!(
        execution.states.last().map(String::as_str),
        Some("Contained"),
        "{:?}",
        execution.states
    );
    assert_eq!(execution.output["containment"]["contained"], true);
}
