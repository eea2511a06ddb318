//! seal-evidence: stores the Case, writes `cases/<caseId>/manifest.json` (every
//! artifact, every snapshot and copy, the custody chain's head) and its KMS
//! signature `manifest.json.sig`. Run at the end of a case, and again whenever
//! evidence is added: each run is a new, signed manifest version.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use serde_json::json;

use super::store::{case_key, EvidenceStore};
use crate::aws::{Config, Responder};
use crate::case::custody::{chain_head, entry, hex, sha256};
use crate::case::evidence::{
    upsert_artifact, Manifest, ManifestArtifact, ManifestSignature, ManifestSnapshot,
    SIGNING_ALGORITHM,
};
use crate::case::{Case, StepError};
use crate::error::{AwsCall, PlaybookError, Result};

/// The step name in custody entries and errors.
pub const STEP: &str = "seal-evidence";
/// The manifest's name in the case prefix.
pub const MANIFEST: &str = "manifest.json";
/// The signature's name in the case prefix.
pub const SIGNATURE: &str = "manifest.json.sig";

/// The manifest of the case as it is now (pure).
pub fn manifest_of(case: &Case, forensic_account: &str, created_at: String) -> Manifest {
    Manifest {
        case_id: case.case_id.clone(),
        account: case
            .incident
            .account
            .clone()
            .unwrap_or_else(|| forensic_account.to_owned()),
        forensic_account: forensic_account.to_owned(),
        region: case.incident.region.clone(),
        created_at,
        artifacts: case
            .artifacts
            .iter()
            .filter(|a| a.kind != "manifest" && a.kind != "signature")
            .map(|a| ManifestArtifact {
                key: a.key.clone(),
                version_id: a.version_id.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
                kind: a.kind.clone(),
            })
            .collect(),
        snapshots: case
            .snapshots
            .iter()
            .map(|v| ManifestSnapshot {
                volume_id: v.volume_id.clone(),
                snapshot_id: v.snapshot.snapshot_id.clone(),
                copy_id: v.copy.as_ref().map(|c| c.snapshot_id.clone()),
                encryption: v.encryption,
                instance_id: v.instance_id.clone(),
                snapshot_state: v.snapshot.state.clone(),
                copy_state: v.copy.as_ref().map(|c| c.state.clone()),
            })
            .collect(),
        custody_head: chain_head(&case.custody).unwrap_or_default(),
        custody_entries: case.custody.len(),
    }
}

/// Stores the Case, the report (report.json, report.md), the manifest that
/// lists them and its signature. Without an evidence store
/// or a signing key, the gap is recorded and the case goes on.
pub async fn seal_evidence(responder: &Responder, mut case: Case) -> Result<Case> {
    let Some(store) = EvidenceStore::of(responder) else {
        case.errors.push(StepError::new(
            STEP,
            &PlaybookError::Configuration("EVIDENCE_BUCKET is not set".into()),
            "nothing was stored and no manifest was written".to_owned(),
        ));
        return Ok(case);
    };
    if let Err(err) = store.check_locked().await {
        if err.is_transient() {
            return Err(err);
        }
        case.errors.push(StepError::new(
            STEP,
            &err,
            "the evidence is not locked".to_owned(),
        ));
    }
    store.put_case(&mut case).await?;
    if let Err(err) = crate::steps::report::write_report(&store, &mut case).await {
        if err.is_transient() {
            return Err(err);
        }
        case.errors.push(StepError::new(
            STEP,
            &err,
            "the report was not written".to_owned(),
        ));
    }
    let manifest = manifest_of(
        &case,
        &responder.identity.account,
        crate::case::custody::now_utc(),
    );
    let bytes = manifest.canonical_bytes();
    let stored = store
        .put(
            &case_key(&case.case_id, MANIFEST),
            bytes.clone(),
            "application/json",
            "manifest",
        )
        .await?;
    upsert_artifact(&mut case.artifacts, stored.clone());
    let signed =
        match Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY") {
            Ok(key) => sign(&responder.clients.kms, key, &bytes, &stored.version_id).await,
            Err(err) => Err(err),
        };
    let signature = match signed {
        Ok(signature) => signature,
        Err(err) if err.is_transient() => return Err(err),
        Err(err) => {
            case.errors.push(StepError::new(
                STEP,
                &err,
                "the manifest is not signed".to_owned(),
            ));
            return Ok(case);
        }
    };
    let signature_bytes = serde_json::to_vec_pretty(&signature)
        .map_err(|e| PlaybookError::InvalidCase(e.to_string()))?;
    let sig = store
        .put(
            &case_key(&case.case_id, SIGNATURE),
            signature_bytes,
            "application/json",
            "signature",
        )
        .await?;
    upsert_artifact(&mut case.artifacts, sig.clone());
    case.record(entry(
        STEP,
        &responder.identity.actor,
        format!("sealed the case: manifest version {} signed", stored.version_id),
        &["GetObjectLockConfiguration", "PutObject", "Sign", "PutObject"],
        json!({ "custodyHead": manifest.custody_head, "artifacts": manifest.artifacts.len(), "snapshots": manifest.snapshots.len() }),
        json!({ "manifest": stored, "signature": sig, "keyId": signature.key_id }),
        Some(stored.sha256.clone()),
    ));
    Ok(case)
}

/// Signs the SHA-256 of `bytes` with the custody key (`MessageType` `DIGEST`).
pub async fn sign(
    kms: &aws_sdk_kms::Client,
    key: &str,
    bytes: &[u8],
    version_id: &str,
) -> Result<ManifestSignature> {
    let digest = sha256(bytes);
    let out = kms
        .sign()
        .key_id(key)
        .message(Blob::new(digest.to_vec()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .aws("Sign", None)?;
    let signature = out.signature().ok_or_else(|| PlaybookError::AwsService {
        operation: "Sign".into(),
        code: "IncompleteResponse".into(),
        message: "KMS returned no signature".into(),
    })?;
    Ok(ManifestSignature {
        key_id: out.key_id().unwrap_or(key).to_owned(),
        algorithm: SIGNING_ALGORITHM.into(),
        signature: aws_smithy_types::base64::encode(signature.as_ref()),
        manifest_sha256: hex(&digest),
        manifest_version_id: version_id.to_owned(),
    })
}
