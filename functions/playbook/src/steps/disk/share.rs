//! share-snapshots (workload side): makes each completed snapshot usable by
//! the forensic account, in the way its volume's encryption allows.
//!
//! - unencrypted: create-volume permission for the forensic account only;
//! - customer managed key: a grant on the key for the forensic account, then
//!   the permission;
//! - AWS managed key (`aws/ebs`), whose use cannot be given away: a copy
//!   re-encrypted under `SHARING_KMS_KEY`, then a grant on that key and the
//!   permission on the copy.
//!
//! Every shared snapshot's permissions are read back: the forensic account
//! only, never the `all` group. In single-account mode nothing is shared: the
//! forensic copy is made from the snapshot itself. The step is re-run by the
//! state machine until every snapshot is ready (a re-encrypted copy takes time).

use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use aws_sdk_kms::types::{GrantOperation, KeyManagerType};
use futures::future::join_all;
use serde_json::json;

use super::{
    find_snapshots, progress_of, snapshot_tags, SHARING_COPY_ROLE, SOURCE_TAG, VOLUME_TAG,
};
use crate::aws::{Config, Responder, Workload};
use crate::case::actions::{failures, ActionRecord, Outcome};
use crate::case::custody::{entry, sha256_json};
use crate::case::evidence::{encryption_of, KeyGrant, Sharing, VolumeEvidence};
use crate::case::{Case, Encryption, StepError};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::evidence::keep_case;
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::{CASE_TAG, ROLE_TAG};

/// The step name in custody entries and errors.
pub const STEP: &str = "share-snapshots";

/// The operations the forensic account needs on a key to copy a snapshot
/// encrypted under it (and re-encrypt the copy under its own key).
pub const GRANTED_OPERATIONS: &[&str] = &[
    "Decrypt",
    "DescribeKey",
    "CreateGrant",
    "ReEncryptFrom",
    "GenerateDataKeyWithoutPlaintext",
];

/// Who manages a KMS key and what its aliases are, as capture-metadata records
/// them for each volume key: the sharing decision rests on them.
pub async fn describe_volume_key(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<(Option<String>, Vec<String>)> {
    let (key, aliases) = tokio::join!(
        kms.describe_key().key_id(key_id).send(),
        kms.list_aliases().key_id(key_id).send(),
    );
    let key = key.aws("DescribeKey", None)?;
    let manager = key
        .key_metadata()
        .and_then(|m| m.key_manager())
        .map(|m| m.as_str().to_owned());
    // ListAliases wants the key id, not an ARN; the id is the ARN's last part.
    let aliases = match aliases {
        Ok(out) => out
            .aliases()
            .iter()
            .filter_map(|a| a.alias_name().map(str::to_owned))
            .collect(),
        Err(err) if manager.as_deref() == Some(KeyManagerType::Customer.as_str()) => {
            tracing::warn!(key_id, error = %err, "aliases not listed");
            Vec::new()
        }
        Err(err) => return Err(PlaybookError::from_sdk("ListAliases", None, &err)),
    };
    Ok((manager, aliases))
}

/// Shares every completed snapshot of the case that is not yet ready for the
/// forensic account, and records how. A snapshot whose sharing failed (a
/// refused call, permissions that are not private) is recorded once and left
/// for a person: later rounds of the state machine's loop do not repeat it.
pub async fn share_snapshots(
    responder: &Responder,
    workload: &Workload,
    mut case: Case,
) -> Result<Case> {
    let forensic_account = responder.identity.account.clone();
    let multi_account = responder.is_multi_account() && workload.account != forensic_account;
    let ready_before = case
        .snapshots
        .iter()
        .filter(|v| v.sharing.as_ref().is_some_and(|s| s.ready))
        .count();
    let todo: Vec<VolumeEvidence> = case
        .snapshots
        .iter()
        .filter(|v| {
            v.snapshot.is_completed()
                && !v
                    .sharing
                    .as_ref()
                    .is_some_and(|s| s.ready || s.has_failed())
        })
        .cloned()
        .collect();
    let shares = todo.into_iter().map(|volume| {
        let case = &case;
        let forensic_account = forensic_account.as_str();
        async move {
            let encryption = match volume.encryption {
                Some(e) => Ok(e),
                None => decide_encryption(workload, case, &volume).await,
            };
            let result = match encryption {
                Ok(encryption) => {
                    let plan = Plan {
                        workload,
                        config: &responder.config,
                        case,
                        forensic_account,
                        multi_account,
                    };
                    plan.share(volume.clone(), encryption).await
                }
                Err(err) => Err(err),
            };
            (volume, result)
        }
    });
    for (volume, result) in join_all(shares).await {
        match result {
            Ok(shared) => {
                let sharing = shared.sharing.clone().unwrap_or_default();
                let done = sharing.ready;
                if done {
                    case.record(entry(
                        STEP,
                        &workload.actor,
                        match &sharing.shared_with {
                            Some(account) => format!(
                                "shared the evidence of {} with the forensic account {account}",
                                volume.volume_id
                            ),
                            None => format!(
                                "single-account mode: {} needs no sharing",
                                volume.volume_id
                            ),
                        },
                        &sharing_calls(&sharing),
                        json!({ "volumeId": volume.volume_id, "snapshotId": volume.snapshot.snapshot_id, "encryption": shared.encryption }),
                        json!({ "sourceSnapshotId": sharing.source_snapshot_id, "grant": sharing.grant, "verifiedPrivate": sharing.verified_private }),
                        Some(sha256_json(&sharing)),
                    ));
                }
                case.errors.extend(failures(STEP, &sharing.actions));
                crate::case::evidence::upsert_volume(&mut case.snapshots, shared);
            }
            Err(err) => {
                if err.is_transient() {
                    tracing::warn!(volume_id = %volume.volume_id, error = %err, "sharing retried on the next check");
                } else {
                    case.errors.push(StepError::new(
                        STEP,
                        &err,
                        format!("the evidence of {} is not shared", volume.volume_id),
                    ));
                    let mut failed = volume.clone();
                    failed.sharing = Some(Sharing {
                        actions: vec![ActionRecord::failed(
                            "share the snapshot",
                            &volume.snapshot.snapshot_id,
                            err.error_type(),
                            err.to_string(),
                        )],
                        ..Sharing::default()
                    });
                    crate::case::evidence::upsert_volume(&mut case.snapshots, failed);
                }
            }
        }
    }
    let completed: Vec<&VolumeEvidence> = case
        .snapshots
        .iter()
        .filter(|v| v.snapshot.is_completed())
        .collect();
    let failed = completed
        .iter()
        .filter(|v| v.sharing.as_ref().is_some_and(Sharing::has_failed))
        .count();
    let ready = completed
        .iter()
        .filter(|v| v.sharing.as_ref().is_some_and(|s| s.ready))
        .count();
    case.disk_progress
        .sharing
        .checked(completed.len() - ready - failed, failed);
    // A round that made nothing ready (a copy still pending) adds no evidence.
    if ready > ready_before {
        keep_case(EvidenceStore::of(responder).as_ref(), &mut case, STEP).await;
    }
    Ok(case)
}

fn sharing_calls(sharing: &Sharing) -> Vec<&'static str> {
    let mut calls = Vec::new();
    if sharing.re_encrypted.is_some() {
        calls.extend(["DescribeSnapshots", "CopySnapshot"]);
    }
    if sharing.grant.is_some() {
        calls.push("CreateGrant");
    }
    if sharing.shared_with.is_some() {
        calls.push("ModifySnapshotAttribute");
    }
    calls.push("DescribeSnapshotAttribute");
    calls
}

/// The volume's encryption, from the captured metadata; when metadata was not
/// captured, from the snapshot's key, described now.
async fn decide_encryption(
    workload: &Workload,
    case: &Case,
    volume: &VolumeEvidence,
) -> Result<Encryption> {
    let captured = case
        .metadata_of(&volume.instance_id)
        .and_then(|m| m.volumes.iter().find(|v| v.volume_id == volume.volume_id));
    if let Some(record) = captured {
        if let Ok(encryption) = encryption_of(record) {
            return Ok(encryption);
        }
    }
    let out = workload
        .clients
        .ec2
        .describe_volumes()
        .volume_ids(&volume.volume_id)
        .send()
        .await
        .aws("DescribeVolumes", Some(&volume.instance_id))?;
    let described = out.volumes().first().ok_or_else(|| {
        PlaybookError::InvalidCase(format!(
            "volume {} is gone and its encryption was not captured",
            volume.volume_id
        ))
    })?;
    let mut record = crate::case::VolumeRecord {
        volume_id: volume.volume_id.clone(),
        encrypted: described.encrypted(),
        kms_key_id: described.kms_key_id().map(str::to_owned),
        ..Default::default()
    };
    if let Some(key) = record.kms_key_id.clone() {
        let (manager, aliases) = describe_volume_key(&workload.clients.kms, &key).await?;
        record.kms_key_manager = manager;
        record.kms_key_aliases = aliases;
    }
    encryption_of(&record).map_err(PlaybookError::InvalidCase)
}

struct Plan<'a> {
    workload: &'a Workload,
    config: &'a Config,
    case: &'a Case,
    forensic_account: &'a str,
    multi_account: bool,
}

impl Plan<'_> {
    async fn share(
        &self,
        mut volume: VolumeEvidence,
        encryption: Encryption,
    ) -> Result<VolumeEvidence> {
        volume.encryption = Some(encryption);
        let mut sharing = volume.sharing.take().unwrap_or_default();
        let snapshot_id = volume.snapshot.snapshot_id.clone();
        if !self.multi_account {
            sharing.source_snapshot_id = Some(snapshot_id.clone());
            sharing.verified_private = self
                .verify_private(&snapshot_id, None, &mut sharing)
                .await?;
            sharing.ready = sharing.verified_private;
            volume.sharing = Some(sharing);
            return Ok(volume);
        }
        let key = self.captured_key(&volume);
        let (to_share, key) = match encryption {
            Encryption::Unencrypted => (snapshot_id.clone(), None),
            Encryption::CustomerKey => (
                snapshot_id.clone(),
                Some(key.ok_or_else(|| {
                    PlaybookError::InvalidCase(format!(
                        "volume {} is encrypted but its key was not captured",
                        volume.volume_id
                    ))
                })?),
            ),
            Encryption::AwsManagedKey => {
                let sharing_key =
                    Config::required(&self.config.sharing_kms_key, "SHARING_KMS_KEY")?.to_owned();
                let copy = self
                    .re_encrypted_copy(&volume, &sharing_key, &mut sharing)
                    .await?;
                let ready = copy.is_completed();
                let id = copy.snapshot_id.clone();
                sharing.re_encrypted = Some(copy);
                if !ready {
                    volume.sharing = Some(sharing);
                    return Ok(volume);
                }
                (id, Some(sharing_key))
            }
        };
        if let Some(key) = key {
            if sharing.grant.is_none() {
                sharing.grant = Some(self.grant(&key, &mut sharing).await?);
            }
        }
        self.workload
            .clients
            .ec2
            .modify_snapshot_attribute()
            .snapshot_id(&to_share)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(OperationType::Add)
            .user_ids(self.forensic_account)
            .send()
            .await
            .aws("ModifySnapshotAttribute", None)?;
        sharing.actions.push(ActionRecord::new(
            "give the forensic account create-volume permission",
            &to_share,
            Outcome::Changed,
        ));
        sharing.shared_with = Some(self.forensic_account.to_owned());
        sharing.source_snapshot_id = Some(to_share.clone());
        sharing.verified_private = self
            .verify_private(&to_share, Some(self.forensic_account), &mut sharing)
            .await?;
        sharing.ready = sharing.verified_private;
        volume.sharing = Some(sharing);
        Ok(volume)
    }

    fn captured_key(&self, volume: &VolumeEvidence) -> Option<String> {
        self.case
            .metadata_of(&volume.instance_id)
            .and_then(|m| m.volumes.iter().find(|v| v.volume_id == volume.volume_id))
            .and_then(|v| v.kms_key_id.clone())
            .or_else(|| volume.snapshot.kms_key_id.clone())
    }

    /// Reads the snapshot's create-volume permissions back: no `all` group,
    /// and no account but `allowed`.
    async fn verify_private(
        &self,
        snapshot_id: &str,
        allowed: Option<&str>,
        sharing: &mut Sharing,
    ) -> Result<bool> {
        let out = self
            .workload
            .clients
            .ec2
            .describe_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .aws("DescribeSnapshotAttribute", None)?;
        let mut problems = Vec::new();
        for permission in out.create_volume_permissions() {
            if permission.group().is_some_and(|g| g.as_str() == "all") {
                problems.push("public: the `all` group may create volumes from it".to_owned());
            }
            if let Some(user) = permission.user_id() {
                if Some(user) != allowed {
                    problems.push(format!("also shared with account {user}"));
                }
            }
        }
        if problems.is_empty() {
            sharing.actions.push(ActionRecord::already_done(
                "verify the snapshot is not public",
                snapshot_id,
            ));
            Ok(true)
        } else {
            sharing.actions.push(ActionRecord::failed(
                "verify the snapshot is not public",
                snapshot_id,
                "SnapshotNotPrivate",
                problems.join("; "),
            ));
            Ok(false)
        }
    }

    /// The copy of the snapshot under the sharing key: found by its tags, or made now.
    async fn re_encrypted_copy(
        &self,
        volume: &VolumeEvidence,
        sharing_key: &str,
        sharing: &mut Sharing,
    ) -> Result<crate::case::evidence::SnapshotProgress> {
        let ec2 = &self.workload.clients.ec2;
        let source = &volume.snapshot.snapshot_id;
        let existing = find_snapshots(
            ec2,
            &self.case.case_id,
            SHARING_COPY_ROLE,
            Some((SOURCE_TAG, source)),
        )
        .await?;
        if let Some(found) = existing.first() {
            return Ok(progress_of(found));
        }
        let out = ec2
            .copy_snapshot()
            .source_snapshot_id(source)
            .source_region(&self.case.incident.region)
            .encrypted(true)
            .kms_key_id(sharing_key)
            .description(format!(
                "ec2-forensics case {}: {source} re-encrypted for sharing",
                self.case.case_id
            ))
            .tag_specifications(snapshot_tags(&[
                (CASE_TAG, &self.case.case_id),
                (ROLE_TAG, SHARING_COPY_ROLE),
                (SOURCE_TAG, source),
                (VOLUME_TAG, &volume.volume_id),
            ]))
            .send()
            .await
            .aws("CopySnapshot", None)?;
        let id = out.snapshot_id().unwrap_or_default().to_owned();
        sharing.actions.push(
            ActionRecord::new(
                "copy the snapshot under the sharing key",
                source,
                Outcome::Changed,
            )
            .with_detail(format!("copy {id}")),
        );
        Ok(crate::case::evidence::SnapshotProgress {
            snapshot_id: id,
            state: "pending".into(),
            kms_key_id: Some(sharing_key.to_owned()),
            started_at: Some(crate::case::custody::now_utc()),
            ..Default::default()
        })
    }

    /// A grant for the forensic account on `key`, named after the case (so a
    /// second `CreateGrant` with the same name and parameters is the same grant).
    async fn grant(&self, key: &str, sharing: &mut Sharing) -> Result<KeyGrant> {
        let principal = format!("arn:aws:iam::{}:root", self.forensic_account);
        let name = format!("ec2-forensics-{}", self.case.case_id);
        let out = self
            .workload
            .clients
            .kms
            .create_grant()
            .key_id(key)
            .grantee_principal(&principal)
            .retiring_principal(&principal)
            .name(&name)
            .set_operations(Some(
                GRANTED_OPERATIONS
                    .iter()
                    .map(|o| GrantOperation::from(*o))
                    .collect(),
            ))
            .send()
            .await
            .aws("CreateGrant", None)?;
        let grant_id = out.grant_id().unwrap_or_default().to_owned();
        sharing.actions.push(
            ActionRecord::new(
                "grant the forensic account the use of the key",
                key,
                Outcome::Changed,
            )
            .with_detail(format!("grant {grant_id}")),
        );
        Ok(KeyGrant {
            key_arn: key.to_owned(),
            grant_id,
            name,
            grantee_principal: principal.clone(),
            retiring_principal: principal,
            operations: GRANTED_OPERATIONS.iter().map(|o| (*o).to_owned()).collect(),
        })
    }
}
