//! `terminate`: evidence first. An instance is terminated only when a case
//! holds it (the responder's lease table), that case's execution has ended,
//! and every EBS volume attached to it has a snapshot and a forensic copy
//! the case read back `completed` (its execution's own Case), or when the
//! approved plan accepts terminating without them. Nothing here trusts a tag
//! or a snapshot anyone in the workload account could make. Termination
//! protection, which protect-instance turned on, is turned off for the call
//! only, and turned back on when the instance is not read back terminating.

use aws_sdk_ec2::types::{AttributeBooleanValue, Instance};
use serde::{Deserialize, Serialize};

use crate::aws::attempt;
use crate::case::{ActionRecord, VolumeEvidence};
use crate::error::{AwsCall, Result};
use crate::steps::capture_metadata::describe_instance;

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

/// The EBS volumes attached to `instance`.
fn attached_volumes(instance: &Instance) -> Vec<String> {
    instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_owned))
        .collect()
}

/// What the responder's own records say of the case that holds the instance.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseEvidence {
    /// The case (from the lease table).
    pub case_id: String,
    /// Its execution still runs (memory, snapshots, analysis may be under way).
    pub running: bool,
    /// The volumes its execution's Case recorded.
    pub volumes: Vec<VolumeEvidence>,
}

/// The volume's snapshot, when the case read back both it and its forensic
/// copy `completed`.
fn completed_evidence(case: &CaseEvidence, volume_id: &str) -> Option<String> {
    case.volumes
        .iter()
        .filter(|v| v.volume_id == volume_id && v.snapshot.state == "completed")
        .find(|v| v.copy.as_ref().is_some_and(|c| c.state == "completed"))
        .map(|v| v.snapshot.snapshot_id.clone())
}

/// Terminates one instance, evidence first.
pub async fn terminate_instance(
    ec2: &aws_sdk_ec2::Client,
    item: &TerminateItem,
    case: Option<&CaseEvidence>,
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
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned());
    if matches!(state.as_deref(), Some("shutting-down" | "terminated")) {
        done.terminated = true;
        done.actions.push(ActionRecord::already_done(TERMINATE, id));
        return Ok(done);
    }
    let refuse = |done: &mut Termination, error_type: &str, why: String| {
        done.actions
            .push(ActionRecord::failed(TERMINATE, id, error_type, why));
    };
    let Some(case) = case else {
        refuse(
            &mut done,
            "NotACase",
            format!("no case holds {id} in the responder's lease table: not terminated"),
        );
        return Ok(done);
    };
    if case.running {
        refuse(
            &mut done,
            "CaseStillRunning",
            format!(
                "case {} still runs (its evidence may be under way): not terminated",
                case.case_id
            ),
        );
        return Ok(done);
    }
    for volume_id in attached_volumes(&instance) {
        let snapshot_id = completed_evidence(case, &volume_id);
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
            let why = format!(
                "case {} read back no completed snapshot and forensic copy of {}: not terminated (the approved plan did not accept terminating without them)",
                case.case_id,
                missing.join(", ")
            );
            refuse(&mut done, "EvidenceNotComplete", why);
            return Ok(done);
        }
        done.without_evidence = true;
    }
    let protection = |on: bool| async move {
        ec2.modify_instance_attribute()
            .instance_id(id)
            .disable_api_termination(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .aws("ModifyInstanceAttribute", Some(id))
            .map(|_| ())
    };
    let (off, _) = attempt(false, "turn termination protection off", id, || {
        protection(false)
    })
    .await;
    let protection_off = off.is_done();
    done.actions.push(off);
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
    if !done.terminated {
        let (on, _) = attempt(false, "turn termination protection back on", id, || {
            protection(true)
        })
        .await;
        done.actions.push(on);
    }
    Ok(done)
}
