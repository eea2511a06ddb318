//! Recovery (issue 18 §1): legal holds on a sealed case, and clean-up.
//!
//! Both start from the case as its latest signed manifest lists it (the
//! head of the chain of manifests, every signature checked by KMS under the
//! custody key, the Case's bytes checked against the SHA-256 the manifest
//! signs), never from a newer object a writer of the bucket stored. Both
//! record what they did in the Case's custody chain and seal it again, so
//! `verify` holds afterwards.

pub mod cleanup;
pub mod function;
pub mod hold;

use crate::aws::Responder;
use crate::case::custody::verify_chain;
use crate::case::evidence::{upsert_artifact, Manifest, MANIFEST_KIND};
use crate::case::{Artifact, Case};
use crate::error::{PlaybookError, Result};
use crate::steps::evidence::seal::MANIFEST;
use crate::steps::evidence::store::case_key;
use crate::steps::evidence::verify::read_signed;

/// The Case's name in its prefix.
pub const CASE_OBJECT: &str = "case.json";

/// A sealed case as its latest signed manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedCase {
    /// The Case, its own record of the manifest set to that manifest, so
    /// the next seal follows it.
    pub case: Case,
    /// The latest signed manifest.
    pub manifest: Manifest,
    /// Its version.
    pub manifest_version_id: String,
    /// How many checks of the chain of manifests fail (`verify` says which).
    pub chain_problems: usize,
}

/// Loads the case `case_id` from its latest signed manifest (module docs).
/// The Case must name the case and end its custody chain, intact, where
/// the manifest says.
pub async fn sealed_case(responder: &Responder, case_id: &str) -> Result<SealedCase> {
    if !crate::steps::approval::looks_like_case_id(case_id) {
        return Err(PlaybookError::InvalidRequest(format!(
            "{:?} is not a case id",
            crate::case::text::plain(case_id)
        )));
    }
    let signed = read_signed(responder, case_id, CASE_OBJECT).await?;
    let mut case: Case = serde_json::from_slice(&signed.bytes).map_err(|e| {
        PlaybookError::InvalidCase(format!(
            "{} version {} is not a Case: {e}",
            signed.key, signed.version_id
        ))
    })?;
    if case.case_id != case_id {
        return Err(PlaybookError::InvalidCase(format!(
            "{} names case {:?}",
            signed.key, case.case_id
        )));
    }
    let head = verify_chain(&case.custody).map_err(PlaybookError::InvalidCase)?;
    if head != signed.manifest.custody_head || case.custody.len() != signed.manifest.custody_entries
    {
        return Err(PlaybookError::InvalidCase(format!(
            "the Case the signed manifest lists ends its custody chain at {} after {} entries; the manifest signs {} after {}",
            head,
            case.custody.len(),
            signed.manifest.custody_head,
            signed.manifest.custody_entries
        )));
    }
    upsert_artifact(
        &mut case.artifacts,
        Artifact {
            key: case_key(case_id, MANIFEST),
            version_id: signed.manifest_version_id.clone(),
            size: signed.manifest_size,
            sha256: signed.manifest_sha256.clone(),
            kind: MANIFEST_KIND.to_owned(),
        },
    );
    Ok(SealedCase {
        case,
        manifest: signed.manifest,
        manifest_version_id: signed.manifest_version_id,
        chain_problems: signed.chain_problems,
    })
}

/// The manifest version a seal of `case` wrote: its own record of the manifest.
pub fn sealed_version(case: &Case) -> Option<&str> {
    let key = case_key(&case.case_id, MANIFEST);
    case.artifacts
        .iter()
        .find(|a| a.kind == MANIFEST_KIND && a.key == key)
        .map(|a| a.version_id.as_str())
}
