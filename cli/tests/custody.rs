//! The chain of signed manifests against a writer of the evidence bucket,
//! on the moto server: a case is sealed twice (two manifest versions, each
//! signed by the custody key); then someone who can write the bucket, but
//! cannot sign with the custody key, rolls a manifest back, uploads an
//! unsigned one, one signed by another key, or a newer report. `verify`
//! fails naming what was done, `report` prints what the signed manifest
//! lists, and a downloaded case verifies offline with no AWS at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_sdk_s3::types::ChecksumAlgorithm;
use playbook::case::custody::sha256_hex;
use playbook::case::evidence::{upsert_artifact, Manifest, ManifestSignature};
use playbook::steps::evidence::chain::CustodyKey;
use playbook::steps::evidence::seal::seal_evidence;
use playbook::steps::evidence::store::EvidenceStore;
use playbook::{Case, Responder};
use serde_json::Value;
use system_tests::{Estate, Moto};

fn cli(moto: &Moto, estate: &Estate, args: &[&str]) -> Output {
    system_tests::cli_against(env!("CARGO_BIN_EXE_ec2-forensics"), moto, estate)
        .args(args)
        .output()
        .expect("the CLI runs")
}

/// The CLI with no AWS configuration at all: no endpoint, no credentials,
/// no region, no evidence bucket or key.
fn cli_without_aws(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ec2-forensics"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the CLI runs")
}

/// The verifier's report, having asserted that it failed (exit 1).
fn failed_report(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", explain(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}\nstdout:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

fn verified(output: &Output) -> bool {
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("VERIFIED: all")
}

/// A case sealed twice, and the bucket it lives in.
struct Sealed {
    moto: Moto,
    estate: Estate,
    responder: Responder,
    case: Case,
}

impl Sealed {
    fn bucket(&self) -> &str {
        &self.estate.forensic.evidence_bucket
    }

    fn key(&self, name: &str) -> String {
        format!("cases/{}/{name}", self.case.case_id)
    }

    fn run(&self, args: &[&str]) -> Output {
        cli(&self.moto, &self.estate, args)
    }

    fn verify(&self) -> Output {
        self.run(&["verify", "--case-id", &self.case.case_id])
    }

    /// Every version of `name` (oldest first): its id and bytes.
    async fn versions(&self, name: &str) -> Vec<(String, Vec<u8>)> {
        let s3 = &self.responder.clients.s3;
        let listed = s3
            .list_object_versions()
            .bucket(self.bucket())
            .prefix(self.key(name))
            .send()
            .await
            .unwrap();
        let mut versions = Vec::new();
        for version in listed.versions().iter().rev() {
            if version.key() != Some(self.key(name).as_str()) {
                continue;
            }
            let id = version.version_id().unwrap().to_owned();
            let object = s3
                .get_object()
                .bucket(self.bucket())
                .key(self.key(name))
                .version_id(&id)
                .send()
                .await
                .unwrap();
            versions.push((
                id,
                object.body.collect().await.unwrap().into_bytes().to_vec(),
            ));
        }
        versions
    }

    /// What a writer of the bucket can do: store a new version of `name`.
    async fn upload(&self, name: &str, bytes: Vec<u8>) -> String {
        self.responder
            .clients
            .s3
            .put_object()
            .bucket(self.bucket())
            .key(self.key(name))
            .body(bytes.into())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .expect("a writer of the bucket stores a new version")
            .version_id()
            .unwrap()
            .to_owned()
    }

    /// A P-256 signing key of the attacker's own, in the same KMS (its ARN).
    async fn another_signing_key(&self) -> String {
        self.responder
            .clients
            .kms
            .create_key()
            .key_usage(KeyUsageType::SignVerify)
            .key_spec(KeySpec::EccNistP256)
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .arn()
            .unwrap()
            .to_owned()
    }

    /// A signature document over `bytes` by `key` (KMS Sign of the digest).
    async fn signed_by(&self, key: &str, bytes: &[u8]) -> Vec<u8> {
        let document =
            playbook::steps::evidence::seal::sign(&self.responder.clients.kms, key, bytes)
                .await
                .expect("KMS signs");
        serde_json::to_vec_pretty(&document).unwrap()
    }

    /// The newest manifest, as the second seal wrote it.
    async fn latest_manifest(&self) -> (String, Manifest) {
        let (id, bytes) = self.versions("manifest.json").await.pop().unwrap();
        (id, serde_json::from_slice(&bytes).unwrap())
    }
}

/// A memory-image stand-in larger than every chunk a reader uses.
const LARGE: usize = 3 * 1024 * 1024 + 11;

/// Seeds an estate, opens a case on the victim (a dry-run containment: the
/// Case, nothing changed), seals it, adds a large evidence object, and seals
/// it again: manifest versions 1 and 2.
async fn sealed_twice(name: &str) -> Sealed {
    let moto = Moto::start();
    let estate = moto.seed(name);
    let (responder, case) = system_tests::dry_run_case(&moto, &estate, "custody test").await;
    let mut case = seal_evidence(&responder, case).await.expect("first seal");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    let store = EvidenceStore::required(&responder).unwrap();
    let image: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
    let stored = store
        .put(
            &format!("cases/{}/memory/image.lime", case.case_id),
            image,
            "application/octet-stream",
            "memory",
        )
        .await
        .unwrap();
    upsert_artifact(&mut case.artifacts, stored);
    let case = seal_evidence(&responder, case).await.expect("second seal");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    Sealed {
        moto,
        estate,
        responder,
        case,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_manifest_uploaded_again_with_an_edited_signature_file_is_a_rollback() {
    let sealed = sealed_twice("rollback").await;
    let manifests = sealed.versions("manifest.json").await;
    let signatures = sealed.versions("manifest.json.sig").await;
    assert_eq!((manifests.len(), signatures.len()), (2, 2));
    let second: Manifest = serde_json::from_slice(&manifests[1].1).unwrap();
    assert_eq!(second.sequence, 2);
    let link = second
        .previous
        .as_ref()
        .expect("sequence 2 names its predecessor");
    assert_eq!(
        (
            link.sequence,
            link.version_id.as_str(),
            link.sha256.as_str()
        ),
        (
            1,
            manifests[0].0.as_str(),
            sha256_hex(&manifests[0].1).as_str()
        )
    );
    let output = sealed.verify();
    assert!(verified(&output), "{}", explain(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("memory/image.lime"),
        "the large object is checked: {text}"
    );

    // The attack: version 1's bytes stored again, and a copy of its .sig
    // naming the new version (the field the old design trusted).
    let rolled_back = sealed.upload("manifest.json", manifests[0].1.clone()).await;
    let mut copy: Value = serde_json::from_slice(&signatures[0].1).unwrap();
    copy["manifestVersionId"] = rolled_back.clone().into();
    sealed
        .upload(
            "manifest.json.sig",
            serde_json::to_vec_pretty(&copy).unwrap(),
        )
        .await;
    let output = sealed.verify();
    let text = failed_report(&output);
    assert!(
        text.contains(&format!(
            "FAIL manifest chain: rollback: version {rolled_back} goes back to sequence 1 after sequence 2"
        )),
        "{text}"
    );
    assert!(
        text.contains("NOT VERIFIED: 1 of"),
        "only the rollback fails: {text}"
    );
    assert!(
        text.contains(&format!(
            "latest signed manifest: version {}",
            manifests[1].0
        )),
        "the objects are still checked against sequence 2: {text}"
    );

    // A later seal links past the rolled-back version, to sequence 2.
    let mut case = sealed.case.clone();
    case.artifacts.retain(|a| a.kind != "manifest");
    let case = seal_evidence(&sealed.responder, case).await.unwrap();
    let (_, third) = sealed.latest_manifest().await;
    assert_eq!(third.sequence, 3);
    assert_eq!(third.previous.unwrap().version_id, manifests[1].0);
    let seal = case.custody.last().unwrap();
    assert!(
        seal.action.contains("not the one this Case recorded")
            && seal.action.contains("(sequence 2)"),
        "{}",
        seal.action
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_manifest_or_one_signed_by_another_key_fails_verify() {
    let sealed = sealed_twice("unsigned").await;
    let (version, manifest) = sealed.latest_manifest().await;
    let mut forged = manifest.clone();
    forged.sequence = 3;
    forged.previous = Some(playbook::case::evidence::ManifestLink {
        sequence: 2,
        version_id: version.clone(),
        sha256: sha256_hex(&sealed.versions("manifest.json").await[1].1),
    });
    forged.artifacts.retain(|a| a.kind != "memory");
    let bytes = forged.canonical_bytes();

    let unsigned = sealed.upload("manifest.json", bytes.clone()).await;
    let output = sealed.verify();
    let text = failed_report(&output);
    assert!(
        text.contains(&format!(
            "FAIL manifest signature: version {unsigned} (sequence 3): unsigned"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("latest signed manifest: version {version}")),
        "{text}"
    );

    // Signed, but by a key of the attacker's own.
    let other = sealed.another_signing_key().await;
    let signature = sealed.signed_by(&other, &bytes).await;
    sealed.upload("manifest.json.sig", signature).await;
    let output = sealed.verify();
    let text = failed_report(&output);
    assert!(
        text.contains(&format!(
            "FAIL manifest signature: version {unsigned} (sequence 3): signed by {other}, not by the custody key"
        )),
        "{text}"
    );
    assert!(
        text.contains("FAIL signature version") && text.contains(&format!("signed by {other}")),
        "the .sig version itself fails too: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_link_whose_predecessor_does_not_match_is_a_gap() {
    let sealed = sealed_twice("gap").await;
    let (version, manifest) = sealed.latest_manifest().await;
    // Only sealing may sign: the test stands in for a seal that linked to
    // something else than the version before it.
    let mut broken = manifest.clone();
    broken.sequence = 3;
    broken.previous = Some(playbook::case::evidence::ManifestLink {
        sequence: 2,
        version_id: version.clone(),
        sha256: "0".repeat(64),
    });
    let bytes = broken.canonical_bytes();
    let signature = sealed
        .signed_by(&sealed.estate.forensic.signing_key_arn, &bytes)
        .await;
    sealed.upload("manifest.json.sig", signature).await;
    let third = sealed.upload("manifest.json", bytes).await;
    let output = sealed.verify();
    let text = failed_report(&output);
    assert!(
        text.contains(&format!(
            "FAIL manifest chain: gap: version {third} names as its predecessor version {version} (SHA-256 0000"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn report_prints_the_report_the_signed_manifest_lists_not_a_later_upload() {
    let sealed = sealed_twice("report").await;
    let (manifest_version, manifest) = sealed.latest_manifest().await;
    let listed = manifest
        .artifacts
        .iter()
        .find(|a| a.key.ends_with("/report.md"))
        .unwrap()
        .clone();
    let planted = sealed
        .upload(
            "report.md",
            b"# Nothing happened\n\nThe instance is clean; no evidence was kept.\n".to_vec(),
        )
        .await;
    let output = sealed.run(&["report", "--case-id", &sealed.case.case_id]);
    assert!(output.status.success(), "{}", explain(&output));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!stdout.contains("Nothing happened"), "{stdout}");
    assert!(stdout.contains("## What happened"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "report.md version {}, as listed by the latest signed manifest (version {manifest_version}, sequence 2)",
            listed.version_id
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&planted), "{stderr}");
}

fn only_file_in(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downloaded_case_verifies_offline_and_fails_when_tampered_or_under_another_key() {
    let sealed = sealed_twice("offline").await;
    let dir = std::env::temp_dir().join(format!("ec2f-custody-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let output = sealed.run(&[
        "download",
        "--case-id",
        &sealed.case.case_id,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", explain(&output));
    let downloaded: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(downloaded["manifestVersions"], 2);
    assert_eq!(downloaded["latestSigned"]["sequence"], 2);
    let case_dir = dir.join("objects/cases").join(&sealed.case.case_id);
    let image = case_dir.join("memory/image.lime");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), LARGE as u64);

    let offline = |extra: &[&str]| {
        let mut args = vec!["verify", "--offline", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        cli_without_aws(&args)
    };
    let output = offline(&[]);
    assert!(verified(&output), "{}", explain(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("memory/image.lime"), "{text}");
    assert!(text.contains("ok   custody public key"), "{text}");

    // The openssl path: one manifest version, its signature as DER.
    let manifest_file = only_file_in(&dir.join("manifest"));
    let signature: ManifestSignature =
        serde_json::from_slice(&std::fs::read(only_file_in(&dir.join("signature"))).unwrap())
            .unwrap();
    let der = dir.join("manifest.sig.der");
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(signature.signature.as_bytes())?;
            child.wait_with_output()
        });
    if let (Ok(decoded), Ok(_)) = (decoded, Command::new("openssl").arg("version").output()) {
        std::fs::write(&der, decoded.stdout).unwrap();
        let openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(dir.join("custody-public-key.pem"))
            .arg("-signature")
            .arg(&der)
            .arg(&manifest_file)
            .output()
            .unwrap();
        assert!(openssl.status.success(), "{}", explain(&openssl));
        assert!(String::from_utf8_lossy(&openssl.stdout).contains("Verified OK"));
        std::fs::remove_file(&der).unwrap();
    }

    // A tampered object fails.
    let report = case_dir.join("report.md");
    let original = std::fs::read(&report).unwrap();
    std::fs::write(&report, b"# Nothing happened\n").unwrap();
    let output = offline(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!(
            "FAIL object cases/{}/report.md",
            sealed.case.case_id
        )),
        "{}",
        explain(&output)
    );
    std::fs::write(&report, &original).unwrap();
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[LARGE / 2] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    let output = offline(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    bytes[LARGE / 2] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    assert!(verified(&offline(&[])));

    // A tampered manifest fails.
    let manifest_bytes = std::fs::read(&manifest_file).unwrap();
    let tampered = String::from_utf8(manifest_bytes.clone()).unwrap().replacen(
        "\"sequence\": 2",
        "\"sequence\": 9",
        1,
    );
    std::fs::write(&manifest_file, tampered).unwrap();
    let output = offline(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("FAIL manifest signature"),
        "{}",
        explain(&output)
    );
    std::fs::write(&manifest_file, manifest_bytes).unwrap();

    // Pinned: the case and the head `download` printed. A directory whose
    // newest manifest files were removed, or that holds another case, fails.
    let head = downloaded["latestSigned"]["sha256"]
        .as_str()
        .expect("download prints the head")
        .to_owned();
    let case_id = sealed.case.case_id.clone();
    let output = offline(&["--case-id", &case_id, "--head-sha256", &head]);
    assert!(verified(&output), "{}", explain(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("not signed: pass --case-id"));
    let output = offline(&["--case-id", &case_id, "--head-sha256", &"0".repeat(64)]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("FAIL expected head"),
        "{}",
        explain(&output)
    );
    let output = offline(&["--case-id", "gd-000000000000000000000000"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "another case: {}",
        explain(&output)
    );

    // Under another public key, nothing is signed.
    let other = sealed.another_signing_key().await;
    let public = sealed
        .responder
        .clients
        .kms
        .get_public_key()
        .key_id(&other)
        .send()
        .await
        .unwrap();
    let other_pem = dir.join("other-key.pem");
    std::fs::write(
        &other_pem,
        CustodyKey::from_der(public.public_key().unwrap().as_ref())
            .unwrap()
            .to_pem(),
    )
    .unwrap();
    let output = offline(&["--public-key", other_pem.to_str().unwrap()]);
    let text = failed_report(&output);
    assert!(
        text.contains("does not verify under the custody key"),
        "{text}"
    );
    assert!(
        text.contains("no manifest version is a sound link"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
