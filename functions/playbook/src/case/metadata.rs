//! What capture-metadata records of each instance before anything changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PerInstance;

/// A network interface of the suspect instance, as it was when captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceRecord {
    /// ENI id.
    pub network_interface_id: String,
    /// Position on the instance (0 is the primary).
    pub device_index: Option<i32>,
    /// Attachment id.
    pub attachment_id: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// VPC.
    pub vpc_id: Option<String>,
    /// MAC address.
    pub mac_address: Option<String>,
    /// Every private IPv4 address.
    pub private_ip_addresses: Vec<String>,
    /// Every IPv6 address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<String>,
    /// The public IPv4 address, if any.
    pub public_ip: Option<String>,
    /// Security groups on this ENI.
    pub security_group_ids: Vec<String>,
    /// Whether EC2 checks source/destination addresses.
    pub source_dest_check: Option<bool>,
}

/// An EBS volume attached to the suspect instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// Volume id.
    pub volume_id: String,
    /// Device name the instance sees it as.
    pub device_name: Option<String>,
    /// Size in GiB.
    pub size_gib: Option<i32>,
    /// gp3, io2, ...
    pub volume_type: Option<String>,
    /// Whether it is encrypted.
    pub encrypted: Option<bool>,
    /// The KMS key that encrypts it.
    pub kms_key_id: Option<String>,
    /// Who manages that key (`DescribeKey`'s `KeyManager`: `AWS` or `CUSTOMER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_manager: Option<String>,
    /// The key's aliases (`alias/aws/ebs` marks the AWS managed key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kms_key_aliases: Vec<String>,
    /// Why the key could not be described, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_unavailable: Option<String>,
    /// The snapshot it was created from.
    pub snapshot_id: Option<String>,
    /// Whether terminating the instance deletes it.
    pub delete_on_termination: Option<bool>,
    /// When it was attached (UTC).
    pub attach_time: Option<String>,
}

/// Something the step tried to capture and could not, kept so the gap is on record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// Why it is missing.
    pub reason: String,
}

/// The instance's serial console output, as far as EC2 keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleOutput {
    /// The text (the newest part when `truncated`).
    pub text: String,
    /// SHA-256 of the whole decoded output.
    pub sha256: String,
    /// Length of the whole decoded output in bytes.
    pub bytes: usize,
    /// Only the last part is kept in the Case (Step Functions payloads are limited).
    pub truncated: bool,
}

/// The size in GiB of the suspect's volume `volume_id`, as captured.
pub fn volume_size_gib(metadata: &[InstanceMetadata], volume_id: &str) -> Option<i32> {
    metadata
        .iter()
        .flat_map(|m| &m.volumes)
        .find(|v| v.volume_id == volume_id)
        .and_then(|v| v.size_gib)
}

/// Everything the playbook lists under "capture the instance metadata", for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetadata {
    /// Instance id.
    pub instance_id: String,
    /// Owning account.
    pub account: Option<String>,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Instance type.
    pub instance_type: Option<String>,
    /// State when captured (running, stopped, terminated...).
    pub state: Option<String>,
    /// The AMI it was launched from.
    pub image_id: Option<String>,
    /// Launch time (UTC).
    pub launch_time: Option<String>,
    /// Platform details (Linux/UNIX, Windows...).
    pub platform: Option<String>,
    /// CPU architecture.
    pub architecture: Option<String>,
    /// The key pair it was launched with.
    pub key_name: Option<String>,
    /// VPC of the primary interface.
    pub vpc_id: Option<String>,
    /// Subnet of the primary interface.
    pub subnet_id: Option<String>,
    /// Primary private IPv4 address.
    pub private_ip: Option<String>,
    /// Primary public IPv4 address.
    pub public_ip: Option<String>,
    /// Every network interface.
    pub network_interfaces: Vec<NetworkInterfaceRecord>,
    /// Every security group of the instance (union over ENIs).
    pub security_group_ids: Vec<String>,
    /// Every attached EBS volume.
    pub volumes: Vec<VolumeRecord>,
    /// The instance profile ARN.
    pub iam_instance_profile_arn: Option<String>,
    /// The root device name.
    pub root_device_name: Option<String>,
    /// Instance metadata service options (tokens required or optional).
    pub metadata_http_tokens: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Serial console output, or why there is none.
    pub console_output: Option<ConsoleOutput>,
    /// Why the console output is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_output_unavailable: Option<Unavailable>,
    /// SHA-256 of the console screenshot (JPEG), when EC2 could take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_screenshot_sha256: Option<String>,
    /// Why there is no screenshot, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_screenshot_unavailable: Option<Unavailable>,
    /// When this was captured (UTC).
    pub captured_at: String,
}

impl PerInstance for InstanceMetadata {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}
