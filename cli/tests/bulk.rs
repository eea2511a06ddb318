//! Bulk on the local stack: the real CLI plans a `quarantine-subnets` run
//! (nothing changes), starts the real bulk state machine, a person approves
//! it, and its Distributed Map cuts each subnet (one ACL association each),
//! read back; a release puts back exactly the ACL each subnet had, and
//! leaves alone a subnet someone moved since the cut.
//!
//! Attacks tried: a subnet cut that would also cut an instance outside the
//! selection (refused without --whole-subnet); a start by someone who may
//! not call the start function (refused by AWS); a run started directly on
//! the state machine in an approver's name (no start function MAC: the plan
//! step refuses it, nothing changes); the requester approving their own run,
//! and someone who is no approver approving it (both refused, the run still
//! waits); a newer items list written to the
//! evidence bucket while the run waits for its approval (the map reads the
//! version the plan wrote, so the forged subnet is never cut).

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use playbook::aws::Clients;
use playbook::case::bulk::{BulkAction, BulkRequest, Selection};
use serde_json::{json, Value};
use system_tests::{launch_into, subnet_acl, vpc_with_subnets, LocalStack};

fn cli_as(stack: &LocalStack, who: &BTreeMap<String, String>, args: &[&str]) -> Output {
    system_tests::cli_as(env!("CARGO_BIN_EXE_ec2-forensics"), stack, who, args)
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the CLI printed no JSON ({e}); exit {:?}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `ec2-forensics bulk-status` until `until` holds (or three minutes pass).
fn status_until(
    stack: &LocalStack,
    bulk_id: &str,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let output = cli_as(
            stack,
            &BTreeMap::new(),
            &["bulk-status", "--bulk-id", bulk_id],
        );
        if !output.stdout.is_empty() {
            let status = stdout_json(&output);
            if until(&status) {
                return status;
            }
            if started.elapsed() > Duration::from_secs(180) {
                panic!("{bulk_id}: {what} did not happen; last status {status:#}");
            }
        } else if started.elapsed() > Duration::from_secs(180) {
            panic!(
                "bulk-status failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ended(status: &Value) -> bool {
    status["status"] != "RUNNING"
}

/// Starts a bulk run (`args` and `--execute`) and waits until it asks for
/// approval: its id and its status then.
fn started_run(
    stack: &LocalStack,
    requester: &BTreeMap<String, String>,
    args: &[&str],
) -> (String, Value) {
    let args: Vec<&str> = args.iter().copied().chain(["--execute"]).collect();
    let started = cli_as(stack, requester, &args);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let started = stdout_json(&started);
    assert_eq!(
        started["requestedBy"], requester["APPROVER_ARN"],
        "the requester is who AWS authenticated"
    );
    let bulk_id = started["bulkId"].as_str().expect("a bulk id").to_owned();
    let waiting = status_until(stack, &bulk_id, "the approval wait", |s| {
        s["awaitingApproval"] == true
    });
    (bulk_id, waiting)
}

/// Approves a waiting run as `approver` and returns its status at the end.
fn approve_until_end(
    stack: &LocalStack,
    approver: &BTreeMap<String, String>,
    bulk_id: &str,
) -> Value {
    let approved = cli_as(stack, approver, &["approve", "--case-id", bulk_id]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    status_until(stack, bulk_id, "the end of the run", ended)
}

/// Starts a bulk run, approves it as `approver` once it waits, and returns
/// its id and its status at the end.
fn approved_run(
    stack: &LocalStack,
    requester: &BTreeMap<String, String>,
    approver: &BTreeMap<String, String>,
    args: &[&str],
) -> (String, Value) {
    let (bulk_id, _) = started_run(stack, requester, args);
    let end = approve_until_end(stack, approver, &bulk_id);
    (bulk_id, end)
}

/// A VPC with three subnets: two selected instances (a, b), an instance
/// outside the selection in b, another alone in c.
struct Estate {
    vpc: String,
    subnets: [String; 3],
}

async fn estate(clients: &Clients, campaign: &str) -> Estate {
    let (vpc, subnets) = vpc_with_subnets(clients, 30, 3).await;
    for (subnet, tagged) in [(0, true), (1, true), (1, false), (2, false)] {
        let tags: &[(&str, &str)] = if tagged {
            &[("campaign", campaign)]
        } else {
            &[]
        };
        launch_into(clients, &subnets[subnet], 1, tags, false).await;
    }
    Estate {
        vpc,
        subnets: [subnets[0].clone(), subnets[1].clone(), subnets[2].clone()],
    }
}

/// The ACL each subnet is associated with now, and the association id.
async fn associations(clients: &Clients, subnets: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for subnet in subnets {
        found.push(subnet_acl(clients, subnet).await);
    }
    found
}

async fn allows_anything(clients: &Clients, acl: &str) -> bool {
    let acls = clients
        .ec2
        .describe_network_acls()
        .network_acl_ids(acl)
        .send()
        .await
        .expect("acl");
    acls.network_acls()
        .iter()
        .flat_map(|a| a.entries())
        .any(|e| e.rule_action() == Some(&aws_sdk_ec2::types::RuleAction::Allow))
}

#[tokio::test]
async fn quarantine_subnets_cuts_each_subnet_once_approved_and_releases_exactly() {
    let stack = LocalStack::start(None);
    let clients = stack.clients().await;
    let campaign = "miner-bulk";
    let estate = estate(&clients, campaign).await;
    let before = associations(&clients, &estate.subnets).await;
    let none = BTreeMap::new();

    // The plan: subnet b also holds an instance outside the selection, so
    // the cut is refused without --whole-subnet, and nothing changes.
    let tag = format!("campaign={campaign}");
    let refused = cli_as(
        &stack,
        &none,
        &[
            "bulk",
            "--action",
            "quarantine-subnets",
            "--tag",
            &tag,
            "--reason",
            "worm",
        ],
    );
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let plan = stdout_json(&refused);
    let refusals = plan["refusals"].as_array().expect("refusals");
    assert_eq!(refusals.len(), 1, "{plan:#}");
    assert!(refusals[0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{} also holds 1", estate.subnets[1])));
    assert_eq!(plan["instances"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        associations(&clients, &estate.subnets).await,
        before,
        "a plan changes nothing"
    );

    // Someone who may not call the start function starts nothing.
    let outsider = stack.approver("soc-not-a-requester", true);
    let whole = [
        "bulk",
        "--action",
        "quarantine-subnets",
        "--tag",
        &tag,
        "--whole-subnet",
        "--reason",
        "worm",
    ];
    let refused = cli_as(&stack, &outsider, &[&whole[..], &["--execute"]].concat());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("start function") && said.trim_end().ends_with("(AccessDenied)"),
        "{said}"
    );

    // Someone with states:StartExecution on the bulk state machine starts a
    // run directly, in an approver's name, for subnet c: the execution is
    // named by the request's bulk id, but carries no start function MAC, so
    // its plan step refuses it and nothing changes.
    let forged = BulkRequest {
        action: BulkAction::QuarantineSubnets,
        selection: Selection {
            subnets: vec![estate.subnets[2].clone()],
            ..Selection::default()
        },
        reason: "forged".into(),
        region: "us-east-1".into(),
        account: None,
        whole_subnet: true,
        requested_by: Some("arn:aws:iam::123456789012:user/soc-bulk".into()),
        requested_at: playbook::case::custody::now_utc(),
        release_of: None,
        without_snapshots: false,
    };
    let env = stack.stack_env();
    let sfn = stack.sfn().await;
    let direct = sfn
        .start_execution()
        .state_machine_arn(env["BULK_STATE_MACHINE_ARN"].clone())
        .name(forged.bulk_id())
        .input(json!({ "request": forged }).to_string())
        .send()
        .await
        .expect("started directly");
    let ended_forged = status_until(&stack, &forged.bulk_id(), "the forged run's end", ended);
    assert_eq!(ended_forged["status"], "FAILED", "{ended_forged:#}");
    assert_eq!(ended_forged["error"], "BulkPlanFailed", "{ended_forged:#}");
    let history = sfn
        .get_execution_history()
        .execution_arn(direct.execution_arn())
        .send()
        .await
        .expect("history");
    // AWS records a Lambda task's failure as LambdaFunctionFailed (a
    // function ARN as the Resource), the local runner as TaskFailed.
    let plan_error: Vec<&str> = history
        .events()
        .iter()
        .filter_map(|e| {
            e.task_failed_event_details()
                .and_then(|d| d.error())
                .or_else(|| e.lambda_function_failed_event_details()?.error())
        })
        .collect();
    assert_eq!(plan_error, ["NotAuthenticated"], "{history:#?}");
    assert_eq!(
        associations(&clients, &estate.subnets).await,
        before,
        "the forged run changed nothing"
    );

    // With --whole-subnet: the run starts, plans again, and waits for a person.
    let analyst = stack.person("analyst-bulk", &["start-run", "answer-approval"]);
    let (bulk_id, waiting) = started_run(&stack, &analyst, &whole);
    let items = waiting["plan"]["items"].clone();
    assert_eq!(waiting["plan"]["itemCount"], 2, "{waiting:#}");
    assert_eq!(waiting["plan"]["requestedBy"], analyst["APPROVER_ARN"]);

    // The requester may not approve their own run: refused, and the run
    // still waits for someone else.
    // (The analyst may call both function URLs: an approver too.)
    let own = cli_as(&stack, &analyst, &["approve", "--case-id", &bulk_id]);
    let said = String::from_utf8_lossy(&own.stderr);
    assert_eq!(own.status.code(), Some(2), "{said}");
    assert!(said.trim_end().ends_with("(SelfApproval)"), "{said}");
    // Nor may someone who is no approver.
    let stranger = stack.approver("not-a-bulk-approver", false);
    let theirs = cli_as(&stack, &stranger, &["approve", "--case-id", &bulk_id]);
    let said = String::from_utf8_lossy(&theirs.stderr);
    assert_eq!(theirs.status.code(), Some(2), "{said}");
    assert!(said.trim_end().ends_with("(AccessDenied)"), "{said}");
    let still = status_until(&stack, &bulk_id, "the approval wait", |s| {
        s["awaitingApproval"] == true
    });
    assert_eq!(still["status"], "RUNNING");

    // While it waits, a writer of the evidence bucket puts a newer items
    // list naming subnet c, which nobody selected.
    let forged = json!([{
        "bulkId": bulk_id, "subnetId": estate.subnets[2], "vpcId": estate.vpc, "wholeSubnet": true
    }]);
    let body = forged.to_string().into_bytes();
    clients
        .s3
        .put_object()
        .bucket(items["bucket"].as_str().unwrap())
        .key(items["key"].as_str().unwrap())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(body.into())
        .send()
        .await
        .expect("the writer's version");

    let soc = stack.approver("soc-bulk", true);
    let done = approve_until_end(&stack, &soc, &bulk_id);
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    assert_eq!(done["approval"]["answer"]["by"], soc["APPROVER_ARN"]);
    let counts = &done["mapRuns"][0];
    assert_eq!(
        (counts["total"].as_i64(), counts["succeeded"].as_i64()),
        (Some(2), Some(2)),
        "{done:#}"
    );

    let cut = associations(&clients, &estate.subnets).await;
    for i in [0, 1] {
        assert_ne!(cut[i].0, before[i].0, "subnet {i} moved");
        assert!(
            !allows_anything(&clients, &cut[i].0).await,
            "subnet {i} is on a deny-only ACL"
        );
    }
    assert_eq!(cut[0].0, cut[1].0, "one deny-all ACL for the VPC");
    assert_eq!(
        cut[2], before[2],
        "the forged item was never read: subnet c is untouched"
    );

    // Someone moves subnet a to an ACL of their own after the cut.
    let theirs = clients
        .ec2
        .create_network_acl()
        .vpc_id(&estate.vpc)
        .send()
        .await
        .expect("acl")
        .network_acl()
        .and_then(|a| a.network_acl_id())
        .expect("acl id")
        .to_owned();
    clients
        .ec2
        .replace_network_acl_association()
        .association_id(&cut[0].1)
        .network_acl_id(&theirs)
        .send()
        .await
        .expect("moved");

    // The release: b goes back to exactly its ACL; a is left where it is.
    let (_, released) = approved_run(
        &stack,
        &analyst,
        &soc,
        &[
            "bulk",
            "--action",
            "release-subnets",
            "--release-of",
            &bulk_id,
            "--reason",
            "false positive",
        ],
    );
    assert_eq!(released["status"], "FAILED", "{released:#}");
    assert_eq!(released["error"], "BulkIncomplete");
    let counts = &released["mapRuns"][0];
    assert_eq!(
        (counts["succeeded"].as_i64(), counts["failed"].as_i64()),
        (Some(1), Some(1)),
        "{released:#}"
    );
    let after = associations(&clients, &estate.subnets).await;
    assert_eq!(
        after[1].0, before[1].0,
        "subnet b is on its original ACL again"
    );
    assert_eq!(
        after[0].0, theirs,
        "subnet a, changed since the cut, is left as it is"
    );
    assert_eq!(after[2], before[2]);
}

#[tokio::test]
async fn contain_runs_the_playbook_per_instance_and_terminate_waits_for_the_evidence() {
    let stack = LocalStack::start(None);
    let estate = stack.seed("bulkcontain");
    let clients = stack.clients().await;
    let soc = stack.approver("soc-bulk-contain", true);
    let analyst = stack.requester("analyst-bulk-contain");
    let (victim, bare) = (
        estate.victim.instance_id.clone(),
        estate.bare.instance_id.clone(),
    );

    // Terminate before any case: the plan is ready, but no instance is a
    // case's, so the run ends with nothing terminated.
    let (_, refused) = approved_run(
        &stack,
        &analyst,
        &soc,
        &[
            "bulk",
            "--action",
            "terminate",
            "--instance",
            &bare,
            "--reason",
            "early",
        ],
    );
    assert_eq!(refused["error"], "BulkIncomplete", "{refused:#}");
    assert_eq!(refused["mapRuns"][0]["failed"], 1);

    // contain: one forensics execution per instance, each the whole playbook.
    let (_, done) = approved_run(
        &stack,
        &analyst,
        &soc,
        &[
            "bulk",
            "--action",
            "contain",
            "--instance",
            &victim,
            "--instance",
            &bare,
            "--reason",
            "campaign",
        ],
    );
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    assert_eq!(done["mapRuns"][0]["succeeded"], 2, "{done:#}");
    // Each case ran under its own name in the forensics state machine.
    let env = stack.stack_env();
    let sfn = stack.sfn().await;
    // The items ended at containment; the cases go on with their evidence.
    // Terminate waits for them to end (a case that still runs is refused).
    let started_at = Instant::now();
    let cases = loop {
        let executions = sfn
            .list_executions()
            .state_machine_arn(env["STATE_MACHINE_ARN"].clone())
            .send()
            .await
            .expect("executions");
        let statuses: Vec<(String, String)> = executions
            .executions()
            .iter()
            .map(|e| (e.name().to_owned(), e.status().as_str().to_owned()))
            .collect();
        if statuses.len() == 2 && statuses.iter().all(|(_, s)| s != "RUNNING") {
            break statuses;
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(240),
            "the cases did not end: {statuses:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(cases.iter().all(|(_, s)| s == "SUCCEEDED"), "{cases:?}");
    for id in [&victim, &bare] {
        assert!(
            system_tests::termination_protected(&clients.ec2, id).await,
            "{id} protected by its case"
        );
    }

    // terminate now: every volume has its case's completed evidence snapshot.
    let (_, gone) = approved_run(
        &stack,
        &analyst,
        &soc,
        &[
            "bulk",
            "--action",
            "terminate",
            "--instance",
            &bare,
            "--reason",
            "rebuild",
        ],
    );
    assert_eq!(gone["status"], "SUCCEEDED", "{gone:#}");
    let state = system_tests::instance_state(&clients.ec2, &bare).await;
    assert!(
        matches!(state.as_str(), "shutting-down" | "terminated"),
        "{state:?}"
    );
}
