//! The approval gate end to end on the local stack: findings delivered to the
//! real dispatch Lambda start the real state machine on the local Step
//! Functions API; the gate publishes its request to SNS and waits; the real
//! CLI answers it. An approved case is contained with the approver in the
//! chain of custody; a denied one ends without touching its instance; a
//! duplicate delivery starts no second case.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use playbook::case::custody::verify_chain;
use playbook::case::ApprovalOutcome;
use playbook::policy::{Policy, TagRule};
use serde_json::Value;
use system_tests::{guardduty_finding, termination_protected, LocalStack};

fn cli(stack: &LocalStack, args: &[&str]) -> Output {
    cli_as(stack, &BTreeMap::new(), args)
}

/// The CLI with `who`'s credentials (an approver's) over the stack's environment.
fn cli_as(stack: &LocalStack, who: &BTreeMap<String, String>, args: &[&str]) -> Output {
    system_tests::cli_as(env!("CARGO_BIN_EXE_ec2-forensics"), stack, who, args)
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr:\n{}\nstdout:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("the CLI prints JSON")
}

/// `ec2-forensics status` until `until` holds of it (or two minutes pass).
fn status_until(
    stack: &LocalStack,
    case_id: &str,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let output = cli(stack, &["status", "--case-id", case_id]);
        if output.status.success() {
            let status: Value = serde_json::from_slice(&output.stdout).expect("status is JSON");
            if until(&status) {
                return status;
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!("case {case_id}: {what} did not happen; last status {status:#}");
            }
        } else if started.elapsed() > Duration::from_secs(120) {
            panic!("status failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn waiting(status: &Value) -> bool {
    status["awaitingApproval"] == true
}

fn finished(status: &Value) -> bool {
    status["execution"]["status"]
        .as_str()
        .is_some_and(|s| s != "RUNNING")
}

fn step_names(status: &Value) -> Vec<String> {
    status["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_case_that_needs_approval_waits_for_a_person_and_only_an_approval_touches_the_instance() {
    // The seeded victims are tagged Environment=staging: this policy sends them to a person.
    let policy = Policy {
        approval_tags: vec![TagRule {
            key: "Environment".into(),
            values: vec!["staging".into()],
        }],
        ..Policy::default()
    };
    let stack = LocalStack::start(Some(&policy));
    let approved = stack.seed("approved");
    let denied = stack.seed("denied");
    let ec2 = stack.clients().await.ec2;

    // A finding reaches dispatch; a second delivery of it starts nothing.
    let event = guardduty_finding(&approved.victim.instance_id, "approvalcase0001");
    let first = stack.invoke("dispatch", &event);
    assert_eq!(first["cases"][0]["status"], "started", "{first:#}");
    let case_id = first["cases"][0]["caseId"]
        .as_str()
        .expect("case id")
        .to_owned();
    let mut again = event.clone();
    again["id"] = "a-second-eventbridge-delivery".into();
    let second = stack.invoke("dispatch", &again);
    assert_eq!(second["cases"][0]["caseId"], case_id.as_str());
    assert_eq!(second["cases"][0]["status"], "duplicate", "{second:#}");

    // The gate waits, and a person was told what was found and how to answer.
    let status = status_until(&stack, &case_id, "the approval request", waiting);
    assert_eq!(status["execution"]["status"], "RUNNING");
    // EventBridge delivering the very same event again (identical input):
    // Step Functions answers with the running execution, which dispatch
    // reports as a duplicate, not as a start.
    let identical = stack.invoke("dispatch", &event);
    assert_eq!(
        identical["cases"][0]["status"], "duplicate",
        "{identical:#}"
    );
    assert_eq!(
        identical["cases"][0]["executionArn"],
        first["cases"][0]["executionArn"]
    );
    assert_eq!(
        step_names(&status).last().map(String::as_str),
        Some("AwaitApproval")
    );
    let messages = stack.approval_messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(messages[0].contains("CryptoCurrency:EC2/BitcoinTool.B!DNS"));
    assert!(messages[0].contains(&format!("ec2-forensics approve --case-id {case_id}")));
    assert!(messages[0].contains(&format!("ec2-forensics deny --case-id {case_id}")));
    assert!(
        !termination_protected(&ec2, &approved.victim.instance_id).await,
        "nothing touched while waiting"
    );

    let only_one = cli(&stack, &["status", "--case-id", &format!("{case_id}-2")]);
    assert!(
        !only_one.status.success(),
        "the duplicate started no second execution"
    );

    // While the gate waits, a writer of the evidence bucket swaps the stored
    // Case: the other seeded instance, a dry run. The execution's own Case
    // decides what happens; the swapped one is never adopted.
    let insider = playbook::Responder::assemble(
        stack.clients().await,
        "us-east-1".into(),
        playbook::aws::Identity {
            actor: "arn:aws:iam::123456789012:user/insider".into(),
            account: "123456789012".into(),
        },
        policy.clone(),
    )
    .expect("a responder for the forgery");
    let mut forged =
        playbook::steps::triage::open_case(&insider, &event, None).expect("a plausible Case");
    forged.incident.instance_ids = vec![denied.victim.instance_id.clone()];
    forged.decision.dry_run = true;
    stack
        .clients()
        .await
        .s3
        .put_object()
        .bucket(stack.forensic_env()["EVIDENCE_BUCKET"].clone())
        .key(format!("cases/{case_id}/case.json"))
        .body(serde_json::to_vec(&forged).unwrap().into())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("the bucket writer's version");

    // Only an identity allowed lambda:InvokeFunctionUrl on the approval
    // function can answer, and the approver is who AWS says signed.
    let outsider = stack.approver("not-an-approver", false);
    let refused = cli_as(&stack, &outsider, &["approve", "--case-id", &case_id]);
    assert_eq!(refused.status.code(), Some(2), "an outsider cannot approve");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("AccessDenied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut forged = stack.approver("soc-lead", true);
    forged.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        "not-the-secret-of-that-key".into(),
    );
    let unsigned = cli_as(&stack, &forged, &["approve", "--case-id", &case_id]);
    assert_eq!(
        unsigned.status.code(),
        Some(2),
        "a bad signature is refused"
    );
    let status = status_until(&stack, &case_id, "the gate still waiting", waiting);
    assert_eq!(status["execution"]["status"], "RUNNING");

    // Approved: the playbook runs to the end, the approver in the chain.
    let soc = stack.approver("soc-on-call", true);
    let answered = json_of(&cli_as(
        &stack,
        &soc,
        &[
            "approve",
            "--case-id",
            &case_id,
            "--reason",
            "SOC lead on call",
        ],
    ));
    assert_eq!(answered["outcome"], "approved");
    let approver = answered["by"].as_str().expect("approver").to_owned();
    assert_eq!(
        approver, soc["APPROVER_ARN"],
        "the identity AWS authenticated"
    );
    let status = status_until(&stack, &case_id, "the end of the execution", finished);
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    let steps = step_names(&status);
    for state in [
        "RecordApproval",
        "CaptureAndProtect",
        "IsolateNetwork",
        "SealEvidence",
        "Contained",
    ] {
        assert!(steps.iter().any(|s| s == state), "{state} ran: {steps:?}");
    }
    assert_eq!(status["contained"], true);
    assert!(!status["volumes"].as_array().expect("volumes").is_empty());
    assert!(termination_protected(&ec2, &approved.victim.instance_id).await);
    assert!(
        !termination_protected(&ec2, &denied.victim.instance_id).await,
        "the instance named by the swapped Case was not touched"
    );

    let case = stack.stored_case(&case_id).await;
    verify_chain(&case.custody).expect("the stored chain holds");
    let approval = case.approval.as_ref().expect("approval section");
    let answer = approval.answer.as_ref().expect("answer");
    assert_eq!(answer.outcome, ApprovalOutcome::Approved);
    assert_eq!(answer.by.as_deref(), Some(approver.as_str()));
    assert!(
        !case.decision.dry_run,
        "the swapped Case's dry run was not adopted"
    );
    let steps: Vec<&str> = case.custody.iter().map(|e| e.step.as_str()).collect();
    let request = steps
        .iter()
        .position(|s| *s == "request-approval")
        .expect("request recorded");
    let record = steps
        .iter()
        .position(|s| *s == "record-approval")
        .expect("answer recorded");
    let isolate = steps
        .iter()
        .position(|s| *s == "isolate-network")
        .expect("isolation recorded");
    assert!(request < record && record < isolate, "{steps:?}");
    assert_eq!(case.custody[record].actor, approver, "the approver acted");

    // The signed report, from the evidence store: what happened, the
    // approval, the memory image, and every hash the manifest signs.
    let report = cli(&stack, &["report", "--case-id", &case_id]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report = String::from_utf8(report.stdout).expect("Markdown");
    for part in [
        "## What happened",
        "## Timeline (UTC)",
        "## What was captured",
        "## What failed, and why",
        "## Investigator's notes",
        "Approved by",
        "SOC lead on call",
        "capture-memory.sh",
    ] {
        assert!(report.contains(part), "{part} in the report:\n{report}");
    }
    let verified = cli(&stack, &["verify", "--case-id", &case_id]);
    assert!(
        verified.status.success(),
        "verify confirms every hash, the report's among them: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("report.md"));

    let late = cli_as(&stack, &soc, &["approve", "--case-id", &case_id]);
    assert_eq!(
        late.status.code(),
        Some(2),
        "an answered gate cannot be answered again"
    );
    assert!(String::from_utf8_lossy(&late.stderr).contains("NotAwaitingApproval"));

    // Denied: the execution ends and the instance is as it was.
    let groups_before = instance_groups(&ec2, &denied.victim.instance_id).await;
    let dispatched = stack.invoke(
        "dispatch",
        &guardduty_finding(&denied.victim.instance_id, "approvalcase0002"),
    );
    let denied_case = dispatched["cases"][0]["caseId"]
        .as_str()
        .expect("case id")
        .to_owned();
    status_until(&stack, &denied_case, "the approval request", waiting);
    json_of(&cli_as(
        &stack,
        &soc,
        &[
            "deny",
            "--case-id",
            &denied_case,
            "--reason",
            "change freeze",
        ],
    ));
    let status = status_until(&stack, &denied_case, "the end of the execution", finished);
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    assert_eq!(
        step_names(&status).last().map(String::as_str),
        Some("NotApproved")
    );
    // Security Hub hears it was not approved (the emulator holds no such
    // finding: that is recorded, and the case ends all the same).
    let names = step_names(&status);
    assert_eq!(
        names[names.len() - 2..],
        ["FindingNotApproved".to_owned(), "NotApproved".to_owned()]
    );
    let told: Vec<&str> = status["securityHub"]
        .as_array()
        .expect("securityHub")
        .iter()
        .filter_map(|u| u["moment"].as_str())
        .collect();
    assert_eq!(told, vec!["opened", "notApproved"], "{status:#}");
    assert!(!termination_protected(&ec2, &denied.victim.instance_id).await);
    assert_eq!(
        instance_groups(&ec2, &denied.victim.instance_id).await,
        groups_before
    );
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name("tag:ec2-forensics:case-id")
                .values(&denied_case)
                .build(),
        )
        .send()
        .await
        .expect("DescribeSnapshots");
    assert!(
        snapshots.snapshots().is_empty(),
        "no snapshot of a denied case"
    );
    let case = stack.stored_case(&denied_case).await;
    verify_chain(&case.custody).expect("the stored chain holds");
    let answer = case
        .approval
        .and_then(|a| a.answer)
        .expect("the denial is recorded");
    assert_eq!(answer.outcome, ApprovalOutcome::Denied);
    assert_eq!(answer.reason.as_deref(), Some("change freeze"));
    // The denial is the last record: a case that waited held no lease.
    assert_eq!(
        case.custody.last().map(|e| e.step.as_str()),
        Some("record-approval")
    );

    // A person who decides otherwise starts the playbook by hand: a manual
    // request is that person's decision, so it is not gated; the same
    // instance and reason again are the same case.
    let reason = "miner confirmed by the host team";
    let started = json_of(&cli(
        &stack,
        &[
            "start",
            "--instance",
            &denied.victim.instance_id,
            "--reason",
            reason,
        ],
    ));
    assert_eq!(started["cases"][0]["status"], "started", "{started:#}");
    let manual_case = started["cases"][0]["caseId"]
        .as_str()
        .expect("case id")
        .to_owned();
    assert_ne!(manual_case, denied_case);
    let again = json_of(&cli(
        &stack,
        &[
            "start",
            "--instance",
            &denied.victim.instance_id,
            "--reason",
            reason,
        ],
    ));
    assert_eq!(again["cases"][0]["caseId"], manual_case.as_str());
    assert_eq!(again["cases"][0]["status"], "duplicate");
    let status = status_until(&stack, &manual_case, "the end of the execution", finished);
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    assert_eq!(
        step_names(&status).last().map(String::as_str),
        Some("Contained")
    );
    assert!(status["approval"].is_null(), "no gate for a manual start");
}

/// A launch from an image the policy does not approve, through the real
/// check-ami Lambda: a case opens (source ApprovedImagePolicy) and, the
/// policy's approvedImages.onUnapproved being notify by default, waits for a
/// person, who is told the instance, the image and why; refused, nothing
/// touched the instance.
#[tokio::test]
async fn an_unapproved_launch_opens_a_case_that_asks_a_person() {
    let policy = Policy {
        approved_images: playbook::case::policy::ApprovedImages {
            owners: vec!["999988887777".into()],
            ..Default::default()
        },
        ..Policy::default()
    };
    let stack = LocalStack::start(Some(&policy));
    let estate = stack.seed("launch");
    let ec2 = stack.clients().await.ec2;
    let victim = estate.victim.instance_id.clone();
    let described = ec2
        .describe_instances()
        .instance_ids(&victim)
        .send()
        .await
        .expect("DescribeInstances");
    let image = described.reservations()[0].instances()[0]
        .image_id()
        .expect("an image")
        .to_owned();
    let mut event = system_tests::event_for("cloudtrail-run-instances.json", &victim);
    event["detail"]["responseElements"]["instancesSet"]["items"][0]["imageId"] =
        image.as_str().into();
    let report = stack.invoke("check-ami", &event);
    assert_eq!(report["instances"][0]["approved"], false, "{report:#}");
    assert_eq!(report["case"]["status"], "started", "{report:#}");
    let case_id = report["case"]["caseId"]
        .as_str()
        .expect("case id")
        .to_owned();
    assert!(case_id.starts_with("ami-"), "{case_id}");

    let status = status_until(&stack, &case_id, "the approval request", waiting);
    assert!(
        status["decision"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("onUnapproved is notify")),
        "{status:#}"
    );
    let messages = stack.approval_messages();
    let message = messages
        .iter()
        .find(|m| m.contains(&case_id))
        .expect("a person was asked");
    assert!(
        message.contains("UnapprovedImage/RunInstances"),
        "{message}"
    );
    assert!(message.contains(&image), "{message}");
    assert!(message.contains("is not approved"), "{message}");
    // EventBridge delivers the same call again: no second case.
    let again = stack.invoke("check-ami", &event);
    assert_eq!(again["case"]["caseId"], case_id.as_str(), "{again:#}");
    assert_eq!(again["case"]["attempt"], 1, "{again:#}");

    let soc = stack.approver("soc-on-call", true);
    json_of(&cli_as(
        &stack,
        &soc,
        &[
            "deny",
            "--case-id",
            &case_id,
            "--reason",
            "a sanctioned test image",
        ],
    ));
    let status = status_until(&stack, &case_id, "the end of the execution", finished);
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    assert_eq!(
        step_names(&status).last().map(String::as_str),
        Some("NotApproved")
    );
    assert!(!termination_protected(&ec2, &victim).await);
}

async fn instance_groups(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Vec<String> {
    let out = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .expect("DescribeInstances");
    let mut groups: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.network_interfaces())
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    groups.sort();
    groups
}
