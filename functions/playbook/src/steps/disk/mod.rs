//! Disk evidence: snapshot-volumes (a crash-consistent snapshot set, started
//! beside capture-metadata and protect-instance), check-snapshots (the polls),
//! share-snapshots (workload side) and copy-snapshots (forensic side).
//!
//! Everything the responder creates here is tagged with the case id and its
//! role, and every step first looks for what it already made, so any step can
//! be re-run without creating anything twice.

pub mod check;
pub mod copy;
pub mod share;
pub mod snapshot;

use aws_sdk_ec2::types::{Filter, ResourceType, Snapshot, Tag, TagSpecification};

use crate::case::custody::rfc3339;
use crate::case::evidence::SnapshotProgress;
use crate::error::{AwsCall, Result};

/// Role tag of the suspect's snapshots.
pub const EVIDENCE_ROLE: &str = "evidence";
/// Role tag of a copy under the sharing key (volumes under the AWS managed key).
pub const SHARING_COPY_ROLE: &str = "sharing-copy";
/// Role tag of a copy under the forensic key, in the forensic account.
pub const FORENSIC_COPY_ROLE: &str = "forensic-copy";
/// Tag: the instance a snapshot is of.
pub const INSTANCE_TAG: &str = "ec2-forensics:instance-id";
/// Tag: the volume a snapshot is of.
pub const VOLUME_TAG: &str = "ec2-forensics:volume-id";
/// Tag: the device the instance saw the volume as.
pub const DEVICE_TAG: &str = "ec2-forensics:device";
/// Tag: the snapshot a copy was made from.
pub const SOURCE_TAG: &str = "ec2-forensics:source-snapshot";

/// Tags for a snapshot the responder creates.
pub fn snapshot_tags(pairs: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .set_tags(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

/// The value of tag `key` on a snapshot.
pub fn tag_of<'a>(snapshot: &'a Snapshot, key: &str) -> Option<&'a str> {
    snapshot
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The account's own snapshots of the case with the given role (and, when
/// given, the given source snapshot), every page.
pub async fn find_snapshots(
    ec2: &aws_sdk_ec2::Client,
    case_id: &str,
    role: &str,
    extra: Option<(&str, &str)>,
) -> Result<Vec<Snapshot>> {
    let mut filters = crate::steps::case_role_filters(case_id, role);
    if let Some((key, value)) = extra {
        filters.push(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        );
    }
    let mut found = Vec::new();
    let mut pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        found.extend_from_slice(page.aws("DescribeSnapshots", None)?.snapshots());
    }
    Ok(found)
}

/// The snapshots with these ids that still exist, every page. A missing id
/// is simply absent (the `snapshot-id` filter does not fail on it).
pub async fn describe_snapshots(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
) -> Result<Vec<Snapshot>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mut pages = ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("snapshot-id")
                .set_values(Some(ids.to_vec()))
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        found.extend_from_slice(page.aws("DescribeSnapshots", None)?.snapshots());
    }
    Ok(found)
}

/// A snapshot's state as EC2 describes it.
pub fn progress_of(snapshot: &Snapshot) -> SnapshotProgress {
    SnapshotProgress {
        snapshot_id: snapshot.snapshot_id().unwrap_or_default().to_owned(),
        state: snapshot
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        progress: snapshot.progress().map(str::to_owned),
        kms_key_id: snapshot.kms_key_id().map(str::to_owned),
        message: snapshot
            .state_message()
            .map(str::to_owned)
            .filter(|m| !m.is_empty()),
        started_at: snapshot.start_time().map(|t| rfc3339(*t)),
        checked_at: Some(crate::case::custody::now_utc()),
    }
}

/// A snapshot's progress as a whole percent (0 when EC2 gave none).
pub fn percent(progress: &SnapshotProgress) -> u64 {
    if progress.is_completed() {
        return 100;
    }
    progress
        .progress
        .as_deref()
        .and_then(|p| p.trim_end_matches('%').trim().parse::<f64>().ok())
        .map(|p| p.clamp(0.0, 100.0) as u64)
        .unwrap_or(0)
}
