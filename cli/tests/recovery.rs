//! `ec2-forensics hold` and `cleanup` on the moto server.
//!
//! Hold: a sealed case is put under a
//! legal hold (every object version its signed manifest lists, and the
//! forensic copy), the hold is recorded in custody and the case sealed
//! again (`verify` holds); a held object version and the locked copy
//! cannot be deleted; the person who placed the hold cannot release it;
//! another person (an assumed-role session, authenticated by AWS) can.
//!
//!
//! Clean-up: a sealed case whose workstation, evidence volume, workload
//! snapshot and forensic copy are real emulated resources; a dry run
//! changes nothing; the clean-up terminates the workstation, deletes the
//! volume and the snapshot, keeps the copy (its retention), never touches
//! an instance the Case names that is not the case's workstation, and
//! seals again (`verify` holds). Under a hold, the evidence stays, even
//! when a writer of the bucket stores a newer case.json without the hold.
//!
//! moto has no EBS snapshot lock: the bench stands in for LockSnapshot,
//! UnlockSnapshot and DeleteSnapshot of a locked snapshot
//! (infra/local/moto_bench.py).

use std::collections::BTreeMap;
use std::process::Output;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use playbook::case::evidence::SnapshotProgress;
use playbook::case::{EvidenceVolume, ResourceKind, VolumeEvidence};
use playbook::steps::evidence::seal::seal_evidence;
use playbook::steps::recovery::sealed_case;
use playbook::{Case, Responder};
use serde_json::Value;
use system_tests::{event_for, Estate, LocalStack, Moto};

fn cli(moto: &Moto, estate: &Estate, env: &[(&str, &str)], args: &[&str]) -> Output {
    system_tests::cli_against(env!("CARGO_BIN_EXE_ec2-forensics"), moto, estate)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the CLI runs")
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}\nstdout:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

/// A completed snapshot of the victim's first volume, standing in for the
/// case's forensic copy.
async fn a_copy(responder: &Responder, estate: &Estate) -> VolumeEvidence {
    let volume = estate.victim.volume_ids[0].clone();
    let snapshot = responder
        .clients
        .ec2
        .create_snapshot()
        .volume_id(&volume)
        .send()
        .await
        .expect("CreateSnapshot")
        .snapshot_id()
        .unwrap()
        .to_owned();
    let progress = |id: &str| SnapshotProgress {
        snapshot_id: id.to_owned(),
        state: "completed".into(),
        ..SnapshotProgress::default()
    };
    VolumeEvidence {
        instance_id: estate.victim.instance_id.clone(),
        volume_id: volume,
        snapshot: progress(&snapshot),
        copy: Some(progress(&snapshot)),
        ..VolumeEvidence::default()
    }
}

/// A sealed case on the victim (a dry-run containment, its disk evidence
/// one snapshot) and the responder that sealed it.
async fn sealed(moto: &Moto, estate: &Estate) -> (Responder, Case) {
    let (responder, mut case) = system_tests::dry_run_case(moto, estate, "hold test").await;
    case.snapshots.push(a_copy(&responder, estate).await);
    let case = seal_evidence(&responder, case).await.expect("sealed");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    (responder, case)
}

async fn legal_hold(responder: &Responder, bucket: &str, key: &str, version: &str) -> String {
    match responder
        .clients
        .s3
        .get_object_legal_hold()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
    {
        Ok(out) => out
            .legal_hold()
            .and_then(|h| h.status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "none".into()),
        Err(e) => format!("not read: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_keeps_every_listed_object_and_the_copy_until_another_person_releases_it() {
    let moto = Moto::start();
    let estate = moto.seed("hold");
    let (responder, case) = sealed(&moto, &estate).await;
    let id = case.case_id.clone();
    let bucket = estate.forensic.evidence_bucket.clone();
    let copy = case.snapshots[0].copy.as_ref().unwrap().snapshot_id.clone();

    // Nothing to hold without a reason.
    let bare = cli(
        &moto,
        &estate,
        &[],
        &["hold", "--case-id", &id, "--reason", " "],
    );
    assert_eq!(bare.status.code(), Some(2), "{}", explain(&bare));

    let held = cli(
        &moto,
        &estate,
        &[],
        &["hold", "--case-id", &id, "--reason", "matter 2026-17"],
    );
    assert_eq!(held.status.code(), Some(0), "{}", explain(&held));
    let outcome: Value = serde_json::from_slice(&held.stdout).expect("JSON");
    assert_eq!(outcome["complete"], true, "{outcome:#}");
    let placed_by = outcome["hold"]["placedBy"].as_str().unwrap().to_owned();

    // The case as its newest signed manifest lists it: the hold recorded,
    // in custody and in `holds`, and every object of every manifest held.
    let now = sealed_case(&responder, &id).await.expect("the sealed case");
    let hold = now.case.hold().expect("under a hold");
    assert_eq!(hold.reason, "matter 2026-17");
    assert!(hold.complete(), "{hold:#?}");
    assert_eq!(hold.copies.len(), 1);
    assert_eq!(hold.copies[0].snapshot_id, copy);
    assert!(now
        .case
        .custody
        .iter()
        .any(|e| e.step == "hold" && e.actor == placed_by && e.action.contains("matter 2026-17")));
    for listed in &now.manifest.artifacts {
        assert_eq!(
            legal_hold(&responder, &bucket, &listed.key, &listed.version_id).await,
            "ON",
            "{} version {}",
            listed.key,
            listed.version_id
        );
    }
    for object in &hold.objects {
        assert_eq!(
            legal_hold(&responder, &bucket, &object.key, &object.version_id).await,
            "ON",
            "{}",
            object.key
        );
    }
    let verified = cli(&moto, &estate, &[], &["verify", "--case-id", &id]);
    assert!(
        verified.status.success()
            && String::from_utf8_lossy(&verified.stdout).contains("VERIFIED: all"),
        "{}",
        explain(&verified)
    );

    // Another seal of the case from before the hold (a second attempt of
    // its execution) does not drop the hold: the seal carries it forward.
    let later = seal_evidence(&responder, case.clone())
        .await
        .expect("sealed again");
    assert!(later.hold().is_some(), "the later seal carried the hold");
    let now = sealed_case(&responder, &id).await.expect("the sealed case");
    assert_eq!(
        now.case.hold().map(|h| h.reason.as_str()),
        Some("matter 2026-17")
    );
    assert_eq!(now.chain_problems, 0);

    // One hold, release or clean-up of a case at a time: while another
    // holds the case's recovery lease, a release is refused.
    let leases = estate.forensic.lease_table.clone();
    responder
        .clients
        .dynamodb
        .put_item()
        .table_name(&leases)
        .item(
            "instance",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("recovery:{id}")),
        )
        .item(
            "caseId",
            aws_sdk_dynamodb::types::AttributeValue::S(id.clone()),
        )
        .item(
            "holder",
            aws_sdk_dynamodb::types::AttributeValue::S("someone else".into()),
        )
        .item(
            "expiresAt",
            aws_sdk_dynamodb::types::AttributeValue::N("99999999999".into()),
        )
        .send()
        .await
        .expect("PutItem");
    let busy = cli(&moto, &estate, &[], &["cleanup", "--case-id", &id]);
    assert_eq!(busy.status.code(), Some(2), "{}", explain(&busy));
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("NotReady"),
        "{}",
        explain(&busy)
    );
    responder
        .clients
        .dynamodb
        .delete_item()
        .table_name(&leases)
        .key(
            "instance",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("recovery:{id}")),
        )
        .send()
        .await
        .expect("DeleteItem");

    // The attack: whoever can delete in the bucket and in EC2 cannot
    // remove a held version or the locked copy.
    let first = &hold.objects[0];
    let deleted = responder
        .clients
        .s3
        .delete_object()
        .bucket(&bucket)
        .key(&first.key)
        .version_id(&first.version_id)
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(deleted.is_err(), "a held version was deleted");
    let gone = responder
        .clients
        .ec2
        .delete_snapshot()
        .snapshot_id(&copy)
        .send()
        .await;
    assert!(gone.is_err(), "the locked copy was deleted");

    // The person who placed it cannot release it.
    let own = cli(
        &moto,
        &estate,
        &[],
        &["hold", "--case-id", &id, "--reason", "done", "--release"],
    );
    assert_eq!(own.status.code(), Some(2), "{}", explain(&own));
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("SelfApproval"),
        "{}",
        explain(&own)
    );
    assert!(sealed_case(&responder, &id)
        .await
        .unwrap()
        .case
        .hold()
        .is_some());

    // Another person, as AWS authenticates them (a role session), can.
    let assumed = responder
        .clients
        .sts
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/legal")
        .role_session_name("counsel")
        .send()
        .await
        .expect("AssumeRole");
    let credentials = assumed.credentials().expect("credentials");
    let counsel = [
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key()),
        ("AWS_SESSION_TOKEN", credentials.session_token()),
    ];
    let released = cli(
        &moto,
        &estate,
        &counsel,
        &[
            "hold",
            "--case-id",
            &id,
            "--reason",
            "matter closed",
            "--release",
        ],
    );
    assert_eq!(released.status.code(), Some(0), "{}", explain(&released));
    let after = sealed_case(&responder, &id).await.expect("the sealed case");
    assert!(after.case.hold().is_none());
    let release = after.case.holds.last().unwrap().released.as_ref().unwrap();
    assert!(
        release.by.contains("assumed-role/legal/counsel"),
        "{release:#?}"
    );
    assert!(after
        .case
        .custody
        .iter()
        .any(|e| e.step == "hold-release" && e.actor == release.by));
    for object in &release.objects {
        assert_eq!(
            legal_hold(&responder, &bucket, &object.key, &object.version_id).await,
            "OFF",
            "{}",
            object.key
        );
    }
    assert!(
        release.copies.iter().all(|c| c.error.is_none()),
        "{release:#?}"
    );
    let verified = cli(&moto, &estate, &[], &["verify", "--case-id", &id]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("VERIFIED: all"),
        "{}",
        explain(&verified)
    );
    // Nothing more to release.
    let again = cli(
        &moto,
        &estate,
        &counsel,
        &["hold", "--case-id", &id, "--reason", "again", "--release"],
    );
    assert_eq!(again.status.code(), Some(2), "{}", explain(&again));
}

fn tags(kind: ResourceType, case_id: &str, role: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(
            Tag::builder()
                .key("ec2-forensics:case-id")
                .value(case_id)
                .build(),
        )
        .tags(Tag::builder().key("ec2-forensics:role").value(role).build())
        .build()
}

/// A case as the playbook leaves it: a workstation (protected) with an
/// evidence volume attached, the workload snapshot and the forensic copy,
/// each tagged as the product tags them; and a second workstation entry
/// naming an instance that is not the case's (untagged).
async fn worked(moto: &Moto, estate: &Estate) -> (Responder, Case, String) {
    let (responder, mut case) = system_tests::dry_run_case(moto, estate, "cleanup test").await;
    let id = case.case_id.clone();
    let ec2 = &responder.clients.ec2;
    let image = system_tests::linux_image(&responder.clients).await;
    let subnet = estate
        .forensic
        .forensic_subnets
        .values()
        .next()
        .unwrap()
        .clone();
    let launch = |tagged: bool| {
        let mut run = ec2
            .run_instances()
            .image_id(&image)
            .instance_type(InstanceType::T3Micro)
            .subnet_id(&subnet)
            .min_count(1)
            .max_count(1);
        if tagged {
            run = run.disable_api_termination(true).tag_specifications(tags(
                ResourceType::Instance,
                &id,
                "forensic-workstation",
            ));
        }
        run.send()
    };
    let station = launch(true).await.expect("RunInstances");
    let station = station.instances()[0].clone();
    let zone = station
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap()
        .to_owned();
    let station = station.instance_id().unwrap().to_owned();
    let bystander = launch(false).await.expect("RunInstances").instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let volume = ec2
        .create_volume()
        .availability_zone(&zone)
        .size(8)
        .tag_specifications(tags(ResourceType::Volume, &id, "evidence-volume"))
        .send()
        .await
        .expect("CreateVolume")
        .volume_id()
        .unwrap()
        .to_owned();
    ec2.attach_volume()
        .volume_id(&volume)
        .instance_id(&station)
        .device("/dev/sdf")
        .send()
        .await
        .expect("AttachVolume");
    let snapshot = |role: &'static str| {
        ec2.create_snapshot()
            .volume_id(&estate.victim.volume_ids[0])
            .tag_specifications(tags(ResourceType::Snapshot, &id, role))
            .send()
    };
    let workload = snapshot("evidence").await.expect("CreateSnapshot");
    let copy = snapshot("forensic-copy").await.expect("CreateSnapshot");
    let now = playbook::case::custody::now_utc();
    let progress = |id: &str| SnapshotProgress {
        snapshot_id: id.to_owned(),
        state: "completed".into(),
        started_at: Some(now.clone()),
        ..SnapshotProgress::default()
    };
    case.snapshots.push(VolumeEvidence {
        instance_id: estate.victim.instance_id.clone(),
        volume_id: estate.victim.volume_ids[0].clone(),
        snapshot: progress(workload.snapshot_id().unwrap()),
        copy: Some(progress(copy.snapshot_id().unwrap())),
        ..VolumeEvidence::default()
    });
    for instance in [&station, &bystander] {
        case.workstations.push(
            serde_json::from_value(serde_json::json!({
                "availabilityZone": zone, "subnetId": subnet, "imageId": image,
                "instanceId": instance, "state": "running"
            }))
            .expect("a Workstation"),
        );
    }
    case.evidence_volumes.push(EvidenceVolume {
        source_volume_id: estate.victim.volume_ids[0].clone(),
        instance_id: estate.victim.instance_id.clone(),
        copy_snapshot_id: copy.snapshot_id().unwrap().to_owned(),
        availability_zone: zone,
        volume_id: Some(volume),
        state: "in-use".into(),
        device: Some("/dev/sdf".into()),
        attached: true,
        reason: None,
    });
    let case = seal_evidence(&responder, case).await.expect("sealed");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    (responder, case, bystander)
}

async fn instance_state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    ec2.describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances")
        .reservations()[0]
        .instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default()
}

async fn snapshot_exists(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    !playbook::steps::disk::describe_snapshots(ec2, &[id.to_owned()])
        .await
        .expect("DescribeSnapshots")
        .is_empty()
}

async fn volume_exists(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    !ec2.describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("volume-id")
                .values(id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeVolumes")
        .volumes()
        .is_empty()
}

/// The ids of what `worked` made, from its Case.
struct Made {
    id: String,
    station: String,
    volume: String,
    workload: String,
    copy: String,
}

fn made(case: &Case) -> Made {
    Made {
        id: case.case_id.clone(),
        station: case.workstations[0].instance_id.clone().unwrap(),
        volume: case.evidence_volumes[0].volume_id.clone().unwrap(),
        workload: case.snapshots[0].snapshot.snapshot_id.clone(),
        copy: case.snapshots[0].copy.as_ref().unwrap().snapshot_id.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_what_the_case_no_longer_needs_and_verify_still_holds() {
    let moto = Moto::start();
    let estate = moto.seed("cleanup");
    let (responder, case, bystander) = worked(&moto, &estate).await;
    let Made {
        id,
        station,
        volume,
        workload,
        copy,
    } = made(&case);

    let dry = cli(
        &moto,
        &estate,
        &[],
        &["cleanup", "--case-id", &id, "--dry-run"],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", explain(&dry));
    let planned: Value = serde_json::from_slice(&dry.stdout).expect("JSON");
    let remove: Vec<(String, String)> = planned["plan"]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        remove,
        vec![
            ("workstation".to_owned(), station.clone()),
            ("workstation".to_owned(), bystander.clone()),
            ("evidence-volume".to_owned(), volume.clone()),
            ("workload-snapshot".to_owned(), workload.clone()),
        ],
        "{planned:#}"
    );
    let kept = &planned["plan"]["keep"][0];
    assert_eq!(kept["resource"]["id"], copy.as_str(), "{planned:#}");
    assert!(kept["why"].as_str().unwrap().starts_with("retained until"));
    assert_eq!(
        instance_state(&responder.clients.ec2, &station).await,
        "running",
        "a dry run changes nothing"
    );
    assert!(snapshot_exists(&responder.clients.ec2, &workload).await);

    let done = cli(&moto, &estate, &[], &["cleanup", "--case-id", &id]);
    // The bystander is not the case's: not removed, so the clean-up is not complete.
    assert_eq!(done.status.code(), Some(1), "{}", explain(&done));
    let outcome: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let removals = outcome["cleanup"]["removals"].as_array().unwrap();
    let of = |id: &str| {
        removals
            .iter()
            .find(|r| r["resource"]["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {outcome:#}"))
    };
    assert_eq!(of(&station)["removed"], true, "{outcome:#}");
    assert_eq!(of(&bystander)["removed"], false, "{outcome:#}");
    assert!(of(&bystander)["detail"]
        .as_str()
        .unwrap()
        .contains("not touched"));
    assert_eq!(of(&volume)["removed"], true, "{outcome:#}");
    assert_eq!(of(&workload)["removed"], true, "{outcome:#}");
    assert_eq!(
        instance_state(&responder.clients.ec2, &station).await,
        "terminated"
    );
    assert_eq!(
        instance_state(&responder.clients.ec2, &bystander).await,
        "running"
    );
    assert!(!volume_exists(&responder.clients.ec2, &volume).await);
    assert!(!snapshot_exists(&responder.clients.ec2, &workload).await);
    assert!(
        snapshot_exists(&responder.clients.ec2, &copy).await,
        "the copy is retained"
    );

    // Recorded and sealed again: verify holds, the removed snapshot as removed.
    let now = sealed_case(&responder, &id).await.expect("the sealed case");
    assert_eq!(now.case.cleanups.len(), 1);
    assert!(now.case.custody.iter().any(|e| e.step == "cleanup-case"));
    assert_eq!(now.case.snapshots[0].snapshot.state, "deleted");
    let verified = cli(&moto, &estate, &[], &["verify", "--case-id", &id]);
    let shown = String::from_utf8_lossy(&verified.stdout);
    assert!(shown.contains("VERIFIED: all"), "{}", explain(&verified));
    assert!(shown.contains("removed by clean-up"), "{shown}");

    // A second run plans only what is left: the bystander, and the copy kept.
    let again = cli(
        &moto,
        &estate,
        &[],
        &["cleanup", "--case-id", &id, "--dry-run"],
    );
    let planned: Value = serde_json::from_slice(&again.stdout).expect("JSON");
    let left: Vec<&str> = planned["plan"]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![bystander.as_str()], "{planned:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_under_a_hold_removes_nothing_held() {
    let moto = Moto::start();
    let estate = moto.seed("cleanup-held");
    let (responder, case, _) = worked(&moto, &estate).await;
    let Made {
        id,
        station,
        volume,
        workload,
        copy,
    } = made(&case);
    let held = cli(
        &moto,
        &estate,
        &[],
        &["hold", "--case-id", &id, "--reason", "litigation"],
    );
    assert_eq!(held.status.code(), Some(0), "{}", explain(&held));

    // The attack: a writer of the bucket (no custody key) stores a newer
    // case.json without the hold. Clean-up reads the Case the signed
    // manifest lists, never that one.
    let mut forged = case.clone();
    forged.holds.clear();
    responder
        .clients
        .s3
        .put_object()
        .bucket(&estate.forensic.evidence_bucket)
        .key(format!("cases/{id}/case.json"))
        .body(serde_json::to_vec(&forged).unwrap().into())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("the bucket writer's version");

    let done = cli(&moto, &estate, &[], &["cleanup", "--case-id", &id]);
    let outcome: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    for evidence in [&volume, &workload, &copy] {
        let kept = outcome["plan"]["keep"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["resource"]["id"] == evidence.as_str())
            .unwrap_or_else(|| panic!("{evidence} kept: {outcome:#}"));
        assert!(
            kept["why"].as_str().unwrap().contains("legal hold"),
            "{kept:#}"
        );
    }
    assert!(volume_exists(&responder.clients.ec2, &volume).await);
    assert!(snapshot_exists(&responder.clients.ec2, &workload).await);
    assert!(snapshot_exists(&responder.clients.ec2, &copy).await);
    // The workstation is no evidence: it goes.
    assert_eq!(
        instance_state(&responder.clients.ec2, &station).await,
        "terminated"
    );
    let kinds: Vec<ResourceKind> = sealed_case(&responder, &id).await.unwrap().case.cleanups[0]
        .removals
        .iter()
        .filter(|r| r.removed)
        .map(|r| r.resource.kind)
        .collect();
    assert_eq!(kinds, vec![ResourceKind::Workstation]);
    let verified = cli(&moto, &estate, &[], &["verify", "--case-id", &id]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("VERIFIED: all"),
        "{}",
        explain(&verified)
    );
}

/// The CLI with `who`'s credentials over the local stack's environment
/// (RECOVERY_URL: hold and cleanup go through the deployed function).
fn stack_cli(stack: &LocalStack, who: &BTreeMap<String, String>, args: &[&str]) -> Output {
    system_tests::cli_as(env!("CARGO_BIN_EXE_ec2-forensics"), stack, who, args)
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", explain(output)))
}

/// Recovery on the local stack, through the deployed cleanup-case
/// function's URL (AWS_IAM, SigV4 checked by the bench): a GuardDuty finding
/// runs the whole playbook to a sealed case with a workstation, evidence
/// volumes, snapshots and forensic copies. Someone without permission on
/// the URL is refused; a person places a legal hold; a clean-up under the
/// hold removes the workstation and nothing held; the person who placed the
/// hold cannot release it, another can; the clean-up after that removes
/// exactly the evidence volumes and workload snapshots (the copies stay,
/// retained), and `verify` still holds. Every step is in the Case, by person.
#[tokio::test]
async fn through_the_stack_a_sealed_case_is_held_cleaned_up_around_the_hold_released_and_cleaned_up(
) {
    let stack = LocalStack::start(None);
    let estate = stack.seed("recovery");
    let run = stack.run(&event_for(
        "guardduty-crypto-mining-dns.json",
        &estate.victim.instance_id,
    ));
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let case: playbook::Case = serde_json::from_value(run.output.clone()).expect("a Case");
    let id = case.case_id.clone();
    let station = case.workstations[0]
        .instance_id
        .clone()
        .expect("a workstation");
    let volumes: Vec<String> = case
        .evidence_volumes
        .iter()
        .filter_map(|v| v.volume_id.clone())
        .collect();
    let snapshots: Vec<String> = case
        .snapshots
        .iter()
        .map(|v| v.snapshot.snapshot_id.clone())
        .collect();
    let copies: Vec<String> = case
        .snapshots
        .iter()
        .filter_map(|v| v.copy.as_ref().map(|c| c.snapshot_id.clone()))
        .collect();
    assert!(!volumes.is_empty() && !snapshots.is_empty() && copies.len() == snapshots.len());
    let ec2 = stack.clients().await.ec2;

    let nobody = stack.person("nobody", &[]);
    let counsel = stack.person("counsel", &["cleanup-case"]);
    let legal = stack.person("legal-lead", &["cleanup-case"]);

    // No permission on the URL: refused before the function runs.
    let refused = stack_cli(
        &stack,
        &nobody,
        &["hold", "--case-id", &id, "--reason", "x"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", explain(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("AccessDenied"));

    let held = stack_cli(
        &stack,
        &counsel,
        &["hold", "--case-id", &id, "--reason", "matter 2026-17"],
    );
    assert_eq!(held.status.code(), Some(0), "{}", explain(&held));
    let held = json_of(&held);
    assert_eq!(
        held["hold"]["placedBy"],
        counsel["APPROVER_ARN"].as_str(),
        "{held:#}"
    );
    assert_eq!(
        held["hold"]["copies"].as_array().unwrap().len(),
        copies.len()
    );

    // Under the hold: the workstation goes, nothing of the evidence.
    let under = stack_cli(&stack, &counsel, &["cleanup", "--case-id", &id]);
    assert_eq!(under.status.code(), Some(0), "{}", explain(&under));
    let under = json_of(&under);
    let removed: Vec<&str> = under["cleanup"]["removals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["removed"] == true)
        .map(|r| r["resource"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(removed, vec!["workstation"], "{under:#}");
    assert_eq!(instance_state(&ec2, &station).await, "terminated");
    for volume in &volumes {
        assert!(volume_exists(&ec2, volume).await, "{volume} is held");
    }
    for snapshot in snapshots.iter().chain(&copies) {
        assert!(snapshot_exists(&ec2, snapshot).await, "{snapshot} is held");
    }

    // Only another person releases it.
    let own = stack_cli(
        &stack,
        &counsel,
        &["hold", "--case-id", &id, "--reason", "done", "--release"],
    );
    assert_eq!(own.status.code(), Some(2), "{}", explain(&own));
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("SelfApproval"),
        "{}",
        explain(&own)
    );
    let released = stack_cli(
        &stack,
        &legal,
        &[
            "hold",
            "--case-id",
            &id,
            "--reason",
            "matter closed",
            "--release",
        ],
    );
    assert_eq!(released.status.code(), Some(0), "{}", explain(&released));

    // The clean-up now removes the evidence volumes and the workload
    // snapshots; the forensic copies are retained.
    let plan = stack_cli(
        &stack,
        &counsel,
        &["cleanup", "--case-id", &id, "--dry-run"],
    );
    let plan = json_of(&plan);
    let mut planned: Vec<(String, String)> = plan["plan"]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    planned.sort();
    let mut expected: Vec<(String, String)> = volumes
        .iter()
        .map(|v| ("evidence-volume".to_owned(), v.clone()))
        .chain(
            snapshots
                .iter()
                .map(|s| ("workload-snapshot".to_owned(), s.clone())),
        )
        .collect();
    expected.sort();
    assert_eq!(planned, expected, "{plan:#}");
    let done = stack_cli(&stack, &counsel, &["cleanup", "--case-id", &id]);
    assert_eq!(done.status.code(), Some(0), "{}", explain(&done));
    for volume in &volumes {
        assert!(!volume_exists(&ec2, volume).await, "{volume}");
    }
    for snapshot in &snapshots {
        assert!(!snapshot_exists(&ec2, snapshot).await, "{snapshot}");
    }
    for copy in &copies {
        assert!(snapshot_exists(&ec2, copy).await, "{copy} is retained");
    }

    // Recorded by person, and sealed: verify holds.
    let verified = stack_cli(&stack, &BTreeMap::new(), &["verify", "--case-id", &id]);
    let shown = String::from_utf8_lossy(&verified.stdout);
    assert!(shown.contains("VERIFIED: all"), "{}", explain(&verified));
    let stored = stack.stored_case(&id).await;
    // Security Hub heard of each clean-up (a note; what it answered is recorded).
    let told: Vec<_> = stored
        .finding_updates
        .iter()
        .filter(|u| u.moment == playbook::case::FindingMoment::CleanedUp)
        .collect();
    assert_eq!(told.len(), 2, "{:#?}", stored.finding_updates);
    assert!(told[1].note.contains("cleaned up:"), "{}", told[1].note);
    assert_eq!(told[1].state, "cleaned-up");
    let steps: Vec<(&str, &str)> = stored
        .custody
        .iter()
        .filter(|e| ["hold", "hold-release", "cleanup-case"].contains(&e.step.as_str()))
        .map(|e| (e.step.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("hold", counsel["APPROVER_ARN"].as_str()),
            ("cleanup-case", counsel["APPROVER_ARN"].as_str()),
            ("hold-release", legal["APPROVER_ARN"].as_str()),
            ("cleanup-case", counsel["APPROVER_ARN"].as_str()),
        ]
    );
}
