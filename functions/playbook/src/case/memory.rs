//! The memory section: what acquire-memory started on each instance and what
//! check-command found when the host's capture ended.

use serde::{Deserialize, Serialize};

use super::PerInstance;

/// Where one instance's memory capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryStatus {
    /// The command was sent; the host is capturing and uploading.
    Running,
    /// The image is in the evidence store, and its size and SHA-256 as S3
    /// stored it are what the host reported.
    Captured,
    /// Not attempted, with the reason (not SSM-managed, Windows, dry run...).
    Skipped,
    /// Attempted and failed, with the reason; the flow went on to isolation.
    Failed,
    /// The capture did not end within the state machine's bound; the command
    /// was cancelled.
    TimedOut,
}

/// One instance's memory capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryCapture {
    /// The suspect instance.
    pub instance_id: String,
    /// Where the capture stands.
    pub status: MemoryStatus,
    /// Why it was skipped or failed, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The typed error behind a failure, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The SSM command that runs capture-memory.sh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The SSM document it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// The image's key: `cases/<caseId>/memory/<instanceId>.lime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The multipart upload the host's parts go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Bytes per part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// The image's version, once the upload was completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// How many part URLs the host received (the image may use fewer).
    #[serde(default)]
    pub part_urls: u32,
    /// The command's execution timeout, from the instance's memory size;
    /// check-command waits as long, and no longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// How many parts the host uploads at once (it holds at most this many
    /// parts in its memory-backed work directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<u32>,
    /// The part list the host fetched (one pre-signed UploadPart URL per
    /// line), as stored: key, version and SHA-256, which the host checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_list: Option<crate::case::evidence::Artifact>,
    /// The instance's memory, as EC2 reports it for its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<i64>,
    /// SHA-256 of the AVML binary the host was told to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avml_sha256: Option<String>,
    /// SHA-256 of capture-memory.sh as this responder ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<String>,
    /// When the command was sent (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When check-command saw it end (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What the host's script reported: size, SHA-256, parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_report: Option<HostMemoryReport>,
    /// The image in the store matches the host's report, read back from S3.
    #[serde(default)]
    pub verified: bool,
    /// What the image proves and what it does not, once captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proves: Vec<String>,
}

impl MemoryCapture {
    /// A capture that was not attempted, and why.
    pub fn skipped(instance_id: &str, reason: impl Into<String>) -> MemoryCapture {
        MemoryCapture {
            status: MemoryStatus::Skipped,
            reason: Some(reason.into()),
            ..MemoryCapture::new(instance_id)
        }
    }

    /// An empty record for `instance_id`, before anything happened.
    pub fn new(instance_id: &str) -> MemoryCapture {
        MemoryCapture {
            instance_id: instance_id.to_owned(),
            status: MemoryStatus::Running,
            reason: None,
            error_type: None,
            command_id: None,
            document: None,
            key: None,
            upload_id: None,
            part_size: None,
            version_id: None,
            part_urls: 0,
            timeout_seconds: None,
            streams: None,
            part_list: None,
            memory_mib: None,
            avml_sha256: None,
            script_sha256: None,
            started_at: None,
            finished_at: None,
            host_report: None,
            verified: false,
            proves: Vec::new(),
        }
    }

    /// Whether the host is still capturing.
    pub fn is_running(&self) -> bool {
        self.status == MemoryStatus::Running
    }

    /// What a captured image proves, and what it cannot: the claims the
    /// record and the report make, no more. The capture ran on the suspect's
    /// own kernel, which an attacker with root controls.
    pub fn what_it_proves(&self) -> Vec<String> {
        let (Some(key), Some(version), Some(report)) =
            (&self.key, &self.version_id, &self.host_report)
        else {
            return Vec::new();
        };
        if self.status != MemoryStatus::Captured {
            return Vec::new();
        }
        vec![
            format!(
                "AVML (SHA-256 {}) ran on the suspect's own kernel, under the suspect's control",
                report.avml_sha256
            ),
            format!(
                "S3 version {version} of {key} holds {} bytes with SHA-256 {}, equal to what the host reported, read back and hashed by the responder",
                report.image_size, report.image_sha256
            ),
            "not attested: that the image is complete or authentic (a root attacker on the host can alter what AVML reads or what the host uploads)".to_owned(),
        ]
    }
}

impl PerInstance for MemoryCapture {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// The last line capture-memory.sh prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostMemoryReport {
    /// Bytes of the compressed image.
    pub image_size: u64,
    /// Hex SHA-256 of the compressed image, computed on the host as it streamed.
    pub image_sha256: String,
    /// Hex SHA-256 of the AVML binary the host checked and ran.
    pub avml_sha256: String,
    /// Bytes per part.
    pub part_size: u64,
    /// How many parts it uploaded at once (absent from older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<u32>,
    /// The memory source AVML read (`/proc/kcore`, `/dev/crash`, `/dev/mem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every part uploaded, in order.
    pub parts: Vec<HostPart>,
}

/// One uploaded part, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPart {
    /// 1-based part number.
    pub part_number: i32,
    /// Bytes.
    pub size: u64,
    /// Hex MD5 the host sent as Content-MD5 (S3 refuses a part that differs).
    pub md5: String,
    /// The ETag S3 answered.
    pub etag: String,
}
