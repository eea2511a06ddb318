//! Disk evidence and the evidence store, as pure data: each volume's snapshot,
//! how it reached the forensic account, its forensic copy; the artifacts kept
//! in the evidence bucket; the signed manifest an investigator verifies.

use serde::{Deserialize, Serialize};

use super::actions::ActionRecord;
use super::metadata::VolumeRecord;

/// How a volume is encrypted, which decides how its snapshot is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Encryption {
    /// Not encrypted: the snapshot is shared as it is.
    Unencrypted,
    /// A customer managed key: the forensic account gets a grant on it.
    CustomerKey,
    /// The AWS managed key (`aws/ebs`), whose use cannot be given to another
    /// account: the snapshot is first copied under the sharing key.
    AwsManagedKey,
}

/// The sharing decision for one volume, from its key as capture-metadata read
/// it (`DescribeKey`'s `KeyManager`, and the key's aliases). A volume whose
/// encryption was not read is an error: guessing would share it the wrong way.
pub fn encryption_of(volume: &VolumeRecord) -> Result<Encryption, String> {
    match volume.encrypted {
        Some(false) => Ok(Encryption::Unencrypted),
        None => Err(format!(
            "{}: whether the volume is encrypted was not captured",
            volume.volume_id
        )),
        Some(true) => {
            let aws_alias = volume
                .kms_key_aliases
                .iter()
                .any(|a| a.starts_with("alias/aws/"));
            match volume.kms_key_manager.as_deref() {
                Some("AWS") => Ok(Encryption::AwsManagedKey),
                _ if aws_alias => Ok(Encryption::AwsManagedKey),
                Some("CUSTOMER") => Ok(Encryption::CustomerKey),
                Some(other) => Err(format!(
                    "{}: key manager {other} is neither AWS nor CUSTOMER",
                    volume.volume_id
                )),
                None => Err(format!(
                    "{}: the volume's KMS key was not described (key {})",
                    volume.volume_id,
                    volume.kms_key_id.as_deref().unwrap_or("unknown")
                )),
            }
        }
    }
}

/// A snapshot's state as EC2 last reported it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProgress {
    /// Snapshot id.
    pub snapshot_id: String,
    /// `pending`, `completed`, `error`, ... (`unknown` until first read).
    pub state: String,
    /// EC2's progress, e.g. `42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The key that encrypts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// EC2's state message (why it is in `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was started (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When its state was last read (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
}

impl SnapshotProgress {
    /// Whether EC2 says the snapshot is complete.
    pub fn is_completed(&self) -> bool {
        self.state == "completed"
    }

    /// Whether EC2 says the snapshot failed.
    pub fn is_error(&self) -> bool {
        self.state == "error"
    }

    /// Whether nothing more will happen to it: completed or failed.
    pub fn is_settled(&self) -> bool {
        self.is_completed() || self.is_error()
    }
}

/// A grant that lets the forensic account use a workload account's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyGrant {
    /// The key.
    pub key_arn: String,
    /// The grant's id.
    pub grant_id: String,
    /// The grant's name (`ec2-forensics-<case>`), which makes `CreateGrant` idempotent.
    pub name: String,
    /// Who may use the key: the forensic account.
    pub grantee_principal: String,
    /// Who may retire the grant when the case is closed.
    pub retiring_principal: String,
    /// The operations granted.
    pub operations: Vec<String>,
}

/// How a snapshot reached the forensic account.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sharing {
    /// The account it is shared with; none in single-account mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_with: Option<String>,
    /// The snapshot the forensic account copies: the snapshot itself, or its
    /// copy under the sharing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_snapshot_id: Option<String>,
    /// The copy under `SHARING_KMS_KEY` (volumes under the AWS managed key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re_encrypted: Option<SnapshotProgress>,
    /// The grant on the key that encrypts the shared snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<KeyGrant>,
    /// The snapshot's create-volume permissions were read back: the forensic
    /// account only, no `all` group.
    pub verified_private: bool,
    /// The forensic account can copy `source_snapshot_id` now.
    pub ready: bool,
    /// Every change, tried or made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
}

impl Sharing {
    /// Not ready, and a change or check failed: nothing a later round would
    /// change (a public snapshot, a refused grant) until a person looks.
    pub fn has_failed(&self) -> bool {
        !self.ready
            && self
                .actions
                .iter()
                .any(|a| a.outcome == super::actions::Outcome::Failed)
    }
}

/// Everything the case holds of one volume's disk evidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEvidence {
    /// The suspect instance.
    pub instance_id: String,
    /// The source volume.
    pub volume_id: String,
    /// The device the instance saw it as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The crash-consistent snapshot, in the workload account.
    pub snapshot: SnapshotProgress,
    /// The volume's encryption, which decided the sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// How the snapshot reached the forensic account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,
    /// The copy under the forensic account's key, which the workload account cannot revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<SnapshotProgress>,
}

impl VolumeEvidence {
    /// The volume's snapshots in the workload account: the snapshot, and its
    /// copy under the sharing key when there is one.
    pub fn workload_snapshots(&self) -> impl Iterator<Item = &SnapshotProgress> {
        std::iter::once(&self.snapshot)
            .chain(self.sharing.as_ref().and_then(|s| s.re_encrypted.as_ref()))
    }

    /// Every snapshot of the volume's evidence, the forensic copy included.
    pub fn snapshots_mut(&mut self) -> impl Iterator<Item = &mut SnapshotProgress> {
        std::iter::once(&mut self.snapshot)
            .chain(self.sharing.as_mut().and_then(|s| s.re_encrypted.as_mut()))
            .chain(self.copy.as_mut())
    }
}

/// Replaces the evidence of the same volume or adds it.
pub fn upsert_volume(records: &mut Vec<VolumeEvidence>, record: VolumeEvidence) {
    match records.iter_mut().find(|r| r.volume_id == record.volume_id) {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
}

/// How many of these snapshots are still in progress, and how many failed.
pub fn pending_and_failed<'a>(
    progress: impl IntoIterator<Item = &'a SnapshotProgress>,
) -> (usize, usize) {
    progress.into_iter().fold((0, 0), |(pending, failed), p| {
        (
            pending + usize::from(!p.is_settled()),
            failed + usize::from(p.is_error()),
        )
    })
}

/// A bounded wait for something EC2 or a host does in the background. The
/// state machine's Choice states read `settled` and `checks`; the waits of
/// the memory and analysis loops read `waitSeconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Poll {
    /// How many are still in progress.
    pub pending: usize,
    /// How many failed.
    pub failed: usize,
    /// How many times it was checked.
    pub checks: u32,
    /// Nothing is pending any more (done or failed).
    pub settled: bool,
    /// Seconds to wait before the next check: the work's timeout spread
    /// over the loop's bounded number of checks, never under
    /// [`Poll::MIN_WAIT_SECONDS`]. A longer run is checked less often, so
    /// the execution's history (25,000 events) holds every loop.
    pub wait_seconds: u64,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            pending: 0,
            failed: 0,
            checks: 0,
            settled: false,
            wait_seconds: Poll::MIN_WAIT_SECONDS,
        }
    }
}

impl Poll {
    /// The shortest wait between two checks.
    pub const MIN_WAIT_SECONDS: u64 = 20;

    /// Spreads `seconds` of work (a command's delivery and timeout) over
    /// `checks` checks: the wait is at least [`Poll::MIN_WAIT_SECONDS`],
    /// longer when the work needs it. Never shortens a wait already set.
    pub fn spread(&mut self, seconds: u64, checks: u32) {
        self.wait_seconds = self.wait_seconds.max(Poll::wait_for(seconds, checks));
    }

    /// The wait that spreads `seconds` of work over `checks` checks, at
    /// least [`Poll::MIN_WAIT_SECONDS`].
    pub fn wait_for(seconds: u64, checks: u32) -> u64 {
        seconds
            .div_ceil(u64::from(checks.max(2) - 1))
            .max(Poll::MIN_WAIT_SECONDS)
    }

    /// One more check that found `pending` still running and `failed` failed.
    pub fn checked(&mut self, pending: usize, failed: usize) {
        self.observe(pending, failed);
        self.checks += 1;
    }

    /// What a step that starts work sees, without counting a check.
    pub fn observe(&mut self, pending: usize, failed: usize) {
        self.pending = pending;
        self.failed = failed;
        self.settled = pending == 0;
    }
}

/// The three waits of disk evidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DiskProgress {
    /// The snapshots of the volumes.
    pub snapshots: Poll,
    /// Sharing with the forensic account (re-encrypted copies included).
    pub sharing: Poll,
    /// The forensic copies.
    pub copies: Poll,
}

/// One object in the evidence bucket, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The object key, under `cases/<caseId>/`.
    pub key: String,
    /// The object version S3 gave it (Object Lock buckets are versioned).
    pub version_id: String,
    /// Bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes, which S3 verified on write.
    pub sha256: String,
    /// What it is: `metadata`, `console-output`, `console-screenshot`, `case`.
    pub kind: String,
}

/// Replaces the record of the same key or adds it: the newest version counts.
pub fn upsert_artifact(records: &mut Vec<Artifact>, record: Artifact) {
    match records.iter_mut().find(|r| r.key == record.key) {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
}

/// An artifact as the manifest lists it (the public contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestArtifact {
    /// Object key.
    pub key: String,
    /// Object version.
    pub version_id: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// What it is.
    pub kind: String,
}

/// A volume's snapshot and forensic copy as the manifest lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSnapshot {
    /// The source volume.
    pub volume_id: String,
    /// The snapshot in the workload account.
    pub snapshot_id: String,
    /// The copy in the forensic account, when there is one.
    pub copy_id: Option<String>,
    /// How the volume was encrypted.
    pub encryption: Option<Encryption>,
    /// The suspect instance.
    pub instance_id: String,
    /// The snapshot's last known state.
    pub snapshot_state: String,
    /// The copy's last known state.
    pub copy_state: Option<String>,
}

/// `cases/<caseId>/manifest.json`: what the case holds, the head of its
/// custody chain, and one link of the case's chain of manifests. Its shape is
/// a public contract: an investigator's tools read it.
///
/// Every field is inside the signed bytes ([`Manifest::canonical_bytes`]):
/// the place in the chain (`sequence`, `previous`) and the time are signed
/// with what they describe, so an old manifest re-uploaded over a newer one
/// repeats or lowers a sequence that `verify` has already seen, and a version
/// deleted from the chain leaves a link whose predecessor is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The case.
    pub case_id: String,
    /// 1 for the case's first signed manifest, one more at every seal after.
    pub sequence: u64,
    /// The signed manifest this one follows; `None` only for sequence 1.
    pub previous: Option<ManifestLink>,
    /// The workload account the snapshots are in.
    pub account: String,
    /// The forensic account the copies are in.
    pub forensic_account: String,
    /// The region of both.
    pub region: String,
    /// When the manifest was written (UTC, RFC 3339); never earlier than its
    /// predecessor's.
    pub created_at: String,
    /// Every stored artifact.
    pub artifacts: Vec<ManifestArtifact>,
    /// Every snapshot and copy.
    pub snapshots: Vec<ManifestSnapshot>,
    /// SHA-256 of the last custody entry's canonical JSON.
    pub custody_head: String,
    /// How many custody entries the chain holds.
    pub custody_entries: usize,
}

/// The signed manifest version a manifest follows: enough to find it among
/// the versions of `manifest.json` and to know it is the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestLink {
    /// Its sequence.
    pub sequence: u64,
    /// Its S3 version id.
    pub version_id: String,
    /// Hex SHA-256 of its bytes (the digest its signature signs).
    pub sha256: String,
}

impl Manifest {
    /// The exact bytes stored and signed: pretty JSON with keys sorted, and a
    /// final newline. The same manifest always gives the same bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self)
            .map(super::custody::canonical)
            .unwrap_or_default();
        let mut bytes = serde_json::to_vec_pretty(&value).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// `cases/<caseId>/manifest.json.sig`: the KMS signature of one manifest
/// version, one `.sig` version per seal.
///
/// `verify` trusts nothing in it but the signature itself: it checks that
/// `signature` verifies under the configured custody key over the SHA-256 of
/// a stored manifest version's bytes. `manifest_sha256` only says which
/// version it is meant for, and `key_id` only names the key for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSignature {
    /// The signing key's ARN, as KMS answered `Sign`.
    pub key_id: String,
    /// `ECDSA_SHA_256`.
    pub algorithm: String,
    /// Base64 DER ECDSA signature over the SHA-256 of the manifest's bytes.
    pub signature: String,
    /// Hex SHA-256 of the manifest's bytes (the signed digest).
    pub manifest_sha256: String,
}

/// The artifact kind of the manifest itself, in the Case.
pub const MANIFEST_KIND: &str = "manifest";
/// The artifact kind of the manifest's signature, in the Case.
pub const SIGNATURE_KIND: &str = "signature";
/// The artifact kind of the custody key's public key (PEM), stored at the
/// case's first seal and listed in every manifest after.
pub const PUBLIC_KEY_KIND: &str = "public-key";

/// The signing algorithm of every manifest.
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(encrypted: Option<bool>, manager: Option<&str>, aliases: &[&str]) -> VolumeRecord {
        VolumeRecord {
            volume_id: "vol-1".into(),
            encrypted,
            kms_key_id: encrypted.filter(|e| *e).map(|_| "arn:aws:kms:k".into()),
            kms_key_manager: manager.map(str::to_owned),
            kms_key_aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            ..VolumeRecord::default()
        }
    }

    #[test]
    fn sharing_follows_the_volume_key() {
        assert_eq!(
            encryption_of(&volume(Some(false), None, &[])),
            Ok(Encryption::Unencrypted)
        );
        assert_eq!(
            encryption_of(&volume(Some(true), Some("CUSTOMER"), &["alias/app"])),
            Ok(Encryption::CustomerKey)
        );
        assert_eq!(
            encryption_of(&volume(Some(true), Some("AWS"), &[])),
            Ok(Encryption::AwsManagedKey)
        );
        assert_eq!(
            encryption_of(&volume(Some(true), Some("CUSTOMER"), &["alias/aws/ebs"])),
            Ok(Encryption::AwsManagedKey),
            "the aws/ebs alias marks the AWS managed key"
        );
    }

    #[test]
    fn a_volume_whose_key_was_not_read_is_not_guessed() {
        assert!(encryption_of(&volume(None, None, &[])).is_err());
        assert!(encryption_of(&volume(Some(true), None, &[])).is_err());
        assert!(encryption_of(&volume(Some(true), Some("EXTERNAL"), &[])).is_err());
    }

    #[test]
    fn manifest_bytes_are_canonical_sorted_and_stable() {
        let manifest = Manifest {
            case_id: "gd-1".into(),
            sequence: 2,
            previous: Some(ManifestLink {
                sequence: 1,
                version_id: "v0".into(),
                sha256: "ef".into(),
            }),
            account: "111111111111".into(),
            forensic_account: "222222222222".into(),
            region: "us-east-1".into(),
            created_at: "2026-11-28T10:00:00Z".into(),
            artifacts: vec![ManifestArtifact {
                key: "cases/gd-1/case.json".into(),
                version_id: "v1".into(),
                size: 3,
                sha256: "ab".into(),
                kind: "case".into(),
            }],
            snapshots: vec![ManifestSnapshot {
                volume_id: "vol-1".into(),
                snapshot_id: "snap-1".into(),
                copy_id: Some("snap-2".into()),
                encryption: Some(Encryption::AwsManagedKey),
                instance_id: "i-1".into(),
                snapshot_state: "completed".into(),
                copy_state: Some("completed".into()),
            }],
            custody_head: "cd".into(),
            custody_entries: 4,
        };
        let bytes = manifest.canonical_bytes();
        assert_eq!(bytes, manifest.clone().canonical_bytes());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"));
        let account = text.find("\"account\"").unwrap();
        let artifacts = text.find("\"artifacts\"").unwrap();
        let case_id = text.find("\"caseId\"").unwrap();
        let head = text.find("\"custodyHead\"").unwrap();
        assert!(account < artifacts && artifacts < case_id && case_id < head);
        let (previous, sequence) = (
            text.find("\"previous\"").unwrap(),
            text.find("\"sequence\"").unwrap(),
        );
        assert!(
            head < previous && previous < sequence,
            "the link is signed too"
        );
        assert!(text.contains("\"encryption\": \"awsManagedKey\""));
        let back: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, manifest);
    }
}
