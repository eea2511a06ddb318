//! check-snapshots: reads the state and progress of every snapshot and copy
//! not yet settled, and records it. The state machine loops on it with a
//! bounded Wait/Choice; the CLI polls it the same way.

use std::collections::BTreeMap;

use serde_json::json;

use super::{describe_snapshots, progress_of};
use crate::aws::{Clients, Workload};
use crate::case::custody::{entry, now_utc};
use crate::case::evidence::{pending_and_failed, SnapshotProgress};
use crate::case::{Case, StepError};
use crate::error::{PlaybookError, Result};

/// The step name in custody entries and errors.
pub const STEP: &str = "check-snapshots";

/// Which snapshot of a volume's evidence a progress record is.
/// Reads every unsettled snapshot (workload account) and forensic copy
/// (forensic account) and updates the case's progress. A snapshot in
/// `error` is recorded as a `SnapshotFailed` error once.
pub async fn check_snapshots(
    forensic: &Clients,
    workload: &Workload,
    mut case: Case,
) -> Result<Case> {
    let unsettled = |progress: &SnapshotProgress| {
        (!progress.is_settled() && !progress.snapshot_id.is_empty())
            .then(|| progress.snapshot_id.clone())
    };
    let workload_ids: Vec<String> = case
        .snapshots
        .iter()
        .flat_map(|v| v.workload_snapshots())
        .filter_map(unsettled)
        .collect();
    let copies: Vec<String> = case
        .snapshots
        .iter()
        .filter_map(|v| v.copy.as_ref())
        .filter_map(unsettled)
        .collect();
    let sources_pending = case
        .snapshots
        .iter()
        .any(|v| unsettled(&v.snapshot).is_some());
    let (in_workload, in_forensic) = tokio::join!(
        describe_snapshots(&workload.clients.ec2, &workload_ids),
        describe_snapshots(&forensic.ec2, &copies),
    );
    let found: BTreeMap<String, SnapshotProgress> = in_workload?
        .iter()
        .chain(in_forensic?.iter())
        .map(|s| {
            (
                s.snapshot_id().unwrap_or_default().to_owned(),
                progress_of(s),
            )
        })
        .collect();
    let checked: Vec<String> = workload_ids.iter().chain(copies.iter()).cloned().collect();
    let mut failed_now = Vec::new();
    let mut settled_now = Vec::new();
    for volume in &mut case.snapshots {
        let volume_id = volume.volume_id.clone();
        for progress in volume.snapshots_mut() {
            if !checked.contains(&progress.snapshot_id) {
                continue;
            }
            let before = progress.state.clone();
            *progress = match found.get(&progress.snapshot_id) {
                Some(now) => SnapshotProgress {
                    started_at: now.started_at.clone().or(progress.started_at.take()),
                    kms_key_id: now.kms_key_id.clone().or(progress.kms_key_id.take()),
                    ..now.clone()
                },
                None => SnapshotProgress {
                    state: "error".into(),
                    message: Some("the snapshot no longer exists".into()),
                    checked_at: Some(now_utc()),
                    ..progress.clone()
                },
            };
            if progress.is_settled() && before != progress.state {
                settled_now.push(progress.snapshot_id.clone());
            }
            if progress.is_error() && before != "error" {
                failed_now.push((volume_id.clone(), progress.clone()));
            }
        }
    }
    for (volume_id, progress) in &failed_now {
        case.errors.push(StepError::new(
            STEP,
            &PlaybookError::SnapshotFailed {
                snapshot_id: progress.snapshot_id.clone(),
                message: progress
                    .message
                    .clone()
                    .unwrap_or_else(|| "EC2 reports state error".into()),
            },
            format!("the evidence of volume {volume_id} is not preserved by this snapshot"),
        ));
    }
    let (pending, failed) = pending_and_failed(case.snapshots.iter().map(|v| &v.snapshot));
    if sources_pending || !case.disk_progress.snapshots.settled {
        case.disk_progress.snapshots.checked(pending, failed);
    }
    let (pending, failed) =
        pending_and_failed(case.snapshots.iter().filter_map(|v| v.copy.as_ref()));
    if !copies.is_empty() || case.snapshots.iter().any(|v| v.copy.is_some()) {
        case.disk_progress.copies.checked(pending, failed);
    }
    // Only a check that saw something settle is a custody event: a long
    // wait must not fill the Case with "still pending".
    if !settled_now.is_empty() {
        let states: Vec<_> = found
            .values()
            .filter(|p| settled_now.contains(&p.snapshot_id))
            .map(|p| json!({"snapshotId": p.snapshot_id, "state": p.state, "progress": p.progress}))
            .collect();
        case.record(entry(
            STEP,
            &workload.actor,
            format!("{} snapshots and copies settled", settled_now.len()),
            &["DescribeSnapshots"],
            json!({ "snapshotIds": checked }),
            json!({ "states": states, "failed": failed_now.len() }),
            None,
        ));
    }
    Ok(case)
}
