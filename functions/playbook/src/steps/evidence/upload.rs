//! Evidence that a host uploads itself: the multipart upload it writes into
//! over pre-signed URLs, the tools it downloads the same way, and the checks
//! made before what it uploaded enters the manifest.
//!
//! A pre-signed URL allows one request on one object for a short time; the
//! host never holds a credential. The URLs carry no `x-amz-checksum-*`
//! header (it would have to be signed, and the checksum is not known when
//! the URL is made): the host sends an unsigned `Content-MD5` per part, which
//! S3 checks and which Object Lock requires, and the whole image is read back
//! and hashed here before it counts as evidence.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    ChecksumMode, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use sha2::{Digest, Sha256};

use super::store::{hex_of_checksum, EvidenceStore};
use crate::case::custody::hex;
use crate::error::{AwsCall, PlaybookError, Result};

/// The prefix of the evidence bucket that holds the tools hosts download.
pub const TOOLS_PREFIX: &str = "tools/";

/// A tool in the evidence bucket, checked: the version whose SHA-256, as S3
/// stored it, is the one expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTool {
    /// Its key.
    pub key: String,
    /// The version checked (the URL is for this version only).
    pub version_id: Option<String>,
    /// Its hex SHA-256.
    pub sha256: String,
}

/// One part of a multipart upload, as S3 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// 1-based part number.
    pub part_number: i32,
    /// Bytes.
    pub size: u64,
    /// The ETag, without quotes.
    pub etag: String,
}

/// An object's size and SHA-256 computed from its bytes as S3 returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Bytes read.
    pub size: u64,
    /// Hex SHA-256 of them.
    pub sha256: String,
}

fn presigning(lifetime: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(lifetime)
        .map_err(|e| PlaybookError::Configuration(format!("a pre-signed URL's lifetime: {e}")))
}

fn unquoted(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

impl EvidenceStore {
    /// Checks the tool at `key` against `expected` (hex SHA-256) by the
    /// checksum S3 keeps for it; a tool stored without one, or with another,
    /// is refused.
    pub async fn checked_tool(&self, key: &str, expected: &str) -> Result<CheckedTool> {
        let head = self
            .s3()
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .aws("HeadObject", None)?;
        let stored = head.checksum_sha256().and_then(hex_of_checksum);
        match stored {
            Some(sha256) if sha256.eq_ignore_ascii_case(expected) => Ok(CheckedTool {
                key: key.to_owned(),
                version_id: head.version_id().map(str::to_owned),
                sha256,
            }),
            Some(other) => Err(PlaybookError::Configuration(format!(
                "s3://{}/{key} has SHA-256 {other}, not the expected {expected}: the tool is not the one published, it is not sent to any host",
                self.bucket()
            ))),
            None => Err(PlaybookError::Configuration(format!(
                "s3://{}/{key} was stored without a SHA-256 checksum: publish it with `make publish-tools`",
                self.bucket()
            ))),
        }
    }

    /// A pre-signed GET of exactly the checked version of a tool.
    pub async fn presign_tool(&self, tool: &CheckedTool, lifetime: Duration) -> Result<String> {
        let request = self
            .s3()
            .get_object()
            .bucket(self.bucket())
            .key(&tool.key)
            .set_version_id(tool.version_id.clone())
            .presigned(presigning(lifetime)?)
            .await
            .aws("GetObject (pre-signed)", None)?;
        Ok(request.uri().to_owned())
    }

    /// A pre-signed PUT of one result object at `key`: the bucket's default
    /// encryption and retention apply; the uploader adds a Content-MD5.
    pub async fn presign_put(&self, key: &str, lifetime: Duration) -> Result<String> {
        let request = self
            .s3()
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .presigned(presigning(lifetime)?)
            .await
            .aws("PutObject (pre-signed)", None)?;
        Ok(request.uri().to_owned())
    }

    /// The latest version of an object and its size.
    pub async fn latest_version(&self, key: &str) -> Result<(String, u64)> {
        let head = self
            .s3()
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .aws("HeadObject", None)?;
        let version = self.version_of(key, head.version_id())?;
        Ok((
            version,
            head.content_length().unwrap_or_default().max(0) as u64,
        ))
    }

    /// Starts the multipart upload of an evidence object at `key`: SSE-KMS
    /// under the forensic key, locked like every object of the store.
    pub async fn start_upload(&self, key: &str, content_type: &str) -> Result<String> {
        let mut request = self
            .s3()
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .object_lock_mode(self.lock_mode())
            .object_lock_retain_until_date(self.retain_until());
        if let Some(kms) = &self.config().forensic_kms_key {
            request = request.ssekms_key_id(kms);
        }
        let out = request.send().await.aws("CreateMultipartUpload", None)?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            PlaybookError::Configuration(format!(
                "CreateMultipartUpload of {key} gave no upload id"
            ))
        })
    }

    /// Pre-signed UploadPart URLs for parts 1..=`parts` of one upload.
    pub async fn presign_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: u32,
        lifetime: Duration,
    ) -> Result<Vec<String>> {
        let mut urls = Vec::with_capacity(parts as usize);
        for number in 1..=parts {
            let request = self
                .s3()
                .upload_part()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .part_number(number as i32)
                .presigned(presigning(lifetime)?)
                .await
                .aws("UploadPart (pre-signed)", None)?;
            urls.push(request.uri().to_owned());
        }
        Ok(urls)
    }

    /// The parts S3 holds for an upload, in order.
    pub async fn stored_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3()
                .list_parts()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .aws("ListParts", None)?;
            parts.extend(out.parts().iter().map(|p| StoredPart {
                part_number: p.part_number().unwrap_or_default(),
                size: p.size().unwrap_or_default().max(0) as u64,
                etag: unquoted(p.e_tag().unwrap_or_default()),
            }));
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Completes an upload from the parts S3 listed; returns the version id.
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<String> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.part_number)
                            .e_tag(format!("\"{}\"", p.etag))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let out = self
            .s3()
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .aws("CompleteMultipartUpload", None)?;
        self.version_of(key, out.version_id())
    }

    /// The ids of the multipart uploads of exactly `key` that are in progress.
    pub async fn uploads_in_progress(&self, key: &str) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .s3()
                .list_multipart_uploads()
                .bucket(self.bucket())
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .aws("ListMultipartUploads", None)?;
            ids.extend(
                out.uploads()
                    .iter()
                    .filter(|u| u.key() == Some(key))
                    .filter_map(|u| u.upload_id().map(str::to_owned)),
            );
            match (
                out.is_truncated(),
                out.next_key_marker(),
                out.next_upload_id_marker(),
            ) {
                (Some(true), Some(k), Some(i)) => {
                    key_marker = Some(k.to_owned());
                    id_marker = Some(i.to_owned());
                }
                _ => return Ok(ids),
            }
        }
    }

    /// Abandons an upload: its parts are discarded, nothing becomes evidence.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        self.s3()
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .aws("AbortMultipartUpload", None)?;
        Ok(())
    }

    /// Reads one version of an object to the end, hashing as it streams
    /// (an image is never held in memory).
    pub async fn read_back(&self, key: &str, version_id: &str) -> Result<ReadBack> {
        let out = self
            .s3()
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .aws("GetObject", None)?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) =
            body.try_next()
                .await
                .map_err(|e| PlaybookError::ServiceUnavailable {
                    operation: "GetObject".into(),
                    message: format!("{key}: {e}"),
                })?
        {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(ReadBack {
            size,
            sha256: hex(&hasher.finalize()),
        })
    }
}

/// Whether the parts S3 holds for an upload are exactly the parts a host
/// says it uploaded (`host`, `host_size` bytes in parts of `host_part_size`),
/// none larger than the plan's part size (`plan`): the host cannot make a
/// part hold more than the URL it was given was meant for. The mismatch,
/// said plainly, otherwise.
pub fn check_host_parts(
    host: &[crate::case::memory::HostPart],
    host_size: u64,
    host_part_size: u64,
    stored: &[StoredPart],
    plan: u64,
) -> std::result::Result<(), String> {
    if host_part_size != plan {
        return Err(format!(
            "the host reports parts of {host_part_size} bytes, the plan was {plan}"
        ));
    }
    if let Some(large) = stored.iter().find(|p| p.size > plan) {
        return Err(format!(
            "part {} holds {} bytes, more than the plan's {plan}",
            large.part_number, large.size
        ));
    }
    if host.len() != stored.len() {
        return Err(format!(
            "S3 holds {} parts, the host uploaded {}",
            stored.len(),
            host.len()
        ));
    }
    for (host, s3) in host.iter().zip(stored) {
        if host.part_number != s3.part_number || host.size != s3.size || host.etag != s3.etag {
            return Err(format!(
                "part {}: S3 holds {} bytes (ETag {}), the host uploaded part {} of {} bytes (ETag {})",
                s3.part_number, s3.size, s3.etag, host.part_number, host.size, host.etag
            ));
        }
    }
    let total: u64 = stored.iter().map(|p| p.size).sum();
    if total != host_size {
        return Err(format!(
            "the parts hold {total} bytes, the host reported {host_size}"
        ));
    }
    Ok(())
}

/// Stores a part list (part N's URL on line N) at `key`, beside the object
/// the parts make, and makes a pre-signed GET of exactly the stored version
/// valid for `lifetime`. The host uses the list only if its SHA-256 is the
/// stored one's.
pub async fn publish_part_list(
    store: &EvidenceStore,
    key: &str,
    urls: Vec<String>,
    lifetime: Duration,
) -> Result<(crate::case::Artifact, String)> {
    let mut list = urls.join("\n");
    list.push('\n');
    drop(urls);
    let stored = store
        .put(key, list.into_bytes(), "text/plain", "part-list")
        .await?;
    let url = store
        .presign_tool(
            &CheckedTool {
                key: stored.key.clone(),
                version_id: Some(stored.version_id.clone()),
                sha256: stored.sha256.clone(),
            },
            lifetime,
        )
        .await?;
    Ok((stored, url))
}
