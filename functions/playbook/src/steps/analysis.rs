//! run-forensics and the analysis half of check-command.
//!
//! On each workstation whose evidence volumes are attached and whose SSM agent
//! is online, run-forensics sends infra/host/run-forensics.sh through the
//! run-script document with pre-signed URLs: GETs of the analysis scripts and
//! rules (each checked by SHA-256 on the host) and one PUT per result object
//! (findings.json and the result archive of each volume, under
//! `cases/<caseId>/analysis/<volumeId>/`). check-command reads the host's
//! report, reads every result back from S3, and records it only when its
//! size and SHA-256 are what the host reported.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::command::{self, error_tail, last_line, Invocation, ScriptRun};
use super::evidence::store::{case_key, EvidenceStore};
use super::evidence::upload::{check_host_parts, publish_part_list, CheckedTool};
use crate::aws::{Config, Responder};
use crate::case::custody::{entry, now_utc, sha256_hex};
use crate::case::evidence::upsert_artifact;
use crate::case::{Artifact, Case, Indicator, StepError, VolumeAnalysis};
use crate::error::{PlaybookError, Result};

/// The step that sends the analysis.
pub const STEP: &str = "run-forensics";
/// The step that reads how it ended.
pub const CHECK_STEP: &str = "check-command";
/// check-command gives an analysis this many checks, then cancels it; the
/// state machine waits `analysisProgress.waitSeconds` between two (20 s, or
/// the command's timeout spread over the checks when that is longer).
pub const MAX_CHECKS: u32 = 360;
/// The rate an analysis is given time for, in MiB/s of evidence: one full
/// read (EBS initialization at 300 MiB/s is the usual cap) plus The Sleuth
/// Kit's own reads, as if the volumes were read one after the other.
pub const ANALYSIS_MIB_PER_SECOND: u64 = 100;
/// What the analysis needs besides reading: timeline, YARA, upload.
pub const ANALYSIS_FIXED_SECONDS: u64 = 1800;
/// Each volume's result archive goes up as one multipart upload in parts
/// of this size...
pub const ARCHIVE_PART_SIZE: u64 = 256 << 20;
/// ...at most this many (100 GiB; a single PUT stops at 5 GB).
pub const ARCHIVE_PARTS: u32 = 400;

/// Where the part list of a volume's archive goes, beside the archive.
pub fn archive_part_list_key(case_id: &str, source_volume_id: &str) -> String {
    case_key(
        case_id,
        &format!("analysis/{source_volume_id}/results.tar.parts"),
    )
}

/// How long the analysis of volumes totalling `size_gib` may run: one to 12
/// hours. A volume of unknown size counts as 1 TiB.
pub fn analysis_timeout(size_gib: &[Option<i32>]) -> u64 {
    let bytes: u64 = size_gib
        .iter()
        .map(|gib| gib.map_or(1024, |g| g.max(1) as u64) << 30)
        .sum();
    command::execution_timeout(bytes, ANALYSIS_MIB_PER_SECOND, ANALYSIS_FIXED_SECONDS)
}

/// The scripts and rules the workstation runs, as this responder ships them:
/// (name on the host, key in the tools prefix, bytes).
pub const HOST_TOOLS: [(&str, &str, &[u8]); 4] = [
    (
        "run-forensics.sh",
        "tools/host/run-forensics.sh",
        include_bytes!("../../../../infra/host/run-forensics.sh"),
    ),
    (
        "analyse-volume.sh",
        "tools/host/analyse-volume.sh",
        include_bytes!("../../../../infra/host/analyse-volume.sh"),
    ),
    (
        "map-device.sh",
        "tools/host/map-device.sh",
        include_bytes!("../../../../infra/host/map-device.sh"),
    ),
    (
        "crypto-mining.yar",
        "tools/host/rules/crypto-mining.yar",
        include_bytes!("../../../../infra/host/rules/crypto-mining.yar"),
    ),
];

/// Where the results of one evidence volume go.
pub fn result_keys(case_id: &str, source_volume_id: &str) -> (String, String) {
    (
        case_key(
            case_id,
            &format!("analysis/{source_volume_id}/findings.json"),
        ),
        case_key(case_id, &format!("analysis/{source_volume_id}/results.tar")),
    )
}

/// Sends the analysis to every ready workstation that has not run it.
pub async fn run_forensics(responder: &Responder, mut case: Case) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let store = EvidenceStore::of(responder);
    let ready: Vec<usize> = case
        .workstations
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.reason.is_none() && w.command_id.is_none() && w.agent.as_deref() == Some("Online")
        })
        .map(|(i, _)| i)
        .collect();
    for index in ready {
        let zone = case.workstations[index].availability_zone.clone();
        let volumes = attached_in(&case, &zone);
        if volumes.is_empty() {
            continue;
        }
        let sizes: Vec<Option<i32>> = volumes
            .iter()
            .map(|(_, source)| crate::case::metadata::volume_size_gib(&case.metadata, source))
            .collect();
        let timeout = analysis_timeout(&sizes);
        match send_analysis(responder, store.as_ref(), &case, index, &volumes, timeout).await {
            Ok(Sent {
                command_id,
                scripts,
                found,
                archive_uploads,
            }) => {
                let workstation = &mut case.workstations[index];
                workstation.command_id = Some(command_id.clone());
                workstation.command_timeout_seconds = Some(timeout);
                workstation.archive_uploads = archive_uploads.clone();
                case.analysis_progress
                    .spread(command::DELIVERY_SECONDS + timeout, MAX_CHECKS);
                workstation.command_sent_at = Some(now_utc());
                workstation.scripts = scripts.clone();
                let instance_id = workstation.instance_id.clone();
                case.record(entry(
                    STEP,
                    &responder.identity.actor,
                    format!(
                        "analysis of {} evidence volumes {} {}",
                        volumes.len(),
                        if found { "found already sent by an earlier attempt of this step (not sent again) to" } else { "sent to" },
                        instance_id.as_deref().unwrap_or("?")
                    ),
                    if found { &["ListCommands"] } else { &["ListCommands", "CreateMultipartUpload", "PutObject", "SendCommand"] },
                    json!({"instanceId": instance_id, "volumes": volumes.iter().map(|(v, s)| json!({"volumeId": v, "sourceVolumeId": s})).collect::<Vec<_>>()}),
                    json!({"commandId": command_id, "scripts": scripts, "timeoutSeconds": timeout, "archiveUploads": archive_uploads}),
                    None,
                ));
            }
            Err(err) => {
                case.workstations[index].reason = Some(err.to_string());
                for (volume_id, source) in &volumes {
                    upsert_analysis(
                        &mut case.analysis,
                        failed(volume_id, source, &err.to_string()),
                    );
                }
                case.errors.push(StepError::new(
                    STEP,
                    &err,
                    format!("the evidence in {zone} is not analysed"),
                ));
            }
        }
    }
    observe(&mut case);
    Ok(case)
}

async fn send_analysis(
    responder: &Responder,
    store: Option<&EvidenceStore>,
    case: &Case,
    index: usize,
    volumes: &[(String, String)],
    timeout: u64,
) -> Result<Sent> {
    let lifetime = command::url_lifetime(timeout);
    let store = store.ok_or_else(|| {
        PlaybookError::Configuration(
            "EVIDENCE_BUCKET is not set: there is no evidence store".into(),
        )
    })?;
    let document = Config::required(&responder.config.run_script_document, "RUN_SCRIPT_DOCUMENT")?;
    let workstation = &case.workstations[index];
    let instance_id = workstation.instance_id.clone().unwrap_or_default();
    let mut checked: Vec<(&str, CheckedTool)> = Vec::new();
    for (name, key, bytes) in HOST_TOOLS {
        checked.push((name, store.checked_tool(key, &sha256_hex(bytes)).await?));
    }
    let comment = format!("ec2-forensics {} analysis", case.case_id);
    let ssm = &responder.clients.ssm;
    if let Some(sent) = command::sent_before(ssm, document, &instance_id, &comment).await? {
        // An earlier attempt of this step sent the analysis of exactly these
        // volumes (its answer was lost): it is running, not sent again.
        let wanted: Vec<&str> = volumes.iter().map(|(v, _)| v.as_str()).collect();
        let script = checked
            .iter()
            .find(|(name, _)| *name == "run-forensics.sh")
            .map(|(_, tool)| tool.sha256.as_str());
        let uploads = sent.values_of("--archive-upload-id");
        if sent.values_of("--volume") == wanted
            && sent.script_sha256.as_deref() == script
            && uploads.len() == wanted.len()
        {
            let scripts = checked
                .iter()
                .map(|(name, tool)| ((*name).to_owned(), tool.sha256.clone()))
                .collect();
            let archive_uploads = wanted
                .iter()
                .zip(uploads)
                .map(|(volume, upload)| ((*volume).to_owned(), (*upload).to_owned()))
                .collect();
            return Ok(Sent {
                command_id: sent.command_id,
                scripts,
                found: true,
                archive_uploads,
            });
        }
    }
    let mut arguments = Vec::new();
    let mut scripts = BTreeMap::new();
    let mut script = None;
    for (name, tool) in &checked {
        let url = store.presign_tool(tool, lifetime).await?;
        scripts.insert((*name).to_owned(), tool.sha256.clone());
        if *name == "run-forensics.sh" {
            script = Some((url, tool.sha256.clone()));
            continue;
        }
        arguments.extend([
            "--tool".to_owned(),
            (*name).to_owned(),
            "--tool-url".to_owned(),
            url,
            "--tool-sha256".to_owned(),
            tool.sha256.clone(),
        ]);
    }
    arguments.extend([
        "--archive-part-size".to_owned(),
        ARCHIVE_PART_SIZE.to_string(),
    ]);
    let mut archive_uploads = BTreeMap::new();
    let uploads = start_archive_uploads(store, case, volumes, lifetime, &mut archive_uploads);
    let lists = match uploads.await {
        Ok(lists) => lists,
        Err(err) => {
            abort_archive_uploads(store, case, volumes, &archive_uploads).await;
            return Err(err);
        }
    };
    for ((volume_id, source), (list, list_url)) in volumes.iter().zip(lists) {
        let (findings, _) = result_keys(&case.case_id, source);
        arguments.extend([
            "--volume".to_owned(),
            volume_id.clone(),
            "--findings-url".to_owned(),
            store.presign_put(&findings, lifetime).await?,
            "--archive-part-list-url".to_owned(),
            list_url,
            "--archive-part-list-sha256".to_owned(),
            list.sha256,
            "--archive-upload-id".to_owned(),
            archive_uploads.get(volume_id).cloned().unwrap_or_default(),
        ]);
        // The recency window starts from the snapshot, not from the newest
        // time on the volume (which the attacker writes).
        if let Some(epoch) = snapshot_start_epoch(case, source) {
            arguments.extend(["--reference-time".to_owned(), epoch.to_string()]);
        }
    }
    let (script_url, script_sha256) = script.ok_or_else(|| {
        PlaybookError::Configuration("run-forensics.sh is not among the host tools".into())
    })?;
    let run = ScriptRun {
        document,
        instance_id: &instance_id,
        script_url: &script_url,
        script_sha256: &script_sha256,
        arguments,
        comment,
        timeout_seconds: timeout,
    };
    // A send that failed may still have reached SSM (its answer lost): the
    // uploads stay, for the retry that finds the command; one that did not
    // leaves them unused, never completed.
    let command_id = command::send_script(ssm, &run).await?;
    Ok(Sent {
        command_id,
        scripts,
        found: false,
        archive_uploads,
    })
}

/// What run-forensics sent, or found sent by an earlier attempt.
struct Sent {
    command_id: String,
    /// SHA-256 of every script, by name.
    scripts: BTreeMap<String, String>,
    /// An earlier attempt sent it.
    found: bool,
    /// Each evidence volume's archive upload.
    archive_uploads: BTreeMap<String, String>,
}

/// Starts each volume's archive upload and stores its part list; answers the
/// part lists with their pre-signed GETs, in the order of `volumes`. Fills
/// `started` as it goes, so that a failure can abort what was started.
async fn start_archive_uploads(
    store: &EvidenceStore,
    case: &Case,
    volumes: &[(String, String)],
    lifetime: Duration,
    started: &mut BTreeMap<String, String>,
) -> Result<Vec<(Artifact, String)>> {
    let mut lists = Vec::with_capacity(volumes.len());
    for (volume_id, source) in volumes {
        let (_, archive) = result_keys(&case.case_id, source);
        let upload_id = store.start_upload(&archive, "application/x-tar").await?;
        started.insert(volume_id.clone(), upload_id.clone());
        let urls = store
            .presign_parts(&archive, &upload_id, ARCHIVE_PARTS, lifetime)
            .await?;
        lists.push(
            publish_part_list(
                store,
                &archive_part_list_key(&case.case_id, source),
                urls,
                lifetime,
            )
            .await?,
        );
    }
    Ok(lists)
}

/// Aborts archive uploads that no command will use.
async fn abort_archive_uploads(
    store: &EvidenceStore,
    case: &Case,
    volumes: &[(String, String)],
    uploads: &BTreeMap<String, String>,
) {
    for (volume_id, source) in volumes {
        let Some(upload_id) = uploads.get(volume_id) else {
            continue;
        };
        let (_, archive) = result_keys(&case.case_id, source);
        if let Err(err) = store.abort_upload(&archive, upload_id).await {
            tracing::warn!(error = %err, key = %archive, "an unused archive upload was not aborted");
        }
    }
}

/// The evidence volumes attached in `zone`: (evidence volume, the suspect's
/// volume it is a copy of). What run-forensics sends and check-command expects.
fn attached_in(case: &Case, zone: &str) -> Vec<(String, String)> {
    case.evidence_volumes
        .iter()
        .filter(|v| v.availability_zone == zone && v.attached)
        .filter_map(|v| {
            v.volume_id
                .clone()
                .map(|id| (id, v.source_volume_id.clone()))
        })
        .collect()
}

fn failed(volume_id: &str, source: &str, reason: &str) -> VolumeAnalysis {
    VolumeAnalysis {
        volume_id: volume_id.to_owned(),
        source_volume_id: source.to_owned(),
        status: "failed".into(),
        device: None,
        device_sha256: None,
        after_check: None,
        unchanged: false,
        mounted: Vec::new(),
        logical_volumes: Vec::new(),
        indicators: Vec::new(),
        unreadable: None,
        tool_errors: 0,
        unparsed: 0,
        recency_anchor: None,
        triage_skipped: None,
        findings: None,
        archive: None,
        reason: Some(reason.to_owned()),
    }
}

fn upsert_analysis(records: &mut Vec<VolumeAnalysis>, record: VolumeAnalysis) {
    match records.iter_mut().find(|r| r.volume_id == record.volume_id) {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
}

fn observe(case: &mut Case) {
    let (pending, failed) = counts(case);
    case.analysis_progress.observe(pending, failed);
}

fn counts(case: &Case) -> (usize, usize) {
    let pending = case
        .workstations
        .iter()
        .filter(|w| w.command_id.is_some() && w.command_ended_at.is_none())
        .count();
    let failed = case
        .analysis
        .iter()
        .filter(|a| a.status == "failed")
        .count();
    (pending, failed)
}

/// What run-forensics.sh reports about one volume.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostVolume {
    volume_id: String,
    status: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    error: String,
    findings: Option<HostObject>,
    archive: Option<HostObject>,
}

/// One result object as the workstation reports it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostObject {
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// For the archive: the part size it was cut into...
    #[serde(default)]
    pub part_size: Option<u64>,
    /// ...and each part it uploaded.
    #[serde(default)]
    pub parts: Vec<crate::case::memory::HostPart>,
}

#[derive(Debug, Deserialize)]
struct HostReport {
    volumes: Vec<HostVolume>,
}

/// The most a findings.json may hold (its lists are capped by the script).
const MAX_FINDINGS_BYTES: u64 = 64 << 20;

/// When the snapshot of `source_volume_id` started (seconds since 1970).
fn snapshot_start_epoch(case: &Case, source_volume_id: &str) -> Option<i64> {
    let started = case
        .snapshots
        .iter()
        .find(|v| v.volume_id == source_volume_id)?
        .snapshot
        .started_at
        .as_deref()?;
    aws_smithy_types::DateTime::from_str(started, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.secs())
        .filter(|secs| *secs > 0)
}

/// How findings.json says the analysis was shown to change nothing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AfterCheck {
    description: String,
    sample_sha256_before: String,
    sample_sha256_after: String,
}

/// What findings.json holds that the Case keeps.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Findings {
    volume_id: String,
    device_sha256: String,
    unchanged: bool,
    after_check: AfterCheck,
    #[serde(default)]
    indicators: Vec<Indicator>,
    #[serde(default)]
    mounted: Vec<Mounted>,
    #[serde(default)]
    lvm: Vec<LogicalVolume>,
    #[serde(default)]
    unreadable: Option<String>,
    #[serde(default, deserialize_with = "count_or_null")]
    tool_errors_total: usize,
    #[serde(default, deserialize_with = "count_or_null")]
    unparsed_total: usize,
    #[serde(default)]
    recency_anchor: Option<RecencyAnchor>,
    #[serde(default)]
    triage_cap: Option<TriageCap>,
}

/// A count findings.json may give as null.
fn count_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
struct RecencyAnchor {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    epoch: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct TriageCap {
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Mounted {
    offset: u64,
    #[serde(rename = "type")]
    kind: String,
    options: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogicalVolume {
    volume_group: String,
    logical_volume: String,
    offset: Option<u64>,
    status: String,
}

/// Reads every running analysis command; records the results of those that ended.
pub async fn check_analysis(responder: &Responder, mut case: Case) -> Result<Case> {
    let running: Vec<usize> = case
        .workstations
        .iter()
        .enumerate()
        .filter(|(_, w)| w.command_id.is_some() && w.command_ended_at.is_none())
        .map(|(i, _)| i)
        .collect();
    if running.is_empty() {
        observe(&mut case);
        return Ok(case);
    }
    let store = EvidenceStore::required(responder)?;
    let running_before = running.len();
    for index in running {
        let workstation = case.workstations[index].clone();
        let out_of_time = case.analysis_progress.checks + 1 >= MAX_CHECKS;
        let instance_id = workstation.instance_id.clone().unwrap_or_default();
        let command_id = workstation.command_id.clone().unwrap_or_default();
        let volumes = attached_in(&case, &workstation.availability_zone);
        let outcome =
            match command::invocation(&responder.clients.ssm, &command_id, &instance_id).await {
                Ok(Invocation::Running(_)) if !out_of_time => continue,
                Err(err) if err.is_transient() && !out_of_time => continue,
                Ok(Invocation::Running(status)) => {
                    if let Err(err) =
                        command::cancel(&responder.clients.ssm, &command_id, &instance_id).await
                    {
                        tracing::warn!(error = %err, "the analysis command was not cancelled");
                    }
                    Err(format!(
                        "still {status} after {MAX_CHECKS} checks: the command was cancelled"
                    ))
                }
                Err(err) => Err(err.to_string()),
                Ok(Invocation::Failed {
                    status,
                    code,
                    stderr,
                }) => Err(format!(
                    "SSM reports {status} (exit code {code}): {}",
                    error_tail(&stderr)
                )),
                Ok(Invocation::Succeeded { stdout, .. }) => Ok(stdout),
            };
        case.workstations[index].command_ended_at = Some(now_utc());
        let records = match outcome {
            Ok(stdout) => match last_line(&stdout)
                .and_then(|l| serde_json::from_str::<HostReport>(l).ok())
            {
                Some(report) => {
                    let mut records = Vec::new();
                    for (volume_id, source) in &volumes {
                        let host = report.volumes.iter().find(|v| &v.volume_id == volume_id);
                        records.push(match host {
                            Some(host) => {
                                let upload = workstation.archive_uploads.get(volume_id);
                                record_volume(&store, &case.case_id, source, host, upload).await?
                            }
                            None => failed(
                                volume_id,
                                source,
                                "the workstation's report does not mention it",
                            ),
                        });
                    }
                    records
                }
                None => volumes
                    .iter()
                    .map(|(v, s)| failed(v, s, "run-forensics.sh ended without its result line"))
                    .collect(),
            },
            Err(reason) => volumes.iter().map(|(v, s)| failed(v, s, &reason)).collect(),
        };
        // An archive upload that will not be completed is aborted: no
        // parts are left behind in the evidence bucket.
        for record in records.iter().filter(|r| r.status != "analysed") {
            if let Some(upload) = workstation.archive_uploads.get(&record.volume_id) {
                let (_, archive) = result_keys(&case.case_id, &record.source_volume_id);
                if let Err(err) = store.abort_upload(&archive, upload).await {
                    tracing::warn!(error = %err, key = %archive, "the archive upload was not aborted");
                }
            }
        }
        for record in records {
            for artifact in [&record.findings, &record.archive].into_iter().flatten() {
                upsert_artifact(&mut case.artifacts, artifact.clone());
            }
            case.record(entry(
                CHECK_STEP,
                &responder.identity.actor,
                format!("analysis of {} (copy of {}): {}", record.volume_id, record.source_volume_id, record.status),
                &["GetCommandInvocation", "GetObject", "ListParts", "CompleteMultipartUpload"],
                json!({"commandId": command_id, "instanceId": instance_id, "volumeId": record.volume_id}),
                json!({
                    "status": record.status, "reason": record.reason, "unchanged": record.unchanged,
                    "deviceSha256": record.device_sha256, "afterCheck": record.after_check, "indicators": record.indicators.len(),
                    "findings": record.findings, "archive": record.archive,
                }),
                record.findings.as_ref().map(|a| a.sha256.clone()),
            ));
            if record.status == "failed" {
                case.errors.push(StepError {
                    step: CHECK_STEP.to_owned(),
                    error_type: "AnalysisFailed".into(),
                    message: format!(
                        "analysis of {}: {}",
                        record.volume_id,
                        record.reason.clone().unwrap_or_default()
                    ),
                    not_done: Some(format!(
                        "no verified analysis of the copy of {}",
                        record.source_volume_id
                    )),
                    at: now_utc(),
                });
            }
            upsert_analysis(&mut case.analysis, record);
        }
    }
    let (pending, failed) = counts(&case);
    case.analysis_progress.checked(pending, failed);
    // Only a check that saw an analysis end changed the evidence record.
    if pending < running_before {
        super::evidence::keep_case(Some(&store), &mut case, CHECK_STEP).await;
    }
    Ok(case)
}

/// One volume's results: both objects read back and matched with the host's
/// report, findings.json parsed. Fails only when S3 failed for a moment.
async fn record_volume(
    store: &EvidenceStore,
    case_id: &str,
    source: &str,
    host: &HostVolume,
    upload_id: Option<&String>,
) -> Result<VolumeAnalysis> {
    let mut record = failed(&host.volume_id, source, &host.error);
    record.device = Some(host.device.clone()).filter(|d| !d.is_empty());
    if host.status != "analysed" {
        return Ok(record);
    }
    let (findings_key, archive_key) = result_keys(case_id, source);
    let result = async {
        let findings = read_findings(store, &findings_key, host.findings.as_ref()).await?;
        let archive = read_archive(store, &archive_key, host.archive.as_ref(), upload_id).await?;
        Ok::<_, PlaybookError>((findings, archive))
    }
    .await;
    match result {
        Ok(((findings, bytes), archive)) => match serde_json::from_slice::<Findings>(&bytes) {
            Ok(parsed) if parsed.volume_id == host.volume_id => {
                record.status = "analysed".into();
                record.reason = None;
                record.unchanged = parsed.unchanged
                    && parsed.after_check.sample_sha256_before
                        == parsed.after_check.sample_sha256_after;
                record.device_sha256 = Some(parsed.device_sha256);
                record.after_check = Some(parsed.after_check.description);
                record.indicators = parsed.indicators;
                record.mounted = parsed
                    .mounted
                    .iter()
                    .map(|m| format!("{} at sector {} ({})", m.kind, m.offset, m.options))
                    .collect();
                record.logical_volumes = parsed
                    .lvm
                    .iter()
                    .map(|l| match l.offset {
                        Some(offset) => format!(
                            "{}/{} at sector {offset}: {}",
                            l.volume_group, l.logical_volume, l.status
                        ),
                        None => format!("{}/{}: {}", l.volume_group, l.logical_volume, l.status),
                    })
                    .collect();
                record.unreadable = parsed.unreadable;
                record.tool_errors = parsed.tool_errors_total;
                record.unparsed = parsed.unparsed_total;
                record.recency_anchor = parsed.recency_anchor.map(|a| {
                    format!(
                        "{} ({})",
                        a.source.unwrap_or_default(),
                        a.epoch.unwrap_or_default()
                    )
                });
                record.triage_skipped = parsed.triage_cap.filter(|c| c.skipped > 0).map(|c| {
                    format!(
                        "{} file(s) not extracted: {}",
                        c.skipped,
                        c.reason.unwrap_or_default()
                    )
                });
                record.findings = Some(findings);
                record.archive = Some(archive);
            }
            Ok(parsed) => {
                record.reason = Some(format!(
                    "findings.json is about {}, not {}",
                    parsed.volume_id, host.volume_id
                ))
            }
            Err(err) => record.reason = Some(format!("findings.json is not readable: {err}")),
        },
        // S3 failing for a moment fails this check, which the state machine
        // retries: the results are read again, an archive completed already
        // at its newest version.
        Err(err) if err.is_transient() => return Err(err),
        Err(err) => record.reason = Some(err.to_string()),
    }
    Ok(record)
}

/// Reads findings.json (the latest version) and checks it against the
/// host's size and SHA-256; returns its artifact record and its bytes.
async fn read_findings(
    store: &EvidenceStore,
    key: &str,
    host: Option<&HostObject>,
) -> Result<(Artifact, Vec<u8>)> {
    let host = host.ok_or_else(|| mismatch(format!("the workstation reported no {key}")))?;
    // The workstation read a hostile volume and may be compromised: what it
    // uploaded is read with a bound, never whole whatever its size.
    let version_id = store
        .newest_version(key)
        .await?
        .ok_or_else(|| mismatch(format!("{key} is not in the evidence store")))?;
    let (bytes, _) = store
        .get_small(key, &version_id, MAX_FINDINGS_BYTES)
        .await?;
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    compare(key, size, &sha256, host)?;
    Ok((
        Artifact {
            key: key.to_owned(),
            version_id,
            size,
            sha256,
            kind: "analysis-findings".into(),
        },
        bytes,
    ))
}

/// Completes the archive's multipart upload once S3's parts are exactly the
/// workstation's (none larger than the plan's part size), then reads it
/// back: its size and SHA-256 must be the workstation's. An upload an
/// earlier check already completed is read at its latest version, held to
/// the same size and SHA-256.
pub async fn read_archive(
    store: &EvidenceStore,
    key: &str,
    host: Option<&HostObject>,
    upload_id: Option<&String>,
) -> Result<Artifact> {
    let host = host.ok_or_else(|| mismatch(format!("the workstation reported no {key}")))?;
    let completed = match upload_id {
        Some(upload_id) => match store.stored_parts(key, upload_id).await {
            Ok(stored) => {
                check_host_parts(
                    &host.parts,
                    host.size,
                    host.part_size.unwrap_or_default(),
                    &stored,
                    ARCHIVE_PART_SIZE,
                )
                .map_err(|m| mismatch(format!("{key}: {m}")))?;
                Some(store.complete_upload(key, upload_id, &stored).await?)
            }
            Err(err) if err.aws_code() == Some("NoSuchUpload") => None,
            Err(err) => return Err(err),
        },
        None => None,
    };
    let version_id = match completed {
        Some(version_id) => version_id,
        None => store.latest_version(key).await?.0,
    };
    let read = store.read_back(key, &version_id).await?;
    compare(key, read.size, &read.sha256, host)?;
    Ok(Artifact {
        key: key.to_owned(),
        version_id,
        size: read.size,
        sha256: read.sha256,
        kind: "analysis-archive".into(),
    })
}

fn compare(key: &str, size: u64, sha256: &str, host: &HostObject) -> Result<()> {
    if sha256 != host.sha256 || size != host.size {
        return Err(mismatch(format!(
            "{key}: S3 holds {size} bytes with SHA-256 {sha256}; the workstation uploaded {} bytes with SHA-256 {}",
            host.size, host.sha256
        )));
    }
    Ok(())
}

fn mismatch(message: String) -> PlaybookError {
    PlaybookError::checksum_mismatch("verify analysis result", message)
}
