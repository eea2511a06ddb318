//! `ec2-forensics investigate` and `verify` against the moto server, in
//! single-account mode: a victim with three volumes (customer key, AWS managed
//! key, unencrypted) is contained, snapshotted, copied under the forensic key
//! and sealed; the manifest is verified, then tampered with.

use std::process::Output;

use aws_sdk_ec2::types::{Filter, SnapshotAttributeName};
use playbook::case::custody::{sha256_hex, verify_chain};
use playbook::case::evidence::Manifest;
use playbook::case::{Case, Encryption};
use system_tests::{Estate, Moto};

fn cli(moto: &Moto, estate: &Estate, args: &[&str]) -> Output {
    system_tests::cli_against(env!("CARGO_BIN_EXE_ec2-forensics"), moto, estate)
        .args(args)
        .output()
        .expect("the CLI runs")
}

fn investigate(moto: &Moto, estate: &Estate, out: &std::path::Path) -> Output {
    cli(
        moto,
        estate,
        &[
            "investigate",
            "--instance",
            &estate.victim.instance_id,
            "--reason",
            "disk evidence test",
            "--poll-seconds",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}\nstdout:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

async fn own_snapshot_ids(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("DescribeSnapshots");
    let mut ids: Vec<String> = out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn investigate_preserves_every_volume_under_the_forensic_key_and_verify_holds_until_tampered()
{
    let moto = Moto::start();
    let estate = moto.seed("inv");
    let victim = &estate.victim;
    let clients = moto.clients().await;
    let dir = std::env::temp_dir().join(format!("ec2f-investigate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("case.json");

    let output = investigate(&moto, &estate, &out);
    assert!(output.status.success(), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[isolate-network] contained"), "{stderr}");
    assert!(stderr.contains("[seal-evidence] manifest"), "{stderr}");
    let case: Case = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(case.is_contained());
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    // The whole playbook: memory before isolation, and every forensic copy
    // analysed on a workstation (the bench's agent plays host and workstation).
    assert!(
        !case.memory.is_empty() && case.memory.iter().all(|m| m.verified),
        "{:?}",
        case.memory
    );
    assert_eq!(case.analysis.len(), 3, "{:?}", case.analysis);
    assert!(case
        .analysis
        .iter()
        .all(|a| a.status == "analysed" && a.unchanged && !a.indicators.is_empty()));

    // One snapshot and one forensic copy per volume, under the forensic key.
    assert_eq!(case.snapshots.len(), 3, "{:?}", case.snapshots);
    let mut volumes: Vec<&str> = case
        .snapshots
        .iter()
        .map(|v| v.volume_id.as_str())
        .collect();
    volumes.sort();
    let mut expected = victim
        .volume_ids
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>();
    expected.sort();
    assert_eq!(volumes, expected);
    for volume in &case.snapshots {
        let want = match volume.device.as_deref() {
            Some("/dev/xvda") => Encryption::CustomerKey,
            Some("/dev/sdf") => Encryption::AwsManagedKey,
            Some("/dev/sdg") => Encryption::Unencrypted,
            other => panic!("unexpected device {other:?}"),
        };
        assert_eq!(volume.encryption, Some(want), "{}", volume.volume_id);
        assert!(volume.snapshot.is_completed());
        let sharing = volume.sharing.as_ref().expect("sharing recorded");
        assert!(sharing.ready && sharing.verified_private);
        assert_eq!(
            sharing.shared_with, None,
            "single-account mode shares nothing"
        );
        let copy = volume.copy.as_ref().expect("a forensic copy");
        assert!(copy.is_completed());
    }
    let copy_ids: Vec<String> = case
        .snapshots
        .iter()
        .map(|v| v.copy.as_ref().unwrap().snapshot_id.clone())
        .collect();
    let copies = clients
        .ec2
        .describe_snapshots()
        .set_snapshot_ids(Some(copy_ids.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(copies.snapshots().len(), 3);
    for copy in copies.snapshots() {
        assert_eq!(copy.encrypted(), Some(true));
        assert_eq!(
            copy.kms_key_id(),
            Some(estate.forensic.evidence_key_arn.as_str())
        );
        assert!(copy
            .tags()
            .iter()
            .any(|t| t.key() == Some("ec2-forensics:case-id")
                && t.value() == Some(case.case_id.as_str())));
    }
    let snapshots = clients
        .ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("tag:ec2-forensics:case-id")
                .values(&case.case_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag:ec2-forensics:role")
                .values("evidence")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(snapshots.snapshots().len(), 3, "the snapshot set, tagged");
    for snapshot in snapshots.snapshots() {
        let tag = |k: &str| {
            snapshot
                .tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        assert!(victim
            .volume_ids
            .contains(&tag("ec2-forensics:volume-id").unwrap()));
        assert!(tag("ec2-forensics:device").is_some());
        assert_eq!(
            tag("ec2-forensics:instance-id").as_deref(),
            Some(victim.instance_id.as_str())
        );
    }

    // Nothing is public, nor shared with anyone.
    let all: Vec<String> = snapshots
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .chain(copy_ids.iter().cloned())
        .collect();
    for id in &all {
        let attribute = clients
            .ec2
            .describe_snapshot_attribute()
            .snapshot_id(id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .unwrap();
        assert!(
            attribute.create_volume_permissions().is_empty(),
            "{id} is shared: {attribute:?}"
        );
    }

    // The manifest's hashes match the stored objects, at their versions.
    let bucket = &estate.forensic.evidence_bucket;
    let key = format!("cases/{}/manifest.json", case.case_id);
    let stored = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let manifest_bytes = stored.body.collect().await.unwrap().into_bytes();
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest.case_id, case.case_id);
    assert_eq!(manifest.snapshots.len(), 3);
    assert!(manifest
        .snapshots
        .iter()
        .all(|s| s.copy_id.is_some() && s.encryption.is_some()));
    let kinds: Vec<&str> = manifest.artifacts.iter().map(|a| a.kind.as_str()).collect();
    for kind in ["metadata", "console-output", "case"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for artifact in &manifest.artifacts {
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(&artifact.key)
            .version_id(&artifact.version_id)
            .send()
            .await
            .unwrap();
        let bytes = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len() as u64, artifact.size, "{}", artifact.key);
        assert_eq!(sha256_hex(&bytes), artifact.sha256, "{}", artifact.key);
    }
    // The stored Case's custody chain ends at the manifest's head.
    let case_artifact = manifest
        .artifacts
        .iter()
        .find(|a| a.kind == "case")
        .unwrap();
    let stored_case = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(&case_artifact.key)
        .version_id(&case_artifact.version_id)
        .send()
        .await
        .unwrap();
    let stored_case: Case =
        serde_json::from_slice(&stored_case.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(
        verify_chain(&stored_case.custody),
        Ok(manifest.custody_head.clone())
    );
    assert!(
        verify_chain(&case.custody).is_ok(),
        "the printed Case's chain holds too"
    );

    // The Case was stored after every step that added evidence, and sealed.
    let versions = clients
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(&case_artifact.key)
        .send()
        .await
        .unwrap();
    let mut stored_after = std::collections::BTreeSet::new();
    for version in versions.versions() {
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(&case_artifact.key)
            .version_id(version.version_id().unwrap())
            .send()
            .await
            .unwrap();
        let stored: Case =
            serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
        stored_after.insert(stored.custody.last().unwrap().step.clone());
    }
    for step in [
        "capture-metadata",
        "snapshot-volumes",
        "acquire-memory",
        "check-command",
        "share-snapshots",
        "copy-snapshots",
    ] {
        assert!(
            stored_after.contains(step),
            "the Case was stored after {step}: {stored_after:?}"
        );
    }

    // verify holds...
    let verified = cli(&moto, &estate, &["verify", "--case-id", &case.case_id]);
    assert!(verified.status.success(), "{}", explain(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("VERIFIED"));
    let report = cli(&moto, &estate, &["report", "--case-id", &case.case_id]);
    assert!(report.status.success(), "{}", explain(&report));
    let report = String::from_utf8_lossy(&report.stdout);
    for part in [
        "## Investigator's notes",
        "run-forensics.sh",
        "crypto-mining at",
        "/etc/cron.d/sysupdate",
    ] {
        assert!(report.contains(part), "{part} in the report:\n{report}");
    }

    // ...and fails once the manifest is replaced by a new version.
    let mut tampered: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    tampered["snapshots"] = serde_json::json!([]);
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(serde_json::to_vec_pretty(&tampered).unwrap().into())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("a new manifest version");
    let refused = cli(&moto, &estate, &["verify", "--case-id", &case.case_id]);
    assert_eq!(refused.status.code(), Some(1), "{}", explain(&refused));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("FAIL manifest signature"), "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");

    // A re-run creates nothing new.
    let before = own_snapshot_ids(&clients.ec2).await;
    let again = investigate(&moto, &estate, &dir.join("again.json"));
    let rerun: Case = serde_json::from_slice(&std::fs::read(dir.join("again.json")).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", explain(&again)));
    assert_eq!(
        rerun.case_id, case.case_id,
        "the same request is the same case"
    );
    assert_eq!(
        own_snapshot_ids(&clients.ec2).await,
        before,
        "no new snapshot or copy"
    );
    let ids = |c: &Case| {
        c.snapshots
            .iter()
            .map(|v| {
                (
                    v.snapshot.snapshot_id.clone(),
                    v.copy.as_ref().map(|c| c.snapshot_id.clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    let (mut first, mut second) = (ids(&case), ids(&rerun));
    first.sort();
    second.sort();
    assert_eq!(first, second);
    std::fs::remove_dir_all(&dir).ok();
}
