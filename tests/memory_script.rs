//! `infra/host/capture-memory.sh` run for real on this machine, with a
//! stand-in AVML that writes a known 12 MiB image, uploading to the
//! emulator's S3 through the pre-signed URLs the responder's own code makes
//! and the part list it stores: the image arrives in three parts, S3's parts
//! are the host's, and the completed object read back is the image. A tool or
//! a part list whose SHA-256 is not the one given never runs or is never
//! used, and a later version of the part list written by someone else is not
//! the one the host reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use playbook::case::custody::sha256_hex;
use playbook::case::HostMemoryReport;
use playbook::steps::evidence::store::{checksum_sha256, EvidenceStore};
use playbook::steps::evidence::upload::publish_part_list;
use playbook::steps::memory::{check_parts, part_list_key};
use system_tests::{repo_root, Moto};

const PART: u64 = 5 * 1024 * 1024;
const IMAGE_BYTES: usize = 12 * 1024 * 1024 + 17;
const CASE: &str = "memory-script";
const INSTANCE: &str = "i-0test";

/// A stand-in AVML writing IMAGE_BYTES of a fixed pattern to its file
/// argument; it refuses to run without an explicit memory source.
fn stand_in_avml(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("avml");
    std::fs::write(
        &path,
        format!(
            "#!/usr/bin/env bash\nset -euo pipefail\n[[ \"$1 $2 $3\" == \"acquire --compress --source\" && \"$4\" =~ ^(/proc/kcore|/dev/crash|/dev/mem)$ ]]\nhead -c {IMAGE_BYTES} /dev/zero | tr '\\0' 'M' >\"$5\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The evidence store of a seeded estate's forensic account on `moto`.
async fn evidence_store(moto: &Moto, name: &str) -> EvidenceStore {
    let estate = moto.seed(name);
    let mut responder = moto.responder(Default::default()).await;
    responder.config = estate.forensic.config();
    EvidenceStore::required(&responder).unwrap()
}

async fn publish(store: &EvidenceStore, key: &str, body: Vec<u8>) {
    store
        .s3()
        .put_object()
        .bucket(store.bucket())
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum_sha256(&body))
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("tool published");
}

/// What the host is given: the tool, and the part list as acquire-memory
/// passes it.
#[derive(Clone, Copy)]
struct Given<'a> {
    avml_url: &'a str,
    avml_sha256: &'a str,
    part_list_url: &'a str,
    part_list_sha256: &'a str,
    upload_id: &'a str,
}

fn capture(workdir: &Path, given: &Given) -> std::process::Output {
    let mut command = Command::new(repo_root().join("infra/host/capture-memory.sh"));
    // The host trusts S3's certificate as an EC2 host trusts AWS's.
    command.env(
        "CURL_CA_BUNDLE",
        system_tests::bench_tls_dir().join("ca.pem"),
    );
    command.args([
        "--avml-url",
        given.avml_url,
        "--avml-sha256",
        given.avml_sha256,
        "--part-size",
        &PART.to_string(),
        "--part-list-url",
        given.part_list_url,
        "--part-list-sha256",
        given.part_list_sha256,
        "--upload-id",
        given.upload_id,
        // This machine may offer no memory source (a container); the
        // stand-in reads none. On a host, the script picks the first of
        // /proc/kcore, /dev/crash, /dev/mem it can read.
        "--source",
        "/dev/crash",
        "--workdir",
    ]);
    command.arg(workdir);
    command.output().expect("capture-memory.sh runs")
}

#[tokio::test]
async fn the_image_streams_in_parts_over_presigned_urls_and_reads_back_whole() {
    let moto = Moto::start();
    let store = evidence_store(&moto, "memory-script").await;
    let work = std::env::temp_dir().join(format!("ec2-forensics-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let avml = std::fs::read(stand_in_avml(&work)).unwrap();
    let avml_sha256 = sha256_hex(&avml);
    publish(&store, "tools/avml-test", avml).await;
    let tool = store
        .checked_tool("tools/avml-test", &avml_sha256)
        .await
        .expect("the published tool has the expected SHA-256");
    let lifetime = Duration::from_secs(600);
    let avml_url = store.presign_tool(&tool, lifetime).await.unwrap();

    let key = format!("cases/{CASE}/memory/{INSTANCE}.lime");
    let upload = store
        .start_upload(&key, "application/octet-stream")
        .await
        .unwrap();
    let urls = store
        .presign_parts(&key, &upload, 4, lifetime)
        .await
        .unwrap();
    assert!(
        urls.iter().all(|u| !u.contains("x-amz-checksum")),
        "no checksum header is signed into a part URL: {}",
        urls[0]
    );
    assert!(urls
        .iter()
        .chain([&avml_url])
        .all(|u| u.starts_with("https://")));
    let (list, list_url) = publish_part_list(
        &store,
        &part_list_key(CASE, INSTANCE),
        urls.clone(),
        lifetime,
    )
    .await
    .unwrap();
    assert_eq!(list.key, part_list_key(CASE, INSTANCE));
    let given = Given {
        avml_url: &avml_url,
        avml_sha256: &avml_sha256,
        part_list_url: &list_url,
        part_list_sha256: &list.sha256,
        upload_id: &upload,
    };
    let nothing_uploaded = || async {
        assert!(
            store.stored_parts(&key, &upload).await.unwrap().is_empty(),
            "nothing uploaded"
        );
    };

    // A tool that is not the published one is refused before anything runs.
    let zeros = "0".repeat(64);
    let refused = capture(
        &work,
        &Given {
            avml_sha256: &zeros,
            ..given
        },
    );
    assert_refused(&refused, 4, "AVML download does not have");
    nothing_uploaded().await;

    // A part list that is not the one acquire-memory stored is not used.
    let refused = capture(
        &work,
        &Given {
            part_list_sha256: &zeros,
            ..given
        },
    );
    assert_refused(&refused, 4, "part list download does not have");
    nothing_uploaded().await;

    // Plain http is refused before anything is sent: a URL that is not
    // S3's TLS endpoint never receives the suspect's memory.
    let plain: Vec<String> = urls
        .iter()
        .map(|u| u.replacen("https://", "http://", 1))
        .collect();
    let (plain_list, plain_url) =
        publish_part_list(&store, &part_list_key(CASE, "i-0plain"), plain, lifetime)
            .await
            .unwrap();
    let refused = capture(
        &work,
        &Given {
            part_list_url: &plain_url,
            part_list_sha256: &plain_list.sha256,
            ..given
        },
    );
    assert_refused(&refused, 2, "not an https URL");
    nothing_uploaded().await;

    // Anyone who can write the evidence bucket can add a version of the part
    // list (Object Lock keeps the old one): the host's GET names the
    // version acquire-memory stored, so the new one is never read.
    let elsewhere: String = urls
        .iter()
        .map(|u| format!("{}\n", u.replace(INSTANCE, "i-0elsewhere")))
        .collect();
    publish(&store, &list.key, elsewhere.into_bytes()).await;

    let out = capture(&work, &given);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: HostMemoryReport =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("the result line");
    let image = vec![b'M'; IMAGE_BYTES];
    assert_eq!(report.image_size, IMAGE_BYTES as u64);
    assert_eq!(report.image_sha256, sha256_hex(&image));
    assert_eq!(report.avml_sha256, avml_sha256);
    assert_eq!(report.streams, Some(4), "the default: four parts at once");
    assert_eq!(
        report.source.as_deref(),
        Some("/dev/crash"),
        "AVML was given its source"
    );
    let sizes: Vec<u64> = report.parts.iter().map(|p| p.size).collect();
    assert_eq!(
        sizes,
        vec![PART, PART, IMAGE_BYTES as u64 - 2 * PART],
        "three parts, the fourth URL unused"
    );

    let stored = store.stored_parts(&key, &upload).await.unwrap();
    check_parts(&report, &stored, PART).expect("S3 holds exactly the host's parts");
    let version = store.complete_upload(&key, &upload, &stored).await.unwrap();
    let read = store.read_back(&key, &version).await.unwrap();
    assert_eq!(read.size, IMAGE_BYTES as u64);
    assert_eq!(read.sha256, report.image_sha256);
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ec2-forensics-memory.")
        })
        .collect();
    assert!(
        left.is_empty(),
        "the script leaves nothing in its work directory"
    );
    std::fs::remove_dir_all(&work).unwrap();
}

/// The script refused with `code`, saying `why`.
fn assert_refused(out: &std::process::Output, code: i32, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
}

/// `curl` PUT of `body` to `url` with `headers`: (HTTP status, response body).
fn put(url: &str, body: &[u8], headers: &[String]) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("ec2-forensics-put-{}", system_tests::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body");
    std::fs::write(&file, body).unwrap();
    let mut command = Command::new("curl");
    command.env(
        "CURL_CA_BUNDLE",
        system_tests::bench_tls_dir().join("ca.pem"),
    );
    command.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        "PUT",
        "--upload-file",
    ]);
    command.arg(&file);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command.arg(url).output().expect("curl runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), answer.to_owned())
}

/// The host uploads through pre-signed URLs, and a hostile host can change
/// them. The bench's S3 refuses what S3 refuses, so these tests cannot pass
/// on a URL or body AWS would reject: a URL with its key or part number
/// changed (SignatureDoesNotMatch), an expired URL (AccessDenied), a body that
/// is not what its Content-MD5 says (BadDigest), and a header-signed request
/// signed with the wrong secret (SignatureDoesNotMatch). The URL as made, and
/// the request signed right, are accepted.
#[tokio::test]
async fn the_bench_refuses_a_changed_or_expired_url_and_a_body_that_is_not_its_md5() {
    use aws_sdk_s3::presigning::PresigningConfig;
    let moto = Moto::start();
    let clients = moto.clients().await;
    let s3 = &clients.s3;
    s3.create_bucket()
        .bucket("bench-checks")
        .send()
        .await
        .unwrap();
    // A header-signed request (the SDK's own, aws-chunked with a trailer
    // checksum) signed with the wrong secret for its key is refused too.
    let forged = aws_sdk_s3::Client::from_conf(
        s3.config()
            .to_builder()
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing",
                "not-the-secret",
                None,
                None,
                "forged",
            ))
            .build(),
    );
    let refused = forged
        .put_object()
        .bucket("bench-checks")
        .key("cases/probe/forged")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"forged"))
        .send()
        .await
        .expect_err("a signature made with another secret");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&refused),
        Some("SignatureDoesNotMatch"),
        "{refused:?}"
    );
    s3.put_object()
        .bucket("bench-checks")
        .key("cases/probe/genuine")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"genuine"))
        .send()
        .await
        .expect("the same request with the right secret");
    let presign = |key: &'static str, seconds: u64| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("bench-checks")
                .key(key)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(seconds)).unwrap())
                .await
                .unwrap()
                .uri()
                .to_owned()
        }
    };
    let url = presign("cases/probe/part", 300).await;
    let body = b"part of a memory image".as_slice();

    let (status, answer) = put(
        &url.replace("cases/probe/part", "cases/probe/other"),
        body,
        &[],
    );
    assert_eq!(status, "403", "{answer}");
    assert!(answer.contains("SignatureDoesNotMatch"), "{answer}");

    let (status, answer) = put(
        &format!("{}/bench-checks/cases/probe/unsigned", moto.s3_endpoint),
        body,
        &[],
    );
    assert_eq!(status, "403", "an unsigned request: {answer}");
    assert!(answer.contains("AccessDenied"), "{answer}");

    let (status, answer) = put(&format!("{url}&partNumber=2"), body, &[]);
    assert_eq!(status, "403", "an added parameter: {answer}");

    let (status, answer) = put(&url, body, &[md5_header(b"another body")]);
    assert_eq!(status, "400", "{answer}");
    assert!(answer.contains("BadDigest"), "{answer}");

    let (status, answer) = put(&url, body, &[md5_header(body)]);
    assert_eq!(
        status, "200",
        "the URL as made, the body as its MD5 says: {answer}"
    );

    let expiring = presign("cases/probe/late", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, answer) = put(&expiring, body, &[]);
    assert_eq!(status, "403", "{answer}");
    assert!(answer.contains("Request has expired"), "{answer}");
}

/// A volume's result archive goes up as a multipart upload from a
/// workstation that read hostile evidence and may lie. check-command
/// completes the upload only when S3's parts are exactly the ones the
/// workstation reports: a report that does not match (another ETag, a part
/// someone else added with a URL of the list) completes nothing; the true
/// report completes it, and the object read back is the archive. A retried
/// check, after the upload was completed, reads the same object back.
#[tokio::test]
async fn an_archive_upload_completes_only_with_the_workstations_parts() {
    use playbook::case::memory::HostPart;
    use playbook::steps::analysis::{read_archive, HostObject, ARCHIVE_PART_SIZE};
    let moto = Moto::start();
    let store = evidence_store(&moto, "archive-upload").await;
    let key = "cases/archive-upload/analysis/vol-0source/results.tar";
    let upload = store.start_upload(key, "application/x-tar").await.unwrap();
    let urls = store
        .presign_parts(key, &upload, 2, Duration::from_secs(600))
        .await
        .unwrap();
    let archive = b"a tar of the results".repeat(64);
    let md5 = md5_header(&archive);
    let (status, answer) = put(&urls[0], &archive, std::slice::from_ref(&md5));
    assert_eq!(status, "200", "{answer}");
    let stored = store.stored_parts(key, &upload).await.unwrap();
    let honest = HostObject {
        size: archive.len() as u64,
        sha256: sha256_hex(&archive),
        part_size: Some(ARCHIVE_PART_SIZE),
        parts: vec![HostPart {
            part_number: 1,
            size: archive.len() as u64,
            md5: String::new(),
            etag: stored[0].etag.clone(),
        }],
    };
    let upload_id = upload.clone();

    // The report of the same one part, with another ETag.
    let with_etag = |etag: String| HostObject {
        parts: vec![HostPart {
            etag,
            ..honest.parts[0].clone()
        }],
        size: honest.size,
        sha256: honest.sha256.clone(),
        part_size: honest.part_size,
    };
    let other_etag = with_etag("0".repeat(32));
    let err = read_archive(&store, key, Some(&other_etag), Some(&upload_id))
        .await
        .expect_err("another ETag");
    assert!(err.to_string().contains("part 1"), "{err}");
    assert_eq!(
        store.stored_parts(key, &upload).await.unwrap().len(),
        1,
        "nothing was completed"
    );

    // Someone with the part list adds a part: S3 now holds two.
    let (status, answer) = put(&urls[1], b"added", &[md5_header(b"added")]);
    assert_eq!(status, "200", "{answer}");
    let err = read_archive(&store, key, Some(&honest), Some(&upload_id))
        .await
        .expect_err("a part the workstation did not upload");
    assert!(err.to_string().contains("S3 holds 2 parts"), "{err}");

    // S3 holds a part the workstation did not upload: this upload is never
    // completed. The workstation's own parts, alone, complete one.
    let key2 = "cases/archive-upload/analysis/vol-0other/results.tar";
    let upload2 = store.start_upload(key2, "application/x-tar").await.unwrap();
    let url2 = store
        .presign_parts(key2, &upload2, 1, Duration::from_secs(600))
        .await
        .unwrap();
    let (status, answer) = put(&url2[0], &archive, std::slice::from_ref(&md5));
    assert_eq!(status, "200", "{answer}");
    let stored2 = store.stored_parts(key2, &upload2).await.unwrap();
    let honest2 = with_etag(stored2[0].etag.clone());
    let artifact = read_archive(&store, key2, Some(&honest2), Some(&upload2))
        .await
        .expect("the workstation's own parts complete the upload");
    assert_eq!(artifact.sha256, sha256_hex(&archive));
    assert_eq!(artifact.size, archive.len() as u64);
    let again = read_archive(&store, key2, Some(&honest2), Some(&upload2))
        .await
        .expect("a retried check reads the completed object");
    assert_eq!(again.version_id, artifact.version_id);
}

/// `Content-MD5: <base64>` of `body`.
fn md5_header(body: &[u8]) -> String {
    use aws_smithy_types::base64::encode;
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let hex = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let bytes: Vec<u8> = (0..32)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    format!("Content-MD5: {}", encode(bytes))
}
