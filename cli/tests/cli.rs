//! The `ec2-forensics` binary: what a responder types and sees.

use std::process::{Command, Output};

use serde_json::Value;
use system_tests::{repo_root, Moto};

fn cli(args: &[&str], endpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ec2-forensics"));
    command.args(args).env("AWS_REGION", "us-east-1");
    if let Some(endpoint) = endpoint {
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }
    command.output().expect("the CLI runs")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn event_path(name: &str) -> String {
    repo_root().join("events").join(name).display().to_string()
}

#[test]
fn triage_prints_the_incident_and_decision_as_one_json_object() {
    let output = cli(
        &[
            "triage",
            "--event",
            &event_path("guardduty-crypto-mining-dns.json"),
        ],
        None,
    );
    assert!(output.status.success());
    let report = stdout_json(&output);
    for field in [
        "caseId",
        "source",
        "findingType",
        "severity",
        "account",
        "region",
        "instanceIds",
        "decision",
    ] {
        assert!(report.get(field).is_some(), "{field} missing from {report}");
    }
    assert_eq!(report["source"], "GuardDuty");
    assert_eq!(report["severity"], 8.0);
    assert_eq!(report["instanceIds"][0], "i-0a1b2c3d4e5f60718");
    assert_eq!(report["decision"]["action"], "respond");
    assert!(report["decision"]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
}

#[test]
fn triage_applies_a_policy_file() {
    let dir = std::env::temp_dir().join(format!("ec2-forensics-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"minSeverity": 9}"#).unwrap();
    let output = cli(
        &[
            "triage",
            "--event",
            &event_path("guardduty-crypto-mining-dns.json"),
            "--policy",
            &policy.display().to_string(),
        ],
        None,
    );
    assert!(output.status.success());
    assert_eq!(stdout_json(&output)["decision"]["action"], "observe");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_is_one_line_on_stderr_and_a_non_zero_exit() {
    let dir = std::env::temp_dir().join(format!("ec2-forensics-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_json = dir.join("not.json");
    std::fs::write(&not_json, "{ truncated").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (not_json.display().to_string(), "not JSON"),
        (
            dir.join("missing.json").display().to_string(),
            "cannot read",
        ),
        (
            event_path("guardduty-access-key-not-ec2.json"),
            "no EC2 instance",
        ),
    ];
    for (path, mentions) in cases {
        let output = cli(&["triage", "--event", &path], None);
        assert!(!output.status.success(), "{path}");
        assert!(output.stdout.is_empty(), "nothing on stdout for {path}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(mentions),
            "{stderr} should mention {mentions}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn contain_then_release_from_the_command_line() {
    let moto = Moto::start();
    let estate = moto.seed("cli");
    let id = estate.victim.instance_id.as_str();
    let endpoint = Some(moto.endpoint.as_str());

    let dry = cli(&["contain", "--instance", id, "--dry-run"], endpoint);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry_case = stdout_json(&dry);
    assert_eq!(dry_case["decision"]["dryRun"], true);
    assert!(dry_case["protection"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["outcome"] == "wouldChange"));

    let contained = cli(
        &[
            "contain",
            "--instance",
            id,
            "--reason",
            "beaconing to a known C2",
        ],
        endpoint,
    );
    assert!(
        contained.status.success(),
        "{}",
        String::from_utf8_lossy(&contained.stderr)
    );
    let case = stdout_json(&contained);
    assert_eq!(case["isolation"][0]["complete"], true);
    assert_eq!(case["incident"]["reason"], "beaconing to a known C2");
    assert_eq!(
        case["protection"][0]["original"]["terminationProtection"], false,
        "the dry run changed nothing, so the real run saw the true originals"
    );

    let file = std::env::temp_dir().join(format!("ec2-forensics-case-{}.json", std::process::id()));
    std::fs::write(&file, &contained.stdout).unwrap();
    let released = cli(
        &["release", "--case", &file.display().to_string()],
        endpoint,
    );
    assert!(
        released.status.success(),
        "{}",
        String::from_utf8_lossy(&released.stderr)
    );
    let released = stdout_json(&released);
    assert_eq!(released["release"][0]["complete"], true);
    std::fs::remove_file(&file).ok();

    let unknown = cli(&["contain", "--instance", "i-0000000000000dead"], endpoint);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("InstanceNotFound"));
}
