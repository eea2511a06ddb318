//! seal-evidence: stores the Case, writes `cases/<caseId>/manifest.json` (every
//! artifact, every snapshot and copy, the custody chain's head) and its KMS
//! signature `manifest.json.sig`. Run at the end of a case, and again whenever
//! evidence is added: each run is a new, signed manifest version, the next
//! link of the case's chain of manifests (see [`super::chain`]).
//!
//! The link a seal extends is the one the Case itself recorded (the Case
//! flows through the execution; the bucket is never read as state): its
//! version, read back, must still have the SHA-256 the Case holds. When the
//! bucket's newest manifest version is another (an earlier attempt of the
//! same case sealed too, or a writer of the bucket uploaded one), the seal
//! links to the latest version whose signature verifies under the custody
//! key (KMS `Verify`), never to an unsigned one, and says so in custody.
//!
//! The signature is made and stored before the manifest: a seal cut short
//! leaves at worst a signature of a manifest never stored, never a manifest
//! without its signature.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde_json::json;

use super::chain::CustodyKey;
use super::store::{case_key, EvidenceStore};
use crate::aws::{Config, Responder};
use crate::case::custody::{chain_head, entry, hex, sha256};
use crate::case::evidence::{
    upsert_artifact, Manifest, ManifestArtifact, ManifestLink, ManifestSignature, ManifestSnapshot,
    MANIFEST_KIND, PUBLIC_KEY_KIND, SIGNATURE_KIND, SIGNING_ALGORITHM,
};
use crate::case::{Case, StepError};
use crate::error::{AwsCall, PlaybookError, Result};

/// The step name in custody entries and errors.
pub const STEP: &str = "seal-evidence";
/// The manifest's name in the case prefix.
pub const MANIFEST: &str = "manifest.json";
/// The signature's name in the case prefix.
pub const SIGNATURE: &str = "manifest.json.sig";
/// The custody key's public key (PEM) in the case prefix, stored at the
/// first seal so that a downloaded case can be checked without AWS.
pub const PUBLIC_KEY: &str = "custody-public-key.pem";
/// The largest manifest or signature version anything reads: a writer of
/// the bucket cannot make a reader hold a huge object.
pub const MANIFEST_LIMIT: u64 = 16 << 20;

/// The manifest of the case as it is now, following `previous` (pure).
pub fn manifest_of(
    case: &Case,
    forensic_account: &str,
    created_at: String,
    previous: Option<ManifestLink>,
) -> Manifest {
    Manifest {
        case_id: case.case_id.clone(),
        sequence: previous.as_ref().map_or(1, |p| p.sequence + 1),
        previous,
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
            .filter(|a| a.kind != MANIFEST_KIND && a.kind != SIGNATURE_KIND)
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

/// Stores the Case, the report (report.json, report.md), at the first seal
/// the custody key's public key, the manifest that lists them and its
/// signature. Without an evidence store or a signing key, the gap is
/// recorded and the case goes on; an unsigned manifest is never stored.
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
    crate::steps::lease::note_later_findings(responder, &mut case).await;
    let key = match Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY") {
        Ok(key) => Some(key),
        Err(err) => {
            case.errors.push(StepError::new(
                STEP,
                &err,
                "no manifest was written: there is no key to sign it".to_owned(),
            ));
            None
        }
    };
    let mut calls = vec!["GetObjectLockConfiguration"];
    if let Some(key) = key.filter(|_| !case.artifacts.iter().any(|a| a.kind == PUBLIC_KEY_KIND)) {
        calls.extend(["GetPublicKey", "PutObject"]);
        if let Err(err) = store_public_key(&responder.clients.kms, &store, key, &mut case).await {
            if err.is_transient() {
                return Err(err);
            }
            case.errors.push(StepError::new(
                STEP,
                &err,
                "the custody key's public key was not stored with the case".to_owned(),
            ));
        }
    }
    // The link first: when another seal came between, what it recorded of
    // recovery (holds, clean-ups) is carried into the Case stored now.
    let mut predecessor = match key {
        Some(key) => Some(predecessor(responder, &store, key, &case).await?),
        None => None,
    };
    let carried = predecessor
        .as_mut()
        .and_then(|p| p.signed_case.take())
        .and_then(|signed| carry_recovery(&mut case, &signed));
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
    let (Some(key), Some(predecessor)) = (key, predecessor) else {
        return Ok(case);
    };
    calls.extend(predecessor.calls.iter().copied());
    let now = crate::case::custody::now_utc();
    let created_at = match &predecessor.created_at {
        Some(before) if later(before, &now) => before.clone(),
        _ => now,
    };
    let manifest = manifest_of(
        &case,
        &responder.identity.account,
        created_at,
        predecessor.link.clone(),
    );
    let bytes = manifest.canonical_bytes();
    let signature = match sign(&responder.clients.kms, key, &bytes).await {
        Ok(signature) => signature,
        Err(err) if err.is_transient() => return Err(err),
        Err(err) => {
            case.errors.push(StepError::new(
                STEP,
                &err,
                "the manifest could not be signed, so it was not stored".to_owned(),
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
            SIGNATURE_KIND,
        )
        .await?;
    let stored = store
        .put(
            &case_key(&case.case_id, MANIFEST),
            bytes,
            "application/json",
            MANIFEST_KIND,
        )
        .await?;
    calls.extend(["Sign", "PutObject", "PutObject"]);
    upsert_artifact(&mut case.artifacts, sig.clone());
    upsert_artifact(&mut case.artifacts, stored.clone());
    case.record(entry(
        STEP,
        &responder.identity.actor,
        format!(
            "sealed the case: manifest version {} (sequence {}) signed{}",
            stored.version_id,
            manifest.sequence,
            [predecessor.remark.as_deref(), carried.as_deref()]
                .into_iter()
                .flatten()
                .map(|r| format!("; {r}"))
                .collect::<String>()
        ),
        &calls,
        json!({ "custodyHead": manifest.custody_head, "artifacts": manifest.artifacts.len(), "snapshots": manifest.snapshots.len(), "previous": manifest.previous }),
        json!({ "manifest": stored, "sequence": manifest.sequence, "signature": sig, "keyId": signature.key_id }),
        Some(stored.sha256.clone()),
    ));
    Ok(case)
}

/// The Case's own record of its manifest: the version its last seal wrote.
pub fn manifest_record(case: &Case) -> Option<&crate::case::Artifact> {
    let key = case_key(&case.case_id, MANIFEST);
    case.artifacts
        .iter()
        .find(|a| a.kind == MANIFEST_KIND && a.key == key)
}

/// Whether RFC 3339 time `a` is later than `b` (a manifest is never older
/// than the one it follows, whatever the clocks of two Lambdas say).
fn later(a: &str, b: &str) -> bool {
    match (
        DateTime::from_str(a, Format::DateTime),
        DateTime::from_str(b, Format::DateTime),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// The link the next manifest follows, and what the seal found on the way.
#[derive(Debug, Clone, PartialEq, Default)]
struct Predecessor {
    /// The signed manifest to follow; `None`: the chain starts here.
    link: Option<ManifestLink>,
    /// Its `createdAt`.
    created_at: Option<String>,
    /// What custody should know: the Case's own record was not the newest.
    remark: Option<String>,
    /// The AWS operations it took.
    calls: Vec<&'static str>,
    /// The Case the followed manifest lists, when it is not this Case's own
    /// record (another seal came between): what it holds of recovery
    /// (holds, clean-ups) is carried into this Case.
    signed_case: Option<Case>,
}

/// The signed manifest the next one follows (module docs: the Case's own
/// record, or the latest version that verifies under the custody key).
async fn predecessor(
    responder: &Responder,
    store: &EvidenceStore,
    key: &str,
    case: &Case,
) -> Result<Predecessor> {
    let manifest_key = case_key(&case.case_id, MANIFEST);
    let recorded = manifest_record(case);
    let stored = store.versions(&manifest_key).await?;
    let mut calls = vec!["ListObjectVersions"];
    let newest = stored.versions.last();
    if let (Some(recorded), Some(newest)) = (recorded, newest) {
        if recorded.version_id == newest.version_id {
            let (bytes, _) = store
                .get_small(&manifest_key, &recorded.version_id, MANIFEST_LIMIT)
                .await?;
            let digest = crate::case::custody::sha256_hex(&bytes);
            if digest != recorded.sha256 {
                return Err(PlaybookError::checksum_mismatch(
                    "GetObject",
                    format!(
                        "{manifest_key} version {} has SHA-256 {digest}, not the {} this Case recorded",
                        recorded.version_id, recorded.sha256
                    ),
                ));
            }
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                PlaybookError::InvalidCase(format!(
                    "{manifest_key} version {} is not a manifest: {e}",
                    recorded.version_id
                ))
            })?;
            calls.push("GetObject");
            return Ok(Predecessor {
                link: Some(ManifestLink {
                    sequence: manifest.sequence,
                    version_id: recorded.version_id.clone(),
                    sha256: digest,
                }),
                created_at: Some(manifest.created_at),
                remark: None,
                calls,
                signed_case: None,
            });
        }
    }
    if newest.is_none() && recorded.is_none() {
        return Ok(Predecessor {
            calls,
            ..Predecessor::default()
        });
    }
    let loaded =
        super::verify::load_chain(&responder.clients.kms, store, key, &case.case_id).await?;
    calls.extend(["GetObject", "Verify"]);
    let head = loaded.stored.head(&loaded.walk);
    let recorded_text = recorded
        .map(|r| format!("version {}", r.version_id))
        .unwrap_or_else(|| "none".to_owned());
    let newest_text = newest
        .map(|n| format!("version {}", n.version_id))
        .unwrap_or_else(|| "none".to_owned());
    let remark = match head {
        Some((version, manifest)) => format!(
            "the newest stored manifest ({newest_text}) is not the one this Case recorded ({recorded_text}): linked to version {} (sequence {}), the latest that verifies under the custody key; the stored chain has {} problem(s)",
            version.version_id,
            manifest.sequence,
            loaded.walk.problems()
        ),
        None => format!(
            "the newest stored manifest ({newest_text}) is not the one this Case recorded ({recorded_text}), and no stored version verifies under the custody key: a new chain starts at sequence 1"
        ),
    };
    tracing::warn!(case_id = %case.case_id, remark = %remark, "manifest chain");
    let signed_case = match head {
        Some((version, manifest)) => {
            listed_case(store, manifest, &version.version_id, &case.case_id).await?
        }
        None => None,
    };
    Ok(Predecessor {
        link: head.and_then(|(version, _)| version.link()),
        created_at: head.map(|(_, m)| m.created_at.clone()),
        remark: Some(remark),
        calls,
        signed_case,
    })
}

/// The Case `manifest` (version `version_id`) lists, its bytes checked
/// against the size and SHA-256 it signs; none when it lists none or the
/// bytes are not that Case (a transient failure is the caller's to retry).
async fn listed_case(
    store: &EvidenceStore,
    manifest: &Manifest,
    version_id: &str,
    case_id: &str,
) -> Result<Option<Case>> {
    let key = case_key(case_id, "case.json");
    match super::verify::read_small_listed(store, manifest, version_id, &key).await {
        Ok((bytes, _)) => Ok(serde_json::from_slice::<Case>(&bytes)
            .ok()
            .filter(|c| c.case_id == case_id)),
        Err(err) if err.is_transient() => Err(err),
        Err(_) => Ok(None),
    }
}

/// Carries the recovery records of `signed` (the Case the followed manifest
/// lists) into `case`: its legal holds and clean-ups this Case does not
/// hold, and the snapshots a clean-up deleted. A later seal (another
/// attempt, an execution that ran while a person held the case) never
/// drops a hold. Answers what was carried, for custody.
fn carry_recovery(case: &mut Case, signed: &Case) -> Option<String> {
    let mut holds = 0;
    for hold in &signed.holds {
        match case
            .holds
            .iter_mut()
            .find(|h| h.placed_by == hold.placed_by && h.placed_at == hold.placed_at)
        {
            Some(known) if known.released.is_none() && hold.released.is_some() => {
                *known = hold.clone();
                holds += 1;
            }
            Some(_) => {}
            None => {
                case.holds.push(hold.clone());
                holds += 1;
            }
        }
    }
    let mut cleanups = 0;
    for cleanup in &signed.cleanups {
        if !case
            .cleanups
            .iter()
            .any(|c| c.by == cleanup.by && c.at == cleanup.at)
        {
            case.cleanups.push(cleanup.clone());
            cleanups += 1;
        }
    }
    let deleted: Vec<&str> = signed
        .snapshots
        .iter()
        .flat_map(|v| v.workload_snapshots().chain(v.copy.as_ref()))
        .filter(|s| s.state == crate::steps::recovery::cleanup::DELETED)
        .map(|s| s.snapshot_id.as_str())
        .collect();
    for v in &mut case.snapshots {
        for s in v.snapshots_mut() {
            if deleted.contains(&s.snapshot_id.as_str()) {
                s.state = crate::steps::recovery::cleanup::DELETED.into();
            }
        }
    }
    case.holds.sort_by(|a, b| a.placed_at.cmp(&b.placed_at));
    case.cleanups.sort_by(|a, b| a.at.cmp(&b.at));
    (holds + cleanups > 0).then(|| {
        format!("carried from the signed Case it follows: {holds} legal hold record(s), {cleanups} clean-up record(s)")
    })
}

/// The custody key's public key, as KMS gives it, checked to be the key
/// every manifest is signed with: ECC_NIST_P256, SIGN_VERIFY.
pub async fn custody_public_key(kms: &aws_sdk_kms::Client, key: &str) -> Result<CustodyKey> {
    let out = kms
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .aws("GetPublicKey", None)?;
    let usable = out.key_usage() == Some(&KeyUsageType::SignVerify)
        && out.key_spec().is_none_or(|s| *s == KeySpec::EccNistP256);
    let der = out
        .public_key()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    match CustodyKey::from_der(&der) {
        Ok(public) if usable => Ok(public),
        Ok(_) => Err(PlaybookError::Configuration(format!(
            "custody key {key} is not an ECC_NIST_P256 SIGN_VERIFY key"
        ))),
        Err(why) => Err(PlaybookError::Configuration(format!(
            "custody key {key}: {why}"
        ))),
    }
}

/// Stores the custody key's public key beside the case (`custody-public-key.pem`),
/// listed in every manifest from now on.
async fn store_public_key(
    kms: &aws_sdk_kms::Client,
    store: &EvidenceStore,
    key: &str,
    case: &mut Case,
) -> Result<()> {
    let public = custody_public_key(kms, key).await?;
    let stored = store
        .put(
            &case_key(&case.case_id, PUBLIC_KEY),
            public.to_pem().into_bytes(),
            "application/x-pem-file",
            PUBLIC_KEY_KIND,
        )
        .await?;
    upsert_artifact(&mut case.artifacts, stored);
    Ok(())
}

/// Signs the SHA-256 of `bytes` with the custody key (`MessageType` `DIGEST`).
pub async fn sign(kms: &aws_sdk_kms::Client, key: &str, bytes: &[u8]) -> Result<ManifestSignature> {
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
    })
}
