//! capture-metadata: the playbook's "capture the instance metadata", before anything changes.
//!
//! Read-only: it calls only Describe*/Get* operations, so it runs beside
//! protect-instance without disturbing the host.

use aws_sdk_ec2::types::{Instance, Volume};
use serde_json::json;

use crate::aws::{Clients, Responder};
use crate::case::custody::{entry, now_utc, rfc3339, sha256_hex, sha256_json};
use crate::case::evidence::upsert_artifact;
use crate::case::{
    upsert, Case, ConsoleOutput, InstanceMetadata, NetworkInterfaceRecord, StepError, Unavailable,
    VolumeRecord,
};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::disk::share::describe_volume_key;
use crate::steps::evidence::keep_case;
use crate::steps::evidence::store::{case_key, EvidenceStore};

/// The step name in custody entries and errors.
pub const STEP: &str = "capture-metadata";

/// Console output kept in the Case: a short tail, the newest 2 KiB. Step
/// Functions payloads are limited to 256 KiB, which `States.ALL` cannot catch,
/// and a case may hold the policy's maximum number of instances. The digest
/// covers the whole output; the whole output is evidence for the evidence store.
pub const CONSOLE_OUTPUT_KEPT: usize = 2 * 1024;

const CALLS: &[&str] = &[
    "DescribeInstances",
    "DescribeVolumes",
    "GetConsoleOutput",
    "GetConsoleScreenshot",
    "DescribeKey",
    "ListAliases",
    "PutObject",
];

/// Captures the metadata of every instance of the case, concurrently, in the
/// workload account, and keeps it in the evidence store: the metadata JSON,
/// the whole console output and the screenshot. Transient failures fail the
/// step (the state machine retries it; a re-run replaces the records); other
/// failures are recorded per instance.
pub async fn capture_metadata(responder: &Responder, mut case: Case) -> Result<Case> {
    let workload = responder.workload(&case).await?;
    let store = EvidenceStore::of(responder);
    let region = case.incident.region.clone();
    let captures = case
        .incident
        .instance_ids
        .iter()
        .map(|id| capture(&workload.clients, &region, id));
    let results = futures::future::join_all(captures).await;
    if let Some(transient) = results
        .iter()
        .find_map(|r| r.as_ref().err().filter(|e| e.is_transient()))
    {
        return Err(transient.clone());
    }
    for (instance_id, result) in case.incident.instance_ids.clone().iter().zip(results) {
        match result {
            Ok(captured) => {
                tracing::info!(case_id = %case.case_id, instance_id = %instance_id, "metadata captured");
                let stored = match &store {
                    Some(store) => keep_captured(store, &mut case, &captured).await,
                    None => json!("not stored: EVIDENCE_BUCKET is not set"),
                };
                let metadata = captured.metadata;
                case.record(entry(
                    STEP,
                    &workload.actor,
                    format!("captured the metadata of {instance_id}"),
                    CALLS,
                    json!({ "instanceId": instance_id }),
                    json!({
                        "state": metadata.state,
                        "networkInterfaces": metadata.network_interfaces.len(),
                        "volumes": metadata.volumes.len(),
                        "consoleOutputSha256": metadata.console_output.as_ref().map(|c| c.sha256.clone()),
                        "stored": stored,
                    }),
                    Some(sha256_json(&metadata)),
                ));
                upsert(&mut case.metadata, metadata);
            }
            Err(err) => {
                tracing::warn!(case_id = %case.case_id, instance_id = %instance_id, error = %err, "metadata not captured");
                case.errors.push(StepError::new(
                    STEP,
                    &err,
                    format!("the metadata of {instance_id} was not captured"),
                ));
            }
        }
    }
    keep_case(store.as_ref(), &mut case, STEP).await;
    Ok(case)
}

/// Writes one instance's captured artifacts to the evidence store, records
/// them in the Case, and says what was stored (for the custody entry).
async fn keep_captured(
    store: &EvidenceStore,
    case: &mut Case,
    captured: &Captured,
) -> serde_json::Value {
    let id = &captured.metadata.instance_id;
    let metadata = serde_json::to_vec_pretty(&captured.metadata).unwrap_or_default();
    let mut writes = vec![(
        format!("metadata/{id}.json"),
        metadata,
        "application/json",
        "metadata",
    )];
    if let Some(console) = &captured.console {
        writes.push((
            format!("console/{id}-output.txt"),
            console.clone(),
            "text/plain",
            "console-output",
        ));
    }
    if let Some(screenshot) = &captured.screenshot {
        writes.push((
            format!("console/{id}-screenshot.jpg"),
            screenshot.clone(),
            "image/jpeg",
            "console-screenshot",
        ));
    }
    let puts = writes.into_iter().map(|(name, bytes, content_type, kind)| {
        let key = case_key(&case.case_id, &name);
        async move {
            (
                key.clone(),
                store.put(&key, bytes, content_type, kind).await,
            )
        }
    });
    let mut stored = Vec::new();
    for (key, result) in futures::future::join_all(puts).await {
        match result {
            Ok(artifact) => {
                stored.push(json!({"key": artifact.key, "versionId": artifact.version_id, "sha256": artifact.sha256}));
                upsert_artifact(&mut case.artifacts, artifact);
            }
            Err(err) => case.errors.push(StepError::new(
                STEP,
                &err,
                format!("{key} was not stored in the evidence store"),
            )),
        }
    }
    json!(stored)
}

/// What capture-metadata read of one instance: the record, and the raw
/// console output and screenshot for the evidence store.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The Case's record.
    pub metadata: InstanceMetadata,
    /// The whole decoded console output.
    pub console: Option<Vec<u8>>,
    /// The screenshot (JPEG).
    pub screenshot: Option<Vec<u8>>,
}

/// Captures one instance's metadata record.
pub async fn capture_instance(
    clients: &Clients,
    region: &str,
    instance_id: &str,
) -> Result<InstanceMetadata> {
    Ok(capture(clients, region, instance_id).await?.metadata)
}

/// Captures one instance: the description first (it must exist), then its
/// volumes, console and volume keys concurrently.
pub async fn capture(clients: &Clients, region: &str, instance_id: &str) -> Result<Captured> {
    let ec2 = &clients.ec2;
    let (owner, instance) = describe_instance(ec2, instance_id).await?;
    let volume_ids: Vec<String> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_owned))
        .collect();
    let (volumes, console, screenshot) = tokio::join!(
        describe_volumes(ec2, instance_id, volume_ids),
        console_output(ec2, instance_id),
        console_screenshot(ec2, instance_id),
    );
    let mut metadata = describe_metadata(owner, region, &instance, &volumes?);
    describe_volume_keys(&clients.kms, &mut metadata.volumes).await;
    let mut raw_console = None;
    match console {
        Ok((output, bytes)) => {
            metadata.console_output = Some(output);
            raw_console = Some(bytes);
        }
        Err(reason) => metadata.console_output_unavailable = Some(reason),
    }
    let mut raw_screenshot = None;
    match screenshot {
        Ok(image) => {
            metadata.console_screenshot_sha256 = Some(sha256_hex(&image));
            raw_screenshot = Some(image);
        }
        Err(reason) => metadata.console_screenshot_unavailable = Some(reason),
    }
    Ok(Captured {
        metadata,
        console: raw_console,
        screenshot: raw_screenshot,
    })
}

/// Records who manages each volume's key and its aliases: share-snapshots
/// decides by them. A key that cannot be described is recorded as such.
async fn describe_volume_keys(kms: &aws_sdk_kms::Client, volumes: &mut [VolumeRecord]) {
    let mut keys: Vec<String> = volumes
        .iter()
        .filter_map(|v| v.kms_key_id.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let described =
        futures::future::join_all(keys.iter().map(|k| describe_volume_key(kms, k))).await;
    for (key, result) in keys.iter().zip(described) {
        for volume in volumes
            .iter_mut()
            .filter(|v| v.kms_key_id.as_ref() == Some(key))
        {
            match &result {
                Ok((manager, aliases)) => {
                    volume.kms_key_manager = manager.clone();
                    volume.kms_key_aliases = aliases.clone();
                }
                Err(err) => volume.kms_key_unavailable = Some(err.to_string()),
            }
        }
    }
}

/// The instance and the account that owns it; an unknown id is `InstanceNotFound`.
pub async fn describe_instance(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<(Option<String>, Instance)> {
    let out = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .aws("DescribeInstances", Some(instance_id))?;
    out.reservations()
        .iter()
        .find_map(|r| {
            r.instances()
                .iter()
                .find(|i| i.instance_id() == Some(instance_id))
                .map(|i| (r.owner_id().map(str::to_owned), i.clone()))
        })
        .ok_or_else(|| PlaybookError::InstanceNotFound {
            instance_id: instance_id.to_owned(),
            message: "DescribeInstances returned no such instance".into(),
        })
}

async fn describe_volumes(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    volume_ids: Vec<String>,
) -> Result<Vec<Volume>> {
    if volume_ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ec2
        .describe_volumes()
        .set_volume_ids(Some(volume_ids))
        .send()
        .await
        .aws("DescribeVolumes", Some(instance_id))?;
    Ok(out.volumes().to_vec())
}

async fn console_output(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> std::result::Result<(ConsoleOutput, Vec<u8>), Unavailable> {
    let out = ec2
        .get_console_output()
        .instance_id(instance_id)
        .latest(true)
        .send()
        .await
        .aws("GetConsoleOutput", Some(instance_id))
        .map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
    let encoded = out.output().unwrap_or_default();
    let bytes = aws_smithy_types::base64::decode(encoded.trim()).map_err(|e| Unavailable {
        reason: format!("console output is not valid base64: {e}"),
    })?;
    Ok((console_record(&bytes), bytes))
}

/// Keeps the newest part of the console output, with the digest of all of it.
pub fn console_record(bytes: &[u8]) -> ConsoleOutput {
    let kept = &bytes[bytes.len().saturating_sub(CONSOLE_OUTPUT_KEPT)..];
    ConsoleOutput {
        text: String::from_utf8_lossy(kept).into_owned(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len(),
        truncated: kept.len() < bytes.len(),
    }
}

async fn console_screenshot(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> std::result::Result<Vec<u8>, Unavailable> {
    let out = ec2
        .get_console_screenshot()
        .instance_id(instance_id)
        .wake_up(false)
        .send()
        .await
        .aws("GetConsoleScreenshot", Some(instance_id))
        .map_err(|e| Unavailable {
            reason: e.to_string(),
        })?;
    let image =
        aws_smithy_types::base64::decode(out.image_data().unwrap_or_default()).map_err(|e| {
            Unavailable {
                reason: format!("screenshot is not valid base64: {e}"),
            }
        })?;
    if image.is_empty() {
        return Err(Unavailable {
            reason: "EC2 returned an empty screenshot".into(),
        });
    }
    Ok(image)
}

/// Maps EC2's description of an instance and its volumes to the Case's record.
pub fn describe_metadata(
    owner: Option<String>,
    region: &str,
    instance: &Instance,
    volumes: &[Volume],
) -> InstanceMetadata {
    let network_interfaces: Vec<NetworkInterfaceRecord> = instance
        .network_interfaces()
        .iter()
        .map(|eni| NetworkInterfaceRecord {
            network_interface_id: eni.network_interface_id().unwrap_or_default().to_owned(),
            device_index: eni.attachment().and_then(|a| a.device_index()),
            attachment_id: eni
                .attachment()
                .and_then(|a| a.attachment_id())
                .map(str::to_owned),
            subnet_id: eni.subnet_id().map(str::to_owned),
            vpc_id: eni.vpc_id().map(str::to_owned),
            mac_address: eni.mac_address().map(str::to_owned),
            private_ip_addresses: eni
                .private_ip_addresses()
                .iter()
                .filter_map(|a| a.private_ip_address().map(str::to_owned))
                .chain(eni.private_ip_address().map(str::to_owned))
                .fold(Vec::new(), |mut all, ip| {
                    if !all.contains(&ip) {
                        all.push(ip);
                    }
                    all
                }),
            ipv6_addresses: eni
                .ipv6_addresses()
                .iter()
                .filter_map(|a| a.ipv6_address().map(str::to_owned))
                .collect(),
            public_ip: eni
                .association()
                .and_then(|a| a.public_ip())
                .map(str::to_owned),
            security_group_ids: eni
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect(),
            source_dest_check: eni.source_dest_check(),
        })
        .collect();
    let mut security_group_ids: Vec<String> = instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    for id in network_interfaces
        .iter()
        .flat_map(|e| &e.security_group_ids)
    {
        if !security_group_ids.contains(id) {
            security_group_ids.push(id.clone());
        }
    }
    let volumes = instance
        .block_device_mappings()
        .iter()
        .filter_map(|mapping| {
            let ebs = mapping.ebs()?;
            let volume_id = ebs.volume_id()?.to_owned();
            let volume = volumes.iter().find(|v| v.volume_id() == Some(&volume_id));
            Some(VolumeRecord {
                device_name: mapping.device_name().map(str::to_owned),
                size_gib: volume.and_then(|v| v.size()),
                volume_type: volume
                    .and_then(|v| v.volume_type())
                    .map(|t| t.as_str().to_owned()),
                encrypted: volume.and_then(|v| v.encrypted()),
                kms_key_id: volume.and_then(|v| v.kms_key_id()).map(str::to_owned),
                kms_key_manager: None,
                kms_key_aliases: Vec::new(),
                kms_key_unavailable: None,
                snapshot_id: volume.and_then(|v| v.snapshot_id()).map(str::to_owned),
                delete_on_termination: ebs.delete_on_termination(),
                attach_time: ebs.attach_time().map(|t| rfc3339(*t)),
                volume_id,
            })
        })
        .collect();
    InstanceMetadata {
        instance_id: instance.instance_id().unwrap_or_default().to_owned(),
        account: owner,
        region: region.to_owned(),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        instance_type: instance.instance_type().map(|t| t.as_str().to_owned()),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned()),
        image_id: instance.image_id().map(str::to_owned),
        launch_time: instance.launch_time().map(|t| rfc3339(*t)),
        platform: instance
            .platform_details()
            .map(str::to_owned)
            .or_else(|| instance.platform().map(|p| p.as_str().to_owned())),
        architecture: instance.architecture().map(|a| a.as_str().to_owned()),
        key_name: instance.key_name().map(str::to_owned),
        vpc_id: instance.vpc_id().map(str::to_owned),
        subnet_id: instance.subnet_id().map(str::to_owned),
        private_ip: instance.private_ip_address().map(str::to_owned),
        public_ip: instance.public_ip_address().map(str::to_owned),
        network_interfaces,
        security_group_ids,
        volumes,
        iam_instance_profile_arn: instance
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_owned),
        root_device_name: instance.root_device_name().map(str::to_owned),
        metadata_http_tokens: instance
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_owned()),
        tags: tag_map(instance.tags()),
        console_output: None,
        console_output_unavailable: None,
        console_screenshot_sha256: None,
        console_screenshot_unavailable: None,
        captured_at: now_utc(),
    }
}

/// EC2 tags as a map (a tag without a key is dropped).
pub(crate) fn tag_map(
    tags: &[aws_sdk_ec2::types::Tag],
) -> std::collections::BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_console_output_keeps_the_newest_part_and_hashes_all() {
        let mut text = vec![b'a'; CONSOLE_OUTPUT_KEPT];
        text.extend_from_slice(b"last line\n");
        let record = console_record(&text);
        assert!(record.truncated);
        assert_eq!(record.bytes, text.len());
        assert!(record.text.ends_with("last line\n"));
        assert_eq!(record.text.len(), CONSOLE_OUTPUT_KEPT);
        assert_eq!(record.sha256, sha256_hex(&text));
    }

    #[test]
    fn short_console_output_is_kept_whole() {
        let record = console_record(b"boot ok\n");
        assert!(!record.truncated);
        assert_eq!(record.text, "boot ok\n");
    }
}
