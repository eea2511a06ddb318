//! launch-forensic-instance and attach-evidence: the forensic workstation.
//!
//! A workstation is launched in the forensic account, in the forensic subnet
//! of each availability zone that holds evidence, only from the AMI the
//! golden-AMI pipeline published to `GOLDEN_AMI_PARAMETER`: no public
//! address, IMDSv2 only, termination protection, the case's tags, and an
//! instance profile that allows SSM and writes to the case prefix. Its
//! evidence volumes are made from the forensic copies in its zone and attached
//! under safe device names. Both steps are re-entrant: the state machine
//! calls attach-evidence in a Wait/Choice loop until everything is attached
//! (or failed) and the SSM agent is online, and a re-run finds the case's
//! instance and volumes by tag and client token instead of making new ones.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, ResourceType,
    ShutdownBehavior, Tag, TagSpecification, VolumeType,
};
use serde_json::json;

use crate::aws::{Config, Responder};
use crate::case::custody::{entry, now_utc, sha256_hex};
use crate::case::{Case, EvidenceVolume, StepError, Workstation};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::disk::{SOURCE_TAG, VOLUME_TAG};
use crate::steps::{CASE_TAG, ROLE_TAG};

/// The launch step's name.
pub const LAUNCH_STEP: &str = "launch-forensic-instance";
/// The attach step's name.
pub const ATTACH_STEP: &str = "attach-evidence";
/// Role tag of the workstation.
pub const WORKSTATION_ROLE: &str = "forensic-workstation";
/// Role tag of an evidence volume.
pub const EVIDENCE_VOLUME_ROLE: &str = "evidence-volume";
/// attach-evidence gives the workstation and its volumes this many checks
/// (20 s apart in the state machine: 30 minutes).
pub const MAX_CHECKS: u32 = 90;
/// The device names evidence volumes are attached as, in order: /dev/sdf to
/// /dev/sdp, the range EC2 recommends for EBS data volumes. The workstation
/// finds each by its NVMe serial, never by this name.
pub const DEVICE_NAMES: [&str; 11] = [
    "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi", "/dev/sdj", "/dev/sdk", "/dev/sdl", "/dev/sdm",
    "/dev/sdn", "/dev/sdo", "/dev/sdp",
];

/// Where the workstations go: `FORENSIC_SUBNETS` = `zone=subnet,zone=subnet`.
pub fn subnet_map(text: &str) -> Result<BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((zone, subnet))
                if subnet.trim().starts_with("subnet-") && !zone.trim().is_empty() =>
            {
                Ok((zone.trim().to_owned(), subnet.trim().to_owned()))
            }
            _ => Err(PlaybookError::Configuration(format!(
                "FORENSIC_SUBNETS: {pair} is not zone=subnet-..."
            ))),
        })
        .collect()
}

/// The evidence to put on workstations: every forensic copy that completed,
/// by availability zone of the suspect instance it came from.
pub fn evidence_by_zone(case: &Case) -> BTreeMap<String, Vec<EvidenceVolume>> {
    let mut zones: BTreeMap<String, Vec<EvidenceVolume>> = BTreeMap::new();
    for volume in &case.snapshots {
        let Some(copy) = volume.copy.as_ref().filter(|c| c.is_completed()) else {
            continue;
        };
        let Some(zone) = case
            .metadata_of(&volume.instance_id)
            .and_then(|m| m.availability_zone.clone())
        else {
            continue;
        };
        zones.entry(zone.clone()).or_default().push(EvidenceVolume {
            source_volume_id: volume.volume_id.clone(),
            instance_id: volume.instance_id.clone(),
            copy_snapshot_id: copy.snapshot_id.clone(),
            availability_zone: zone,
            volume_id: None,
            state: "planned".into(),
            device: None,
            attached: false,
            reason: None,
        });
    }
    zones
}

fn tags(
    resource: ResourceType,
    case_id: &str,
    role: &str,
    extra: &[(&str, &str)],
) -> TagSpecification {
    let mut tags = vec![
        Tag::builder().key(CASE_TAG).value(case_id).build(),
        Tag::builder().key(ROLE_TAG).value(role).build(),
        Tag::builder()
            .key("Name")
            .value(format!("ec2-forensics {case_id} {role}"))
            .build(),
    ];
    tags.extend(
        extra
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build()),
    );
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags))
        .build()
}

/// An idempotency token of at most 64 characters for one thing of one case.
pub fn client_token(case_id: &str, what: &str) -> String {
    sha256_hex(format!("{case_id}/{what}").as_bytes())[..64].to_owned()
}

/// The golden AMI: the value of `GOLDEN_AMI_PARAMETER`, checked to be an
/// available image this account owns. Any other AMI is refused.
pub async fn golden_ami(responder: &Responder) -> Result<String> {
    let name = Config::required(
        &responder.config.golden_ami_parameter,
        "GOLDEN_AMI_PARAMETER",
    )?;
    let out = responder
        .clients
        .ssm
        .get_parameter()
        .name(name)
        .send()
        .await
        .aws("GetParameter", None)?;
    let image_id = out
        .parameter()
        .and_then(|p| p.value())
        .filter(|v| v.starts_with("ami-"))
        .ok_or_else(|| PlaybookError::Configuration(format!("{name} does not hold an AMI id")))?
        .to_owned();
    let images = responder
        .clients
        .ec2
        .describe_images()
        .image_ids(&image_id)
        .owners("self")
        .send()
        .await
        .aws("DescribeImages", None)?;
    // The owner is checked as well as filtered on: an AMI shared into the
    // account (or a filter an endpoint ignores) must not pass.
    let own = images
        .images()
        .iter()
        .find(|i| i.image_id() == Some(image_id.as_str()))
        .filter(|i| i.owner_id() == Some(responder.identity.account.as_str()));
    match own.and_then(|i| i.state()).map(|s| s.as_str()) {
        Some("available") => Ok(image_id),
        Some(state) => Err(PlaybookError::Configuration(format!(
            "the golden AMI {image_id} ({name}) is {state}, not available"
        ))),
        None => Err(PlaybookError::Configuration(format!(
            "the golden AMI {image_id} ({name}) is not an image this account owns: it is not launched"
        ))),
    }
}

/// Launches (or finds) the workstation of every zone that holds evidence.
pub async fn launch_forensic_instance(responder: &Responder, mut case: Case) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let zones = evidence_by_zone(&case);
    if zones.is_empty() || case.decision.dry_run {
        case.workstation_progress.observe(0, 0);
        return Ok(case);
    }
    let planned: Vec<String> = zones
        .keys()
        .filter(|zone| {
            case.workstations
                .iter()
                .all(|w| &w.availability_zone != *zone)
        })
        .cloned()
        .collect();
    for volumes in zones.values() {
        for volume in volumes {
            if case
                .evidence_volumes
                .iter()
                .all(|v| v.copy_snapshot_id != volume.copy_snapshot_id)
            {
                case.evidence_volumes.push(volume.clone());
            }
        }
    }
    if !planned.is_empty() {
        let launched = match golden_ami(responder).await {
            Ok(image_id) => {
                let mut out = Vec::new();
                for zone in &planned {
                    out.push(launch_in(responder, &case, zone, &image_id).await);
                }
                out
            }
            Err(err) => planned
                .iter()
                .map(|zone| Err((zone.clone(), err.clone())))
                .collect(),
        };
        for result in launched {
            match result {
                Ok(workstation) => {
                    case.record(entry(
                        LAUNCH_STEP,
                        &responder.identity.actor,
                        format!(
                            "forensic workstation {} in {}",
                            workstation.instance_id.as_deref().unwrap_or("?"),
                            workstation.availability_zone
                        ),
                        &["GetParameter", "DescribeImages", "DescribeInstances", "RunInstances"],
                        json!({"availabilityZone": workstation.availability_zone, "subnetId": workstation.subnet_id, "imageId": workstation.image_id}),
                        json!({"instanceId": workstation.instance_id, "state": workstation.state}),
                        None,
                    ));
                    case.workstations.push(workstation);
                }
                Err((zone, err)) => {
                    case.errors.push(StepError::new(
                        LAUNCH_STEP,
                        &err,
                        format!("no forensic workstation in {zone}: its evidence is not analysed"),
                    ));
                    for volume in case
                        .evidence_volumes
                        .iter_mut()
                        .filter(|v| v.availability_zone == zone)
                    {
                        volume.state = "failed".into();
                        volume.reason = Some(format!("no workstation in {zone}: {err}"));
                    }
                }
            }
        }
    }
    let (pending, failed) = attach_counts(&case);
    case.workstation_progress.observe(pending, failed);
    Ok(case)
}

async fn launch_in(
    responder: &Responder,
    case: &Case,
    zone: &str,
    image_id: &str,
) -> std::result::Result<Workstation, (String, PlaybookError)> {
    let failed = |err: PlaybookError| (zone.to_owned(), err);
    let config = &responder.config;
    let subnets =
        subnet_map(Config::required(&config.forensic_subnets, "FORENSIC_SUBNETS").map_err(failed)?)
            .map_err(failed)?;
    let subnet_id = subnets.get(zone).cloned().ok_or_else(|| {
        failed(PlaybookError::Configuration(format!(
            "FORENSIC_SUBNETS has no forensic subnet in {zone}, where the evidence is"
        )))
    })?;
    let group = Config::required(&config.forensic_security_group, "FORENSIC_SECURITY_GROUP")
        .map_err(failed)?;
    let profile = Config::required(
        &config.forensic_instance_profile,
        "FORENSIC_INSTANCE_PROFILE",
    )
    .map_err(failed)?;
    let ec2 = &responder.clients.ec2;
    if let Some(found) = find_workstation(ec2, &case.case_id, zone)
        .await
        .map_err(failed)?
    {
        if found.image_id != image_id {
            return Err(failed(PlaybookError::Configuration(format!(
                "the case's workstation {} runs {}, not the golden AMI {image_id}: it is not used",
                found.instance_id.as_deref().unwrap_or("?"),
                found.image_id
            ))));
        }
        return Ok(Workstation { subnet_id, ..found });
    }
    let mut profile_spec = IamInstanceProfileSpecification::builder();
    profile_spec = if profile.starts_with("arn:") {
        profile_spec.arn(profile)
    } else {
        profile_spec.name(profile)
    };
    let out = ec2
        .run_instances()
        .image_id(image_id)
        .instance_type(aws_sdk_ec2::types::InstanceType::from(
            config
                .forensic_instance_type
                .as_deref()
                .unwrap_or("m6i.large"),
        ))
        .min_count(1)
        .max_count(1)
        .client_token(client_token(&case.case_id, zone))
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&subnet_id)
                .groups(group)
                .associate_public_ip_address(false)
                .delete_on_termination(true)
                .build(),
        )
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_put_response_hop_limit(1)
                .build(),
        )
        .iam_instance_profile(profile_spec.build())
        .disable_api_termination(true)
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Stop)
        .tag_specifications(tags(
            ResourceType::Instance,
            &case.case_id,
            WORKSTATION_ROLE,
            &[("ec2-forensics:availability-zone", zone)],
        ))
        .tag_specifications(tags(
            ResourceType::Volume,
            &case.case_id,
            "forensic-workstation-root",
            &[],
        ))
        // The ENI too: RunInstances authorises it as a resource of its own,
        // and the role's policy lets it be made only with this tag.
        .tag_specifications(tags(
            ResourceType::NetworkInterface,
            &case.case_id,
            "forensic-workstation-eni",
            &[],
        ))
        .send()
        .await
        .aws("RunInstances", None)
        .map_err(failed)?;
    let instance = out.instances().first().ok_or_else(|| {
        failed(PlaybookError::AwsService {
            operation: "RunInstances".into(),
            code: "NoInstance".into(),
            message: "EC2 launched nothing".into(),
        })
    })?;
    tracing::info!(instance_id = ?instance.instance_id(), zone, "forensic workstation launched");
    Ok(Workstation {
        subnet_id,
        image_id: image_id.to_owned(),
        launched_at: Some(now_utc()),
        ..workstation_of(zone, instance)
    })
}

/// The case's workstation in `zone`, when one was launched before.
async fn find_workstation(
    ec2: &aws_sdk_ec2::Client,
    case_id: &str,
    zone: &str,
) -> Result<Option<Workstation>> {
    let out = ec2
        .describe_instances()
        .set_filters(Some(crate::steps::case_role_filters(
            case_id,
            WORKSTATION_ROLE,
        )))
        .filters(
            Filter::builder()
                .name("availability-zone")
                .values(zone)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .aws("DescribeInstances", None)?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .map(|i| workstation_of(zone, i)))
}

/// The workstation record of an instance EC2 described or launched.
fn workstation_of(zone: &str, instance: &aws_sdk_ec2::types::Instance) -> Workstation {
    Workstation {
        availability_zone: zone.to_owned(),
        subnet_id: instance.subnet_id().unwrap_or_default().to_owned(),
        image_id: instance.image_id().unwrap_or_default().to_owned(),
        instance_id: instance.instance_id().map(str::to_owned),
        state: state_of(instance),
        agent: None,
        launched_at: instance
            .launch_time()
            .map(|t| crate::case::custody::rfc3339(*t)),
        command_id: None,
        command_sent_at: None,
        command_ended_at: None,
        command_timeout_seconds: None,
        archive_uploads: BTreeMap::new(),
        scripts: BTreeMap::new(),
        reason: None,
    }
}

/// An instance's state name (pending, running, stopped...).
fn state_of(instance: &aws_sdk_ec2::types::Instance) -> String {
    instance
        .state()
        .and_then(|s| s.name())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

fn attach_counts(case: &Case) -> (usize, usize) {
    let failed = case
        .evidence_volumes
        .iter()
        .filter(|v| v.state == "failed")
        .count()
        + case
            .workstations
            .iter()
            .filter(|w| w.reason.is_some())
            .count();
    let waiting_volumes = case
        .evidence_volumes
        .iter()
        .filter(|v| v.state != "failed" && !v.attached)
        .count();
    let waiting_agents = case
        .workstations
        .iter()
        .filter(|w| w.reason.is_none() && w.agent.as_deref() != Some("Online"))
        .count();
    (waiting_volumes + waiting_agents, failed)
}

/// Follows every workstation until it runs with its SSM agent online, and
/// every evidence volume until it is attached to it: creates each volume from
/// its forensic copy when the workstation runs, attaches it when it is
/// available, and reads the attachment back. Nothing sleeps: the state
/// machine calls this again after a Wait state.
pub async fn attach_evidence(responder: &Responder, mut case: Case) -> Result<Case> {
    let ec2 = &responder.clients.ec2;
    let out_of_time = case.workstation_progress.checks + 1 >= MAX_CHECKS;
    for workstation in case.workstations.iter_mut().filter(|w| w.reason.is_none()) {
        let Some(instance_id) = workstation.instance_id.clone() else {
            continue;
        };
        let (_, instance) = super::capture_metadata::describe_instance(ec2, &instance_id).await?;
        workstation.state = state_of(&instance);
        match workstation.state.as_str() {
            "running" => {
                workstation.agent =
                    super::memory::managed_platform(&responder.clients.ssm, &instance_id)
                        .await?
                        .map(|(ping, _)| ping);
            }
            "pending" => {}
            other => workstation.reason = Some(format!("the workstation is {other}")),
        }
    }
    let mut attached_now = Vec::new();
    let mut failures = Vec::new();
    let workstations = case.workstations.clone();
    let config = responder.config.clone();
    let case_id = case.case_id.clone();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for volume in &case.evidence_volumes {
        if let Some(device) = &volume.device {
            used.entry(volume.availability_zone.clone())
                .or_default()
                .insert(device.clone());
        }
    }
    for volume in case
        .evidence_volumes
        .iter_mut()
        .filter(|v| v.state != "failed" && !v.attached)
    {
        let Some(workstation) = workstations.iter().find(|w| {
            w.availability_zone == volume.availability_zone
                && w.reason.is_none()
                && w.state == "running"
        }) else {
            continue;
        };
        let instance_id = workstation.instance_id.clone().unwrap_or_default();
        let in_zone = used.entry(volume.availability_zone.clone()).or_default();
        let size_gib =
            crate::case::metadata::volume_size_gib(&case.metadata, &volume.source_volume_id);
        match advance_volume(
            ec2,
            &config,
            &case_id,
            &instance_id,
            volume,
            size_gib,
            in_zone,
        )
        .await
        {
            Ok(true) => attached_now.push(volume.clone()),
            Ok(false) => {}
            Err(err) if err.is_transient() => {}
            Err(err) => {
                volume.state = "failed".into();
                volume.reason = Some(err.to_string());
                failures.push((volume.source_volume_id.clone(), err));
            }
        }
    }
    if out_of_time {
        for volume in case
            .evidence_volumes
            .iter_mut()
            .filter(|v| v.state != "failed" && !v.attached)
        {
            volume.state = "failed".into();
            volume.reason = Some(format!("not attached after {MAX_CHECKS} checks"));
        }
        for workstation in case
            .workstations
            .iter_mut()
            .filter(|w| w.reason.is_none() && w.agent.as_deref() != Some("Online"))
        {
            workstation.reason = Some(format!(
                "its SSM agent was not online after {MAX_CHECKS} checks (state {}, agent {})",
                workstation.state,
                workstation.agent.as_deref().unwrap_or("unknown")
            ));
        }
    }
    for (volume_id, err) in failures {
        case.errors.push(StepError::new(
            ATTACH_STEP,
            &err,
            format!("the copy of {volume_id} is not attached to a workstation: it is not analysed"),
        ));
    }
    for volume in &attached_now {
        case.record(entry(
            ATTACH_STEP,
            &responder.identity.actor,
            format!(
                "evidence volume {} (copy of {}) attached as {}",
                volume.volume_id.as_deref().unwrap_or("?"),
                volume.source_volume_id,
                volume.device.as_deref().unwrap_or("?")
            ),
            &["CreateVolume", "AttachVolume", "DescribeVolumes"],
            json!({"copySnapshotId": volume.copy_snapshot_id, "availabilityZone": volume.availability_zone}),
            json!({"volumeId": volume.volume_id, "device": volume.device, "attached": volume.attached}),
            None,
        ));
    }
    let (pending, failed) = attach_counts(&case);
    case.workstation_progress.checked(pending, failed);
    Ok(case)
}

/// The EBS Provisioned Rate for Volume Initialization asked of every
/// evidence volume, in MiB/s (EC2 offers 100 to 300): the blocks of a volume
/// made from a snapshot otherwise load lazily, at first read, far slower
/// than the volume's own throughput.
pub const INITIALIZATION_RATE: i32 = 300;

/// gp3 IOPS and throughput (MiB/s) for an evidence volume of `size_gib`, as
/// high as gp3 allows, since it is read once in full and then discarded:
/// 500 IOPS per GiB, 3,000 to 80,000; throughput at most 0.25 MiB/s per
/// IOPS, 125 to 2,000 (the EBS volume types guide). An unknown size gets
/// 3,000 IOPS, which every gp3 volume may have.
pub fn reading_performance(size_gib: Option<i32>) -> (i32, i32) {
    let iops = size_gib
        .map(|gib| gib.saturating_mul(500))
        .unwrap_or(0)
        .clamp(3_000, 80_000);
    (iops, (iops / 4).clamp(125, 2_000))
}

/// Moves one evidence volume one stage on: creates it from its copy, attaches
/// it once available, reads the attachment back. True when it is now attached.
async fn advance_volume(
    ec2: &aws_sdk_ec2::Client,
    config: &Config,
    case_id: &str,
    instance_id: &str,
    volume: &mut EvidenceVolume,
    size_gib: Option<i32>,
    used: &mut BTreeSet<String>,
) -> Result<bool> {
    let Some(volume_id) = volume.volume_id.clone() else {
        let (iops, throughput) = reading_performance(size_gib);
        // `fast`: the most gp3 allows and the initialization rate. Where EC2
        // refuses those (a region or partition without them), the volume is
        // made plain gp3 instead, under a token of its own (a token stands
        // for one set of parameters).
        let create = |fast: bool| {
            let token = if fast {
                client_token(case_id, &volume.copy_snapshot_id)
            } else {
                client_token(case_id, &format!("{}/plain", volume.copy_snapshot_id))
            };
            let mut request = ec2
                .create_volume()
                .snapshot_id(&volume.copy_snapshot_id)
                .availability_zone(&volume.availability_zone)
                .volume_type(VolumeType::Gp3)
                .encrypted(true)
                .client_token(token)
                .tag_specifications(tags(
                    ResourceType::Volume,
                    case_id,
                    EVIDENCE_VOLUME_ROLE,
                    &[
                        (VOLUME_TAG, &volume.source_volume_id),
                        (SOURCE_TAG, &volume.copy_snapshot_id),
                    ],
                ));
            if fast {
                request = request
                    .iops(iops)
                    .throughput(throughput)
                    .volume_initialization_rate(INITIALIZATION_RATE);
            }
            if let Some(key) = &config.forensic_kms_key {
                request = request.kms_key_id(key);
            }
            request
        };
        let out = match create(true).send().await.aws("CreateVolume", None) {
            Err(err)
                if matches!(
                    err.aws_code(),
                    Some(
                        "InvalidParameter"
                            | "InvalidParameterValue"
                            | "InvalidParameterCombination"
                            | "UnknownParameter"
                    )
                ) =>
            {
                tracing::warn!(error = %err, "EC2 refused the fast volume settings; the evidence volume is made plain gp3");
                create(false).send().await.aws("CreateVolume", None)?
            }
            other => other?,
        };
        volume.volume_id = out.volume_id().map(str::to_owned);
        volume.state = out
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "creating".into());
        return Ok(false);
    };
    let out = ec2
        .describe_volumes()
        .volume_ids(&volume_id)
        .send()
        .await
        .aws("DescribeVolumes", None)?;
    let found = out
        .volumes()
        .first()
        .ok_or_else(|| PlaybookError::AwsService {
            operation: "DescribeVolumes".into(),
            code: "VolumeNotFound".into(),
            message: format!("evidence volume {volume_id} no longer exists"),
        })?;
    volume.state = found
        .state()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    match volume.state.as_str() {
        "available" if volume.device.is_none() => {
            let device = DEVICE_NAMES
                .iter()
                .find(|d| !used.contains(**d))
                .map(|d| (*d).to_owned())
                .ok_or_else(|| {
                    PlaybookError::Configuration(format!(
                        "more than {} evidence volumes for one workstation",
                        DEVICE_NAMES.len()
                    ))
                })?;
            ec2.attach_volume()
                .volume_id(&volume_id)
                .instance_id(instance_id)
                .device(&device)
                .send()
                .await
                .aws("AttachVolume", Some(instance_id))?;
            used.insert(device.clone());
            volume.device = Some(device);
            Ok(false)
        }
        "in-use" => {
            let attachments = found.attachments();
            if let Some(other) = attachments
                .iter()
                .find(|a| a.instance_id() != Some(instance_id))
            {
                return Err(PlaybookError::Configuration(format!(
                    "evidence volume {volume_id} is attached to {}, not the workstation",
                    other.instance_id().unwrap_or("?")
                )));
            }
            volume.attached = attachments
                .iter()
                .any(|a| a.state().map(|s| s.as_str()) == Some("attached"));
            Ok(volume.attached)
        }
        "error" => Err(PlaybookError::AwsService {
            operation: "CreateVolume".into(),
            code: "VolumeFailed".into(),
            message: format!("evidence volume {volume_id} is in state error"),
        }),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forensic_subnets_are_zone_subnet_pairs() {
        let map = subnet_map("us-east-1a=subnet-0a1, us-east-1b=subnet-0b2").unwrap();
        assert_eq!(map["us-east-1a"], "subnet-0a1");
        assert_eq!(map["us-east-1b"], "subnet-0b2");
        assert!(subnet_map("").unwrap().is_empty());
        for bad in ["us-east-1a", "us-east-1a=sg-1", "=subnet-1"] {
            assert_eq!(
                subnet_map(bad).unwrap_err().error_type(),
                "ConfigurationError",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_client_token_is_stable_per_case_and_thing_and_fits_ec2s_limit() {
        let token = client_token("gd-1", "us-east-1a");
        assert_eq!(token, client_token("gd-1", "us-east-1a"));
        assert_ne!(token, client_token("gd-1", "us-east-1b"));
        assert_ne!(token, client_token("gd-2", "us-east-1a"));
        assert_eq!(token.len(), 64);
    }

    #[test]
    fn evidence_volumes_ask_for_the_most_gp3_allows_for_their_size() {
        assert_eq!(reading_performance(None), (3_000, 750));
        assert_eq!(reading_performance(Some(8)), (4_000, 1_000));
        assert_eq!(reading_performance(Some(16)), (8_000, 2_000));
        assert_eq!(reading_performance(Some(1_024)), (80_000, 2_000));
        assert_eq!(reading_performance(Some(i32::MAX)), (80_000, 2_000));
    }

    #[test]
    fn device_names_are_the_data_volume_range() {
        assert_eq!(DEVICE_NAMES.first(), Some(&"/dev/sdf"));
        assert_eq!(DEVICE_NAMES.last(), Some(&"/dev/sdp"));
        let unique: BTreeSet<_> = DEVICE_NAMES.iter().collect();
        assert_eq!(unique.len(), DEVICE_NAMES.len());
    }
}
