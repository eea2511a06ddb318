//! The final report: `cases/<caseId>/report.json` and `report.md`, written
//! when the case is sealed, so the signed manifest lists them.
//!
//! It answers what an investigator is asked for: what happened (the finding
//! and the decision), every action in UTC, what was captured (ids, sizes,
//! SHA-256), what failed and why, and the notes the playbook asks for (what
//! was analysed, when, with which commands, what was found), filled from the
//! Case, never typed by hand.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::evidence::store::{case_key, EvidenceStore};
use super::evidence::verify::read_signed;
use crate::aws::Responder;
use crate::case::evidence::upsert_artifact;
use crate::case::{Artifact, Case, MemoryStatus};
use crate::error::{PlaybookError, Result};

/// The report's JSON key inside the case prefix.
pub const REPORT_JSON: &str = "report.json";
/// The report's Markdown key inside the case prefix.
pub const REPORT_MD: &str = "report.md";

/// The report, as `report.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The case.
    pub case_id: String,
    /// When the report was written (UTC).
    pub generated_at: String,
    /// The finding and the decision.
    pub what_happened: WhatHappened,
    /// Whether the instances are contained, and what no rule can block.
    pub containment: String,
    /// Every custody entry, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Every object in the evidence store, and the disk evidence.
    pub captured: Captured,
    /// Every failure and skip, with why.
    pub failures: Vec<String>,
    /// What was analysed, when, with which commands, and what was found.
    pub investigator_notes: Vec<Note>,
}

/// The finding and what the policy decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatHappened {
    /// GuardDuty, Security Hub, CloudWatch, manual...
    pub source: String,
    /// The finding's type.
    pub finding_type: String,
    /// The finding's id.
    pub finding_id: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: f64,
    /// The account and region of the instances.
    pub account: Option<String>,
    /// Region.
    pub region: String,
    /// The instances.
    pub instance_ids: Vec<String>,
    /// The decision and its reason.
    pub decision: String,
    /// What the finding indicates (compromised, exposed, weakness,
    /// unclassified) and the table entry or rule that decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// The approval, when the decision asked for one.
    pub approval: Option<String>,
}

/// One action of the chain of custody.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// UTC time.
    pub at: String,
    /// The step.
    pub step: String,
    /// Who acted (ARN).
    pub actor: String,
    /// What was done.
    pub action: String,
}

/// What the case holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    /// Objects in the evidence store (the report itself and the manifest are
    /// listed by the manifest).
    pub artifacts: Vec<Artifact>,
    /// One line per volume: snapshot, forensic copy, their states.
    pub disks: Vec<String>,
}

/// One of the investigator's notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// What was analysed.
    pub subject: String,
    /// When (UTC), when it ran.
    pub when: Option<String>,
    /// How: the commands and tools, with their SHA-256 where known.
    pub how: String,
    /// What was found.
    pub found: String,
}

impl Report {
    /// The report of the Case as it is now.
    pub fn of(case: &Case, generated_at: String) -> Report {
        let incident = &case.incident;
        let approval = case
            .approval
            .as_ref()
            .and_then(|a| a.answer.as_ref())
            .map(|answer| {
                format!(
                    "{:?} by {} at {}{}",
                    answer.outcome,
                    answer.by.as_deref().unwrap_or("(unknown)"),
                    answer.at,
                    answer
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            });
        Report {
            case_id: case.case_id.clone(),
            generated_at,
            what_happened: WhatHappened {
                source: format!("{:?}", incident.source),
                finding_type: incident.finding_type.clone(),
                finding_id: incident.finding_id.clone(),
                title: incident.title.clone(),
                severity: incident.severity,
                account: incident.account.clone(),
                region: incident.region.clone(),
                instance_ids: incident.instance_ids.clone(),
                decision: format!(
                    "{:?}{}: {}",
                    case.decision.action,
                    if case.decision.dry_run {
                        " (dry run)"
                    } else {
                        ""
                    },
                    case.decision.reason
                ),
                classification: case
                    .decision
                    .classification
                    .as_ref()
                    .map(|c| format!("{:?}, decided by {}", c.indication, c.decided_by)),
                approval,
            },
            containment: containment_line(case),
            timeline: case
                .custody
                .iter()
                .map(|c| TimelineEntry {
                    at: c.at.clone(),
                    step: c.step.clone(),
                    actor: c.actor.clone(),
                    action: c.action.clone(),
                })
                .collect(),
            captured: Captured {
                artifacts: case.artifacts.clone(),
                disks: case
                    .snapshots
                    .iter()
                    .map(|v| {
                        format!(
                            "{} ({}): snapshot {} {}; forensic copy {}",
                            v.volume_id,
                            v.instance_id,
                            v.snapshot.snapshot_id,
                            v.snapshot.state,
                            v.copy
                                .as_ref()
                                .map(|c| format!("{} {}", c.snapshot_id, c.state))
                                .unwrap_or_else(|| "none".into())
                        )
                    })
                    .collect(),
            },
            failures: failures(case),
            investigator_notes: notes(case),
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        // Every value is escaped: titles, file names, cron lines, host
        // errors and object keys come from findings, volumes, hosts and a
        // bucket that attackers can write.
        use crate::case::text::markdown as m;
        let mut md = String::new();
        let w = &self.what_happened;
        let _ = writeln!(md, "# EC2 forensics report: case {}\n", m(&self.case_id));
        let _ = writeln!(
            md,
            "Generated {} (UTC). Every value below comes from the case's custody record; \
             text from the finding, the volumes and the hosts is shown as they reported it, \
             escaped, and is not verified.\n",
            m(&self.generated_at)
        );
        let _ = writeln!(md, "## What happened\n");
        let _ = writeln!(
            md,
            "- Finding: {} {} (severity {}), id {}",
            m(&w.source),
            m(&w.finding_type),
            w.severity,
            m(&w.finding_id)
        );
        let _ = writeln!(
            md,
            "- Title (as reported by {}, not verified): {}",
            m(&w.source),
            m(&w.title)
        );
        let _ = writeln!(
            md,
            "- Account {} in {}; instances: {}",
            m(w.account.as_deref().unwrap_or("(own)")),
            m(&w.region),
            m(&w.instance_ids.join(", "))
        );
        if let Some(classification) = &w.classification {
            let _ = writeln!(md, "- Classification: {}", m(classification));
        }
        let _ = writeln!(md, "- Decision: {}", m(&w.decision));
        if let Some(approval) = &w.approval {
            let _ = writeln!(md, "- Approval: {}", m(approval));
        }
        let _ = writeln!(md, "- Containment: {}\n", m(&self.containment));
        let _ = writeln!(md, "## Timeline (UTC)\n");
        let _ = writeln!(md, "| at | step | actor | action |\n|---|---|---|---|");
        for t in &self.timeline {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                m(&t.at),
                m(&t.step),
                m(&t.actor),
                m(&t.action)
            );
        }
        let _ = writeln!(md, "\n## What was captured\n");
        let _ = writeln!(
            md,
            "| kind | key | version | bytes | SHA-256 |\n|---|---|---|---|---|"
        );
        for a in &self.captured.artifacts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                m(&a.kind),
                m(&a.key),
                m(&a.version_id),
                a.size,
                m(&a.sha256)
            );
        }
        for disk in &self.captured.disks {
            let _ = writeln!(md, "- {}", m(disk));
        }
        let _ = writeln!(md, "\n## What failed, and why\n");
        if self.failures.is_empty() {
            let _ = writeln!(md, "Nothing failed.");
        }
        for failure in &self.failures {
            let _ = writeln!(md, "- {}", m(failure));
        }
        let _ = writeln!(md, "\n## Investigator's notes\n");
        for note in &self.investigator_notes {
            let _ = writeln!(md, "### {}\n", m(&note.subject));
            if let Some(when) = &note.when {
                let _ = writeln!(md, "- When: {}", m(when));
            }
            let _ = writeln!(md, "- How: {}", m(&note.how));
            let _ = writeln!(md, "- Found: {}\n", m(&note.found));
        }
        md
    }
}

/// Text from the case in a Markdown table cell: pipes and line breaks would
/// break the table.
fn containment_line(case: &Case) -> String {
    let state = match &case.containment {
        Some(c) if c.contained => format!(
            "contained, read back at {}; not blockable by any rule: {}",
            c.verified_at.as_deref().unwrap_or("?"),
            c.not_blocked.join("; ")
        ),
        Some(c) => format!("NOT contained: {}", c.not_contained.join("; ")),
        None => "isolation did not run".into(),
    };
    let timings: Vec<String> = case
        .isolation
        .iter()
        .filter_map(|i| {
            let opened = i.seconds_from_case_opened?;
            Some(format!(
                "{} first isolated {} s after the case opened ({} s after the detection time the finding reports, {}; now at the {:?} stage)",
                i.instance_id,
                opened,
                i.seconds_to_isolation
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                i.detected_at.as_deref().unwrap_or("?"),
                i.stage
            ))
        })
        .collect();
    let plan = case.acquisition_plan.as_ref().map(|p| {
        format!(
            "; acquisition order auto: memory until {}, then full isolation ({})",
            p.deadline, p.reason
        )
    });
    if timings.is_empty() {
        format!("{state}{}", plan.unwrap_or_default())
    } else {
        format!(
            "{state}; {}{}",
            timings.join("; "),
            plan.unwrap_or_default()
        )
    }
}

fn failures(case: &Case) -> Vec<String> {
    let mut out: Vec<String> = case
        .errors
        .iter()
        .map(|e| {
            format!(
                "{} at {}: {} ({}){}",
                e.step,
                e.at,
                e.message,
                e.error_type,
                e.not_done
                    .as_deref()
                    .map(|n| format!("; not done: {n}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    for m in &case.memory {
        if m.status == MemoryStatus::Skipped {
            out.push(format!(
                "memory of {} not captured: {}",
                m.instance_id,
                m.reason.as_deref().unwrap_or("skipped")
            ));
        }
    }
    out
}

fn notes(case: &Case) -> Vec<Note> {
    let mut notes = Vec::new();
    for m in &case.memory {
        let image = case
            .artifacts
            .iter()
            .find(|a| Some(&a.key) == m.key.as_ref() && a.kind == "memory");
        notes.push(Note {
            subject: format!("Memory of {}", m.instance_id),
            when: m.started_at.as_ref().map(|s| format!("{s} to {}", m.finished_at.as_deref().unwrap_or("(not ended)"))),
            how: match &m.command_id {
                Some(command) => format!(
                    "SSM command {command} ({}) ran capture-memory.sh (SHA-256 {}) with AVML (SHA-256 {}); the host uploaded over pre-signed URLs only; the image was completed and read back from S3",
                    m.document.as_deref().unwrap_or("?"),
                    m.script_sha256.as_deref().unwrap_or("?"),
                    m.avml_sha256.as_deref().unwrap_or("?"),
                ),
                None => "not attempted".into(),
            },
            found: match (m.status, image) {
                (MemoryStatus::Captured, Some(image)) => format!(
                    "a {} byte compressed LiME image, SHA-256 {} (the host's own hash matched), at {} version {}; analyse it offline (e.g. Volatility 3) against the kernel of the instance's AMI. What it proves: {}",
                    image.size,
                    image.sha256,
                    image.key,
                    image.version_id,
                    m.what_it_proves().join("; ")
                ),
                (status, _) => format!("no image ({status:?}): {}", m.reason.as_deref().unwrap_or("")),
            },
        });
    }
    if !case.snapshots.is_empty() {
        let copies = case
            .snapshots
            .iter()
            .filter(|v| v.copy.as_ref().is_some_and(|c| c.is_completed()))
            .count();
        notes.push(Note {
            subject: "Disks".into(),
            when: case.snapshots.iter().filter_map(|v| v.snapshot.started_at.clone()).min(),
            how: "EBS snapshots of every volume (CreateSnapshots, point in time, before memory capture and isolation), shared and copied under the forensic account's key".into(),
            found: format!(
                "{} volumes, {copies} forensic copies completed; {} of them analysed (below)",
                case.snapshots.len(),
                case.analysis.iter().filter(|a| a.status == "analysed").count()
            ),
        });
    }
    for analysis in &case.analysis {
        let volume = case
            .evidence_volumes
            .iter()
            .find(|v| v.volume_id.as_deref() == Some(analysis.volume_id.as_str()));
        let workstation = volume.and_then(|v| {
            case.workstations
                .iter()
                .find(|w| w.availability_zone == v.availability_zone)
        });
        let script = |name: &str| {
            workstation
                .and_then(|w| w.scripts.get(name))
                .map(String::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        notes.push(Note {
            subject: format!("Volume {} (evidence volume {})", analysis.source_volume_id, analysis.volume_id),
            when: workstation.and_then(|w| {
                w.command_sent_at
                    .as_ref()
                    .map(|s| format!("{s} to {}", w.command_ended_at.as_deref().unwrap_or("(not ended)")))
            }),
            how: format!(
                "run-forensics.sh (SHA-256 {}) on workstation {} from golden AMI {}, SSM command {}: the device found by its NVMe serial ({}), `blockdev --setro` and checked, SHA-256 of the device before and after, `mmls`, `fls -r -m` and `mactime` for the timeline, `icat` for the triage set, YARA rules crypto-mining.yar (SHA-256 {}), analyse-volume.sh SHA-256 {}; {}{}",
                script("run-forensics.sh"),
                workstation.and_then(|w| w.instance_id.as_deref()).unwrap_or("?"),
                workstation.map(|w| w.image_id.as_str()).unwrap_or("?"),
                workstation.and_then(|w| w.command_id.as_deref()).unwrap_or("?"),
                analysis.device.as_deref().unwrap_or("?"),
                script("crypto-mining.yar"),
                script("analyse-volume.sh"),
                if analysis.mounted.is_empty() {
                    "nothing mounted".to_owned()
                } else {
                    format!(
                        "mounted read-only over a read-only loop device where The Sleuth Kit cannot read: {}",
                        analysis.mounted.join(", ")
                    )
                },
                if analysis.logical_volumes.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; LVM read through its metadata, never activated: {}",
                        analysis.logical_volumes.join(", ")
                    )
                },
            ),
            found: if analysis.status == "analysed" {
                let listed: Vec<String> = analysis
                    .indicators
                    .iter()
                    .map(|i| {
                        format!(
                            "{}{} at {} ({}){}",
                            i.kind,
                            if i.deleted { " (deleted file)" } else { "" },
                            i.path,
                            i.detail,
                            if i.matches.is_empty() {
                                String::new()
                            } else {
                                format!(" matched: {}", i.matches.join(", "))
                            }
                        )
                    })
                    .collect();
                let limits: Vec<String> = [
                    analysis.unreadable.as_ref().map(|why| format!("no file system read: {why}")),
                    analysis.recency_anchor.as_ref().map(|a| format!("recency window from {a}")),
                    analysis.triage_skipped.clone(),
                    (analysis.tool_errors > 0).then(|| format!("{} tool error(s) recorded in findings.json", analysis.tool_errors)),
                    (analysis.unparsed > 0).then(|| format!("{} listing line(s) did not parse and are recorded, not used", analysis.unparsed)),
                ]
                .into_iter()
                .flatten()
                .collect();
                format!(
                    "{} indicators (paths and text as found on the volume, not verified): {}. {}The device's SHA-256 (read once, during the analysis) was {}. Checked after: {}: {}. Results: {} and {}",
                    listed.len(),
                    if listed.is_empty() { "none".to_owned() } else { listed.join("; ") },
                    if limits.is_empty() { String::new() } else { format!("Limits: {}. ", limits.join("; ")) },
                    analysis.device_sha256.as_deref().unwrap_or("?"),
                    analysis.after_check.as_deref().unwrap_or("?"),
                    if analysis.unchanged { "unchanged" } else { "CHANGED" },
                    analysis.findings.as_ref().map(|a| a.key.as_str()).unwrap_or("?"),
                    analysis.archive.as_ref().map(|a| a.key.as_str()).unwrap_or("?"),
                )
            } else {
                format!("not analysed: {}", analysis.reason.as_deref().unwrap_or("?"))
            },
        });
    }
    notes
}

/// Writes `report.json` and `report.md` into the case's prefix and records
/// them among the artifacts (seal-evidence lists them in the manifest).
pub async fn write_report(store: &EvidenceStore, case: &mut Case) -> Result<()> {
    let report = Report::of(case, crate::case::custody::now_utc());
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| PlaybookError::InvalidCase(format!("the report does not serialise: {e}")))?;
    let (json_key, md_key) = (
        case_key(&case.case_id, REPORT_JSON),
        case_key(&case.case_id, REPORT_MD),
    );
    let (json, md) = tokio::try_join!(
        store.put(&json_key, json, "application/json", "report"),
        store.put(
            &md_key,
            report.markdown().into_bytes(),
            "text/markdown; charset=utf-8",
            "report"
        ),
    )?;
    upsert_artifact(&mut case.artifacts, json);
    upsert_artifact(&mut case.artifacts, md);
    Ok(())
}

/// A report as the latest signed manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedReport {
    /// The report's text.
    pub text: String,
    /// Its key.
    pub key: String,
    /// The version printed: the one the manifest lists, not the newest.
    pub version_id: String,
    /// The latest signed manifest's version.
    pub manifest_version_id: String,
    /// Its sequence in the case's chain.
    pub sequence: u64,
    /// How many checks of the chain of manifests fail (`verify` says which).
    pub chain_problems: usize,
}

/// The case's report (Markdown, or JSON when `json`) at the version the
/// latest signed manifest lists (the head of the chain of manifests, every
/// signature checked by KMS under the custody key), its bytes checked
/// against the SHA-256 the manifest signs. A newer version a writer of the
/// bucket stored is not printed.
pub async fn read_report(responder: &Responder, case_id: &str, json: bool) -> Result<SignedReport> {
    let signed = read_signed(
        responder,
        case_id,
        if json { REPORT_JSON } else { REPORT_MD },
    )
    .await?;
    let text = String::from_utf8(signed.bytes)
        .map_err(|_| PlaybookError::InvalidCase(format!("{} is not UTF-8 text", signed.key)))?;
    Ok(SignedReport {
        text,
        key: signed.key,
        version_id: signed.version_id,
        manifest_version_id: signed.manifest_version_id,
        sequence: signed.manifest.sequence,
        chain_problems: signed.chain_problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{MemoryCapture, StepError};

    #[test]
    fn the_report_says_what_failed_and_escapes_case_text_in_tables() {
        let mut case = crate::case::example_case();
        case.memory.push(MemoryCapture::skipped(
            "i-0123456789abcdef0",
            "not managed by SSM",
        ));
        case.errors.push(StepError::new(
            "check-command",
            &PlaybookError::Configuration("no | pipes".into()),
            "no verified memory image".to_owned(),
        ));
        let report = Report::of(&case, "2026-11-28T00:00:00Z".into());
        assert!(report
            .failures
            .iter()
            .any(|f| f.contains("not managed by SSM")));
        assert!(report
            .failures
            .iter()
            .any(|f| f.contains("check-command") && f.contains("not done")));
        let note = &report.investigator_notes[0];
        assert_eq!(note.how, "not attempted");
        assert!(note.found.contains("Skipped"));
        assert_eq!(report.containment, "isolation did not run");
        let md = report.markdown();
        assert!(md.contains("## What failed, and why"));
        assert!(
            md.contains(&case.custody[0].at),
            "the timeline lists every action"
        );
        assert!(
            !md.contains("no | pipes"),
            "a pipe cannot open a table cell"
        );
    }

    #[test]
    fn the_report_states_the_classification_and_what_decided_it() {
        let mut case = crate::case::example_case();
        case.incident.resource_role = Some("ACTOR".into());
        case.decision = crate::policy::decide(&case.incident, &case.policy);
        let md = Report::of(&case, "2026-11-28T00:00:00Z".into()).markdown();
        assert!(
            md.contains(
                "- Classification: Compromised, decided by GuardDuty table: Backdoor:EC2/Spambot"
            ),
            "{md}"
        );
    }
}
