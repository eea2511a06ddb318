//! A case taken out of AWS: `ec2-forensics download` writes it to a
//! directory, `ec2-forensics verify --offline` checks that directory with no
//! AWS access at all.
//!
//! The directory (`DIR`):
//!
//! ```text
//! DIR/custody-public-key.pem        the custody key's public key, as KMS gave it to
//!                                   `download` (GetPublicKey of CUSTODY_SIGNING_KEY):
//!                                   the key `verify --offline` trusts unless
//!                                   --public-key names another
//! DIR/download.json                 what was downloaded, from where, when (for a person)
//! DIR/manifest/NNNN-<version>.json  every version of manifest.json, oldest first
//! DIR/signature/NNNN-<version>.json every version of manifest.json.sig, oldest first
//! DIR/manifest/NNNN-<version>.delete-marker, DIR/signature/...: a delete marker
//! DIR/objects/<key>                 every object the latest signed manifest lists,
//!                                   at its listed version (objects/cases/<id>/report.md, ...)
//! ```
//!
//! `NNNN` is the version's place in S3's order (0001 the oldest); `<version>`
//! is the S3 version id, percent-encoded where a file name could not hold it.
//! `verify --offline` makes checks 1–4 of [`super::verify`], with the trusted
//! public key in place of KMS `Verify` and files in place of S3 (read and
//! hashed chunk by chunk); snapshots and copies live in EC2 and are not
//! checked. One manifest version can also be checked with `openssl` alone:
//! see the README.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::chain::{
    signature_parts, walk, CustodyKey, ManifestVersion, SignatureVersion, StoredChain,
};
use super::digest::{digest_reader, Digested};
use super::seal::{custody_public_key, MANIFEST_LIMIT};
use super::store::EvidenceStore;
use super::verify::{check_listed, keep_chunk, kept_up_to, load_chain, ReadObject, Verdict};
use crate::aws::{Config, Responder};
use crate::case::evidence::ManifestArtifact;
use crate::error::{PlaybookError, Result};

/// The trusted public key's file in a downloaded case.
pub const PUBLIC_KEY_FILE: &str = "custody-public-key.pem";
/// What was downloaded, for a person.
pub const DOWNLOAD_FILE: &str = "download.json";
/// The folder of manifest versions.
pub const MANIFEST_DIR: &str = "manifest";
/// The folder of signature versions.
pub const SIGNATURE_DIR: &str = "signature";
/// The folder of listed objects.
pub const OBJECTS_DIR: &str = "objects";
const DELETE_MARKER: &str = ".delete-marker";

/// What `download` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Downloaded {
    /// The case.
    pub case_id: String,
    /// Where it was written.
    pub dir: String,
    /// How many versions of manifest.json.
    pub manifest_versions: usize,
    /// How many versions of manifest.json.sig.
    pub signature_versions: usize,
    /// The latest signed manifest's version, sequence and SHA-256 (what
    /// `verify --offline --head-sha256` pins), when there is one.
    pub latest_signed: Option<serde_json::Value>,
    /// Every listed object written, and whether it is as listed.
    pub objects: Vec<DownloadedObject>,
    /// How many of the chain's checks fail (`verify --offline` says which).
    pub chain_problems: usize,
}

/// One listed object as `download` wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadedObject {
    /// Its key.
    pub key: String,
    /// Its version.
    pub version_id: String,
    /// Bytes written.
    pub size: u64,
    /// Whether size and SHA-256 are those the manifest lists.
    pub as_listed: bool,
}

impl Downloaded {
    /// Whether everything was written as listed and the chain holds.
    pub fn complete(&self) -> bool {
        self.latest_signed.is_some()
            && self.chain_problems == 0
            && self.objects.iter().all(|o| o.as_listed)
    }
}

/// A version id as a file name part: anything but `[A-Za-z0-9._-]` is
/// percent-encoded (S3 version ids may hold `/` and `+`).
pub fn file_safe(version_id: &str) -> String {
    crate::case::text::percent_encoded(version_id, b"")
}

fn from_file_safe(text: &str) -> Option<String> {
    crate::case::text::percent_decoded(text)
}

/// Where a listed object lives under `DIR/objects`: its key, which must be
/// a plain relative path inside the case's prefix (no `..`, nothing absolute).
pub fn object_path(dir: &Path, case_id: &str, key: &str) -> std::result::Result<PathBuf, String> {
    let plain = key
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    if !plain || !key.starts_with(&format!("cases/{case_id}/")) {
        return Err(format!("{key} is not a key inside cases/{case_id}/"));
    }
    Ok(dir.join(OBJECTS_DIR).join(key))
}

fn io_error(what: &Path, e: std::io::Error) -> PlaybookError {
    PlaybookError::Configuration(format!("{}: {e}", what.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io_error(path, e))
}

/// Downloads case `case_id` into `dir` (absent or empty): every manifest
/// and signature version, every object the latest signed manifest lists
/// (streamed to disk and hashed on the way), and the custody key's public
/// key as KMS gives it.
pub async fn download_case(responder: &Responder, case_id: &str, dir: &Path) -> Result<Downloaded> {
    let store = EvidenceStore::required(responder)?;
    let key = Config::required(&responder.config.custody_signing_key, "CUSTODY_SIGNING_KEY")?;
    let occupied = std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(PlaybookError::Configuration(format!(
            "{} is not empty: download writes into a new directory",
            dir.display()
        )));
    }
    let kms = &responder.clients.kms;
    let trusted = custody_public_key(kms, key).await?;
    let loaded = load_chain(kms, &store, key, case_id).await?;
    write_file(&dir.join(PUBLIC_KEY_FILE), trusted.to_pem().as_bytes())?;
    for (folder, versions) in [
        (
            MANIFEST_DIR,
            loaded
                .stored
                .manifests
                .iter()
                .map(|m| (&m.version_id, &m.bytes))
                .collect::<Vec<_>>(),
        ),
        (
            SIGNATURE_DIR,
            loaded
                .stored
                .signatures
                .iter()
                .map(|s| (&s.version_id, &s.bytes))
                .collect(),
        ),
    ] {
        std::fs::create_dir_all(dir.join(folder)).map_err(|e| io_error(dir, e))?;
        for (position, (version_id, bytes)) in versions.into_iter().enumerate() {
            let name = format!("{:04}-{}.json", position + 1, file_safe(version_id));
            write_file(&dir.join(folder).join(name), bytes)?;
        }
    }
    // Delete markers are listed apart from versions: they follow them.
    let after = loaded
        .stored
        .manifests
        .len()
        .max(loaded.stored.signatures.len());
    for (position, marker) in loaded.stored.delete_markers.iter().enumerate() {
        let (folder, version) = match marker.split_once(" version ") {
            Some((name, version)) if name.ends_with(".sig") => (SIGNATURE_DIR, version),
            Some((_, version)) => (MANIFEST_DIR, version),
            None => continue,
        };
        let name = format!(
            "{:04}-{}{DELETE_MARKER}",
            after + position + 1,
            file_safe(version)
        );
        write_file(&dir.join(folder).join(name), b"")?;
    }

    let head = loaded.stored.head(&loaded.walk);
    let mut objects = Vec::new();
    if let Some((_, manifest)) = head {
        let writes = manifest
            .artifacts
            .iter()
            .map(|a| download_object(&store, dir, case_id, a));
        objects = futures::stream::iter(writes)
            .buffered(4)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
    }
    let downloaded = Downloaded {
        case_id: case_id.to_owned(),
        dir: dir.display().to_string(),
        manifest_versions: loaded.stored.manifests.len(),
        signature_versions: loaded.stored.signatures.len(),
        latest_signed: head.map(|(version, manifest)| {
            json!({ "versionId": version.version_id, "sequence": manifest.sequence, "sha256": version.sha256 })
        }),
        objects,
        chain_problems: loaded.walk.problems(),
    };
    let about = json!({
        "caseId": case_id,
        "bucket": store.bucket(),
        "custodyKey": loaded.key_arn,
        "downloadedAt": crate::case::custody::now_utc(),
        "downloaded": downloaded,
    });
    write_file(
        &dir.join(DOWNLOAD_FILE),
        &serde_json::to_vec_pretty(&about).unwrap_or_default(),
    )?;
    Ok(downloaded)
}

async fn download_object(
    store: &EvidenceStore,
    dir: &Path,
    case_id: &str,
    artifact: &ManifestArtifact,
) -> Result<DownloadedObject> {
    let path = object_path(dir, case_id, &artifact.key).map_err(PlaybookError::InvalidCase)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    // One chunk at a time to a local file: each write is brief, and the
    // object is never held whole.
    let mut file = File::create(&path).map_err(|e| io_error(&path, e))?;
    let streamed = store
        .stream(&artifact.key, &artifact.version_id, |chunk| {
            file.write_all(chunk).map_err(|e| io_error(&path, e))
        })
        .await?;
    file.sync_all().map_err(|e| io_error(&path, e))?;
    Ok(DownloadedObject {
        key: artifact.key.clone(),
        version_id: artifact.version_id.clone(),
        size: streamed.digested.size,
        as_listed: streamed.digested.sha256 == artifact.sha256
            && streamed.digested.size == artifact.size,
    })
}

/// The versions in one folder of a downloaded case, in their order: each
/// file's version id, and its bytes (`None` for a delete marker).
fn versions_in(folder: &Path) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let mut names: Vec<String> = match std::fs::read_dir(folder) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(folder, e)),
    };
    names.sort();
    let mut versions = Vec::new();
    for name in names {
        let Some((_, rest)) = name.split_once('-') else {
            continue;
        };
        let (encoded, marker) = match (rest.strip_suffix(".json"), rest.strip_suffix(DELETE_MARKER))
        {
            (Some(encoded), _) => (encoded, false),
            (None, Some(encoded)) => (encoded, true),
            _ => continue,
        };
        let version_id = from_file_safe(encoded).unwrap_or_else(|| encoded.to_owned());
        let path = folder.join(&name);
        if marker {
            versions.push((version_id, None));
            continue;
        }
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut bytes = Vec::new();
        file.take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&path, e))?;
        versions.push((version_id, Some(bytes)));
    }
    Ok(versions)
}

/// Reads one listed object's file chunk by chunk.
fn read_file(path: &Path, kind: &str) -> std::result::Result<ReadObject, String> {
    let limit = kept_up_to(kind);
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut kept = limit.map(|_| Vec::new());
    let digested: Digested = digest_reader(KeepingReader {
        inner: file,
        kept: &mut kept,
        limit,
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ReadObject {
        digested,
        stored_sha256: None,
        kept,
    })
}

/// A reader that keeps what passes through it, up to a limit.
struct KeepingReader<'a, R> {
    inner: R,
    kept: &'a mut Option<Vec<u8>>,
    limit: Option<u64>,
}

impl<R: Read> Read for KeepingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        keep_chunk(self.kept, self.limit, &buf[..n]);
        Ok(n)
    }
}

/// What a person pins when checking a directory someone else could have
/// edited: the case, and the latest signed manifest they expect (its SHA-256,
/// from `download`'s output or an online `verify`). Without a pinned head,
/// removing the newest manifest files from the directory would go unseen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinned<'a> {
    /// The case the directory must hold (else `download.json`'s word).
    pub case_id: Option<&'a str>,
    /// The hex SHA-256 the latest signed manifest must have.
    pub head_sha256: Option<&'a str>,
}

/// Verifies a case downloaded to `dir` with no AWS call, under the public
/// key in `public_key` (PEM), or else `DIR/custody-public-key.pem`.
pub fn verify_offline(
    dir: &Path,
    public_key: Option<&Path>,
    pinned: Pinned<'_>,
) -> Result<Verdict> {
    let key_path = public_key
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(PUBLIC_KEY_FILE));
    let pem = std::fs::read_to_string(&key_path).map_err(|e| io_error(&key_path, e))?;
    let trusted = CustodyKey::from_pem(&pem)
        .map_err(|why| PlaybookError::Configuration(format!("{}: {why}", key_path.display())))?;

    let mut stored = StoredChain::default();
    for (version_id, bytes) in versions_in(&dir.join(MANIFEST_DIR))? {
        match bytes {
            Some(bytes) => stored
                .manifests
                .push(ManifestVersion::of(version_id, bytes)),
            None => stored
                .delete_markers
                .push(format!("manifest.json version {version_id}")),
        }
    }
    for (version_id, bytes) in versions_in(&dir.join(SIGNATURE_DIR))? {
        let Some(bytes) = bytes else {
            stored
                .delete_markers
                .push(format!("manifest.json.sig version {version_id}"));
            continue;
        };
        let mut version = SignatureVersion::of(version_id, bytes);
        if let Ok(document) = &version.document {
            version.valid = signature_parts(document)
                .is_ok_and(|(der, digest)| trusted.verifies(&digest, &der));
        }
        stored.signatures.push(version);
    }
    let told = pinned.case_id.map(str::to_owned);
    let case_id = told
        .clone()
        .or_else(|| {
            std::fs::read(dir.join(DOWNLOAD_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["caseId"].as_str().map(str::to_owned))
                .or_else(|| {
                    stored
                        .manifests
                        .iter()
                        .rev()
                        .find_map(|m| m.manifest.as_ref().ok().map(|m| m.case_id.clone()))
                })
        })
        .unwrap_or_default();

    let walked = walk(&case_id, &stored, None);
    let mut verdict = Verdict {
        case_id: case_id.clone(),
        checks: walked.checks.clone(),
        notes: vec![
            format!(
                "the trusted key is {}{}",
                key_path.display(),
                if public_key.is_some() {
                    ""
                } else {
                    " (as KMS gave it to `download`; pass --public-key with a copy you obtained yourself to trust nothing in this directory)"
                }
            ),
            "offline: snapshots and copies live in EC2 and are not checked".to_owned(),
        ],
    };
    if told.is_none() {
        verdict.notes.push(format!(
            "the case id {case_id} is {DOWNLOAD_FILE}'s word, which is not signed: pass --case-id"
        ));
    }
    if pinned.head_sha256.is_none() {
        verdict.notes.push(
            "no expected head: newest manifest files removed from this directory would go unseen; pass --head-sha256 (download prints it)"
                .to_owned(),
        );
    }
    let Some((version, manifest)) = stored.head(&walked) else {
        verdict.check(
            "latest signed manifest",
            false,
            "no manifest version is a sound link signed by the trusted key",
        );
        return Ok(verdict);
    };
    if let Some(expected) = pinned.head_sha256 {
        verdict.check(
            "expected head",
            version.sha256.eq_ignore_ascii_case(expected),
            format!(
                "the latest signed manifest here has SHA-256 {}; expected {expected}",
                version.sha256
            ),
        );
    }
    let reads = manifest
        .artifacts
        .iter()
        .map(|artifact| {
            object_path(dir, &case_id, &artifact.key)
                .and_then(|path| read_file(&path, &artifact.kind))
        })
        .collect();
    check_listed(&mut verdict, version, manifest, reads, &trusted);
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_survive_as_file_names() {
        for id in ["3sL4kqtJlcpX.roDT_-", "a/b+c=d", "null", "ü%"] {
            let safe = file_safe(id);
            assert!(
                safe.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b)),
                "{safe}"
            );
            assert_eq!(from_file_safe(&safe).as_deref(), Some(id));
        }
    }

    #[test]
    fn object_keys_stay_inside_the_case() {
        let dir = Path::new("/tmp/case");
        assert_eq!(
            object_path(dir, "gd-1", "cases/gd-1/report.md").unwrap(),
            dir.join("objects/cases/gd-1/report.md")
        );
        for key in [
            "cases/gd-1/../x",
            "/etc/passwd",
            "cases/gd-2/report.md",
            "cases/gd-1/./a",
        ] {
            assert!(object_path(dir, "gd-1", key).is_err(), "{key}");
        }
    }

    #[test]
    fn a_file_larger_than_one_chunk_is_hashed_in_chunks_and_only_kept_when_small() {
        let dir = std::env::temp_dir().join(format!("ec2f-offline-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..(2 * super::super::digest::FILE_CHUNK + 5))
            .map(|i| (i % 253) as u8)
            .collect();
        let path = dir.join("image.lime");
        std::fs::write(&path, &data).unwrap();
        let read = read_file(&path, "memory").unwrap();
        assert_eq!(read.digested.size, data.len() as u64);
        assert_eq!(
            read.digested.sha256,
            crate::case::custody::sha256_hex(&data)
        );
        assert_eq!(read.kept, None);
        let read = read_file(&path, "case").unwrap();
        assert_eq!(
            read.kept.as_deref(),
            Some(&data[..]),
            "a Case is kept to check its chain"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
