//! The main state machine on the local stack: the real definition, run by the
//! local runner, every Task invoking the real Lambda behind `cargo lambda watch`,
//! every Lambda calling the moto server.

use std::collections::BTreeSet;

use playbook::case::custody::{sha256_hex, verify_chain};
use playbook::case::policy::AcquisitionOrder;
use playbook::case::{IsolationStage, MemoryStatus};
use playbook::policy::Policy;
use playbook::steps::evidence::store::checksum_sha256;
use playbook::steps::report::Report;
use playbook::Case;
use system_tests::{
    event_for, ssm_endpoints, stand_in_memory_image, termination_protected, LocalStack,
};

async fn eni_groups(stack: &LocalStack, id: &str) -> Vec<Vec<String>> {
    let clients = stack.clients().await;
    let out = clients
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let mut groups: Vec<Vec<String>> = out.reservations()[0].instances()[0]
        .network_interfaces()
        .iter()
        .map(|e| {
            e.groups()
                .iter()
                .map(|g| g.group_id().unwrap().to_owned())
                .collect()
        })
        .collect();
    groups.sort();
    groups
}

#[tokio::test]
async fn a_guardduty_finding_ends_in_a_case_with_metadata_and_the_instance_isolated() {
    let stack = LocalStack::start(None);
    let estate = stack.seed("e2e");
    let id = estate.victim.instance_id.clone();
    let run = stack.run(&event_for("guardduty-crypto-mining-dns.json", &id));
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?}: {:?}; containment {:#}; isolation warnings {:#}; states {:?}; plan {:#}; errors {:#}",
        run.error,
        run.cause,
        run.output["containment"],
        run.output["isolation"][0]["warnings"],
        run.states,
        run.output["acquisitionPlan"],
        run.output["errors"]
    );
    for state in [
        "Triage",
        "CaptureMetadata",
        "ProtectInstance",
        "SnapshotVolumes",
        "AcquireMemory",
        "CheckMemory",
        "IsolateNetwork",
        "CheckSnapshots",
        "ShareSnapshots",
        "CopySnapshots",
        "CheckCopies",
        "SealEvidence",
        "Verified",
        "Contained",
    ] {
        assert!(
            run.states.iter().any(|s| s == state),
            "{state} in {:?}",
            run.states
        );
    }
    let case: Case = serde_json::from_value(run.output).expect("the output is a Case");
    assert_eq!(
        case.incident.finding_type,
        "CryptoCurrency:EC2/BitcoinTool.B!DNS"
    );
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    let metadata = case.metadata_of(&id).expect("metadata captured");
    assert_eq!(metadata.network_interfaces.len(), 2);
    assert_eq!(metadata.volumes.len(), 3);
    assert!(case.protection[0].complete && case.isolation[0].complete);
    system_tests::assert_contained(&case);
    // Disk evidence: every volume snapshotted and copied under the forensic key.
    let env = stack.forensic_env();
    assert_eq!(case.snapshots.len(), 3, "{:?}", case.snapshots);
    for volume in &case.snapshots {
        assert!(volume.snapshot.is_completed(), "{volume:?}");
        let copy = volume.copy.as_ref().expect("a forensic copy");
        assert!(copy.is_completed());
        assert_eq!(
            copy.kms_key_id.as_deref(),
            Some(env["FORENSIC_KMS_KEY"].as_str())
        );
    }
    assert!(case.disk_progress.snapshots.settled && case.disk_progress.copies.settled);
    // Memory: captured on the host (the bench's SSM agent ran the shipped
    // script with the stand-in AVML), completed, read back and verified.
    let memory = &case.memory[0];
    assert_eq!(memory.status, MemoryStatus::Captured, "{memory:?}");
    assert!(memory.verified);
    let image = stand_in_memory_image();
    let stored_image = case
        .artifacts
        .iter()
        .find(|a| a.kind == "memory")
        .expect("the memory image is an artifact");
    assert_eq!(
        stored_image.key,
        format!("cases/{}/memory/{id}.lime", case.case_id)
    );
    assert_eq!(stored_image.size, image.len() as u64);
    assert_eq!(stored_image.sha256, sha256_hex(&image));
    let report = memory.host_report.as_ref().expect("the host's report");
    assert_eq!(report.image_sha256, stored_image.sha256);
    assert_eq!(Some(&report.avml_sha256), memory.avml_sha256.as_ref());
    // The forensic workstation: from the golden AMI, in the evidence's zone,
    // no public address, IMDSv2, protected; every copy attached and analysed
    // (the bench's agent played the workstation with the stand-in disk).
    let workstation = &case.workstations[0];
    let forensic = stack.forensic_env();
    let ec2 = stack.clients().await.ec2;
    let launched = ec2
        .describe_instances()
        .instance_ids(workstation.instance_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let launched = &launched.reservations()[0].instances()[0];
    let golden = stack
        .clients()
        .await
        .ssm
        .get_parameter()
        .name(&forensic["GOLDEN_AMI_PARAMETER"])
        .send()
        .await
        .unwrap();
    assert_eq!(launched.image_id(), golden.parameter().unwrap().value());
    assert!(forensic["FORENSIC_SUBNETS"].contains(launched.subnet_id().unwrap()));
    assert_eq!(
        launched.placement().unwrap().availability_zone(),
        metadata.availability_zone.as_deref()
    );
    assert!(launched.public_ip_address().is_none());
    assert_eq!(
        launched
            .metadata_options()
            .unwrap()
            .http_tokens()
            .map(|t| t.as_str()),
        Some("required")
    );
    assert!(termination_protected(&ec2, launched.instance_id().unwrap()).await);
    assert_eq!(case.evidence_volumes.len(), 3);
    assert!(
        case.evidence_volumes.iter().all(|v| v.attached),
        "{:?}",
        case.evidence_volumes
    );
    assert_eq!(case.analysis.len(), 3, "{:?}", case.analysis);
    // Each evidence volume is a disk of its own on the bench (its id in the
    // first sector): every analysis read its own volume's device, not another's.
    let devices: std::collections::BTreeMap<String, String> =
        std::fs::read_to_string(stack.file("devices.jsonl"))
            .expect("the bench lists the disks it laid out")
            .lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    entry["volumeId"].as_str().unwrap().to_owned(),
                    entry["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let read: BTreeSet<&str> = case
        .analysis
        .iter()
        .filter_map(|a| a.device_sha256.as_deref())
        .collect();
    assert_eq!(read.len(), 3, "three different disks were read");
    for analysis in &case.analysis {
        assert_eq!(
            analysis.device_sha256.as_ref(),
            devices.get(&analysis.volume_id),
            "{} read its own disk",
            analysis.volume_id
        );
    }
    for analysis in &case.analysis {
        assert_eq!(analysis.status, "analysed", "{analysis:?}");
        assert!(analysis.unchanged);
        let kinds: BTreeSet<&str> = analysis
            .indicators
            .iter()
            .map(|i| i.kind.as_str())
            .collect();
        for kind in ["cron", "authorized_keys", "crypto-mining"] {
            assert!(
                kinds.contains(kind),
                "{kind} found: {:?}",
                analysis.indicators
            );
        }
        assert!(analysis
            .indicators
            .iter()
            .any(|i| i.path == "/etc/cron.d/sysupdate"));
        for artifact in [&analysis.findings, &analysis.archive] {
            let artifact = artifact.as_ref().expect("result in the store");
            assert!(
                case.artifacts.contains(artifact),
                "{artifact:?} is an artifact"
            );
        }
    }
    let kinds: Vec<&str> = case.artifacts.iter().map(|a| a.kind.as_str()).collect();
    for kind in [
        "metadata",
        "case",
        "memory",
        "analysis-findings",
        "analysis-archive",
        "report",
        "manifest",
        "signature",
    ] {
        assert!(kinds.contains(&kind), "{kind} stored: {kinds:?}");
    }
    assert!(
        verify_chain(&case.custody).is_ok(),
        "the custody chain holds across the Parallel"
    );
    let manifest = case
        .artifacts
        .iter()
        .find(|a| a.kind == "manifest")
        .unwrap();
    let stored = stack
        .clients()
        .await
        .s3
        .head_object()
        .bucket(&env["EVIDENCE_BUCKET"])
        .key(&manifest.key)
        .version_id(&manifest.version_id)
        .send()
        .await
        .expect("the manifest is in the evidence bucket");
    assert_eq!(stored.content_length(), Some(manifest.size as i64));
    let steps: Vec<&str> = case.custody.iter().map(|c| c.step.as_str()).collect();
    for step in [
        "triage",
        "capture-metadata",
        "protect-instance",
        "snapshot-volumes",
        "acquire-memory",
        "check-command",
        "isolate-network",
        "copy-snapshots",
        "launch-forensic-instance",
        "attach-evidence",
        "run-forensics",
        "seal-evidence",
    ] {
        assert!(steps.contains(&step), "custody has {step}: {steps:?}");
    }
    let position = |step: &str| steps.iter().position(|s| *s == step).unwrap();
    let last = |step: &str| steps.iter().rposition(|s| *s == step).unwrap();
    // The default order, auto, in a VPC without SSM endpoints: isolate-network
    // first plans memory first (changing nothing), then isolates once the
    // capture is done.
    let planned = &case.custody[position("isolate-network")];
    assert!(
        planned
            .action
            .starts_with("acquisition order auto: memory first"),
        "{}",
        planned.action
    );
    assert!(
        position("isolate-network") < position("acquire-memory")
            && position("acquire-memory") < last("isolate-network"),
        "memory is captured before isolation: {steps:?}"
    );
    // The image the host finished is read back from S3 only once the
    // instance is isolated: isolation never waits for a hash of an image
    // whose size the host chose.
    let verified = case
        .custody
        .iter()
        .position(|e| e.step == "check-command" && e.action.starts_with("memory capture verified"))
        .expect("the memory image was verified");
    assert!(last("isolate-network") < verified, "{steps:?}");

    assert!(termination_protected(&stack.clients().await.ec2, &id).await);
    assert!(case.isolation[0].verified_at.is_some());
    let isolation_group = case.isolation[0].groups[0]
        .isolation_group_id
        .clone()
        .unwrap();
    assert_eq!(
        eni_groups(&stack, &id).await,
        vec![vec![isolation_group.clone()], vec![isolation_group]]
    );
}

#[tokio::test]
async fn observed_and_ignored_findings_end_without_touching_the_instance() {
    let stack = LocalStack::start(None);
    let estate = stack.seed("calm");
    let id = estate.victim.instance_id.clone();
    let groups_before = eni_groups(&stack, &id).await;

    let victim_of_brute_force = stack.run(&event_for("guardduty-ssh-bruteforce-victim.json", &id));
    assert_eq!(victim_of_brute_force.status, "SUCCEEDED");
    assert_eq!(
        victim_of_brute_force.states.last().map(String::as_str),
        Some("Observed")
    );
    let case: Case = serde_json::from_value(victim_of_brute_force.output).unwrap();
    assert!(
        case.decision.reason.contains("target of outside activity"),
        "{}",
        case.decision.reason
    );
    assert!(case.protection.is_empty() && case.isolation.is_empty() && case.metadata.is_empty());

    // Probed at a High severity, and failing a Security Hub control: neither
    // is a compromise, and the state machine changes nothing for either.
    let probed = stack.run(&event_for("guardduty-port-probe-emr.json", &id));
    assert_eq!(probed.status, "SUCCEEDED");
    assert_eq!(
        probed.states,
        vec!["Triage", "Decide", "FindingObserved", "Observed"]
    );
    let case: Case = serde_json::from_value(probed.output).unwrap();
    // Security Hub is told, and an observed finding stays in the queue (not
    // NOTIFIED). The emulator holds no such finding: that is recorded
    // (FindingNotFound), and the case goes on.
    let told = &case.finding_updates;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].moment, playbook::case::FindingMoment::Opened);
    assert_eq!(told[0].state, "observed");
    assert!(!told[0].takes_on && told[0].notified.is_empty(), "{told:?}");
    assert_eq!(
        told[0].not_updated[0].error_code, "FindingNotFound",
        "{told:?}"
    );
    assert!(
        case.decision
            .reason
            .contains("port(s) 8088 from 203.0.113.45"),
        "{}",
        case.decision.reason
    );
    let control = stack.run(&event_for("securityhub-control-failure-imdsv2.json", &id));
    assert_eq!(control.status, "SUCCEEDED");
    assert_eq!(control.states, vec!["Triage", "Decide", "Ignored"]);

    let sample = stack.run(&event_for("guardduty-sample-finding.json", &id));
    assert_eq!(sample.status, "SUCCEEDED");
    assert_eq!(sample.states, vec!["Triage", "Decide", "Ignored"]);

    assert!(
        !termination_protected(&stack.clients().await.ec2, &id).await,
        "protection untouched"
    );
    assert_eq!(
        eni_groups(&stack, &id).await,
        groups_before,
        "network untouched"
    );
}

#[tokio::test]
async fn a_finding_about_an_unknown_instance_fails_in_triage_with_the_typed_error() {
    let stack = LocalStack::start(None);
    stack.seed("ghost");
    let run = stack.run(&event_for(
        "guardduty-crypto-mining-dns.json",
        "i-0000000000000dead",
    ));
    assert_eq!(run.status, "FAILED");
    assert_eq!(
        run.error.as_deref(),
        Some("InstanceNotFound"),
        "{:?}",
        run.cause
    );
    assert_eq!(run.states.last().map(String::as_str), Some("TriageFailed"));
}

#[tokio::test]
async fn isolation_that_cannot_complete_ends_not_contained_with_the_case() {
    // No room for the network ACL entries: the tracked flows they would cut
    // stay open, so the instance must not be reported contained.
    let policy = Policy {
        network_acl_rule_limit: 0,
        ..Policy::default()
    };
    let stack = LocalStack::start(Some(&policy));
    let estate = stack.seed("open");
    let id = estate.bare.instance_id.clone();
    let run = stack.run(&event_for("guardduty-crypto-mining-dns.json", &id));
    assert_eq!(run.status, "FAILED");
    assert_eq!(
        run.error.as_deref(),
        Some("NotContained"),
        "{:?}",
        run.cause
    );
    assert!(
        run.states.iter().any(|s| s == "NotContained")
            && !run.states.iter().any(|s| s == "Contained"),
        "{:?}",
        run.states
    );
    let case: Case = serde_json::from_value(run.output).expect("the Case is kept");
    let summary = case.containment.expect("containment summarised");
    assert!(!summary.contained);
    assert!(
        summary.not_contained.iter().any(|n| n.contains(&id)),
        "{:?}",
        summary.not_contained
    );
    let isolation = &case.isolation[0];
    assert!(!isolation.complete && isolation.verified_at.is_none());
    assert!(isolation
        .actions
        .iter()
        .any(|a| a.error_type.as_deref() == Some("NetworkAclRuleLimit")));
    assert!(case.errors.iter().any(|e| e.error_type == "NotContained"));
}

#[tokio::test]
async fn with_isolate_first_a_capture_that_cannot_start_is_recorded_and_the_case_still_ends_contained(
) {
    let policy = Policy {
        acquisition_order: AcquisitionOrder::IsolateFirst,
        ..Policy::default()
    };
    let stack = LocalStack::start(Some(&policy));
    let estate = stack.seed("tampered");
    let id = estate.victim.instance_id.clone();
    ssm_endpoints(&stack.clients().await, &estate.vpc_id).await;
    // Someone replaced the published AVML: its stored checksum is no longer
    // the one the responder was deployed with.
    let env = stack.forensic_env();
    let tampered = b"#!/bin/sh\necho not avml\n".to_vec();
    stack
        .clients()
        .await
        .s3
        .put_object()
        .bucket(&env["EVIDENCE_BUCKET"])
        .key("tools/avml")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum_sha256(&tampered))
        .body(tampered.into())
        .send()
        .await
        .unwrap();
    let run = stack.run(&event_for("guardduty-crypto-mining-dns.json", &id));
    assert_eq!(run.status, "SUCCEEDED", "{:?}: {:?}", run.error, run.cause);
    let order = states_among(
        &run,
        &[
            "IsolateNetwork",
            "AcquireMemory",
            "CompleteIsolation",
            "Contained",
        ],
    );
    assert_eq!(
        order,
        [
            "IsolateNetwork",
            "AcquireMemory",
            "CompleteIsolation",
            "Contained"
        ],
        "isolate-first: memory in the acquisition stage, then full isolation"
    );
    let case: Case = serde_json::from_value(run.output).unwrap();
    system_tests::assert_contained(&case);
    let memory = &case.memory[0];
    assert_eq!(memory.status, MemoryStatus::Failed);
    assert!(
        !memory.verified && memory.command_id.is_none(),
        "nothing was sent: {memory:?}"
    );
    assert!(
        memory
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("not the expected"),
        "{memory:?}"
    );
    let error = case
        .errors
        .iter()
        .find(|e| e.step == "acquire-memory")
        .expect("the failure is in the Case's errors");
    assert_eq!(error.error_type, "ConfigurationError");
    assert!(case.artifacts.iter().all(|a| a.kind != "memory"));
    // The signed report says so.
    let report_json = case
        .artifacts
        .iter()
        .find(|a| a.key.ends_with("/report.json"))
        .expect("report.json is an artifact");
    let stored = stack
        .clients()
        .await
        .s3
        .get_object()
        .bucket(&env["EVIDENCE_BUCKET"])
        .key(&report_json.key)
        .version_id(&report_json.version_id)
        .send()
        .await
        .unwrap();
    let report: Report =
        serde_json::from_slice(&stored.body.collect().await.unwrap().into_bytes()).unwrap();
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("acquire-memory") && f.contains("not the expected")),
        "{:?}",
        report.failures
    );
    assert!(report.containment.starts_with("contained"));
    assert!(report.investigator_notes[0]
        .found
        .starts_with("no image (Failed)"));
}

/// What the responder makes, and counts here by its case and role tags.
enum Made {
    Snapshots,
    Volumes,
    Instances,
}

/// How many `what` the emulator holds tagged with the case and `role`
/// (instances not terminated).
async fn tagged(stack: &LocalStack, case_id: &str, role: &str, what: Made) -> usize {
    let ec2 = stack.clients().await.ec2;
    let filters = Some(playbook::steps::case_role_filters(case_id, role));
    match what {
        Made::Snapshots => ec2
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(filters)
            .send()
            .await
            .unwrap()
            .snapshots()
            .len(),
        Made::Volumes => ec2
            .describe_volumes()
            .set_filters(filters)
            .send()
            .await
            .unwrap()
            .volumes()
            .len(),
        Made::Instances => ec2
            .describe_instances()
            .set_filters(filters)
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| !playbook::steps::is_terminated(i))
            .count(),
    }
}

/// The commands SSM lists for `instance_id` with `comment`.
async fn commands(stack: &LocalStack, instance_id: &str, comment: &str) -> usize {
    let ssm = stack.clients().await.ssm;
    ssm.list_commands()
        .instance_id(instance_id)
        .send()
        .await
        .unwrap()
        .commands()
        .iter()
        .filter(|c| c.comment() == Some(comment))
        .count()
}

/// The states of `run` that are among `names`, in the order they ran.
fn states_among<'a>(run: &'a system_tests::Execution, names: &[&str]) -> Vec<&'a str> {
    run.states
        .iter()
        .map(String::as_str)
        .filter(|s| names.contains(s))
        .collect()
}

/// Every Task's first answer is lost after its Lambda ran (in turn, the
/// client gave up: Lambda.ClientExecutionTimeoutException, and the function
/// ran out of time after its side effects: Lambda.Unknown), so the
/// definition's Retry runs
/// each step again on the same input, after its side effects. The case must
/// end as a clean run does, with exactly one of each side effect: one memory
/// command, one upload, one snapshot set, one copy per snapshot, one
/// workstation, one evidence volume per copy, one analysis command, the
/// ENIs' original groups as they were, and the ACL entries recorded as the
/// case's own (so release removes them).
#[tokio::test]
async fn every_step_retried_after_its_side_effects_ends_as_a_clean_run_with_each_effect_once() {
    let stack = LocalStack::start(None);
    let estate = stack.seed("retry");
    let id = estate.victim.instance_id.clone();
    let groups_before = eni_groups(&stack, &id).await;
    // The SOC already blocks the victim's address inbound on its VPC's ACL
    // (rule 50): a retried isolation must not take that DENY for its own,
    // and release must leave it.
    let foreign = {
        use aws_sdk_ec2::types::{Filter, RuleAction};
        let ec2 = stack.clients().await.ec2;
        let described = ec2
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        let instance = &described.reservations()[0].instances()[0];
        let ip = instance.private_ip_address().unwrap().to_owned();
        let acls = ec2
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .values(instance.vpc_id().unwrap())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let acl = acls.network_acls()[0].network_acl_id().unwrap().to_owned();
        ec2.create_network_acl_entry()
            .network_acl_id(&acl)
            .rule_number(50)
            .protocol("-1")
            .rule_action(RuleAction::Deny)
            .egress(false)
            .cidr_block(format!("{ip}/32"))
            .send()
            .await
            .unwrap();
        (acl, format!("{ip}/32"))
    };
    let run = stack.run_losing_first_answers(&event_for("guardduty-crypto-mining-dns.json", &id));
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?}: {:?}; containment {:#}",
        run.error, run.cause, run.output["containment"]
    );
    let tasks = [
        "Triage",
        "CaptureMetadata",
        "ProtectInstance",
        "SnapshotVolumes",
        "AcquireMemory",
        "CheckMemory",
        "IsolateNetwork",
        "CheckSnapshots",
        "ShareSnapshots",
        "CopySnapshots",
        "CheckCopies",
        "LaunchForensicInstance",
        "AttachEvidence",
        "RunForensics",
        "CheckAnalysis",
        "SealEvidence",
    ];
    for task in tasks {
        assert!(
            run.faults.iter().any(|f| f.state == task),
            "{task}'s first answer was lost: {:?}",
            run.faults
        );
    }
    for error in ["Lambda.ClientExecutionTimeoutException", "Lambda.Unknown"] {
        assert!(
            run.faults.iter().filter(|f| f.error == error).count() >= 5,
            "answers lost as {error}, each retried: {:?}",
            run.faults
        );
    }
    let case: Case = serde_json::from_value(run.output).expect("the output is a Case");
    system_tests::assert_contained(&case);
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    assert_eq!(case.memory[0].status, MemoryStatus::Captured);
    assert!(case.memory[0].verified);
    assert!(case.analysis.iter().all(|a| a.status == "analysed"));
    assert!(verify_chain(&case.custody).is_ok());

    // Each side effect once.
    assert_eq!(
        commands(
            &stack,
            &id,
            &format!("ec2-forensics {} memory", case.case_id)
        )
        .await,
        1,
        "one memory capture sent"
    );
    let workstation = case.workstations[0].instance_id.clone().unwrap();
    assert_eq!(
        commands(
            &stack,
            &workstation,
            &format!("ec2-forensics {} analysis", case.case_id)
        )
        .await,
        1,
        "one analysis sent"
    );
    use playbook::steps::disk::{EVIDENCE_ROLE, FORENSIC_COPY_ROLE};
    use playbook::steps::workstation::{EVIDENCE_VOLUME_ROLE, WORKSTATION_ROLE};
    assert_eq!(
        tagged(&stack, &case.case_id, EVIDENCE_ROLE, Made::Snapshots).await,
        3,
        "one snapshot per volume"
    );
    assert_eq!(
        tagged(&stack, &case.case_id, FORENSIC_COPY_ROLE, Made::Snapshots).await,
        3,
        "one copy per snapshot"
    );
    assert_eq!(
        tagged(&stack, &case.case_id, WORKSTATION_ROLE, Made::Instances).await,
        1,
        "one workstation"
    );
    assert_eq!(
        tagged(&stack, &case.case_id, EVIDENCE_VOLUME_ROLE, Made::Volumes).await,
        3,
        "one evidence volume per copy"
    );
    let env = stack.forensic_env();
    let uploads = stack
        .clients()
        .await
        .s3
        .list_multipart_uploads()
        .bucket(&env["EVIDENCE_BUCKET"])
        .prefix(format!("cases/{}/", case.case_id))
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "no upload left behind: {:?}",
        uploads.uploads()
    );

    // The isolation record is the one a clean run makes.
    let isolation = &case.isolation[0];
    let mut originals: Vec<Vec<String>> = isolation
        .interfaces
        .iter()
        .map(|e| e.original_group_ids.clone())
        .collect();
    originals.sort();
    assert_eq!(
        originals, groups_before,
        "the ENIs' groups before isolation"
    );
    assert!(
        !isolation.network_acl_entries.is_empty(),
        "the case's own DENY entries are recorded, so release removes them"
    );
    assert!(
        isolation
            .warnings
            .iter()
            .all(|w| !w.contains("already isolated")),
        "{:?}",
        isolation.warnings
    );

    assert!(
        !isolation
            .network_acl_entries
            .iter()
            .any(|e| e.network_acl_id == foreign.0 && e.rule_number == 50),
        "the SOC's DENY is not the case's: {:?}",
        isolation.network_acl_entries
    );

    // Release after the retried run puts back exactly what was there.
    let clients = stack.clients().await;
    let released = playbook::steps::release::release_instances(&clients, "tests", case)
        .await
        .expect("release");
    assert!(
        released.release[0].complete,
        "{:?}",
        released.release[0].actions
    );
    assert_eq!(eni_groups(&stack, &id).await, groups_before);
    let acls = clients.ec2.describe_network_acls().send().await.unwrap();
    let denies: Vec<String> = acls
        .network_acls()
        .iter()
        .flat_map(|a| a.entries())
        .filter(|e| e.rule_action() == Some(&aws_sdk_ec2::types::RuleAction::Deny))
        .filter(|e| e.rule_number() != Some(32767))
        .filter_map(|e| e.cidr_block().map(str::to_owned))
        .collect();
    assert!(
        denies == [foreign.1.clone()],
        "every DENY the case made is gone, the SOC's stays: {denies:?}"
    );
}

/// `acquisitionOrder: auto` (the default) in a VPC without SSM endpoints,
/// with a capture that would take minutes (a host with much memory): memory
/// goes first only until `memoryDeadlineSeconds`. At the deadline the capture
/// is cancelled and recorded as such, and isolation goes on, so the time to
/// isolation is the policy's, not the memory size's.
#[tokio::test]
async fn auto_isolates_at_the_memory_deadline_whatever_the_capture_is_doing() {
    let policy = Policy {
        memory_deadline_seconds: 20,
        ..Policy::default()
    };
    assert_eq!(policy.acquisition_order, AcquisitionOrder::Auto);
    let stack = LocalStack::start_with(
        Some(&policy),
        &[("EC2_FORENSICS_BENCH_AVML_SECONDS", "600")],
    );
    let estate = stack.seed("deadline");
    let id = estate.victim.instance_id.clone();
    let run = stack.run(&event_for("guardduty-crypto-mining-dns.json", &id));
    assert_eq!(run.status, "SUCCEEDED", "{:?}: {:?}", run.error, run.cause);
    let order = states_among(
        &run,
        &[
            "IsolateNetwork",
            "AcquireMemory",
            "CheckMemory",
            "Contained",
        ],
    );
    assert_eq!(order.first(), Some(&"IsolateNetwork"), "{order:?}");
    assert_eq!(order.get(1), Some(&"AcquireMemory"), "{order:?}");
    // Isolation at the deadline, then one more look at memory (the read-back
    // of what the hosts finished: nothing here, the capture was cancelled).
    assert_eq!(
        order.iter().rev().take(3).copied().collect::<Vec<_>>(),
        ["Contained", "CheckMemory", "IsolateNetwork"],
        "{order:?}"
    );
    let case: Case = serde_json::from_value(run.output).unwrap();
    let plan = case
        .acquisition_plan
        .clone()
        .expect("memory first, to a deadline");
    assert!(
        plan.reason
            .contains("lacks an SSM or S3 interface endpoint"),
        "{}",
        plan.reason
    );
    system_tests::assert_contained(&case);
    let memory = &case.memory[0];
    assert_eq!(memory.status, MemoryStatus::TimedOut, "{memory:?}");
    assert_eq!(memory.error_type.as_deref(), Some("MemoryDeadline"));
    assert!(
        memory
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("memory deadline")),
        "{memory:?}"
    );
    let isolation = &case.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Full);
    assert!(isolation.seconds_from_case_opened.is_some());
    // The isolation was verified after the plan's deadline, never before it.
    assert!(
        playbook::case::custody::seconds_between(
            &plan.deadline,
            isolation.verified_at.as_deref().unwrap()
        )
        .is_some_and(|s| s >= 0),
        "{} then {:?}",
        plan.deadline,
        isolation.verified_at
    );
}
