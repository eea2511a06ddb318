//! snapshot-volumes: one crash-consistent, multi-volume snapshot set per
//! instance (`CreateSnapshots`), started before anything touches the host.
//!
//! A snapshot is point-in-time when it is started: waiting for it to complete
//! is check-snapshots' job, after isolation.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{CopyTagsFromSource, InstanceSpecification, Tag};
use futures::future::join_all;
use serde_json::json;

use super::{
    find_snapshots, progress_of, snapshot_tags, tag_of, DEVICE_TAG, EVIDENCE_ROLE, INSTANCE_TAG,
    VOLUME_TAG,
};
use crate::aws::{Responder, Workload};
use crate::case::custody::{entry, sha256_json};
use crate::case::evidence::{upsert_volume, SnapshotProgress, VolumeEvidence};
use crate::case::{Case, StepError};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::evidence::keep_case;
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::{describe_all, is_terminated, CASE_TAG, ROLE_TAG};

/// The step name in custody entries and errors.
pub const STEP: &str = "snapshot-volumes";

/// Starts the snapshot set of every instance of the case, or finds the one
/// a previous run started. Failures are recorded per instance; the step fails
/// (for the state machine's Retry) only when every instance failed transiently.
pub async fn snapshot_volumes(
    responder: &Responder,
    workload: &Workload,
    mut case: Case,
) -> Result<Case> {
    let described = describe_all(&workload.clients.ec2, &case.incident.instance_ids).await;
    let runs = described.into_iter().map(|(id, described)| {
        let case = &case;
        async move {
            let result = match described {
                Ok((_, instance)) if is_terminated(&instance) => {
                    Err(PlaybookError::InstanceNotFound {
                        instance_id: id.clone(),
                        message: "the instance is terminated: its volumes may be gone".into(),
                    })
                }
                Ok((_, instance)) => snapshot_instance(workload, case, &id, &instance).await,
                Err(err) => Err(err),
            };
            (id, result)
        }
    });
    let results: BTreeMap<String, Result<Started>> = join_all(runs).await.into_iter().collect();
    if let Some(err) = crate::steps::all_failed_transiently(&results) {
        return Err(err);
    }
    for (id, result) in results {
        match result {
            Ok(started) => {
                let ids: Vec<&str> = started
                    .volumes
                    .iter()
                    .map(|v| v.snapshot.snapshot_id.as_str())
                    .collect();
                let action = match (started.created, case.decision.dry_run) {
                    (_, true) => format!("would start a crash-consistent snapshot set of {id}"),
                    (true, _) => format!(
                        "started a crash-consistent snapshot set of {id}: {}",
                        ids.join(", ")
                    ),
                    (false, _) => format!(
                        "found the snapshot set of {id} a previous run started: {}",
                        ids.join(", ")
                    ),
                };
                let calls: &[&str] = if started.created {
                    &[
                        "DescribeInstances",
                        "DescribeSnapshots",
                        "CreateSnapshots",
                        "CreateTags",
                    ]
                } else {
                    &["DescribeInstances", "DescribeSnapshots"]
                };
                case.record(entry(
                    STEP,
                    &workload.actor,
                    action,
                    calls,
                    json!({ "instanceId": id, "volumes": started.attached }),
                    json!({ "snapshots": started.volumes.iter().map(|v| json!({"volumeId": v.volume_id, "snapshotId": v.snapshot.snapshot_id})).collect::<Vec<_>>() }),
                    Some(sha256_json(&started.volumes)),
                ));
                for volume in started.volumes {
                    upsert_volume(&mut case.snapshots, volume);
                }
                for missing in started.missing {
                    case.errors.push(StepError::new(
                        STEP,
                        &PlaybookError::NotReady(format!("EC2 returned no snapshot of {missing}")),
                        format!("volume {missing} of {id} has no snapshot"),
                    ));
                }
            }
            Err(err) => case.errors.push(StepError::new(
                STEP,
                &err,
                format!("the volumes of {id} were not snapshotted"),
            )),
        }
    }
    keep_case(EvidenceStore::of(responder).as_ref(), &mut case, STEP).await;
    Ok(case)
}

/// One instance's snapshot set.
struct Started {
    volumes: Vec<VolumeEvidence>,
    /// The instance's attached EBS volumes, by device.
    attached: BTreeMap<String, String>,
    /// Whether this run created it.
    created: bool,
    /// Attached volumes with no snapshot.
    missing: Vec<String>,
}

async fn snapshot_instance(
    workload: &Workload,
    case: &Case,
    instance_id: &str,
    instance: &aws_sdk_ec2::types::Instance,
) -> Result<Started> {
    let ec2 = &workload.clients.ec2;
    // device -> volume
    let attached: BTreeMap<String, String> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            Some((
                m.device_name()?.to_owned(),
                m.ebs()?.volume_id()?.to_owned(),
            ))
        })
        .collect();
    let device_of = |volume: &str| {
        attached
            .iter()
            .find(|(_, v)| v.as_str() == volume)
            .map(|(d, _)| d.clone())
    };
    let existing = find_snapshots(
        ec2,
        &case.case_id,
        EVIDENCE_ROLE,
        Some((INSTANCE_TAG, instance_id)),
    )
    .await?;
    let mut volumes: Vec<VolumeEvidence> = existing
        .iter()
        .filter_map(|s| {
            let volume_id = tag_of(s, VOLUME_TAG).or(s.volume_id())?.to_owned();
            Some(VolumeEvidence {
                instance_id: instance_id.to_owned(),
                device: tag_of(s, DEVICE_TAG)
                    .map(str::to_owned)
                    .or_else(|| device_of(&volume_id)),
                volume_id,
                snapshot: progress_of(s),
                ..VolumeEvidence::default()
            })
        })
        .collect();
    let (covered, missing): (Vec<(String, String)>, Vec<_>) = attached
        .iter()
        .map(|(d, v)| (d.clone(), v.clone()))
        .partition(|(_, v)| volumes.iter().any(|e| &e.volume_id == v));
    if missing.is_empty() || case.decision.dry_run {
        return Ok(Started {
            volumes,
            created: false,
            missing: Vec::new(),
            attached,
        });
    }
    // A previous run snapshotted some volumes: only the others are taken now.
    let root = instance.root_device_name().unwrap_or_default();
    let mut spec = InstanceSpecification::builder().instance_id(instance_id);
    if covered.iter().any(|(d, _)| d == root) {
        spec = spec.exclude_boot_volume(true);
    }
    for (device, volume) in &covered {
        if device != root {
            spec = spec.exclude_data_volume_ids(volume);
        }
    }
    let out = ec2
        .create_snapshots()
        .instance_specification(spec.build())
        .description(format!(
            "ec2-forensics evidence, case {}, instance {instance_id}",
            case.case_id
        ))
        .copy_tags_from_source(CopyTagsFromSource::Volume)
        .tag_specifications(snapshot_tags(&[
            (CASE_TAG, &case.case_id),
            (ROLE_TAG, EVIDENCE_ROLE),
            (INSTANCE_TAG, instance_id),
        ]))
        .send()
        .await
        .aws("CreateSnapshots", Some(instance_id))?;
    let mut started = Vec::new();
    for info in out.snapshots() {
        let (Some(snapshot_id), Some(volume_id)) = (info.snapshot_id(), info.volume_id()) else {
            continue;
        };
        started.push(VolumeEvidence {
            instance_id: instance_id.to_owned(),
            volume_id: volume_id.to_owned(),
            device: device_of(volume_id),
            snapshot: SnapshotProgress {
                snapshot_id: snapshot_id.to_owned(),
                state: info
                    .state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                progress: info.progress().map(str::to_owned),
                started_at: info.start_time().map(|t| crate::case::custody::rfc3339(*t)),
                ..SnapshotProgress::default()
            },
            ..VolumeEvidence::default()
        });
    }
    // Per-snapshot tags: which volume and device each one is of.
    let tagging = started.iter().map(|v| {
        let mut tags = vec![Tag::builder().key(VOLUME_TAG).value(&v.volume_id).build()];
        if let Some(device) = &v.device {
            tags.push(Tag::builder().key(DEVICE_TAG).value(device).build());
        }
        ec2.create_tags()
            .resources(&v.snapshot.snapshot_id)
            .set_tags(Some(tags))
            .send()
    });
    for result in join_all(tagging).await {
        result.aws("CreateTags", Some(instance_id))?;
    }
    volumes.extend(started);
    let missing = attached
        .values()
        .filter(|v| !volumes.iter().any(|e| &e.volume_id == *v))
        .cloned()
        .collect();
    Ok(Started {
        volumes,
        attached,
        created: true,
        missing,
    })
}
