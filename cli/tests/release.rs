//! Release after a false positive, through the deployed stack, on the local
//! stack: a GuardDuty finding reaches the real dispatch Lambda and the real
//! forensics state machine contains the instance; then `ec2-forensics
//! release --case-id` plans the release from the case's own record (a dry
//! run changes nothing), starts a `release-cases` run through the start
//! function, another person approves it, and release-instance puts back
//! everything containment changed, read back, while the session-revocation
//! policy stays; the case is sealed again, `verify` holds and shows the
//! release, and `status` shows the case released.
//!
//! Attacks tried: a release by someone who may not call the start function
//! (refused by AWS); the requester approving their own release (refused, the
//! run still waits); a second release of a released case (refused in the
//! plan); a release while another open case holds the instance (the case is
//! not released, nothing changes).

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use playbook::steps::lease::{lease_key, Leases};
use serde_json::Value;
use system_tests::observe::observe;
use system_tests::{guardduty_finding, LocalStack, ACCOUNT, REGION};

fn cli_as(stack: &LocalStack, who: &BTreeMap<String, String>, args: &[&str]) -> Output {
    system_tests::cli_as(env!("CARGO_BIN_EXE_ec2-forensics"), stack, who, args)
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the CLI printed no JSON ({e}); exit {:?}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `args` (a status command) until `until` holds of its JSON, or four minutes pass.
fn until(stack: &LocalStack, args: &[&str], what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let output = cli_as(stack, &BTreeMap::new(), args);
        if output.status.success() || !output.stdout.is_empty() {
            let status = json_of(&output);
            if until(&status) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "{what} did not happen; last status {status:#}"
            );
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "{what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn ended(status: &Value) -> bool {
    status["status"].as_str().is_some_and(|s| s != "RUNNING")
}

#[tokio::test]
async fn a_contained_case_is_released_through_the_deployed_stack_exactly_as_it_was() {
    let stack = LocalStack::start(None);
    let estate = stack.seed("falsepositive");
    let clients = stack.clients().await;
    let victim = estate.victim.instance_id.clone();
    let role = estate.victim.role_name.clone();
    let before = observe(&clients, &victim, Some(&role)).await;
    let none = BTreeMap::new();

    // Security Hub holds the GuardDuty finding, as GuardDuty sends it there.
    let finding_arn = on_a_big_stack({
        let (clients, victim) = (clients.clone(), victim.clone());
        move || async move { import_guardduty_finding(&clients, &victim, "falsepositive01").await }
    });

    // The deployed stack contains the instance on a finding.
    let event = guardduty_finding(&victim, "falsepositive01");
    assert_eq!(event["detail"]["arn"], finding_arn.as_str());
    let dispatched = stack.invoke("dispatch", &event);
    let case_id = dispatched["cases"][0]["caseId"]
        .as_str()
        .expect("a case")
        .to_owned();
    let status = until(
        &stack,
        &["status", "--case-id", &case_id],
        "the case's end",
        |s| {
            s["execution"]["status"]
                .as_str()
                .is_some_and(|s| s != "RUNNING")
        },
    );
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    assert_eq!(status["contained"], true, "{status:#}");
    // A case that responds at once tells Security Hub once containment
    // ended: containment never waits for it.
    let told: Vec<(&str, bool)> = status["securityHub"]
        .as_array()
        .expect("status shows what Security Hub was told")
        .iter()
        .map(|u| {
            (
                u["moment"].as_str().unwrap_or_default(),
                u["accepted"] == true,
            )
        })
        .collect();
    assert_eq!(told, vec![("containmentEnded", true)], "{status:#}");
    let contained = observe(&clients, &victim, Some(&role)).await;
    assert_ne!(contained.eni_groups, before.eni_groups, "isolated");

    // Security Hub heard: NOTIFIED (it was NEW; never resolved), the case
    // named, where it stands, and the note says it is contained.
    let finding = on_a_big_stack({
        let (clients, arn) = (clients.clone(), finding_arn.clone());
        move || async move { security_hub_finding(&clients, &arn).await }
    });
    assert_eq!(finding["Workflow"]["Status"], "NOTIFIED", "{finding:#}");
    assert_eq!(
        finding["UserDefinedFields"]["ec2ForensicsCaseId"],
        case_id.as_str()
    );
    assert_eq!(finding["Note"]["UpdatedBy"], "ec2-forensics");
    let note = finding["Note"]["Text"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("ec2-forensics case {case_id}: contained: ")),
        "{note}"
    );
    assert!(
        note.contains(&format!("ec2-forensics status --case-id {case_id}")),
        "{note}"
    );
    assert!(
        contained.role_policies.len() > before.role_policies.len(),
        "the session-revocation policy is on the role"
    );

    let release = |reason: &str| {
        vec![
            "release".to_owned(),
            "--case-id".to_owned(),
            case_id.clone(),
            "--reason".to_owned(),
            reason.to_owned(),
        ]
    };

    // A dry run: the plan from the case's own record; nothing starts or changes.
    let mut dry = release("false positive: a load test");
    dry.push("--dry-run".into());
    let planned = cli_as(&stack, &none, &args(&dry));
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    let plan = json_of(&planned);
    let case = &plan["cases"][0];
    assert_eq!(case["caseId"], case_id.as_str(), "{plan:#}");
    assert_eq!(
        case["executionArn"], status["execution"]["arn"],
        "the Case is pinned to the execution it was read from"
    );
    assert_eq!(case["caseSha256"].as_str().map(str::len), Some(64));
    let restores: Vec<&str> = case["restores"]
        .as_array()
        .expect("restores")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for eni in &estate.victim.network_interface_ids {
        assert!(
            restores.iter().any(|r| r.contains(eni.as_str())),
            "{eni} in {restores:#?}"
        );
    }
    assert!(
        case["keeps"].as_array().expect("keeps").iter().any(|k| k
            .as_str()
            .unwrap_or_default()
            .contains("session-revocation")),
        "{plan:#}"
    );
    assert_eq!(
        observe(&clients, &victim, Some(&role)).await,
        contained,
        "a dry run changes nothing"
    );

    // Someone who may not call the start function releases nothing.
    let stranger = stack.approver("not-a-requester", false);
    let refused = cli_as(&stack, &stranger, &args(&release("mine")));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.trim_end().ends_with("(AccessDenied)"), "{said}");

    let responder = playbook::Responder {
        clients: clients.clone(),
        region: REGION.into(),
        identity: playbook::aws::Identity {
            actor: format!("arn:aws:iam::{ACCOUNT}:user/test"),
            account: ACCOUNT.into(),
        },
        allowed_accounts: vec![ACCOUNT.into()],
        policy: playbook::policy::Policy::default(),
        state_machine_arn: None,
        bulk_state_machine_arn: None,
        config: playbook::aws::Config {
            lease_table: Some(stack.forensic_env()["LEASE_TABLE"].clone()),
            ..playbook::aws::Config::default()
        },
    };
    let leases = Leases::of(&responder).expect("the lease table");
    let key = lease_key(ACCOUNT, REGION, &victim);
    assert!(
        leases.holder(&key).await.expect("read").is_some(),
        "the case holds its instance"
    );

    // The analyst asks (and may also approve others' runs, not this one).
    let analyst = stack.person("analyst-release", &["start-run", "answer-approval"]);
    let soc = stack.approver("soc-release", true);
    let released_run = |reason: &str| {
        let started = cli_as(&stack, &analyst, &args(&release(reason)));
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let started = json_of(&started);
        assert_eq!(started["requestedBy"], analyst["APPROVER_ARN"]);
        let run = started["bulkId"].as_str().expect("a run").to_owned();
        let waiting = until(
            &stack,
            &["bulk-status", "--bulk-id", &run],
            "the approval wait",
            |s| s["awaitingApproval"] == true,
        );
        assert_eq!(waiting["plan"]["itemCount"], 1, "{waiting:#}");
        let own = cli_as(&stack, &analyst, &["approve", "--case-id", &run]);
        let said = String::from_utf8_lossy(&own.stderr);
        assert_eq!(own.status.code(), Some(2), "{said}");
        assert!(said.trim_end().ends_with("(SelfApproval)"), "{said}");
        let approved = cli_as(&stack, &soc, &["approve", "--case-id", &run]);
        assert!(
            approved.status.success(),
            "{}",
            String::from_utf8_lossy(&approved.stderr)
        );
        let done = until(
            &stack,
            &["bulk-status", "--bulk-id", &run],
            "the run's end",
            ended,
        );
        (run, done)
    };

    // Another open case holds the instance now: releasing it would
    // un-isolate what that case still contains. The case is not released.
    assert!(leases.free(&key, &case_id).await.expect("freed"));
    leases
        .take(&key, "man-other-case", None, 1_800_000_000)
        .await
        .expect("another case holds it");
    let (_, held) = released_run("false positive");
    assert_eq!(held["status"], "FAILED", "{held:#}");
    assert_eq!(
        observe(&clients, &victim, Some(&role)).await,
        contained,
        "nothing changed while another case holds the instance"
    );
    assert!(leases.free(&key, "man-other-case").await.expect("freed"));

    let (run, done) = released_run("false positive: a load test");
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");

    // Everything containment changed is back, read from EC2 and IAM; the
    // session-revocation policy stays on the role.
    let after = observe(&clients, &victim, Some(&role)).await;
    assert_eq!(
        crate_view(&after),
        crate_view(&before),
        "the estate as it was before containment"
    );
    assert_eq!(
        after.role_policies, contained.role_policies,
        "revocation kept"
    );
    assert!(
        leases.holder(&key).await.expect("read").is_none(),
        "no case holds the instance any more"
    );

    // status: released, not contained, with who asked and who approved.
    let status = until(
        &stack,
        &["status", "--case-id", &case_id],
        "released",
        |s| s["released"].is_object(),
    );
    assert_eq!(status["contained"], false, "{status:#}");
    assert_eq!(status["released"]["bulkId"], run.as_str());
    assert_eq!(status["released"]["requestedBy"], analyst["APPROVER_ARN"]);
    assert_eq!(status["released"]["approvedBy"], soc["APPROVER_ARN"]);

    // Sealed again: verify holds over the Case with the release in its custody.
    let verified = cli_as(&stack, &none, &["verify", "--case-id", &case_id]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let sealed = stack.stored_case(&case_id).await;
    let steps: Vec<&str> = sealed.custody.iter().map(|e| e.step.as_str()).collect();
    assert!(steps.contains(&"release-cases"), "{steps:?}");
    assert!(steps.contains(&"release-instance"), "{steps:?}");
    assert!(
        sealed.release.iter().all(|r| r.complete),
        "{:?}",
        sealed.release
    );

    // Security Hub heard each moment, in order, and took every update; the
    // release's is in the Case sealed again. The finding is still NOTIFIED:
    // closing it is the analyst's decision.
    let moments: Vec<_> = sealed.finding_updates.iter().map(|u| u.moment).collect();
    use playbook::case::FindingMoment::{ContainmentEnded, Released};
    assert_eq!(moments.first(), Some(&ContainmentEnded), "{moments:?}");
    assert_eq!(moments.last(), Some(&Released), "{moments:?}");
    for update in &sealed.finding_updates {
        assert!(update.accepted(), "{update:?}");
    }
    assert_eq!(
        sealed.finding_updates[0].notified.len(),
        1,
        "NOTIFIED from NEW"
    );
    assert!(
        sealed
            .finding_updates
            .iter()
            .skip(1)
            .all(|u| u.notified.is_empty()),
        "only the first update takes the finding on"
    );
    let finding = on_a_big_stack({
        let (clients, arn) = (clients.clone(), finding_arn.clone());
        move || async move { security_hub_finding(&clients, &arn).await }
    });
    assert_eq!(finding["Workflow"]["Status"], "NOTIFIED", "{finding:#}");
    let note = finding["Note"]["Text"].as_str().unwrap_or_default();
    assert!(
        note.contains("released after review: 1 of 1 instances restored"),
        "{note}"
    );

    // A second release of the released case: refused in the plan.
    let again = cli_as(&stack, &analyst, &args(&release("again")));
    assert_eq!(
        again.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let plan = json_of(&again);
    assert!(
        plan["skipped"][0]["why"]
            .as_str()
            .unwrap_or_default()
            .starts_with("released already"),
        "{plan:#}"
    );
}

/// Runs `call` on a thread of its own with a 64 MiB stack: the SDK's
/// (de)serialisers of a whole ASFF finding, unoptimised in a test build,
/// overflow a test thread's 2 MiB.
fn on_a_big_stack<F, Fut, T>(call: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(call())
        })
        .expect("a thread")
        .join()
        .expect("the Security Hub call")
}

/// Imports the GuardDuty finding `id` about `instance` into Security Hub,
/// as GuardDuty's integration does (Id: the finding's ARN); returns the ARN.
async fn import_guardduty_finding(
    clients: &playbook::aws::Clients,
    instance: &str,
    id: &str,
) -> String {
    use aws_sdk_securityhub::types::{
        AwsSecurityFinding, Resource, Severity, Workflow, WorkflowStatus,
    };
    let arn = format!("arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/d1/finding/{id}");
    let now = "2026-11-30T00:00:00.000Z";
    let finding = AwsSecurityFinding::builder()
        .schema_version("2018-10-08")
        .id(&arn)
        .product_arn(format!(
            "arn:aws:securityhub:{REGION}::product/aws/guardduty"
        ))
        .generator_id("arn:aws:guardduty:detector/d1")
        .aws_account_id(ACCOUNT)
        .types("TTPs/Command and Control/CryptoCurrency:EC2-BitcoinTool.B!DNS")
        .created_at(now)
        .updated_at(now)
        .severity(
            Severity::builder()
                .label(aws_sdk_securityhub::types::SeverityLabel::High)
                .build(),
        )
        .title("CryptoCurrency:EC2/BitcoinTool.B!DNS")
        .description("a test finding")
        .resources(
            Resource::builder()
                .r#type("AwsEc2Instance")
                .id(format!(
                    "arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance}"
                ))
                .build(),
        )
        .workflow(Workflow::builder().status(WorkflowStatus::New).build())
        .build();
    let imported = clients
        .securityhub
        .batch_import_findings()
        .findings(finding)
        .send()
        .await
        .expect("BatchImportFindings");
    assert_eq!(imported.failed_count(), Some(0), "{imported:?}");
    arn
}

/// The Security Hub finding `id` as GetFindings shows it (JSON, ASFF names).
async fn security_hub_finding(clients: &playbook::aws::Clients, id: &str) -> Value {
    let answer = clients
        .securityhub
        .get_findings()
        .send()
        .await
        .expect("GetFindings");
    let finding = answer
        .findings()
        .iter()
        .find(|f| f.id() == Some(id))
        .unwrap_or_else(|| panic!("no finding {id}"));
    let field = |s: Option<&str>| s.map_or(Value::Null, Value::from);
    serde_json::json!({
        "Workflow": {"Status": field(finding.workflow().and_then(|w| w.status()).map(|s| s.as_str()))},
        "Note": {
            "Text": field(finding.note().and_then(|n| n.text())),
            "UpdatedBy": field(finding.note().and_then(|n| n.updated_by())),
        },
        "UserDefinedFields": finding.user_defined_fields().cloned().unwrap_or_default(),
    })
}

/// What a release restores, without the revocation policy it keeps on purpose.
fn crate_view(o: &system_tests::observe::Observed) -> system_tests::observe::Observed {
    system_tests::observe::Observed {
        role_policies: Vec::new(),
        ..o.clone()
    }
}
