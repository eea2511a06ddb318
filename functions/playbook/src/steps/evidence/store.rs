//! The evidence store: the Object Lock bucket `EVIDENCE_BUCKET`, one prefix per case.
//!
//! Every object is written with its SHA-256 (`x-amz-checksum-sha256`), which S3
//! verifies on write and which satisfies Object Lock's integrity requirement,
//! under SSE-KMS and a retention period; the answer must carry a version id
//! (the bucket is versioned) and S3's own checksum must be ours.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ObjectLockMode, ServerSideEncryption};
use aws_smithy_types::DateTime;

use super::digest::{Digested, StreamDigest};
use crate::aws::{Config, Responder};
use crate::case::custody::{hex, sha256};
use crate::case::evidence::upsert_artifact;
use crate::case::{Artifact, Case};
use crate::error::{AwsCall, PlaybookError, Result};

/// How much shorter than the configured days an evidence lock is (see
/// [`EvidenceStore::retain_until`]).
const RETENTION_MARGIN_SECONDS: u64 = 60;
/// The evidence bucket and how objects are written to it.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    config: Config,
}

/// The key of `name` in the case's prefix: `cases/<caseId>/<name>`.
pub fn case_key(case_id: &str, name: &str) -> String {
    format!("cases/{case_id}/{name}")
}

/// Base64 of the SHA-256 of `bytes`: the form S3's checksum headers use.
pub fn checksum_sha256(bytes: &[u8]) -> String {
    aws_smithy_types::base64::encode(sha256(bytes))
}

/// The hex SHA-256 that a base64 S3 checksum stands for.
pub fn hex_of_checksum(checksum: &str) -> Option<String> {
    let bytes = aws_smithy_types::base64::decode(checksum).ok()?;
    Some(hex(&bytes))
}

impl EvidenceStore {
    /// The store of `responder`'s configuration, or `None` when `EVIDENCE_BUCKET` is unset.
    pub fn of(responder: &Responder) -> Option<EvidenceStore> {
        responder
            .config
            .evidence_bucket
            .as_ref()
            .map(|bucket| EvidenceStore {
                s3: responder.clients.s3.clone(),
                bucket: bucket.clone(),
                config: responder.config.clone(),
            })
    }

    /// The store, or a typed error naming the missing variable.
    pub fn required(responder: &Responder) -> Result<EvidenceStore> {
        Self::of(responder).ok_or_else(|| {
            PlaybookError::Configuration(
                "EVIDENCE_BUCKET is not set: there is no evidence store".into(),
            )
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The responder's configuration (retention, forensic key).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// Writes `bytes` at `key`, locked and checksummed, and returns its record.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        kind: &str,
    ) -> Result<Artifact> {
        let digest = sha256(&bytes);
        let (sha256, checksum) = (hex(&digest), aws_smithy_types::base64::encode(digest));
        let size = bytes.len() as u64;
        let mut request = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .object_lock_mode(self.lock_mode())
            .object_lock_retain_until_date(self.retain_until());
        if let Some(key) = &self.config.forensic_kms_key {
            request = request.ssekms_key_id(key);
        }
        let out = request.send().await.aws("PutObject", None)?;
        let version_id = self.version_of(key, out.version_id())?;
        if let Some(stored) = out.checksum_sha256() {
            if stored != checksum {
                return Err(PlaybookError::checksum_mismatch(
                    "PutObject",
                    format!("{key}: S3 stored checksum {stored}, the evidence has {checksum}"),
                ));
            }
        }
        tracing::info!(key = %key, version_id = %version_id, size, "evidence stored");
        Ok(Artifact {
            key: key.to_owned(),
            version_id,
            size,
            sha256,
            kind: kind.to_owned(),
        })
    }

    /// The Object Lock mode every evidence object is written with.
    pub fn lock_mode(&self) -> ObjectLockMode {
        ObjectLockMode::from(self.config.retention.mode.as_str())
    }

    /// Until when an object written now is locked: the configured days, less
    /// a minute. The bucket policy caps a write's lock at those days
    /// (`s3:object-lock-remaining-retention-days`), and a lock of exactly N
    /// days, read a moment later by a clock a little behind, could count as
    /// more than N and have every evidence write refused.
    pub fn retain_until(&self) -> DateTime {
        let days = u64::from(self.config.retention.days);
        DateTime::from(
            SystemTime::now() + Duration::from_secs(days * 86_400 - RETENTION_MARGIN_SECONDS),
        )
    }

    /// The version id S3 answered for `key`, or the error that the bucket is
    /// not versioned (evidence could then be overwritten).
    pub fn version_of(&self, key: &str, version_id: Option<&str>) -> Result<String> {
        version_id.map(str::to_owned).ok_or_else(|| {
            PlaybookError::Configuration(format!(
                "bucket {} gave {key} no version id: it is not versioned, so evidence could be overwritten",
                self.bucket
            ))
        })
    }

    /// Reads one version of an object: its bytes, and the SHA-256 S3 keeps for it.
    pub async fn get(&self, key: &str, version_id: Option<&str>) -> Result<StoredObject> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .aws("GetObject", None)?;
        let stored_sha256 = out.checksum_sha256().and_then(hex_of_checksum);
        let version_id = out.version_id().map(str::to_owned);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| PlaybookError::ServiceUnavailable {
                operation: "GetObject".into(),
                message: format!("{key}: {e}"),
            })?
            .into_bytes()
            .to_vec();
        Ok(StoredObject {
            bytes,
            version_id,
            stored_sha256,
        })
    }

    /// Checks that the bucket is what evidence needs: Object Lock enabled
    /// (which implies versioning). A bucket found by name is not trusted.
    pub async fn check_locked(&self) -> Result<()> {
        let out = self
            .s3
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            .aws("GetObjectLockConfiguration", None)?;
        let enabled = out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .map(|e| e.as_str() == "Enabled")
            .unwrap_or(false);
        if enabled {
            Ok(())
        } else {
            Err(PlaybookError::Configuration(format!(
                "bucket {} does not have Object Lock enabled: it cannot keep evidence",
                self.bucket
            )))
        }
    }

    /// Stores the Case as it is now (`cases/<caseId>/case.json`, a new
    /// version each time) and records it among the case's artifacts.
    pub async fn put_case(&self, case: &mut Case) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(case)
            .map_err(|e| PlaybookError::InvalidCase(format!("the Case does not serialise: {e}")))?;
        let key = case_key(&case.case_id, "case.json");
        let artifact = self.put(&key, bytes, "application/json", "case").await?;
        upsert_artifact(&mut case.artifacts, artifact);
        Ok(())
    }
}

impl EvidenceStore {
    /// The latest stored version of the case's Case, or `None` when the case
    /// has none yet.
    pub async fn latest_case(&self, case_id: &str) -> Result<Option<Case>> {
        let key = case_key(case_id, "case.json");
        let object = match self.get(&key, None).await {
            Ok(object) => object,
            Err(err) if matches!(err.aws_code(), Some("NoSuchKey" | "NotFound")) => {
                return Ok(None)
            }
            Err(err) => return Err(err),
        };
        serde_json::from_slice(&object.bytes)
            .map(Some)
            .map_err(|e| {
                PlaybookError::InvalidCase(format!("{key} in {} is not a Case: {e}", self.bucket))
            })
    }
}

/// One stored version of an object, as `ListObjectVersions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Its version id.
    pub version_id: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Every version of one key, in the order S3 stored them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyVersions {
    /// The versions that hold bytes, oldest first.
    pub versions: Vec<ObjectVersion>,
    /// Delete markers (a "deletion" of the key), oldest first.
    pub delete_markers: Vec<String>,
}

/// An object read as a stream: its size and SHA-256 as read, and the
/// SHA-256 S3 keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedObject {
    /// Size and SHA-256 of the bytes read.
    pub digested: Digested,
    /// The hex SHA-256 S3 keeps for it, when it was written with one.
    pub stored_sha256: Option<String>,
}

impl EvidenceStore {
    /// Every version of exactly `key`, oldest first, and its delete markers:
    /// S3's own record of the order of writes, which no writer can reorder.
    pub async fn versions(&self, key: &str) -> Result<KeyVersions> {
        let mut found = KeyVersions::default();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .s3
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .aws("ListObjectVersions", None)?;
            found
                .versions
                .extend(
                    out.versions()
                        .iter()
                        .filter(|v| v.key() == Some(key))
                        .map(|v| ObjectVersion {
                            version_id: v.version_id().unwrap_or("null").to_owned(),
                            size: v.size().unwrap_or_default().max(0) as u64,
                        }),
                );
            found.delete_markers.extend(
                out.delete_markers()
                    .iter()
                    .filter(|m| m.key() == Some(key))
                    .map(|m| m.version_id().unwrap_or("null").to_owned()),
            );
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        // S3 lists the versions of a key newest first.
        found.versions.reverse();
        found.delete_markers.reverse();
        Ok(found)
    }

    /// Reads one version of an object chunk by chunk, handing each chunk to
    /// `sink` and hashing it on the way: nothing is held in memory that
    /// `sink` does not keep. S3 checks its own checksum of the body as it
    /// streams (checksum mode), and its SHA-256 is returned to compare.
    pub async fn stream(
        &self,
        key: &str,
        version_id: &str,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<StreamedObject> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .aws("GetObject", None)?;
        let stored_sha256 = out.checksum_sha256().and_then(hex_of_checksum);
        let mut body = out.body;
        let mut digest = StreamDigest::new();
        while let Some(chunk) =
            body.try_next()
                .await
                .map_err(|e| PlaybookError::ServiceUnavailable {
                    operation: "GetObject".into(),
                    message: format!("{key} version {version_id}: {e}"),
                })?
        {
            digest.update(&chunk);
            sink(&chunk)?;
        }
        Ok(StreamedObject {
            digested: digest.finish(),
            stored_sha256,
        })
    }

    /// The newest version of `key`, when the object exists.
    pub async fn newest_version(&self, key: &str) -> Result<Option<String>> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head.version_id().map(str::to_owned)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(PlaybookError::from_sdk("HeadObject", None, &err)),
        }
    }

    /// One version of a small object (a manifest, a signature, a Case),
    /// refused past `limit` bytes: a writer of the bucket cannot make a
    /// reader hold a huge object in memory.
    pub async fn get_small(
        &self,
        key: &str,
        version_id: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, StreamedObject)> {
        let mut bytes = Vec::new();
        let streamed = self
            .stream(key, version_id, |chunk| {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(PlaybookError::InvalidCase(format!(
                        "{key} version {version_id} is larger than {limit} bytes: it is not read"
                    )));
                }
                bytes.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
        Ok((bytes, streamed))
    }
}

/// An object read back from the store.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The version read.
    pub version_id: Option<String>,
    /// The hex SHA-256 S3 keeps for it, when it was written with one.
    pub stored_sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_checksum_is_the_base64_of_the_hex_digest() {
        let checksum = checksum_sha256(b"abc");
        assert_eq!(checksum, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_eq!(
            hex_of_checksum(&checksum).unwrap(),
            crate::case::custody::sha256_hex(b"abc")
        );
        assert_eq!(case_key("gd-1", "case.json"), "cases/gd-1/case.json");
    }

    /// A lock never asks for more than the configured days (the bucket
    /// policy's cap), and falls short of them by the margin only.
    #[test]
    fn an_evidence_lock_stays_within_the_configured_days() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let mut config = Config::default();
        config.retention.days = 3;
        let store = EvidenceStore {
            s3: aws_sdk_s3::Client::new(&sdk),
            bucket: "b".into(),
            config,
        };
        let now = DateTime::from(SystemTime::now()).secs();
        let until = store.retain_until().secs();
        let days = 3 * 86_400;
        assert!(
            until <= now + days,
            "{until} is more than 3 days from {now}"
        );
        assert!(until >= now + days - RETENTION_MARGIN_SECONDS as i64 - 5);
    }
}
