//! acquire-memory: the suspect's memory, before isolation, without a
//! credential on the host; and the memory half of check-command.
//!
//! acquire-memory sends infra/host/capture-memory.sh through the run-script
//! document with pre-signed URLs for the AVML tool and for every part of one
//! multipart upload at `cases/<caseId>/memory/<instanceId>.lime`. An instance
//! that is not SSM-managed, a Windows instance, or a capture that cannot start
//! is recorded as such and the flow goes on: containment never waits on
//! evidence that failed. check-command completes the upload only when S3's
//! parts are the host's, and the image enters the manifest only when its
//! size and SHA-256 read back from S3 are what the host reported.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use super::command::{self, error_tail, last_line, Invocation, ScriptRun};
use super::evidence::keep_case;
use super::evidence::store::{case_key, EvidenceStore};
use super::evidence::upload::{publish_part_list, StoredPart};
use crate::aws::{Config, Responder, Workload};
use crate::case::custody::{entry, now_utc, sha256_hex};
use crate::case::evidence::upsert_artifact;
use crate::case::{
    record_of, upsert, Artifact, Case, HostMemoryReport, IsolationStage, MemoryCapture,
    MemoryStatus, StepError,
};
use crate::error::{AwsCall, PlaybookError, Result};

/// The step that starts captures.
pub const ACQUIRE_STEP: &str = "acquire-memory";
/// The step that reads how they ended.
pub const CHECK_STEP: &str = "check-command";
/// The capture script as this responder ships it: the document runs only a
/// script with exactly this SHA-256.
pub const CAPTURE_SCRIPT: &[u8] = include_bytes!("../../../../infra/host/capture-memory.sh");
/// Where `make publish-tools` puts the capture script.
pub const CAPTURE_SCRIPT_KEY: &str = "tools/host/capture-memory.sh";
/// Where `make publish-tools` puts AVML.
pub const AVML_KEY: &str = "tools/avml";
/// At most this many parts per capture: S3's limit for one multipart upload.
/// The part URLs travel as one part list in the evidence store, not in the
/// command's parameters (SSM allows 64 KB for those).
pub const MAX_PARTS: u32 = 10_000;
/// How many parts the host uploads at once.
pub const STREAMS: u32 = 4;
/// The rate a capture is given time for, in MiB/s of memory: AVML's
/// compression and one host's uploads are slower than the network.
pub const CAPTURE_MIB_PER_SECOND: u64 = 50;
/// How long the host's GET of the part list stays valid: the host fetches it
/// first thing, as soon as SSM delivers the command.
pub const PART_LIST_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// check-command gives a capture this many checks, then cancels it; the
/// state machine waits `memoryProgress.waitSeconds` between two (20 s, or
/// the capture's timeout spread over the checks when that is longer).
pub const MAX_CHECKS: u32 = 240;

/// How long a capture of `memory_mib` may run: the memory at
/// [`CAPTURE_MIB_PER_SECOND`] plus 15 minutes, one to 12 hours.
pub fn capture_timeout(memory_mib: i64) -> u64 {
    command::execution_timeout(memory_mib.max(1) as u64 * MIB, CAPTURE_MIB_PER_SECOND, 900)
}

const MIB: u64 = 1024 * 1024;
const MIN_PART: u64 = 8 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
/// The most the host's parts in flight (streams x part size) take of its
/// memory-backed work directory, while 10,000 parts cover its memory.
const BUFFER: u64 = 256 * MIB;
/// The least that budget may shrink to on a small instance.
const SMALL_BUFFER: u64 = 32 * MIB;

/// The image's key in the case's prefix.
pub fn memory_key(case_id: &str, instance_id: &str) -> String {
    case_key(case_id, &format!("memory/{instance_id}.lime"))
}

/// How an image is cut and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Bytes per part, whole MiB.
    pub part_size: u64,
    /// Part URLs made: room for the whole image.
    pub parts: u32,
    /// Parts uploaded at once.
    pub streams: u32,
}

impl PartPlan {
    /// The most the host holds in its work directory at once.
    pub fn buffer(&self) -> u64 {
        self.part_size * u64::from(self.streams)
    }
}

/// The plan for an instance with `memory_mib` of memory: room for the whole
/// image uncompressed plus 5 % (AVML's compressed image is smaller), in at
/// most [`MAX_PARTS`] parts of 8 MiB to 5 GiB. The host holds [`STREAMS`]
/// parts at once in memory, so the parts are as large as a budget of a
/// sixteenth of its memory, 32 to 256 MiB, allows, and larger only where
/// 10,000 parts need it (over ~600 GiB, where the buffer is still under
/// 0.05 % of memory). `None` when even 5 GiB parts are too few.
pub fn part_plan(memory_mib: i64) -> Option<PartPlan> {
    let memory = memory_mib.max(1) as u64 * MIB;
    let room = memory * 105 / 100;
    let budget = (memory / 16).clamp(SMALL_BUFFER, BUFFER);
    let by_budget = budget / u64::from(STREAMS) / MIB * MIB;
    let by_count = room.div_ceil(u64::from(MAX_PARTS)).div_ceil(MIB) * MIB;
    let part_size = by_budget.max(by_count).max(MIN_PART);
    if part_size > MAX_PART {
        return None;
    }
    Some(PartPlan {
        part_size,
        parts: room.div_ceil(part_size) as u32,
        streams: STREAMS,
    })
}

/// The part list's key, beside the image's.
pub fn part_list_key(case_id: &str, instance_id: &str) -> String {
    case_key(case_id, &format!("memory/{instance_id}.parts"))
}

/// Starts a capture on every instance of the case that has none yet.
pub async fn acquire_memory(
    responder: &Responder,
    workload: &Workload,
    mut case: Case,
) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let store = EvidenceStore::of(responder);
    let todo: Vec<String> = case
        .incident
        .instance_ids
        .iter()
        .filter(|id| case.memory.iter().all(|m| &m.instance_id != *id))
        .cloned()
        .collect();
    let started = join_all(
        todo.iter()
            .map(|id| start_capture(responder, workload, store.as_ref(), &case, id)),
    )
    .await;
    for (capture, error, found) in started {
        let what = match capture.status {
            MemoryStatus::Running if found => {
                "memory capture found, sent by an earlier attempt of this step (not sent again)"
            }
            MemoryStatus::Running => "memory capture sent",
            MemoryStatus::Skipped => "memory capture skipped",
            _ => "memory capture not started",
        };
        case.record(entry(
            ACQUIRE_STEP,
            &workload.actor,
            format!("{what}: {}", capture.instance_id),
            if found {
                &["DescribeInstanceInformation", "DescribeInstanceTypes", "ListCommands", "ListMultipartUploads"]
            } else {
                &["DescribeInstanceInformation", "DescribeInstanceTypes", "ListCommands", "CreateMultipartUpload", "PutObject", "SendCommand"]
            },
            json!({"instanceId": capture.instance_id, "document": capture.document, "key": capture.key}),
            json!({
                "status": capture.status, "reason": capture.reason, "commandId": capture.command_id,
                "uploadId": capture.upload_id, "partSize": capture.part_size, "partUrls": capture.part_urls,
                "streams": capture.streams, "partList": capture.part_list,
                "timeoutSeconds": capture.timeout_seconds,
                "avmlSha256": capture.avml_sha256, "scriptSha256": capture.script_sha256,
            }),
            None,
        ));
        if let Some(err) = error {
            case.errors.push(StepError::new(
                ACQUIRE_STEP,
                &err,
                format!(
                    "no memory image of {}; the flow goes on to isolation",
                    capture.instance_id
                ),
            ));
        }
        upsert(&mut case.memory, capture);
    }
    observe(&mut case);
    keep_case(store.as_ref(), &mut case, ACQUIRE_STEP).await;
    Ok(case)
}

fn observe(case: &mut Case) {
    let (pending, failed) = counts(&case.memory, read_back_waits(case));
    case.memory_progress.observe(pending, failed);
    pace(case);
}

/// The wait before the next check: the longest running capture's delivery
/// and timeout spread over [`MAX_CHECKS`]; while `auto`'s deadline is
/// ahead and isolation waits for it, never past the deadline.
fn pace(case: &mut Case) {
    let longest = case
        .memory
        .iter()
        .filter(|m| m.is_running())
        .filter_map(|m| m.timeout_seconds)
        .max()
        .unwrap_or(0);
    let mut wait = crate::case::Poll::wait_for(command::DELIVERY_SECONDS + longest, MAX_CHECKS);
    if read_back_waits(case) {
        if let Some(left) = case
            .acquisition_plan
            .as_ref()
            .and_then(|p| crate::case::custody::seconds_between(&now_utc(), &p.deadline))
        {
            wait = wait.min((left.max(0) as u64).max(crate::case::Poll::MIN_WAIT_SECONDS));
        }
    }
    case.memory_progress.wait_seconds = wait;
}

/// Whether a completed image's read-back waits until after isolation: under
/// `auto`'s plan, isolation waits for the host (until the deadline), never
/// for S3 to hash an image whose size the host chose.
fn read_back_waits(case: &Case) -> bool {
    case.acquisition_plan.is_some()
        && case
            .containment
            .as_ref()
            .is_none_or(|c| c.stage == crate::case::IsolationStage::Acquisition)
}

/// Captures still pending, and failed ones. With `read_back_waits`, a capture
/// whose upload the host finished (S3 completed it) is not pending: its
/// read-back comes after isolation.
fn counts(memory: &[MemoryCapture], read_back_waits: bool) -> (usize, usize) {
    let pending = memory
        .iter()
        .filter(|m| m.is_running() && !(read_back_waits && m.version_id.is_some()))
        .count();
    let failed = memory
        .iter()
        .filter(|m| matches!(m.status, MemoryStatus::Failed | MemoryStatus::TimedOut))
        .count();
    (pending, failed)
}

/// One instance's capture: started, skipped with why, or failed with the error.
async fn start_capture(
    responder: &Responder,
    workload: &Workload,
    store: Option<&EvidenceStore>,
    case: &Case,
    instance_id: &str,
) -> (MemoryCapture, Option<PlaybookError>, bool) {
    if case.decision.dry_run {
        return (
            MemoryCapture::skipped(instance_id, "dry run: nothing is sent to the instance"),
            None,
            false,
        );
    }
    if let Some(isolation) = record_of(&case.isolation, instance_id) {
        if isolation.complete && isolation.stage == IsolationStage::Full {
            return (
                MemoryCapture::skipped(
                    instance_id,
                    "isolated fully before memory capture (isolate-first without SSM endpoints in its VPC): the SSM agent cannot be reached",
                ),
                None,
                false,
            );
        }
    }
    let metadata = case.metadata_of(instance_id);
    if let Some(platform) = metadata.and_then(|m| m.platform.as_deref()) {
        if platform.to_ascii_lowercase().contains("windows") {
            return (
                MemoryCapture::skipped(instance_id, windows_reason(platform)),
                None,
                false,
            );
        }
    }
    let mut capture = MemoryCapture::new(instance_id);
    match send_capture(responder, workload, store, case, &mut capture).await {
        Ok(Started::Sent) => (capture, None, false),
        Ok(Started::Found) => (capture, None, true),
        Ok(Started::Skipped(skip)) => (
            MemoryCapture {
                status: MemoryStatus::Skipped,
                reason: Some(skip),
                ..capture
            },
            None,
            false,
        ),
        Err(err) => {
            if let (Some(store), Some(key), Some(upload)) =
                (store, &capture.key, &capture.upload_id)
            {
                if let Err(abort) = store.abort_upload(key, upload).await {
                    tracing::warn!(error = %abort, key = %key, "the unused upload was not aborted");
                }
            }
            let failed = MemoryCapture {
                status: MemoryStatus::Failed,
                reason: Some(err.to_string()),
                error_type: Some(err.error_type().to_owned()),
                finished_at: Some(now_utc()),
                ..capture
            };
            (failed, Some(err), false)
        }
    }
}

fn windows_reason(platform: &str) -> String {
    format!("{platform}: AVML captures Linux memory only; capture Windows memory by hand (the playbook's manual step)")
}

/// How one capture started.
enum Started {
    /// The command was sent now.
    Sent,
    /// An earlier attempt of this step sent it (its answer was lost): taken
    /// over, not sent again.
    Found,
    /// The instance cannot run it, and why.
    Skipped(String),
}

/// The comment of a case's memory command: how a retried step finds it.
fn memory_comment(case_id: &str) -> String {
    format!("ec2-forensics {case_id} memory")
}

/// Checks, prepares and sends one capture, filling `capture` as it goes.
async fn send_capture(
    responder: &Responder,
    workload: &Workload,
    store: Option<&EvidenceStore>,
    case: &Case,
    capture: &mut MemoryCapture,
) -> Result<Started> {
    let instance_id = capture.instance_id.clone();
    let ssm = &workload.clients.ssm;
    match managed_platform(ssm, &instance_id).await? {
        None => {
            return Ok(Started::Skipped(
                "not managed by SSM (no agent, no instance profile allowing SSM, or no route to the SSM endpoints): memory cannot be captured without logging in".into(),
            ))
        }
        Some((ping, _)) if ping != "Online" => {
            return Ok(Started::Skipped(format!("the SSM agent is {ping}, not Online")))
        }
        Some((_, platform)) if platform != "Linux" => {
            return Ok(Started::Skipped(windows_reason(&platform)));
        }
        Some(_) => {}
    }
    let store = store.ok_or_else(|| {
        PlaybookError::Configuration(
            "EVIDENCE_BUCKET is not set: there is no evidence store".into(),
        )
    })?;
    let config: &Config = &responder.config;
    let document = document_for(
        Config::required(&config.run_script_document, "RUN_SCRIPT_DOCUMENT")?,
        &responder.identity,
        &responder.region,
        &workload.account,
    );
    let document = document.as_str();
    let avml_sha256 = Config::required(&config.avml_sha256, "AVML_SHA256")?;
    capture.document = Some(document.to_owned());
    let key = memory_key(&case.case_id, &instance_id);
    let comment = memory_comment(&case.case_id);
    let memory_mib = memory_of(workload, case, &instance_id).await?;
    capture.memory_mib = Some(memory_mib);
    if let Some(sent) = command::sent_before(ssm, document, &instance_id, &comment).await? {
        let ours = sent.script_sha256.as_deref() == Some(sha256_hex(CAPTURE_SCRIPT).as_str())
            && sent.values_of("--avml-sha256").first() == Some(&avml_sha256);
        if ours && take_over(store, capture, &sent, &case.case_id, &key).await? {
            tracing::info!(instance_id = %instance_id, command_id = %sent.command_id, "memory capture found, sent by an earlier attempt");
            return Ok(Started::Found);
        }
    }
    let script_sha256 = sha256_hex(CAPTURE_SCRIPT);
    let (avml, script) = tokio::try_join!(
        store.checked_tool(AVML_KEY, avml_sha256),
        store.checked_tool(CAPTURE_SCRIPT_KEY, &script_sha256),
    )?;
    capture.avml_sha256 = Some(avml.sha256.clone());
    capture.script_sha256 = Some(script.sha256.clone());
    let plan = part_plan(memory_mib).ok_or_else(|| {
        PlaybookError::Configuration(format!(
            "{instance_id} has {memory_mib} MiB of memory: more than {MAX_PARTS} parts of 5 GiB; capture it by hand"
        ))
    })?;
    capture.key = Some(key.clone());
    let upload_id = store.start_upload(&key, "application/octet-stream").await?;
    capture.upload_id = Some(upload_id.clone());
    capture.part_size = Some(plan.part_size);
    capture.streams = Some(plan.streams);
    let timeout = capture_timeout(memory_mib);
    let lifetime = command::url_lifetime(timeout);
    capture.timeout_seconds = Some(timeout);
    let (avml_url, script_url, part_urls) = tokio::try_join!(
        store.presign_tool(&avml, lifetime),
        store.presign_tool(&script, lifetime),
        store.presign_parts(&key, &upload_id, plan.parts, lifetime),
    )?;
    capture.part_urls = plan.parts;
    let (part_list, part_list_url) = publish_part_list(
        store,
        &part_list_key(&case.case_id, &instance_id),
        part_urls,
        PART_LIST_LIFETIME,
    )
    .await?;
    let arguments = [
        ("--avml-url", avml_url),
        ("--avml-sha256", avml.sha256.clone()),
        ("--part-size", plan.part_size.to_string()),
        ("--part-list-url", part_list_url),
        ("--part-list-sha256", part_list.sha256.clone()),
        ("--upload-id", upload_id),
        ("--streams", plan.streams.to_string()),
    ]
    .into_iter()
    .flat_map(|(name, value)| [name.to_owned(), value])
    .collect();
    capture.part_list = Some(part_list);
    let run = ScriptRun {
        document,
        instance_id: &instance_id,
        script_url: &script_url,
        script_sha256: &script.sha256,
        arguments,
        comment,
        timeout_seconds: timeout,
    };
    let command_id = command::send_script(ssm, &run).await?;
    tracing::info!(instance_id = %instance_id, command_id = %command_id, parts = plan.parts, part_size = plan.part_size, streams = plan.streams, "memory capture sent");
    capture.command_id = Some(command_id);
    capture.started_at = Some(now_utc());
    capture.status = MemoryStatus::Running;
    Ok(Started::Sent)
}

/// Takes over the capture an earlier attempt of this step sent, from the
/// command as SSM lists it. Only a command that runs this responder's script
/// and AVML (checked by the caller), whose upload is one of this case's key
/// that S3 still holds in progress, and whose part list is this case's
/// (the host checks the list's SHA-256) is taken over (the responder alone
/// starts uploads under `cases/`); anything else is left alone and a capture
/// of our own is sent.
async fn take_over(
    store: &EvidenceStore,
    capture: &mut MemoryCapture,
    sent: &command::SentBefore,
    case_id: &str,
    key: &str,
) -> Result<bool> {
    let one = |name: &str| sent.values_of(name).first().map(|v| (*v).to_owned());
    let (Some(upload_id), Some(list_url), Some(list_sha256), Some(part_size), Some(avml)) = (
        one("--upload-id"),
        one("--part-list-url"),
        one("--part-list-sha256"),
        one("--part-size").and_then(|v| v.parse::<u64>().ok()),
        one("--avml-sha256"),
    ) else {
        return Ok(false);
    };
    let instance_id = capture.instance_id.clone();
    let list_key = part_list_key(case_id, &instance_id);
    let Some(version) = names_object(&list_url, store.bucket(), &list_key) else {
        return Ok(false);
    };
    if !store.uploads_in_progress(key).await?.contains(&upload_id) {
        return Ok(false);
    }
    // The list the host was sent, at the version its URL names: taken over
    // only if it is the one the command's SHA-256 names.
    let list = store.get(&list_key, Some(&version)).await?;
    if sha256_hex(&list.bytes) != list_sha256 {
        return Ok(false);
    }
    capture.key = Some(key.to_owned());
    capture.upload_id = Some(upload_id);
    capture.part_size = Some(part_size);
    capture.streams = one("--streams").and_then(|v| v.parse().ok());
    capture.timeout_seconds = capture.memory_mib.map(capture_timeout);
    capture.avml_sha256 = Some(avml);
    capture.part_urls = list.bytes.iter().filter(|b| **b == b'\n').count() as u32;
    capture.part_list = Some(crate::case::evidence::Artifact {
        key: list_key,
        version_id: version,
        size: list.bytes.len() as u64,
        sha256: list_sha256,
        kind: "part-list".into(),
    });
    capture.script_sha256 = sent.script_sha256.clone();
    capture.command_id = Some(sent.command_id.clone());
    capture.started_at = Some(sent.requested_at.clone().unwrap_or_else(now_utc));
    capture.status = MemoryStatus::Running;
    Ok(true)
}

/// The version a pre-signed GET of `key` in `bucket` names, if the URL is
/// one: path-style (`https://host/bucket/key`, as against an endpoint such
/// as the test bench's) or virtual-hosted (`https://bucket.host/key`, as
/// the SDK makes on AWS).
pub fn names_object(url: &str, bucket: &str, key: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let (authority, rest) = rest.split_once('/')?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = crate::case::text::percent_decoded(path)?;
    let virtual_hosted = authority.starts_with(&format!("{bucket}.")) && path == key;
    let path_style = path == format!("{bucket}/{key}");
    if !(virtual_hosted || path_style) {
        return None;
    }
    query
        .split('&')
        .find_map(|p| p.strip_prefix("versionId="))
        .and_then(crate::case::text::percent_decoded)
}

/// The run-script document as the workload account must name it: its name in
/// the responder's own account; across accounts, the ARN of the document
/// shared from the responder's (SSM finds another account's document only by
/// its ARN).
pub fn document_for(
    document: &str,
    responder: &crate::aws::Identity,
    region: &str,
    workload_account: &str,
) -> String {
    if document.starts_with("arn:") || workload_account == responder.account {
        return document.to_owned();
    }
    let partition = responder.actor.split(':').nth(1).unwrap_or("aws");
    format!(
        "arn:{partition}:ssm:{region}:{}:document/{document}",
        responder.account
    )
}

/// The instance's SSM agent status and platform, or `None` when SSM does not
/// manage it.
pub async fn managed_platform(
    ssm: &aws_sdk_ssm::Client,
    instance_id: &str,
) -> Result<Option<(String, String)>> {
    let out = ssm
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(instance_id)
                .build()
                .map_err(|e| PlaybookError::InvalidCase(e.to_string()))?,
        )
        .send()
        .await
        .aws("DescribeInstanceInformation", Some(instance_id))?;
    Ok(out
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(instance_id))
        .map(|i| {
            (
                i.ping_status()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                i.platform_type()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            )
        }))
}

/// The instance's memory in MiB, from its type.
async fn memory_of(workload: &Workload, case: &Case, instance_id: &str) -> Result<i64> {
    let ec2 = &workload.clients.ec2;
    let instance_type = match case
        .metadata_of(instance_id)
        .and_then(|m| m.instance_type.clone())
    {
        Some(t) => t,
        None => {
            let (_, instance) =
                super::capture_metadata::describe_instance(ec2, instance_id).await?;
            instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default()
        }
    };
    let out = ec2
        .describe_instance_types()
        .instance_types(aws_sdk_ec2::types::InstanceType::from(
            instance_type.as_str(),
        ))
        .send()
        .await
        .aws("DescribeInstanceTypes", Some(instance_id))?;
    out.instance_types()
        .first()
        .and_then(|t| t.memory_info())
        .and_then(|m| m.size_in_mib())
        .ok_or_else(|| PlaybookError::AwsService {
            operation: "DescribeInstanceTypes".into(),
            code: "UnknownInstanceType".into(),
            message: format!("EC2 gave no memory size for {instance_type} ({instance_id})"),
        })
}

/// check-command's memory half as a Lambda runs it: the workload account's
/// role is assumed only while a capture runs, not on every check of the
/// analysis that follows.
pub async fn check_memory_for(responder: &Responder, mut case: Case) -> Result<Case> {
    if !case.memory.iter().any(MemoryCapture::is_running) {
        observe(&mut case);
        return Ok(case);
    }
    let workload = responder.workload(&case).await?;
    check_memory(responder, &workload, case).await
}

/// Reads every running capture's command; completes and verifies the images
/// of those that ended, records those that failed, and cancels what ran past
/// [`MAX_CHECKS`].
pub async fn check_memory(
    responder: &Responder,
    workload: &Workload,
    mut case: Case,
) -> Result<Case> {
    let running: Vec<MemoryCapture> = case
        .memory
        .iter()
        .filter(|m| m.is_running())
        .cloned()
        .collect();
    if running.is_empty() {
        observe(&mut case);
        return Ok(case);
    }
    let store = EvidenceStore::required(responder)?;
    let running_before = running.len();
    let out_of_time = out_of_time(&case);
    let waits = read_back_waits(&case);
    let checked = join_all(running.into_iter().map(|capture| {
        let store = &store;
        let out_of_time = &out_of_time;
        async move {
            if waits && capture.version_id.is_some() {
                // Completed by the host and S3; read back after isolation.
                return Ok((capture, None));
            }
            let command_id = capture.command_id.clone().unwrap_or_default();
            let now =
                command::invocation(&workload.clients.ssm, &command_id, &capture.instance_id).await;
            settle(store, workload, capture, now, out_of_time.as_deref()).await
        }
    }))
    .await;
    let mut failures = Vec::new();
    for result in checked {
        let (capture, artifact) = result?;
        if capture.is_running() {
            upsert(&mut case.memory, capture);
            continue;
        }
        case.record(entry(
            CHECK_STEP,
            &responder.identity.actor,
            format!("memory capture {}: {}", status_word(capture.status), capture.instance_id),
            &["GetCommandInvocation", "ListParts", "CompleteMultipartUpload", "GetObject"],
            json!({"instanceId": capture.instance_id, "commandId": capture.command_id, "key": capture.key}),
            json!({
                "status": capture.status, "reason": capture.reason, "verified": capture.verified,
                "host": capture.host_report.as_ref().map(|r| json!({"imageSize": r.image_size, "imageSha256": r.image_sha256, "parts": r.parts.len()})),
                "artifact": artifact,
            }),
            artifact.as_ref().map(|a| a.sha256.clone()),
        ));
        if let Some(artifact) = artifact {
            upsert_artifact(&mut case.artifacts, artifact);
        }
        if !matches!(capture.status, MemoryStatus::Captured) {
            failures.push(capture.clone());
        }
        upsert(&mut case.memory, capture);
    }
    for capture in failures {
        case.errors.push(StepError {
            step: CHECK_STEP.to_owned(),
            error_type: capture
                .error_type
                .clone()
                .unwrap_or_else(|| "MemoryCaptureFailed".into()),
            message: format!(
                "memory capture of {}: {}",
                capture.instance_id,
                capture.reason.clone().unwrap_or_default()
            ),
            not_done: Some(format!(
                "no verified memory image of {}",
                capture.instance_id
            )),
            at: now_utc(),
        });
    }
    let (pending, failed) = counts(&case.memory, waits);
    case.memory_progress.checked(pending, failed);
    pace(&mut case);
    // Only a check that saw a capture end changed the evidence record.
    if pending < running_before {
        keep_case(Some(&store), &mut case, CHECK_STEP).await;
    }
    Ok(case)
}

/// Why a running capture ends at this check, if it does: after
/// [`MAX_CHECKS`], or past the deadline `acquisitionOrder: auto` set when it
/// chose memory first (isolation then goes on; the capture is cancelled).
fn out_of_time(case: &Case) -> Option<String> {
    if case.memory_progress.checks + 1 >= MAX_CHECKS {
        return Some(format!("after {MAX_CHECKS} checks"));
    }
    // The deadline bounds the time to full isolation; the read-back after it
    // is bounded by the checks alone.
    if !read_back_waits(case) {
        return None;
    }
    let plan = case.acquisition_plan.as_ref()?;
    let past = crate::case::custody::seconds_between(&plan.deadline, &now_utc())?;
    (past >= 0).then(|| {
        format!(
            "at the memory deadline ({} s, {}): isolation goes on",
            case.policy.memory_deadline_seconds, plan.deadline
        )
    })
}

fn status_word(status: MemoryStatus) -> &'static str {
    match status {
        MemoryStatus::Captured => "verified",
        MemoryStatus::Failed => "failed",
        MemoryStatus::TimedOut => "timed out",
        MemoryStatus::Skipped => "skipped",
        MemoryStatus::Running => "running",
    }
}

/// One capture after one look at its command.
async fn settle(
    store: &EvidenceStore,
    workload: &Workload,
    mut capture: MemoryCapture,
    now: Result<Invocation>,
    out_of_time: Option<&str>,
) -> Result<(MemoryCapture, Option<Artifact>)> {
    let command_id = capture.command_id.clone().unwrap_or_default();
    let invocation = match now {
        Ok(invocation) => invocation,
        // A throttled read waits for the next check; anything else ends the capture.
        Err(err) if err.is_transient() && out_of_time.is_none() => return Ok((capture, None)),
        Err(err) => Invocation::Failed {
            status: err.error_type().to_owned(),
            code: -1,
            stderr: err.to_string(),
        },
    };
    let result = match invocation {
        Invocation::Running(status) if out_of_time.is_some() => {
            if let Err(err) =
                command::cancel(&workload.clients.ssm, &command_id, &capture.instance_id).await
            {
                tracing::warn!(error = %err, command_id = %command_id, "the command was not cancelled");
            }
            capture.status = MemoryStatus::TimedOut;
            capture.reason = Some(format!(
                "still {status} {}: the command was cancelled",
                out_of_time.unwrap_or_default()
            ));
            capture.error_type = Some(
                if out_of_time.is_some_and(|w| w.contains("deadline")) {
                    "MemoryDeadline"
                } else {
                    "CommandTimedOut"
                }
                .into(),
            );
            None
        }
        Invocation::Running(_) => return Ok((capture, None)),
        Invocation::Failed {
            status,
            code,
            stderr,
        } => {
            capture.status = MemoryStatus::Failed;
            capture.reason = Some(format!(
                "SSM reports {status} (exit code {code}): {}",
                error_tail(&stderr)
            ));
            capture.error_type = Some("MemoryCaptureFailed".into());
            None
        }
        Invocation::Succeeded { stdout, .. } => {
            match verify_image(store, &mut capture, &stdout).await {
                // Completed: the version id is in the Case now, before the
                // read-back (which may be long), so a retry of this check
                // reads that version back instead of failing the capture.
                Ok(None) => return Ok((capture, None)),
                Ok(Some(artifact)) => {
                    capture.status = MemoryStatus::Captured;
                    capture.verified = true;
                    capture.proves = capture.what_it_proves();
                    Some(artifact)
                }
                // S3 was throttled or unreachable: verified at the next check.
                Err(err) if err.is_transient() && out_of_time.is_none() => {
                    return Ok((capture, None))
                }
                Err(err) => {
                    capture.status = MemoryStatus::Failed;
                    capture.reason = Some(err.to_string());
                    capture.error_type = Some(err.error_type().to_owned());
                    None
                }
            }
        }
    };
    capture.finished_at = Some(now_utc());
    if result.is_none() {
        if let (Some(key), Some(upload)) = (&capture.key, &capture.upload_id) {
            // Parts of an upload that will never complete are discarded; a
            // completed image is never touched.
            if let Err(err) = store.abort_upload(key, upload).await {
                if err.aws_code() != Some("NoSuchUpload") {
                    tracing::warn!(error = %err, key = %key, "the upload was not aborted");
                }
            }
        }
    }
    Ok((capture, result))
}

/// Compares what the host reported with what S3 holds and completes the
/// upload (`None`: the version id is recorded, the read-back comes at the
/// next check); once completed, reads the image back: the artifact, or why it
/// is not evidence.
async fn verify_image(
    store: &EvidenceStore,
    capture: &mut MemoryCapture,
    stdout: &str,
) -> Result<Option<Artifact>> {
    let report: HostMemoryReport = last_line(stdout)
        .and_then(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| mismatch("the script ended without its result line"))?;
    capture.host_report = Some(report.clone());
    if Some(&report.avml_sha256) != capture.avml_sha256.as_ref() {
        return Err(mismatch(format!(
            "the host ran AVML {} , not the published {}",
            report.avml_sha256,
            capture.avml_sha256.as_deref().unwrap_or("?")
        )));
    }
    let (key, upload_id) = match (&capture.key, &capture.upload_id) {
        (Some(key), Some(upload)) => (key.clone(), upload.clone()),
        _ => return Err(mismatch("the capture has no upload")),
    };
    let Some(version_id) = capture.version_id.clone() else {
        let plan = capture.part_size.unwrap_or_default();
        let version_id = match store.stored_parts(&key, &upload_id).await {
            Ok(stored) => {
                check_parts(&report, &stored, plan)?;
                store.complete_upload(&key, &upload_id, &stored).await?
            }
            // An earlier run of this check completed the upload and was cut
            // off before its Case was kept: the object's newest version is
            // that image, and the read-back checks it against the host's hash.
            Err(err) if err.aws_code() == Some("NoSuchUpload") => {
                store.newest_version(&key).await?.ok_or(err)?
            }
            Err(err) => return Err(err),
        };
        capture.version_id = Some(version_id);
        return Ok(None);
    };
    let read = store.read_back(&key, &version_id).await?;
    if read.size != report.image_size || read.sha256 != report.image_sha256 {
        return Err(mismatch(format!(
            "S3 holds {} bytes with SHA-256 {}; the host reported {} bytes with SHA-256 {}",
            read.size, read.sha256, report.image_size, report.image_sha256
        )));
    }
    Ok(Some(Artifact {
        key,
        version_id,
        size: read.size,
        sha256: read.sha256,
        kind: "memory".into(),
    }))
}

/// The parts S3 holds must be exactly the parts the host uploaded, none
/// larger than the plan's part size (`plan`): the host cannot make a part
/// hold more than the URL it was given was meant for.
pub fn check_parts(report: &HostMemoryReport, stored: &[StoredPart], plan: u64) -> Result<()> {
    super::evidence::upload::check_host_parts(
        &report.parts,
        report.image_size,
        report.part_size,
        stored,
        plan,
    )
    .map_err(mismatch)
}

fn mismatch(message: impl Into<String>) -> PlaybookError {
    PlaybookError::checksum_mismatch("verify memory image", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::memory::HostPart;
    use crate::steps::evidence::upload::TOOLS_PREFIX;

    /// `auto`'s memory-first plan bounds the capture: past its deadline the
    /// check ends it (isolation goes on); before it, only the check count does.
    #[test]
    fn a_capture_ends_at_autos_deadline_or_after_the_checks() {
        let mut case = crate::case::example_case();
        assert_eq!(out_of_time(&case), None, "no plan, few checks");
        let plan = |deadline: &str| crate::case::isolation::AcquisitionPlan {
            order: crate::case::policy::AcquisitionOrder::MemoryFirst,
            deferred: vec!["i-1".into()],
            reason: "no SSM endpoints".into(),
            planned_at: "2026-11-30T08:00:00Z".into(),
            deadline: deadline.into(),
            prepared_acl_entries: Vec::new(),
        };
        case.acquisition_plan = Some(plan("2026-11-30T08:02:00Z"));
        let why = out_of_time(&case).expect("the deadline has passed");
        assert!(why.contains("memory deadline"), "{why}");
        case.acquisition_plan = Some(plan("2999-01-01T00:00:00Z"));
        assert_eq!(out_of_time(&case), None, "before the deadline");
        case.acquisition_plan = Some(plan("2026-11-30T08:02:00Z"));
        case.containment = Some(crate::case::Containment {
            stage: crate::case::IsolationStage::Full,
            contained: true,
            verified_at: None,
            not_contained: Vec::new(),
            not_blocked: Vec::new(),
        });
        assert_eq!(
            out_of_time(&case),
            None,
            "isolated fully: the read-back is not cut off by the deadline"
        );
        case.memory_progress.checks = MAX_CHECKS;
        assert!(out_of_time(&case).is_some_and(|w| w.contains("checks")));
    }

    /// A retried acquire-memory recognises its own part list's URL in both
    /// addressing styles, and nothing else.
    #[test]
    fn a_part_list_url_is_recognised_path_style_and_virtual_hosted() {
        let key = "cases/c-1/memory/i-0abc.parts";
        let query = "?versionId=v%2B1&X-Amz-Signature=00";
        assert_eq!(
            names_object(
                &format!("https://evidence.s3.us-east-1.amazonaws.com/{key}{query}"),
                "evidence",
                key
            )
            .as_deref(),
            Some("v+1")
        );
        assert_eq!(
            names_object(
                &format!("https://127.0.0.1:4566/evidence/{key}{query}"),
                "evidence",
                key
            )
            .as_deref(),
            Some("v+1")
        );
        for other in [
            format!("https://other.s3.amazonaws.com/{key}{query}"),
            format!("https://evidence.s3.amazonaws.com/{key}x{query}"),
            format!("http://127.0.0.1:4566/evidence/{key}{query}"),
            format!("https://127.0.0.1:4566/evidence/{key}?X-Amz-Signature=00"),
        ] {
            assert_eq!(names_object(&other, "evidence", key), None, "{other}");
        }
    }

    /// Every size EC2 offers is covered in at most 10,000 whole-MiB parts,
    /// and the host's buffer stays within 256 MiB and a sixteenth of its
    /// memory except where 10,000 parts need larger ones.
    #[test]
    fn parts_cover_the_whole_memory_in_at_most_10000_parts_with_a_bounded_buffer() {
        let covers = |mib: i64, plan: PartPlan| {
            plan.parts <= MAX_PARTS
                && plan.part_size.is_multiple_of(MIB)
                && plan.part_size * u64::from(plan.parts) >= mib as u64 * MIB * 105 / 100
        };
        let small = part_plan(1024).unwrap();
        assert_eq!(small.part_size, 16 * MIB, "64 MiB of buffer over 4 streams");
        assert_eq!(small.parts, 68);
        assert!(covers(1024, small));
        let tiny = part_plan(128).unwrap();
        assert_eq!(tiny.part_size, MIN_PART, "never below 8 MiB");
        assert_eq!(tiny.buffer(), 4 * MIN_PART);
        let common = part_plan(64 * 1024).unwrap();
        assert_eq!(common.part_size, 64 * MIB);
        assert_eq!(common.buffer(), BUFFER, "256 MiB of a 64 GiB host");
        assert!(covers(64 * 1024, common));
        // Beyond ~600 GiB, 10,000 parts set the size: 24 TiB (u-24tb1).
        let huge = part_plan(24 * 1024 * 1024).unwrap();
        assert!(covers(24 * 1024 * 1024, huge));
        assert!(
            huge.buffer() * 2000 <= 24 * 1024 * 1024 * MIB,
            "under 0.05 % of memory"
        );
        for mib in [512, 3 * 1024, 200 * 1024, 2 * 1024 * 1024, 32 * 1024 * 1024] {
            let plan = part_plan(mib).unwrap();
            assert!(covers(mib, plan), "{mib} MiB: {plan:?}");
            assert!(
                plan.buffer() <= BUFFER.max(mib as u64 * MIB / 2000),
                "{mib} MiB: {plan:?}"
            );
        }
        assert!(
            part_plan(50 * 1024 * 1024).is_none(),
            "over 10,000 parts of 5 GiB"
        );
    }

    fn report(parts: &[(i32, u64, &str)]) -> HostMemoryReport {
        HostMemoryReport {
            image_size: parts.iter().map(|p| p.1).sum(),
            image_sha256: "0".repeat(64),
            avml_sha256: "1".repeat(64),
            part_size: 8 * MIB,
            streams: None,
            source: None,
            parts: parts
                .iter()
                .map(|(n, size, etag)| HostPart {
                    part_number: *n,
                    size: *size,
                    md5: (*etag).to_owned(),
                    etag: (*etag).to_owned(),
                })
                .collect(),
        }
    }

    fn stored(parts: &[(i32, u64, &str)]) -> Vec<StoredPart> {
        parts
            .iter()
            .map(|(n, size, etag)| StoredPart {
                part_number: *n,
                size: *size,
                etag: (*etag).to_owned(),
            })
            .collect()
    }

    #[test]
    fn an_upload_completes_only_when_s3_holds_exactly_the_hosts_parts() {
        let plan = 8 * MIB;
        let host = [(1, 8 * MIB, "a"), (2, 100, "b")];
        assert!(check_parts(&report(&host), &stored(&host), plan).is_ok());
        let extra = [(1, 8 * MIB, "a"), (2, 100, "b"), (3, 5, "c")];
        assert!(
            check_parts(&report(&host), &stored(&extra), plan).is_err(),
            "a part the host did not upload"
        );
        let replaced = [(1, 8 * MIB, "a"), (2, 100, "x")];
        let err = check_parts(&report(&host), &stored(&replaced), plan).unwrap_err();
        assert_eq!(err.aws_code(), Some("ChecksumMismatch"));
        let mut short = report(&host);
        short.image_size += 1;
        assert!(check_parts(&short, &stored(&host), plan).is_err());
    }

    #[test]
    fn a_part_larger_than_the_plan_is_refused_even_when_the_host_agrees() {
        let plan = 8 * MIB;
        let oversized = [(1, 8 * MIB + 1, "a"), (2, 100, "b")];
        let err = check_parts(&report(&oversized), &stored(&oversized), plan).unwrap_err();
        assert!(err.to_string().contains("more than the plan"), "{err}");
        let mut claims_bigger = report(&[(1, 8 * MIB, "a")]);
        claims_bigger.part_size = 16 * MIB;
        let err = check_parts(&claims_bigger, &stored(&[(1, 8 * MIB, "a")]), plan).unwrap_err();
        assert!(err.to_string().contains("the plan was"), "{err}");
    }

    #[test]
    fn another_account_runs_the_shared_document_by_its_arn() {
        let responder = crate::aws::Identity {
            actor: "arn:aws-us-gov:sts::111111111111:assumed-role/r/s".into(),
            account: "111111111111".into(),
        };
        assert_eq!(
            document_for("doc", &responder, "us-gov-west-1", "111111111111"),
            "doc"
        );
        assert_eq!(
            document_for("doc", &responder, "us-gov-west-1", "222222222222"),
            "arn:aws-us-gov:ssm:us-gov-west-1:111111111111:document/doc"
        );
        let arn = "arn:aws:ssm:us-east-1:333333333333:document/doc";
        assert_eq!(
            document_for(arn, &responder, "us-east-1", "222222222222"),
            arn
        );
    }

    #[test]
    fn images_live_under_the_cases_memory_prefix() {
        assert_eq!(
            memory_key("gd-1", "i-0abc"),
            "cases/gd-1/memory/i-0abc.lime"
        );
        assert!(AVML_KEY.starts_with(TOOLS_PREFIX) && CAPTURE_SCRIPT_KEY.starts_with(TOOLS_PREFIX));
    }
}
