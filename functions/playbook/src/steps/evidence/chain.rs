//! The case's chain of signed manifests, checked as data.
//!
//! Every seal writes one version of `manifest.json` and one of
//! `manifest.json.sig`. Each manifest carries its `sequence` (1, 2, 3, ...)
//! and a link to the signed manifest before it (its sequence, version id and
//! SHA-256), all inside the signed bytes. [`walk`] takes every stored
//! version of both, oldest first as S3 lists them, and says for each whether
//! it is a sound link:
//!
//! - **signed**: a `.sig` version's signature verifies, under the custody
//!   key the verifier trusts (never a key the `.sig` names), over the SHA-256
//!   of the manifest version's bytes; anything else is *unsigned* or *signed
//!   by another key*;
//! - **the first link** has sequence 1 and no predecessor (else a *gap*:
//!   earlier versions are missing);
//! - **every later link** has the sequence after the last sound link's, names
//!   that link's version id and SHA-256 as its predecessor, and is not older
//!   than it. A sequence that repeats or goes back is a *rollback* (an old
//!   manifest stored again, or versions out of order); a sequence that skips
//!   ahead, or a predecessor that is not the link before it, is a *gap*; a
//!   time that goes back is a *reordering*;
//! - **every `.sig` version** is a signature by the custody key (one by any
//!   other key, or no signature at all, fails);
//! - **no delete marker** hides a version.
//!
//! The head of the chain, the latest signed manifest, is the last sound link:
//! what `verify` checks the objects against, what `report` prints from, what
//! the next seal links to. A version that fails is reported and skipped, so
//! one bad upload neither hides the rest nor becomes the head.

use std::collections::BTreeMap;

use aws_smithy_types::DateTime;
use ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};

use super::verify::Check;
use crate::case::evidence::{Manifest, ManifestLink, ManifestSignature};

/// The custody key's public half: what checks a manifest signature without
/// KMS (`verify --offline`, and the first check of a seal's predecessor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyKey {
    key: VerifyingKey,
}

impl CustodyKey {
    /// The key from DER SubjectPublicKeyInfo (what KMS `GetPublicKey` returns).
    pub fn from_der(der: &[u8]) -> Result<CustodyKey, String> {
        VerifyingKey::from_public_key_der(der)
            .map(|key| CustodyKey { key })
            .map_err(|e| format!("not an ECC_NIST_P256 public key: {e}"))
    }

    /// The key from PEM (`-----BEGIN PUBLIC KEY-----`, as stored with a case).
    pub fn from_pem(pem: &str) -> Result<CustodyKey, String> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(|key| CustodyKey { key })
            .map_err(|e| format!("not an ECC_NIST_P256 public key in PEM: {e}"))
    }

    /// The key as PEM, the form `openssl dgst -verify` reads.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Whether `der_signature` is this key's ECDSA signature over `digest`,
    /// the SHA-256 of the signed bytes (KMS `Sign` with `MessageType` `DIGEST`).
    pub fn verifies(&self, digest: &[u8], der_signature: &[u8]) -> bool {
        match Signature::from_der(der_signature) {
            Ok(signature) => self.key.verify_prehash(digest, &signature).is_ok(),
            Err(_) => false,
        }
    }
}

/// The raw bytes of a signature document's signature and signed digest, or
/// why they are not there.
pub fn signature_parts(signature: &ManifestSignature) -> Result<(Vec<u8>, Vec<u8>), String> {
    let der = aws_smithy_types::base64::decode(&signature.signature)
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    let digest = unhex(&signature.manifest_sha256)
        .filter(|d| d.len() == 32)
        .ok_or_else(|| "manifestSha256 is not a hex SHA-256".to_owned())?;
    Ok((der, digest))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One stored version of `manifest.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestVersion {
    /// Its S3 version id.
    pub version_id: String,
    /// Its bytes as stored (empty when they could not be read).
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// The manifest, or why the bytes are not one.
    pub manifest: Result<Manifest, String>,
}

impl ManifestVersion {
    /// A version from its bytes.
    pub fn of(version_id: String, bytes: Vec<u8>) -> ManifestVersion {
        let sha256 = crate::case::custody::sha256_hex(&bytes);
        let manifest = serde_json::from_slice(&bytes).map_err(|e| format!("not a manifest: {e}"));
        ManifestVersion {
            version_id,
            bytes,
            sha256,
            manifest,
        }
    }

    /// A version whose bytes could not be read, and why.
    pub fn unreadable(version_id: String, why: String) -> ManifestVersion {
        ManifestVersion {
            version_id,
            bytes: Vec::new(),
            sha256: String::new(),
            manifest: Err(why),
        }
    }

    /// The link a manifest that follows this one names.
    pub fn link(&self) -> Option<ManifestLink> {
        self.manifest.as_ref().ok().map(|m| ManifestLink {
            sequence: m.sequence,
            version_id: self.version_id.clone(),
            sha256: self.sha256.clone(),
        })
    }
}

/// One stored version of `manifest.json.sig`, with the verifier's verdict
/// on its signature.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureVersion {
    /// Its S3 version id.
    pub version_id: String,
    /// Its bytes as stored.
    pub bytes: Vec<u8>,
    /// The signature document, or why the bytes are not one.
    pub document: Result<ManifestSignature, String>,
    /// Whether its signature verifies under the trusted custody key over the
    /// digest it names (checked by KMS `Verify` or by [`CustodyKey`]).
    pub valid: bool,
}

impl SignatureVersion {
    /// A version from its bytes, not yet checked.
    pub fn of(version_id: String, bytes: Vec<u8>) -> SignatureVersion {
        let document =
            serde_json::from_slice(&bytes).map_err(|e| format!("not a signature document: {e}"));
        SignatureVersion {
            version_id,
            bytes,
            document,
            valid: false,
        }
    }

    /// The digest it signs, when it is a valid signature.
    fn signs(&self) -> Option<&str> {
        match &self.document {
            Ok(d) if self.valid => Some(d.manifest_sha256.as_str()),
            _ => None,
        }
    }
}

/// Every stored version of a case's manifest and signature, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredChain {
    /// The versions of `manifest.json`.
    pub manifests: Vec<ManifestVersion>,
    /// The versions of `manifest.json.sig`.
    pub signatures: Vec<SignatureVersion>,
    /// Delete markers on either, named (`manifest.json version X`).
    pub delete_markers: Vec<String>,
}

/// What [`walk`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChainWalk {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The index in [`StoredChain::manifests`] of the latest signed
    /// manifest: the last sound link.
    pub head: Option<usize>,
}

impl ChainWalk {
    /// How many checks fail.
    pub fn problems(&self) -> usize {
        self.checks.iter().filter(|c| !c.holds).count()
    }

    fn check(&mut self, what: &str, holds: bool, detail: String) {
        self.checks.push(Check {
            what: what.to_owned(),
            holds,
            detail,
        });
    }
}

impl StoredChain {
    /// The latest signed manifest, as [`walk`] found it.
    pub fn head<'a>(&'a self, walked: &ChainWalk) -> Option<(&'a ManifestVersion, &'a Manifest)> {
        let version = self.manifests.get(walked.head?)?;
        Some((version, version.manifest.as_ref().ok()?))
    }
}

fn parse_time(text: &str) -> Option<DateTime> {
    crate::case::custody::parse_rfc3339(text)
}

/// Walks the chain of `case_id` (module docs: what holds and what fails).
/// `custody_key_arn`, when known, names the trusted key in what is said of
/// a signature by another key.
pub fn walk(case_id: &str, stored: &StoredChain, custody_key_arn: Option<&str>) -> ChainWalk {
    let mut walked = ChainWalk::default();
    if stored.manifests.is_empty() {
        walked.check(
            "manifest",
            false,
            format!("case {case_id} has no manifest.json"),
        );
    }
    for marker in &stored.delete_markers {
        walked.check(
            "manifest deletion",
            false,
            format!("{marker} is a delete marker: someone deleted the manifest or its signature"),
        );
    }

    // Each .sig version: a signature by the custody key, or a failure.
    let stored_digests: Vec<&str> = stored.manifests.iter().map(|m| m.sha256.as_str()).collect();
    for signature in &stored.signatures {
        let label = format!("version {}", signature.version_id);
        match &signature.document {
            Err(why) => walked.check("signature version", false, format!("{label}: {why}")),
            Ok(document) if !signature.valid => {
                walked.check("signature version", false, format!("{label}: {}", not_valid(document, custody_key_arn)))
            }
            Ok(document) if !stored_digests.contains(&document.manifest_sha256.as_str()) => walked.check(
                "signature version",
                true,
                format!(
                    "{label} is the custody key's signature of SHA-256 {}, a manifest that was never stored (an interrupted seal)",
                    document.manifest_sha256
                ),
            ),
            Ok(_) => {}
        }
    }
    let signed_by: BTreeMap<&str, &str> = stored
        .signatures
        .iter()
        .filter_map(|s| s.signs().map(|digest| (digest, s.version_id.as_str())))
        .collect();

    // Each manifest version: signed, then a sound link.
    let mut last: Option<usize> = None;
    for (index, version) in stored.manifests.iter().enumerate() {
        let label = format!("version {}", version.version_id);
        let manifest = match &version.manifest {
            Ok(manifest) => manifest,
            Err(why) => {
                walked.check("manifest signature", false, format!("{label}: {why}"));
                continue;
            }
        };
        let Some(signature) = signed_by.get(version.sha256.as_str()) else {
            let claimed = stored.signatures.iter().find_map(|s| {
                s.document
                    .as_ref()
                    .ok()
                    .filter(|d| d.manifest_sha256 == version.sha256)
            });
            let why = match claimed {
                Some(document) => not_valid(document, custody_key_arn),
                None => "unsigned: no signature version signs its bytes".to_owned(),
            };
            walked.check(
                "manifest signature",
                false,
                format!("{label} (sequence {}): {why}", manifest.sequence),
            );
            continue;
        };
        walked.check(
            "manifest signature",
            true,
            format!(
                "{label} (sequence {}) is signed by the custody key (signature version {signature})",
                manifest.sequence
            ),
        );
        if manifest.case_id != case_id {
            walked.check(
                "manifest chain",
                false,
                format!(
                    "{label} is a manifest of case {}, not {case_id}",
                    manifest.case_id
                ),
            );
            continue;
        }
        let Some(before) = last else {
            let first = manifest.sequence == 1 && manifest.previous.is_none();
            walked.check(
                "manifest chain",
                first,
                if first {
                    format!("{label} starts the chain (sequence 1)")
                } else {
                    format!(
                        "gap: the first signed version {} has sequence {}{}: the signed versions before it are missing",
                        version.version_id,
                        manifest.sequence,
                        if manifest.previous.is_some() { " and a predecessor" } else { "" }
                    )
                },
            );
            last = Some(index);
            continue;
        };
        let previous = &stored.manifests[before];
        let Ok(previous_manifest) = &previous.manifest else {
            continue;
        };
        let (sequence, after) = (manifest.sequence, previous_manifest.sequence);
        if sequence <= after {
            let again = stored.manifests[..index]
                .iter()
                .find(|m| m.sha256 == version.sha256)
                .map(|m| format!(" (the bytes of version {} stored again)", m.version_id))
                .unwrap_or_default();
            walked.check(
                "manifest chain",
                false,
                format!(
                    "rollback: {label} goes back to sequence {sequence} after sequence {after} of version {}{again}",
                    previous.version_id
                ),
            );
            continue;
        }
        let expected = previous.link();
        let problem = if sequence > after + 1 {
            Some(format!(
                "gap: {label} has sequence {sequence} after sequence {after} of version {}: signed versions {}..{} are missing",
                previous.version_id,
                after + 1,
                sequence - 1
            ))
        } else if manifest.previous != expected {
            Some(format!(
                "gap: {label} names as its predecessor {}, but the signed version before it is {} (SHA-256 {})",
                manifest
                    .previous
                    .as_ref()
                    .map(|p| format!("version {} (SHA-256 {})", p.version_id, p.sha256))
                    .unwrap_or_else(|| "none".to_owned()),
                previous.version_id,
                previous.sha256
            ))
        } else {
            match (
                parse_time(&manifest.created_at),
                parse_time(&previous_manifest.created_at),
            ) {
                (Some(at), Some(before_at)) if at >= before_at => None,
                (Some(_), Some(_)) => Some(format!(
                    "reordering: {label} was written at {}, before its predecessor {} ({})",
                    manifest.created_at, previous.version_id, previous_manifest.created_at
                )),
                _ => Some(format!("{label}: createdAt is not an RFC 3339 time")),
            }
        };
        match problem {
            Some(problem) => walked.check("manifest chain", false, problem),
            None => walked.check(
                "manifest chain",
                true,
                format!(
                    "{label} (sequence {sequence}) follows version {} (sequence {after})",
                    previous.version_id
                ),
            ),
        }
        last = Some(index);
    }
    walked.head = last;
    walked
}

fn not_valid(document: &ManifestSignature, custody_key_arn: Option<&str>) -> String {
    match custody_key_arn {
        Some(arn) if document.key_id != arn => format!(
            "signed by {}, not by the custody key {arn}: its signature does not verify under the custody key",
            document.key_id
        ),
        _ => "its signature does not verify under the custody key".to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::case::custody::sha256;
    use crate::case::evidence::SIGNING_ALGORITHM;
    use ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::SigningKey;

    pub(crate) fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    pub(crate) fn custody_key(key: &SigningKey) -> CustodyKey {
        let der = key.verifying_key().to_public_key_der().unwrap();
        CustodyKey::from_der(der.as_bytes()).unwrap()
    }

    fn manifest(sequence: u64, previous: Option<ManifestLink>, at: &str) -> Manifest {
        Manifest {
            case_id: "gd-1".into(),
            sequence,
            previous,
            account: "111111111111".into(),
            forensic_account: "111111111111".into(),
            region: "us-east-1".into(),
            created_at: at.into(),
            artifacts: Vec::new(),
            snapshots: Vec::new(),
            custody_head: format!("head-{sequence}"),
            custody_entries: sequence as usize,
        }
    }

    /// A signature version of `bytes` by `key`, checked with `trusted`.
    fn sign(
        id: &str,
        bytes: &[u8],
        key: &SigningKey,
        trusted: &CustodyKey,
        key_id: &str,
    ) -> SignatureVersion {
        let digest = sha256(bytes);
        let signature: Signature = key.sign_prehash(&digest).unwrap();
        let document = ManifestSignature {
            key_id: key_id.into(),
            algorithm: SIGNING_ALGORITHM.into(),
            signature: aws_smithy_types::base64::encode(signature.to_der().as_bytes()),
            manifest_sha256: crate::case::custody::hex(&digest),
        };
        let mut version = SignatureVersion::of(id.into(), serde_json::to_vec(&document).unwrap());
        let (der, digest) = signature_parts(&document).unwrap();
        version.valid = trusted.verifies(&digest, &der);
        version
    }

    /// Seals `count` links with `key`: manifest versions m1.., signature versions s1...
    fn sealed(count: u64, key: &SigningKey) -> StoredChain {
        let trusted = custody_key(key);
        let mut stored = StoredChain::default();
        for sequence in 1..=count {
            let previous = stored.manifests.last().and_then(ManifestVersion::link);
            let at = format!("2026-11-28T10:00:0{sequence}Z");
            let bytes = manifest(sequence, previous, &at).canonical_bytes();
            stored.signatures.push(sign(
                &format!("s{sequence}"),
                &bytes,
                key,
                &trusted,
                "arn:custody",
            ));
            stored
                .manifests
                .push(ManifestVersion::of(format!("m{sequence}"), bytes));
        }
        stored
    }

    fn failures(walked: &ChainWalk) -> Vec<String> {
        walked
            .checks
            .iter()
            .filter(|c| !c.holds)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect()
    }

    #[test]
    fn a_sealed_chain_holds_and_its_head_is_the_last_link() {
        let key = signing_key(7);
        let stored = sealed(3, &key);
        let walked = walk("gd-1", &stored, Some("arn:custody"));
        assert!(failures(&walked).is_empty(), "{:?}", walked.checks);
        assert_eq!(walked.head, Some(2));
        assert_eq!(stored.head(&walked).unwrap().1.sequence, 3);
    }

    #[test]
    fn an_old_manifest_stored_again_is_a_rollback_and_not_the_head() {
        let key = signing_key(7);
        let mut stored = sealed(2, &key);
        let old = stored.manifests[0].bytes.clone();
        stored.manifests.push(ManifestVersion::of("m3".into(), old));
        let mut copy = stored.signatures[0].clone();
        copy.version_id = "s3".into();
        stored.signatures.push(copy);
        let walked = walk("gd-1", &stored, Some("arn:custody"));
        let failed = failures(&walked);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0].contains("rollback: version m3 goes back to sequence 1 after sequence 2"),
            "{failed:?}"
        );
        assert!(
            failed[0].contains("the bytes of version m1 stored again"),
            "{failed:?}"
        );
        assert_eq!(walked.head, Some(1), "the head stays the newest sound link");
    }

    #[test]
    fn an_unsigned_version_and_one_signed_by_another_key_fail() {
        let key = signing_key(7);
        let trusted = custody_key(&key);
        let mut stored = sealed(2, &key);
        let link = stored.manifests[1].link();
        let forged = manifest(3, link, "2026-11-28T10:00:09Z").canonical_bytes();
        stored
            .manifests
            .push(ManifestVersion::of("m3".into(), forged.clone()));
        let walked = walk("gd-1", &stored, Some("arn:custody"));
        assert!(
            failures(&walked)[0].contains("version m3 (sequence 3): unsigned"),
            "{:?}",
            failures(&walked)
        );
        assert_eq!(walked.head, Some(1));

        let other = signing_key(9);
        stored
            .signatures
            .push(sign("s3", &forged, &other, &trusted, "arn:other"));
        let failed = failures(&walk("gd-1", &stored, Some("arn:custody")));
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(
            failed
                .iter()
                .all(|f| f.contains("signed by arn:other, not by the custody key arn:custody")),
            "{failed:?}"
        );
        // A signature that names the custody key but was made by another is no better.
        stored.signatures.pop();
        stored
            .signatures
            .push(sign("s3", &forged, &other, &trusted, "arn:custody"));
        let failed = failures(&walk("gd-1", &stored, Some("arn:custody")));
        assert!(
            failed
                .iter()
                .all(|f| f.contains("does not verify under the custody key")),
            "{failed:?}"
        );
    }

    #[test]
    fn a_broken_link_a_skipped_sequence_and_a_missing_start_are_gaps() {
        let key = signing_key(7);
        let trusted = custody_key(&key);
        let mut stored = sealed(2, &key);
        let mut link = stored.manifests[1].link().unwrap();
        link.sha256 = "0".repeat(64);
        let broken = manifest(3, Some(link), "2026-11-28T10:00:09Z").canonical_bytes();
        stored
            .signatures
            .push(sign("s3", &broken, &key, &trusted, "arn:custody"));
        stored
            .manifests
            .push(ManifestVersion::of("m3".into(), broken));
        let failed = failures(&walk("gd-1", &stored, None));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0].contains("gap: version m3 names as its predecessor version m2 (SHA-256 0000"),
            "{failed:?}"
        );

        let mut stored = sealed(4, &key);
        stored.manifests.remove(2);
        let failed = failures(&walk("gd-1", &stored, None));
        assert!(failed.iter().any(|f| f.contains("gap: version m4 has sequence 4 after sequence 2 of version m2: signed versions 3..3 are missing")), "{failed:?}");

        let mut stored = sealed(2, &key);
        stored.manifests.remove(0);
        let failed = failures(&walk("gd-1", &stored, None));
        assert!(
            failed
                .iter()
                .any(|f| f.contains("gap: the first signed version m2 has sequence 2")),
            "{failed:?}"
        );
    }

    #[test]
    fn a_link_older_than_its_predecessor_is_a_reordering() {
        let key = signing_key(7);
        let trusted = custody_key(&key);
        let mut stored = sealed(1, &key);
        let early =
            manifest(2, stored.manifests[0].link(), "2026-11-28T09:00:00Z").canonical_bytes();
        stored
            .signatures
            .push(sign("s2", &early, &key, &trusted, "arn:custody"));
        stored
            .manifests
            .push(ManifestVersion::of("m2".into(), early));
        let failed = failures(&walk("gd-1", &stored, None));
        assert!(
            failed.iter().any(|f| f.contains("reordering: version m2")),
            "{failed:?}"
        );
    }

    #[test]
    fn a_signature_of_nothing_stored_is_an_interrupted_seal_but_junk_fails() {
        let key = signing_key(7);
        let trusted = custody_key(&key);
        let mut stored = sealed(1, &key);
        stored
            .signatures
            .push(sign("s2", b"never stored", &key, &trusted, "arn:custody"));
        let walked = walk("gd-1", &stored, None);
        assert!(failures(&walked).is_empty(), "{:?}", walked.checks);
        assert!(walked
            .checks
            .iter()
            .any(|c| c.detail.contains("an interrupted seal")));
        stored
            .signatures
            .push(SignatureVersion::of("s3".into(), b"junk".to_vec()));
        stored
            .delete_markers
            .push("manifest.json version d1".into());
        let failed = failures(&walk("gd-1", &stored, None));
        assert_eq!(failed.len(), 2, "{failed:?}");
    }

    #[test]
    fn the_custody_key_reads_back_from_its_pem() {
        let key = signing_key(7);
        let trusted = custody_key(&key);
        let pem = trusted.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(CustodyKey::from_pem(&pem).unwrap(), trusted);
        assert!(CustodyKey::from_pem("not a key").is_err());
        let digest = sha256(b"manifest");
        let signature: Signature = key.sign_prehash(&digest).unwrap();
        assert!(trusted.verifies(&digest, signature.to_der().as_bytes()));
        assert!(!trusted.verifies(&sha256(b"other"), signature.to_der().as_bytes()));
        assert!(!custody_key(&signing_key(9)).verifies(&digest, signature.to_der().as_bytes()));
    }
}
