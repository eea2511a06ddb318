//! The forensic workstation's section: the instance launched from the golden
//! AMI in each availability zone that holds evidence, the evidence volumes
//! made from the forensic copies and attached to it, and what the analysis
//! of each found.

use serde::{Deserialize, Serialize};

use super::Artifact;

/// One forensic workstation: where it runs, from which AMI, and its command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workstation {
    /// The availability zone of the evidence it analyses.
    pub availability_zone: String,
    /// The forensic subnet of that zone.
    pub subnet_id: String,
    /// The golden AMI (the value of GOLDEN_AMI_PARAMETER when it was launched).
    pub image_id: String,
    /// The instance, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Its state as EC2 last described it.
    #[serde(default)]
    pub state: String,
    /// Its SSM agent, as SSM last reported it (Online when commands can run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When it was launched (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<String>,
    /// The run-forensics.sh command, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// When the command was sent and when it ended (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_sent_at: Option<String>,
    /// When check-command saw it end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_ended_at: Option<String>,
    /// The command's execution timeout, from the sizes of the volumes it
    /// reads; check-command waits as long, and no longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_seconds: Option<u64>,
    /// The multipart upload of each evidence volume's result archive, by
    /// evidence volume id: check-command completes it once S3's parts are
    /// the workstation's.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub archive_uploads: std::collections::BTreeMap<String, String>,
    /// SHA-256 of every script the command ran, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scripts: std::collections::BTreeMap<String, String>,
    /// Why it could not be launched, or its analysis did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One evidence volume: a forensic copy made a volume again, for the workstation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceVolume {
    /// The suspect's volume it is a copy of.
    pub source_volume_id: String,
    /// The suspect instance.
    pub instance_id: String,
    /// The forensic copy it is made from.
    pub copy_snapshot_id: String,
    /// Where it is made (the workstation's zone).
    pub availability_zone: String,
    /// The new volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// Its state (creating, available, in-use) or `failed`.
    #[serde(default)]
    pub state: String,
    /// The device name it was attached as (the workstation maps it by its
    /// NVMe serial, never by this name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Read back attached to the workstation.
    #[serde(default)]
    pub attached: bool,
    /// Why not, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the analysis of one evidence volume found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAnalysis {
    /// The evidence volume analysed.
    pub volume_id: String,
    /// The suspect's volume it is a copy of.
    pub source_volume_id: String,
    /// `analysed` or `failed`.
    pub status: String,
    /// The device it was found as, by serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The whole device's SHA-256, read once while the analysis ran (the
    /// device read-only throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_sha256: Option<String>,
    /// How the workstation checked that the analysis changed nothing: which
    /// blocks were read again after, how, and the read-only flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_check: Option<String>,
    /// That check held: the sampled blocks read the same after as before,
    /// and the device was still read-only.
    #[serde(default)]
    pub unchanged: bool,
    /// File systems The Sleuth Kit could not read and that were mounted
    /// read-only instead ("xfs at sector 0 (ro,norecovery,...)").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounted: Vec<String>,
    /// LVM logical volumes found, read or not ("vg/lv at sector N: read").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical_volumes: Vec<String>,
    /// What the triage found.
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    /// Why no file system of the volume could be read (encrypted, unknown),
    /// when none could: the hashes still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Errors the analysis tools reported (in findings.json `toolErrors`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_errors: usize,
    /// Listing lines that did not parse and were recorded, not used.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unparsed: usize,
    /// Where the recency window started: the snapshot's start, or the newest
    /// plausible time on the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recency_anchor: Option<String>,
    /// Files the triage set's caps left out, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage_skipped: Option<String>,
    /// findings.json in the evidence store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Artifact>,
    /// The archive of the whole result directory in the evidence store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Artifact>,
    /// Why not, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One thing the triage found, as analyse-volume.sh writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    /// user, authorized_keys, cron, systemd, shell-history,
    /// recent-executable, crypto-mining.
    pub kind: String,
    /// The file's path inside the file system.
    pub path: String,
    /// What about it.
    #[serde(default)]
    pub detail: String,
    /// The file was deleted (The Sleuth Kit still lists it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// What a YARA rule matched (a pool URL, a domain, a wallet), as found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
