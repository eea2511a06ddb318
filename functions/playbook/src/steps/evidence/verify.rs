//! `ec2-forensics verify`: checks a case end to end from the evidence store.
//!
//! - the manifest's signature (KMS `Verify` with the configured custody key),
//!   over the latest manifest version, which must be the version signed;
//! - every listed object's SHA-256 and size, at its recorded version, against
//!   the bytes and against S3's own checksum;
//! - the custody chain of the stored Case, and its head against the manifest;
//! - that every listed snapshot and copy still exists.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::seal::{MANIFEST, SIGNATURE};
use super::store::{case_key, EvidenceStore};
use crate::aws::{Config, Responder};
use crate::case::custody::{hex, sha256, sha256_hex, verify_chain};
use crate::case::evidence::{Manifest, ManifestSignature};
use crate::case::Case;
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::disk::describe_snapshots;

/// One thing checked, and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it holds.
    pub holds: bool,
    /// What was found.
    pub detail: String,
}

/// Everything `verify` checked about one case.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The case.
    pub case_id: String,
    /// Each check, in order.
    pub checks: Vec<Check>,
}

impl Verdict {
    fn check(&mut self, what: impl Into<String>, holds: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            holds,
            detail: detail.into(),
        });
    }

    /// Whether every check holds (and there was at least one).
    pub fn holds(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.holds)
    }

    /// The verdict for a person: one line per check, then the conclusion.
    pub fn render(&self) -> String {
        let mut text = format!("case {}\n", self.case_id);
        for check in &self.checks {
            let mark = if check.holds { "ok  " } else { "FAIL" };
            text.push_str(&format!("  {mark} {}: {}\n", check.what, check.detail));
        }
        let failed = self.checks.iter().filter(|c| !c.holds).count();
        if self.holds() {
            text.push_str(&format!(
                "VERIFIED: all {} checks hold\n",
                self.checks.len()
            ));
        } else {
            text.push_str(&format!(
                "NOT VERIFIED: {failed} of {} checks fail\n",
                self.checks.len()
            ));
        }
        text
    }
}

/// Verifies the case `case_id` in the configured evidence bucket.
pub async fn verify_case(responder: &Responder, case_id: &str) -> Result<Verdict> {
    let store = EvidenceStore::required(responder)?;
    let trusted_key =
        Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY")?;
    let mut verdict = Verdict {
        case_id: case_id.to_owned(),
        ..Verdict::default()
    };
    let (manifest_key, signature_key) = (case_key(case_id, MANIFEST), case_key(case_id, SIGNATURE));
    let (manifest, signature) = tokio::join!(
        store.get(&manifest_key, None),
        store.get(&signature_key, None),
    );
    let manifest_object = manifest?;
    let signature: ManifestSignature = serde_json::from_slice(&signature?.bytes).map_err(|e| {
        PlaybookError::InvalidCase(format!("{SIGNATURE} is not a signature document: {e}"))
    })?;

    // The signature, by the trusted key, over these exact bytes.
    let digest = sha256(&manifest_object.bytes);
    let manifest_sha256 = hex(&digest);
    let (trusted, signer) = tokio::join!(
        responder
            .clients
            .kms
            .describe_key()
            .key_id(trusted_key)
            .send(),
        responder
            .clients
            .kms
            .describe_key()
            .key_id(&signature.key_id)
            .send(),
    );
    let trusted_arn = trusted
        .aws("DescribeKey", None)?
        .key_metadata()
        .map(|m| m.arn().unwrap_or_default().to_owned());
    let signer_arn = signer
        .ok()
        .and_then(|s| s.key_metadata().and_then(|m| m.arn()).map(str::to_owned));
    verdict.check(
        "signing key",
        trusted_arn.is_some() && trusted_arn == signer_arn,
        format!("signed by {}", signature.key_id),
    );
    let valid = responder
        .clients
        .kms
        .verify()
        .key_id(trusted_key)
        .message(Blob::new(digest.to_vec()))
        .message_type(MessageType::Digest)
        .signature(Blob::new(
            aws_smithy_types::base64::decode(&signature.signature).unwrap_or_default(),
        ))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await;
    let valid = match valid {
        Ok(out) => out.signature_valid(),
        Err(err) => {
            let err = PlaybookError::from_sdk("Verify", None, &err);
            if err.is_transient() {
                return Err(err);
            }
            false
        }
    };
    verdict.check(
        "manifest signature",
        valid && signature.manifest_sha256 == manifest_sha256,
        format!("{} over SHA-256 {manifest_sha256}", signature.algorithm),
    );
    let latest = manifest_object.version_id.clone().unwrap_or_default();
    verdict.check(
        "manifest version",
        latest == signature.manifest_version_id,
        if latest == signature.manifest_version_id {
            format!("the latest version {latest} is the one signed")
        } else {
            format!(
                "the latest version {latest} is not the signed version {}: the manifest was replaced",
                signature.manifest_version_id
            )
        },
    );
    let manifest: Manifest = match serde_json::from_slice(&manifest_object.bytes) {
        Ok(m) => m,
        Err(e) => {
            verdict.check("manifest", false, format!("not a manifest: {e}"));
            return Ok(verdict);
        }
    };
    verdict.check(
        "manifest case",
        manifest.case_id == case_id,
        format!("names case {}", manifest.case_id),
    );

    // Every artifact at its recorded version.
    let reads = manifest
        .artifacts
        .iter()
        .map(|a| store.get(&a.key, Some(&a.version_id)));
    let objects = futures::future::join_all(reads).await;
    let mut stored_case = None;
    for (artifact, object) in manifest.artifacts.iter().zip(objects) {
        match object {
            Ok(object) => {
                let sha = sha256_hex(&object.bytes);
                let holds = sha == artifact.sha256
                    && object.bytes.len() as u64 == artifact.size
                    && object
                        .stored_sha256
                        .as_deref()
                        .is_none_or(|s| s == artifact.sha256);
                verdict.check(
                    format!("object {}", artifact.key),
                    holds,
                    format!(
                        "version {}, {} bytes, SHA-256 {sha}",
                        artifact.version_id,
                        object.bytes.len()
                    ),
                );
                if artifact.kind == "case" && holds {
                    stored_case = Some(object.bytes);
                }
            }
            Err(err) => verdict.check(format!("object {}", artifact.key), false, err.to_string()),
        }
    }

    // The custody chain of the stored Case.
    match stored_case.map(|bytes| serde_json::from_slice::<Case>(&bytes)) {
        Some(Ok(case)) => match verify_chain(&case.custody) {
            Ok(head) => verdict.check(
                "custody chain",
                head == manifest.custody_head && case.custody.len() == manifest.custody_entries,
                format!("{} entries, head {head}", case.custody.len()),
            ),
            Err(broken) => verdict.check("custody chain", false, broken),
        },
        Some(Err(e)) => verdict.check(
            "custody chain",
            false,
            format!("the stored Case does not parse: {e}"),
        ),
        None => verdict.check("custody chain", false, "the manifest lists no intact Case"),
    }

    // Every snapshot and copy still exists.
    let snapshot_ids: Vec<String> = manifest
        .snapshots
        .iter()
        .map(|s| s.snapshot_id.clone())
        .collect();
    let copy_ids: Vec<String> = manifest
        .snapshots
        .iter()
        .filter_map(|s| s.copy_id.clone())
        .collect();
    let workload = responder
        .workload_for(Some(&manifest.account), case_id)
        .await?;
    let (sources, copies) = tokio::join!(
        describe_snapshots(&workload.clients.ec2, &snapshot_ids),
        describe_snapshots(&responder.clients.ec2, &copy_ids),
    );
    let (sources, copies) = (sources?, copies?);
    for listed in &manifest.snapshots {
        let found = sources
            .iter()
            .any(|s| s.snapshot_id() == Some(&listed.snapshot_id));
        verdict.check(
            format!("snapshot {}", listed.snapshot_id),
            found,
            format!(
                "of {} ({})",
                listed.volume_id,
                if found { "exists" } else { "missing" }
            ),
        );
        if let Some(copy) = &listed.copy_id {
            let found = copies.iter().any(|s| s.snapshot_id() == Some(copy));
            verdict.check(
                format!("copy {copy}"),
                found,
                format!(
                    "of {} ({})",
                    listed.snapshot_id,
                    if found { "exists" } else { "missing" }
                ),
            );
        }
    }
    Ok(verdict)
}
