//! copy-snapshots (forensic side): copies every snapshot the forensic account
//! can use under `FORENSIC_KMS_KEY`, in the forensic account, so the workload
//! account can no longer revoke the evidence. In single-account mode the copy
//! is made from the snapshot itself, still under the forensic key.

use futures::future::join_all;
use serde_json::json;

use super::{
    find_snapshots, progress_of, snapshot_tags, FORENSIC_COPY_ROLE, INSTANCE_TAG, SOURCE_TAG,
    VOLUME_TAG,
};
use crate::aws::{Config, Responder};
use crate::case::custody::{entry, now_utc, sha256_json};
use crate::case::evidence::{pending_and_failed, upsert_volume, SnapshotProgress, VolumeEvidence};
use crate::case::{Case, StepError};
use crate::error::{AwsCall, Result};
use crate::steps::evidence::keep_case;
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::{CASE_TAG, ROLE_TAG};

/// The step name in custody entries and errors.
pub const STEP: &str = "copy-snapshots";

/// Starts (or finds) the forensic copy of every ready snapshot of the case.
pub async fn copy_snapshots(responder: &Responder, mut case: Case) -> Result<Case> {
    let key = Config::required(&responder.config.forensic_kms_key, "FORENSIC_KMS_KEY")?.to_owned();
    let todo: Vec<VolumeEvidence> = case
        .snapshots
        .iter()
        .filter(|v| v.copy.is_none() && v.sharing.as_ref().is_some_and(|s| s.ready))
        .cloned()
        .collect();
    let copies = todo.into_iter().map(|volume| {
        let (case, key) = (&case, key.as_str());
        async move {
            let result = copy_one(&responder.clients.ec2, case, &volume, key).await;
            (volume, result)
        }
    });
    for (mut volume, result) in join_all(copies).await {
        match result {
            Ok((copy, created)) => {
                let source = volume
                    .sharing
                    .as_ref()
                    .and_then(|s| s.source_snapshot_id.clone())
                    .unwrap_or_default();
                case.record(entry(
                    STEP,
                    &responder.identity.actor,
                    if created {
                        format!(
                            "copied {source} under the forensic key: {}",
                            copy.snapshot_id
                        )
                    } else {
                        format!("found the forensic copy of {source}: {}", copy.snapshot_id)
                    },
                    if created {
                        &["DescribeSnapshots", "CopySnapshot"]
                    } else {
                        &["DescribeSnapshots"]
                    },
                    json!({ "volumeId": volume.volume_id, "sourceSnapshotId": source }),
                    json!({ "copyId": copy.snapshot_id, "kmsKeyId": key }),
                    Some(sha256_json(&copy)),
                ));
                volume.copy = Some(copy);
                upsert_volume(&mut case.snapshots, volume);
            }
            Err(err) => case.errors.push(StepError::new(
                STEP,
                &err,
                format!("the evidence of {} has no forensic copy", volume.volume_id),
            )),
        }
    }
    let (pending, failed) =
        pending_and_failed(case.snapshots.iter().filter_map(|v| v.copy.as_ref()));
    case.disk_progress.copies.observe(pending, failed);
    keep_case(EvidenceStore::of(responder).as_ref(), &mut case, STEP).await;
    Ok(case)
}

async fn copy_one(
    ec2: &aws_sdk_ec2::Client,
    case: &Case,
    volume: &VolumeEvidence,
    key: &str,
) -> Result<(SnapshotProgress, bool)> {
    let source = volume
        .sharing
        .as_ref()
        .and_then(|s| s.source_snapshot_id.clone())
        .unwrap_or_else(|| volume.snapshot.snapshot_id.clone());
    let existing = find_snapshots(
        ec2,
        &case.case_id,
        FORENSIC_COPY_ROLE,
        Some((SOURCE_TAG, &source)),
    )
    .await?;
    if let Some(found) = existing.first() {
        return Ok((progress_of(found), false));
    }
    let out = ec2
        .copy_snapshot()
        .source_snapshot_id(&source)
        .source_region(&case.incident.region)
        .encrypted(true)
        .kms_key_id(key)
        .description(format!(
            "ec2-forensics case {}: forensic copy of {source} (volume {})",
            case.case_id, volume.volume_id
        ))
        .tag_specifications(snapshot_tags(&[
            (CASE_TAG, &case.case_id),
            (ROLE_TAG, FORENSIC_COPY_ROLE),
            (SOURCE_TAG, &source),
            (VOLUME_TAG, &volume.volume_id),
            (INSTANCE_TAG, &volume.instance_id),
        ]))
        .send()
        .await
        .aws("CopySnapshot", None)?;
    Ok((
        SnapshotProgress {
            snapshot_id: out.snapshot_id().unwrap_or_default().to_owned(),
            state: "pending".into(),
            kms_key_id: Some(key.to_owned()),
            started_at: Some(now_utc()),
            ..SnapshotProgress::default()
        },
        true,
    ))
}
