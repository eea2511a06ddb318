//! `terminate`: evidence first. An instance is terminated only when every
//! EBS volume attached to it has a completed evidence snapshot (one the
//! responder took for a case: role `evidence`, tagged with the volume), or
//! when the approved plan says the approver accepts terminating without
//! them. Termination protection, which protect-instance turned on, is turned
//! off for the call and the state read back.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, Instance};
use serde::{Deserialize, Serialize};

use crate::aws::attempt;
use crate::case::ActionRecord;
use crate::error::{AwsCall, Result};
use crate::steps::capture_metadata::describe_instance;
use crate::steps::disk::{EVIDENCE_ROLE, VOLUME_TAG};
use crate::steps::{CASE_TAG, ROLE_TAG};

/// One item of a `terminate` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateItem {
    /// The run.
    pub bulk_id: String,
    /// The instance.
    pub instance_id: String,
    /// The account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The approved plan accepts terminating without completed snapshots.
    #[serde(default)]
    pub without_snapshots: bool,
}

/// A volume and the completed evidence snapshot of it, if there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEvidenceCheck {
    /// The attached volume.
    pub volume_id: String,
    /// Its newest completed evidence snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
}

/// How one terminate item ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Termination {
    /// The instance.
    pub instance_id: String,
    /// Each attached volume and its evidence.
    pub volumes: Vec<VolumeEvidenceCheck>,
    /// Terminated without a completed snapshot of every volume, as the
    /// approved plan allowed.
    pub without_evidence: bool,
    /// Read back `shutting-down` or `terminated`.
    pub terminated: bool,
    /// Every change, or why none was made.
    pub actions: Vec<ActionRecord>,
}

const TERMINATE: &str = "terminate the instance";

/// Whether a case has handled `instance` (isolation tags it with the case).
fn has_case_tag(instance: &Instance) -> bool {
    instance
        .tags()
        .iter()
        .any(|t| t.key() == Some(CASE_TAG) && t.value().is_some_and(|v| !v.is_empty()))
}

/// The EBS volumes attached to `instance`.
fn attached_volumes(instance: &Instance) -> Vec<String> {
    instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_owned))
        .collect()
}

/// The newest completed evidence snapshot of `volume_id` in this account.
async fn completed_evidence(ec2: &aws_sdk_ec2::Client, volume_id: &str) -> Result<Option<String>> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name(format!("tag:{ROLE_TAG}"))
                .values(EVIDENCE_ROLE)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{VOLUME_TAG}"))
                .values(volume_id)
                .build(),
        )
        .filters(Filter::builder().name("status").values("completed").build())
        .send()
        .await
        .aws("DescribeSnapshots", None)?;
    Ok(out
        .snapshots()
        .iter()
        .filter(|s| s.volume_id() == Some(volume_id))
        .max_by_key(|s| s.start_time().map(|t| t.secs()))
        .and_then(|s| s.snapshot_id())
        .map(str::to_owned))
}

/// Terminates one instance, evidence first.
pub async fn terminate_instance(
    ec2: &aws_sdk_ec2::Client,
    item: &TerminateItem,
) -> Result<Termination> {
    let id = item.instance_id.as_str();
    let (_, instance) = describe_instance(ec2, id).await?;
    let mut done = Termination {
        instance_id: id.to_owned(),
        volumes: Vec::new(),
        without_evidence: false,
        terminated: false,
        actions: Vec::new(),
    };
    if !has_case_tag(&instance) {
        done.actions.push(ActionRecord::failed(
            TERMINATE,
            id,
            "NotACase",
            format!(
                "{id} carries no {CASE_TAG} tag: no case has handled it, so it is not terminated"
            ),
        ));
        return Ok(done);
    }
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned());
    if matches!(state.as_deref(), Some("shutting-down" | "terminated")) {
        done.terminated = true;
        done.actions.push(ActionRecord::already_done(TERMINATE, id));
        return Ok(done);
    }
    for volume_id in attached_volumes(&instance) {
        let snapshot_id = completed_evidence(ec2, &volume_id).await?;
        done.volumes.push(VolumeEvidenceCheck {
            volume_id,
            snapshot_id,
        });
    }
    let missing: Vec<&str> = done
        .volumes
        .iter()
        .filter(|v| v.snapshot_id.is_none())
        .map(|v| v.volume_id.as_str())
        .collect();
    if !missing.is_empty() {
        if !item.without_snapshots {
            done.actions.push(ActionRecord::failed(
                TERMINATE,
                id,
                "EvidenceNotComplete",
                format!(
                    "no completed evidence snapshot of {}: not terminated (the approved plan did not accept terminating without them)",
                    missing.join(", ")
                ),
            ));
            return Ok(done);
        }
        done.without_evidence = true;
    }
    let (protection, _) = attempt(false, "turn termination protection off", id, || async {
        ec2.modify_instance_attribute()
            .instance_id(id)
            .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
            .send()
            .await
            .aws("ModifyInstanceAttribute", Some(id))
            .map(|_| ())
    })
    .await;
    let protection_off = protection.is_done();
    done.actions.push(protection);
    if !protection_off {
        return Ok(done);
    }
    let (terminate, _) = attempt(false, TERMINATE, id, || async {
        ec2.terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .aws("TerminateInstances", Some(id))
            .map(|_| ())
    })
    .await;
    done.actions.push(terminate);
    let (_, after) = describe_instance(ec2, id).await?;
    done.terminated = matches!(
        after.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("shutting-down" | "terminated")
    );
    Ok(done)
}
