//! `ec2-forensics verify`: checks a case end to end from the evidence store.
//!
//! What it checks, in order (every check is one line of the verdict; the
//! case is verified only when all hold):
//!
//! 1. **The chain of manifests** ([`super::chain`]): every version of
//!    `manifest.json` and `manifest.json.sig`, oldest first as S3 lists them.
//!    Each `.sig` version must verify under the configured custody key
//!    (`CUSTODY_SIGNING_KEY`, by KMS `Verify`; offline, under the trusted
//!    public key), whatever key it names. Each manifest version must be
//!    signed so, name this case, and be the next link: sequence one more
//!    than the last sound link's, that link's version id and SHA-256 as its
//!    predecessor, a time no earlier. A rollback (a sequence that repeats or
//!    goes back), a gap (a skipped sequence, a predecessor that is not the
//!    link before, a chain that does not start at 1), a reordering (a time
//!    that goes back), an unsigned version, a signature by another key, and
//!    a delete marker each fail. The last sound link is the **latest signed
//!    manifest**; nothing outside the signed bytes is trusted.
//! 2. **Every object the latest signed manifest lists**, at its listed
//!    version, streamed and hashed chunk by chunk (a memory image is never
//!    held in memory): size and SHA-256 as listed, and S3's own SHA-256 of
//!    it (when it keeps one) the same.
//! 3. **The custody chain** of the Case it lists: every entry linked to the
//!    one before, and its head and length those the manifest signs.
//! 4. **The custody public key** it lists (`custody-public-key.pem`) is the
//!    trusted key.
//! 5. **Every snapshot and copy** it lists still exists (online only: EC2),
//!    except one the manifest records as removed by clean-up (state
//!    `deleted`: the signed Case says when and by whom).
//!
//! What it cannot see: a newest version deleted from a bucket whose Object
//! Lock did not hold it (the chain then ends one link early; the Case the
//! execution returned names its last manifest version).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use futures::StreamExt;

use super::chain::{
    signature_parts, walk, ChainWalk, CustodyKey, ManifestVersion, SignatureVersion, StoredChain,
};
use super::digest::Digested;
use super::seal::{custody_public_key, MANIFEST, MANIFEST_LIMIT, SIGNATURE};
use super::store::{case_key, EvidenceStore, KeyVersions};
use crate::aws::{Config, Responder};
use crate::case::custody::verify_chain;
use crate::case::evidence::{Manifest, ManifestArtifact, PUBLIC_KEY_KIND};
use crate::case::Case;
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::disk::describe_snapshots;

/// How many listed objects are read at once.
const READS_AT_ONCE: usize = 4;

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
    /// What the reader should know that is no check (where the trusted key
    /// came from, what could not be checked).
    pub notes: Vec<String>,
}

impl Verdict {
    /// Records one check.
    pub fn check(&mut self, what: impl Into<String>, holds: bool, detail: impl Into<String>) {
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
        for note in &self.notes {
            text.push_str(&format!("  note {note}\n"));
        }
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

/// The stored chain of a case, its signatures checked by KMS, and the walk.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedChain {
    /// Every version of the manifest and its signature.
    pub stored: StoredChain,
    /// What the walk found, and the head.
    pub walk: ChainWalk,
    /// The custody key's ARN (`DescribeKey` of `CUSTODY_SIGNING_KEY`).
    pub key_arn: String,
}

/// Reads every version of the case's `manifest.json` and `manifest.json.sig`
/// (each at most [`MANIFEST_LIMIT`] bytes), checks each signature with KMS
/// `Verify` under `key`, and walks the chain.
pub async fn load_chain(
    kms: &aws_sdk_kms::Client,
    store: &EvidenceStore,
    key: &str,
    case_id: &str,
) -> Result<LoadedChain> {
    let (manifest_key, signature_key) = (case_key(case_id, MANIFEST), case_key(case_id, SIGNATURE));
    let (described, manifests, signatures) = tokio::join!(
        kms.describe_key().key_id(key).send(),
        store.versions(&manifest_key),
        store.versions(&signature_key),
    );
    let key_arn = described
        .aws("DescribeKey", None)?
        .key_metadata()
        .and_then(|m| m.arn())
        .unwrap_or(key)
        .to_owned();
    let (manifests, signatures) = (manifests?, signatures?);
    let mut delete_markers: Vec<String> = manifests
        .delete_markers
        .iter()
        .map(|v| format!("{MANIFEST} version {v}"))
        .collect();
    delete_markers.extend(
        signatures
            .delete_markers
            .iter()
            .map(|v| format!("{SIGNATURE} version {v}")),
    );
    let manifests = read_versions(store, &manifest_key, &manifests).await?;
    let signatures = read_versions(store, &signature_key, &signatures).await?;
    let manifests = manifests
        .into_iter()
        .map(|(version_id, read)| match read {
            Ok(bytes) => ManifestVersion::of(version_id, bytes),
            Err(why) => ManifestVersion::unreadable(version_id, why),
        })
        .collect();
    let mut checked = Vec::with_capacity(signatures.len());
    for (version_id, read) in signatures {
        let mut version = match read {
            Ok(bytes) => SignatureVersion::of(version_id, bytes),
            Err(why) => SignatureVersion {
                version_id,
                bytes: Vec::new(),
                document: Err(why),
                valid: false,
            },
        };
        if let Ok((der, digest)) = version
            .document
            .as_ref()
            .map_err(String::clone)
            .and_then(signature_parts)
        {
            version.valid = kms_verifies(kms, key, &digest, &der).await?;
        }
        checked.push(version);
    }
    let stored = StoredChain {
        manifests,
        signatures: checked,
        delete_markers,
    };
    let walk = walk(case_id, &stored, Some(&key_arn));
    Ok(LoadedChain {
        stored,
        walk,
        key_arn,
    })
}

/// The bytes of each version (oldest first), or why they were not read; a
/// transient failure is the caller's to retry.
async fn read_versions(
    store: &EvidenceStore,
    key: &str,
    versions: &KeyVersions,
) -> Result<Vec<(String, std::result::Result<Vec<u8>, String>)>> {
    let reads = versions.versions.iter().map(|v| async move {
        let read = if v.size > MANIFEST_LIMIT {
            Err(PlaybookError::InvalidCase(format!(
                "{} bytes: larger than any manifest or signature ({MANIFEST_LIMIT})",
                v.size
            )))
        } else {
            store
                .get_small(key, &v.version_id, MANIFEST_LIMIT)
                .await
                .map(|(bytes, _)| bytes)
        };
        (v.version_id.clone(), read)
    });
    let read: Vec<_> = futures::stream::iter(reads).buffered(8).collect().await;
    read.into_iter()
        .map(|(version_id, read)| match read {
            Ok(bytes) => Ok((version_id, Ok(bytes))),
            Err(err) if err.is_transient() => Err(err),
            Err(err) => Ok((version_id, Err(format!("not read: {err}")))),
        })
        .collect()
}

/// An object of a case as the latest signed manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedObject {
    /// Its bytes, at the listed version, checked against the listed SHA-256 and size.
    pub bytes: Vec<u8>,
    /// Its key.
    pub key: String,
    /// The version read: the one the manifest lists, not the newest.
    pub version_id: String,
    /// The latest signed manifest's version.
    pub manifest_version_id: String,
    /// Its SHA-256 (the link the next manifest follows).
    pub manifest_sha256: String,
    /// Its size in bytes.
    pub manifest_size: u64,
    /// The latest signed manifest.
    pub manifest: Manifest,
    /// How many checks of the chain of manifests fail (`verify` says which).
    pub chain_problems: usize,
}

/// The object `cases/<case_id>/<name>` at the version the latest signed
/// manifest lists (the head of the chain of manifests, every signature
/// checked by KMS under the custody key), its bytes checked against the
/// size and SHA-256 the manifest signs. A newer version a writer of the
/// bucket stored is never read.
pub async fn read_signed(responder: &Responder, case_id: &str, name: &str) -> Result<SignedObject> {
    let store = EvidenceStore::required(responder)?;
    let key = Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY")?;
    let loaded = load_chain(&responder.clients.kms, &store, key, case_id).await?;
    let Some((manifest_version, manifest)) = loaded.stored.head(&loaded.walk) else {
        return Err(PlaybookError::InvalidCase(format!(
            "case {case_id} has no signed manifest in {}: its objects are listed there when the case is sealed",
            store.bucket()
        )));
    };
    let object_key = case_key(case_id, name);
    let (bytes, listed) =
        read_small_listed(&store, manifest, &manifest_version.version_id, &object_key).await?;
    Ok(SignedObject {
        bytes,
        key: object_key,
        version_id: listed.version_id.clone(),
        manifest_version_id: manifest_version.version_id.clone(),
        manifest_sha256: manifest_version.sha256.clone(),
        manifest_size: manifest_version.bytes.len() as u64,
        manifest: manifest.clone(),
        chain_problems: loaded.walk.problems(),
    })
}

/// The bytes of a small object `key` (a Case, a report) at the version `manifest` (version
/// `manifest_version_id`) lists, checked against the size and SHA-256 it
/// signs, and the listing.
pub async fn read_small_listed<'m>(
    store: &EvidenceStore,
    manifest: &'m Manifest,
    manifest_version_id: &str,
    key: &str,
) -> Result<(Vec<u8>, &'m ManifestArtifact)> {
    let listed = manifest
        .artifacts
        .iter()
        .find(|a| a.key == key)
        .ok_or_else(|| {
            PlaybookError::InvalidCase(format!(
                "the signed manifest version {manifest_version_id} lists no {key}"
            ))
        })?;
    let (bytes, _) = store
        .get_small(key, &listed.version_id, listed.size.max(1))
        .await?;
    let computed = crate::case::custody::sha256_hex(&bytes);
    if computed != listed.sha256 || bytes.len() as u64 != listed.size {
        return Err(PlaybookError::checksum_mismatch(
            "GetObject",
            format!(
                "{key} version {}: SHA-256 {computed}, not the {} the signed manifest lists",
                listed.version_id, listed.sha256
            ),
        ));
    }
    Ok((bytes, listed))
}

/// Whether `der_signature` verifies under `key` over `digest` (KMS `Verify`,
/// `MessageType` `DIGEST`). KMS answers an invalid signature with an error:
/// that is `false`; a throttled or failed call is an error.
pub async fn kms_verifies(
    kms: &aws_sdk_kms::Client,
    key: &str,
    digest: &[u8],
    der_signature: &[u8],
) -> Result<bool> {
    let out = kms
        .verify()
        .key_id(key)
        .message(Blob::new(digest.to_vec()))
        .message_type(MessageType::Digest)
        .signature(Blob::new(der_signature.to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.signature_valid()),
        Err(err) => {
            let err = PlaybookError::from_sdk("Verify", None, &err);
            if err.is_transient() || matches!(err, PlaybookError::AccessDenied { .. }) {
                Err(err)
            } else {
                Ok(false)
            }
        }
    }
}

/// One listed object as it was read: its digest, the SHA-256 S3 keeps for
/// it, and its bytes when they are needed and small (the Case, the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadObject {
    /// Size and SHA-256 of the bytes read.
    pub digested: Digested,
    /// S3's SHA-256 of the object, when there is one (online).
    pub stored_sha256: Option<String>,
    /// The bytes, for the kinds [`kept_up_to`] names.
    pub kept: Option<Vec<u8>>,
}

/// The kinds of object whose bytes `verify` reads, and up to how many bytes.
pub fn kept_up_to(kind: &str) -> Option<u64> {
    match kind {
        "case" => Some(64 << 20),
        PUBLIC_KEY_KIND => Some(64 << 10),
        _ => None,
    }
}

/// Keeps a chunk while the kept bytes stay within `limit`; past it, keeps nothing.
pub fn keep_chunk(kept: &mut Option<Vec<u8>>, limit: Option<u64>, chunk: &[u8]) {
    let over = match (kept.as_ref(), limit) {
        (Some(bytes), Some(limit)) => bytes.len() as u64 + chunk.len() as u64 > limit,
        _ => false,
    };
    if over {
        *kept = None;
    } else if let Some(bytes) = kept.as_mut() {
        bytes.extend_from_slice(chunk);
    }
}

/// Checks 2–4 of the module docs on the latest signed manifest, from the
/// objects as read (in the manifest's order): the same for online and
/// offline.
pub fn check_listed(
    verdict: &mut Verdict,
    version: &ManifestVersion,
    manifest: &Manifest,
    reads: Vec<std::result::Result<ReadObject, String>>,
    trusted: &CustodyKey,
) {
    verdict.check(
        "latest signed manifest",
        manifest.case_id == verdict.case_id,
        format!(
            "version {} (sequence {}, written {}) of case {}: {} objects, {} snapshots",
            version.version_id,
            manifest.sequence,
            manifest.created_at,
            manifest.case_id,
            manifest.artifacts.len(),
            manifest.snapshots.len()
        ),
    );
    let mut stored_case = None;
    let mut public_key = None;
    for (artifact, read) in manifest.artifacts.iter().zip(reads) {
        let what = format!("object {}", artifact.key);
        let read = match read {
            Ok(read) => read,
            Err(why) => {
                verdict.check(what, false, why);
                continue;
            }
        };
        let holds = object_holds(artifact, &read);
        verdict.check(
            what,
            holds,
            format!(
                "version {}, {} bytes, SHA-256 {}{}",
                artifact.version_id,
                read.digested.size,
                read.digested.sha256,
                if holds {
                    String::new()
                } else {
                    format!(
                        ": the manifest lists {} bytes, SHA-256 {}",
                        artifact.size, artifact.sha256
                    )
                }
            ),
        );
        if holds && artifact.kind == "case" {
            stored_case = read.kept;
        } else if holds && artifact.kind == PUBLIC_KEY_KIND {
            public_key = read.kept;
        }
    }

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

    let stored_key = public_key.map(|bytes| CustodyKey::from_pem(&String::from_utf8_lossy(&bytes)));
    match stored_key {
        Some(Ok(key)) => verdict.check(
            "custody public key",
            key == *trusted,
            if key == *trusted {
                "the public key stored with the case is the trusted custody key".to_owned()
            } else {
                "the public key stored with the case is not the trusted custody key".to_owned()
            },
        ),
        Some(Err(why)) => verdict.check("custody public key", false, why),
        None => verdict.check(
            "custody public key",
            false,
            "the manifest lists no intact custody-public-key.pem",
        ),
    }
}

fn object_holds(artifact: &ManifestArtifact, read: &ReadObject) -> bool {
    read.digested.sha256 == artifact.sha256
        && read.digested.size == artifact.size
        && read
            .stored_sha256
            .as_deref()
            .is_none_or(|s| s == artifact.sha256)
}

/// Streams one listed object from the store at its listed version.
async fn read_listed(
    store: &EvidenceStore,
    artifact: &ManifestArtifact,
) -> std::result::Result<ReadObject, String> {
    let limit = kept_up_to(&artifact.kind);
    let mut kept = limit.map(|_| Vec::new());
    let streamed = store
        .stream(&artifact.key, &artifact.version_id, |chunk| {
            keep_chunk(&mut kept, limit, chunk);
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(ReadObject {
        digested: streamed.digested,
        stored_sha256: streamed.stored_sha256,
        kept,
    })
}

/// Verifies the case `case_id` in the configured evidence bucket, under the
/// configured custody key (module docs: every check).
pub async fn verify_case(responder: &Responder, case_id: &str) -> Result<Verdict> {
    let store = EvidenceStore::required(responder)?;
    let key = Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY")?;
    let kms = &responder.clients.kms;
    let trusted = custody_public_key(kms, key).await?;
    let loaded = load_chain(kms, &store, key, case_id).await?;
    let mut verdict = Verdict {
        case_id: case_id.to_owned(),
        checks: loaded.walk.checks.clone(),
        notes: vec![format!(
            "the trusted key is the custody key {} (CUSTODY_SIGNING_KEY), as KMS holds it",
            loaded.key_arn
        )],
    };
    let Some((version, manifest)) = loaded.stored.head(&loaded.walk) else {
        verdict.check(
            "latest signed manifest",
            false,
            "no manifest version is a sound link signed by the custody key",
        );
        return Ok(verdict);
    };
    let reads: Vec<_> =
        futures::stream::iter(manifest.artifacts.iter().map(|a| read_listed(&store, a)))
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
    check_listed(&mut verdict, version, manifest, reads, &trusted);

    // Every snapshot and copy still exists, unless a clean-up the signed
    // manifest records removed it.
    let removed = |state: Option<&str>| state == Some(crate::steps::recovery::cleanup::DELETED);
    let snapshot_ids: Vec<String> = manifest
        .snapshots
        .iter()
        .filter(|s| !removed(Some(&s.snapshot_state)))
        .map(|s| s.snapshot_id.clone())
        .collect();
    let copy_ids: Vec<String> = manifest
        .snapshots
        .iter()
        .filter(|s| !removed(s.copy_state.as_deref()))
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
    let presence = |found: bool, removed: bool| match (removed, found) {
        (true, false) => "removed by clean-up, as the signed manifest records",
        (true, true) => "recorded as removed by clean-up; EC2 still lists it",
        (false, true) => "exists",
        (false, false) => "missing",
    };
    for listed in &manifest.snapshots {
        let gone = removed(Some(&listed.snapshot_state));
        let found = sources
            .iter()
            .any(|s| s.snapshot_id() == Some(&listed.snapshot_id));
        verdict.check(
            format!("snapshot {}", listed.snapshot_id),
            found || gone,
            format!("of {} ({})", listed.volume_id, presence(found, gone)),
        );
        if let Some(copy) = &listed.copy_id {
            let gone = removed(listed.copy_state.as_deref());
            let found = copies.iter().any(|s| s.snapshot_id() == Some(copy));
            verdict.check(
                format!("copy {copy}"),
                found || gone,
                format!("of {} ({})", listed.snapshot_id, presence(found, gone)),
            );
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_needed_objects_are_kept_whole() {
        assert_eq!(kept_up_to("memory"), None);
        let mut kept = Some(Vec::new());
        keep_chunk(&mut kept, Some(4), b"abc");
        assert_eq!(kept.as_deref(), Some(&b"abc"[..]));
        keep_chunk(&mut kept, Some(4), b"de");
        assert_eq!(kept, None, "past the limit nothing is kept");
        keep_chunk(&mut kept, Some(4), b"f");
        assert_eq!(kept, None);
    }
}
