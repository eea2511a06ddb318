//! Least privilege, proven offline (`tests/iam`, README "Least privilege,
//! proven offline"): a case run on the local stack in multi-account mode,
//! every workload step through the workload role, every request it made
//! recorded, then simulated against the templates as deployed. Every request
//! must be allowed and every request of the denied table denied.
//!
//! `make test` runs the same proof once more after every test, on the
//! requests of all of them (this case's included): nextest runs tests in
//! parallel and in no set order, so no test can wait for the others'.

use std::io::Write;
use std::process::Command;

use serde_json::Value;
use system_tests::{event_for, repo_root, LocalStack};

/// The emulator's one account stands for the workload account too.
const WORKLOAD_ACCOUNT: &str = "123456789012";

#[tokio::test]
async fn a_multi_account_case_makes_only_requests_the_deployed_policies_allow() {
    let record = std::env::temp_dir().join(format!(
        "ec2-forensics-iam-proof-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&record);
    let everyone = std::env::var_os("EC2_FORENSICS_BENCH_RECORD");
    // nextest runs each test in a process of its own: these reach only this
    // test's stack (stack.sh hands them to the moto bench and the Lambdas).
    std::env::set_var("EC2_FORENSICS_BENCH_RECORD", &record);
    std::env::set_var("WORKLOAD_ROLE_NAME", "ec2-forensics-workload");
    std::env::set_var("ALLOWED_ACCOUNTS", WORKLOAD_ACCOUNT);
    let stack = LocalStack::start(None);
    let estate = stack.seed("iam");
    let run = stack.run(&event_for(
        "guardduty-crypto-mining-dns.json",
        &estate.victim.instance_id,
    ));
    assert_eq!(run.status, "SUCCEEDED", "{:?}: {:?}", run.error, run.cause);
    // The state machine never releases: a person does, after a false positive.
    let released = stack.invoke("release-instance", &run.output);
    assert!(
        released.get("errorType").is_none(),
        "release-instance: {released:#}"
    );
    drop(stack);

    let recorded = std::fs::read(&record).expect("the bench recorded the requests");
    if let Some(everyone) = everyone {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(everyone)
            .and_then(|mut f| f.write_all(&recorded))
            .expect("this case's requests join make test's recording");
    }

    let summary = record.with_extension("proof.json");
    let out = Command::new(repo_root().join("infra/local/runner/node_modules/.bin/node"))
        .arg(repo_root().join("tests/iam/prove.mjs"))
        .arg("--record")
        .arg(&record)
        .arg("--json")
        .arg(&summary)
        .output()
        .expect("node runs tests/iam/prove.mjs (make setup installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("the proof wrote its summary"))
            .expect("the summary is JSON");
    let through_the_workload_role = summary["pairs"]
        .as_object()
        .expect("pairs")
        .keys()
        .filter(|k| k.contains("(workload role)"))
        .count();
    assert!(
        through_the_workload_role > 10,
        "the workload steps were recorded as the workload role's requests: {report}"
    );
    let _ = std::fs::remove_file(&record);
}
