//! `ec2-forensics`: the responder's command-line tool.
//!
//! - `triage`: offline, no AWS call: what the responder would make of an event.
//! - `contain`: break-glass containment with the caller's own credentials, no
//!   deployed stack needed: protect-instance and isolate-network with their
//!   reads in one wave, ended by a read-back.
//! - `release`: restore an instance from the Case that `contain` printed, or
//!   (`--case-id`) a case the deployed stack contained, through the deployed
//!   stack: a `release-cases` bulk run another person approves.
//! - `investigate`: the whole playbook in-process (contain, snapshots, copies,
//!   the signed manifest), progress on stderr, the Case on stdout or `--out`.
//! - `verify`: checks a case end to end from the evidence store, or with
//!   `--offline DIR` a downloaded case with no AWS access.
//! - `report`: prints a case's final report, the version the latest signed
//!   manifest lists.
//! - `download`: writes a case (every manifest and signature version, every
//!   listed object, the custody public key) to a directory for `verify --offline`.
//! - `start`: starts the deployed state machine on an instance (a manual
//!   request; the same case-id rule as findings, so a repeat is one case).
//! - `approve` / `deny`: answer a case's approval gate, as the caller.
//! - `status`: a case's execution steps, approval, snapshot and copy progress.
//! - `bulk`: many instances at once (contain, quarantine-subnets, terminate,
//!   release-subnets): the plan by default, changing nothing; `--execute`
//!   starts it through the start function's URL, as the requester AWS
//!   authenticated; another person approves it.
//! - `bulk-status`: where a bulk run stands, with its map run's counts.
//!
//! Results are JSON on stdout; errors are one line on stderr. Exit 0: all
//! asked was done; 1: something is recorded as not done; 2: an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bulk;
mod function_url;
mod investigate;
mod readiness;
use playbook::case::text;
use playbook::findings::ParseContext;
use playbook::policy::Policy;
use playbook::steps::contain::{contain_by_hand, ByHand};
use playbook::{Case, PlaybookError, Responder};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "ec2-forensics",
    version,
    about = "Automated EC2 forensics: triage, contain, investigate, verify, release"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Normalise a finding event and show the policy's decision (offline).
    Triage {
        /// The event: an EventBridge event as delivered, or a manual request.
        #[arg(long)]
        event: PathBuf,
        /// Policy file (JSON); the built-in defaults otherwise.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Region for a manual request that names none (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Protect and isolate an instance now, with your own credentials.
    Contain {
        /// The instance to contain.
        #[arg(long)]
        instance: String,
        /// Region of the instance (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "break-glass containment from the command line")]
        reason: String,
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Policy file (JSON): ASG replacement, instance profile, session revocation.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Run the playbook on an instance now, with your own credentials: contain,
    /// snapshot, share and copy under the forensic key, seal the evidence.
    Investigate {
        /// The instance.
        #[arg(long)]
        instance: String,
        /// Region of the instance (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "investigation started from the command line")]
        reason: String,
        /// The last step: contain, snapshots, copies or analysis (the
        /// evidence is always sealed, with the report).
        #[arg(long, default_value = "analysis")]
        until: String,
        /// Write the Case here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Policy file (JSON).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Seconds between two checks of the snapshots.
        #[arg(long, default_value_t = 15)]
        poll_seconds: u64,
        /// Most checks of one wait.
        #[arg(long, default_value_t = 960)]
        max_checks: u32,
    },
    /// Verify a case from the evidence store (EVIDENCE_BUCKET): every
    /// manifest version signed by CUSTODY_SIGNING_KEY and chained, every
    /// listed object's hash, the custody chain, the snapshots and copies.
    Verify {
        /// The case id (online; with --offline, the case the directory must hold).
        #[arg(long, required_unless_present = "offline")]
        case_id: Option<String>,
        /// With --offline: the SHA-256 the latest signed manifest must have
        /// (download prints it), so removed newest files are seen.
        #[arg(long, requires = "offline", value_name = "HEX")]
        head_sha256: Option<String>,
        /// A case written by `download`: checked with no AWS call.
        #[arg(long, value_name = "DIR")]
        offline: Option<PathBuf>,
        /// With --offline: the custody key's public key (PEM) to trust,
        /// instead of DIR/custody-public-key.pem.
        #[arg(long, requires = "offline", value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Download a case for `verify --offline`: every manifest and signature
    /// version, every object the latest signed manifest lists, and the
    /// custody key's public key as KMS gives it.
    Download {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// A new (or empty) directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Print a case's final report (report.md, or report.json with --json):
    /// the version the latest signed manifest lists, named on stderr.
    Report {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// The JSON report instead of the Markdown one.
        #[arg(long)]
        json: bool,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Start the deployed state machine (STATE_MACHINE_ARN) on an instance.
    Start {
        /// The instance.
        #[arg(long)]
        instance: String,
        /// Why, for the record (part of the case id: the same instance and
        /// reason are one case).
        #[arg(long)]
        reason: String,
        /// Region of the instance (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Approve a case that waits for a person: a signed request to APPROVAL_URL; AWS says who you are, and that identity is recorded as the approver.
    Approve {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Deny a case that waits for a person: the instance is not touched.
    Deny {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Only approved AMIs: the running instances of a Region launched from
    /// an image the policy's approvedImages does not approve, with why
    /// (exit 1 when there is one).
    CheckAmis {
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Policy file (JSON); else the responder's policy (POLICY_FILE or POLICY_PARAMETER).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Is this account ready for an incident? A table of checks (trails,
    /// GuardDuty, Security Hub, EBS, Allowed AMIs, the evidence bucket, the
    /// custody key, the golden AMI, subnets, SSM, workload accounts, the
    /// approval topic), each pass, warn or fail with what it found and the
    /// fix; exit 0 only when nothing fails. Reads only, unless --fix.
    Readiness {
        /// `all` (every enabled Region) or a comma-separated list.
        #[arg(long, default_value = "all")]
        regions: String,
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Set one thing the checks report: `allowed-amis` sets EC2's
        /// Allowed AMIs criteria from the policy's approvedImages, in audit
        /// mode (refused when the setting is already enabled).
        #[arg(long, value_enum)]
        fix: Option<readiness::Fix>,
        /// Region (else AWS_REGION): the home Region of the account-wide checks.
        #[arg(long)]
        region: Option<String>,
    },
    /// Put a legal hold on a sealed case: an S3 Object Lock legal hold on
    /// every object its latest signed manifest lists, an EBS snapshot lock
    /// on every forensic copy; recorded in custody and sealed again.
    /// `--release` lifts it: only another person than the one who placed it.
    Hold {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// Why (a matter, counsel's request), for the record.
        #[arg(long)]
        reason: String,
        /// Release the hold instead of placing it.
        #[arg(long)]
        release: bool,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Clean up after a sealed case: its workstations, evidence volumes,
    /// sharing copies and workload snapshots (once copied), snapshot
    /// permissions, KMS grants, DNS Firewall groups, and forensic copies
    /// past their retention; nothing of the evidence under a hold. Recorded
    /// in custody and sealed again.
    Cleanup {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// List what would go and what stays, and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Show a case: its execution's steps, approval, snapshot and copy progress.
    Status {
        /// The case id.
        #[arg(long)]
        case_id: String,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Many instances at once. Without --execute: the plan (what each item
    /// would touch, what is left alone and why, what is refused), nothing
    /// changes. With --execute: starts it through the start function
    /// (START_URL, you as the requester AWS authenticated); it waits for
    /// another person's approval.
    Bulk(bulk::Asked),
    /// Show a bulk run: its state, plan, approval and item counts.
    BulkStatus {
        /// The bulk id.
        #[arg(long)]
        bulk_id: String,
        /// Region (else AWS_REGION).
        #[arg(long)]
        region: Option<String>,
    },
    /// Undo a containment after a false positive: from the Case that
    /// `contain` printed (--case), or, for a case the deployed stack
    /// contained, through the deployed stack (--case-id).
    Release {
        /// The Case JSON file `contain` printed: released with your own
        /// credentials, outside the deployed stack.
        #[arg(long, conflicts_with = "case_id", required_unless_present = "case_id")]
        case: Option<PathBuf>,
        /// A case the deployed stack contained: released through it (a
        /// release-cases run started through START_URL, you as the
        /// requester AWS authenticated; another person approves it).
        #[arg(long)]
        case_id: Option<String>,
        /// Why (with --case-id).
        #[arg(long, requires = "case_id")]
        reason: Option<String>,
        /// With --case-id: follow the run until it ends.
        #[arg(long, requires = "case_id")]
        wait: bool,
        /// Region (else the case's region).
        #[arg(long)]
        region: Option<String>,
        /// Show what would change, change nothing (with --case-id: the plan
        /// from the case's own record, nothing started).
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Triage {
            event,
            policy,
            region,
        } => triage(&event, policy.as_deref(), region),
        Command::Contain {
            instance,
            region,
            reason,
            dry_run,
            policy,
        } => contain(instance, region, reason, dry_run, policy.as_deref()).await,
        Command::Release {
            case,
            case_id,
            reason,
            wait,
            region,
            dry_run,
        } => match (case, case_id) {
            (Some(case), _) => release(&case, region, dry_run).await,
            (None, Some(case_id)) => match reason {
                Some(reason) => {
                    bulk::release_case(&case_id, &reason, dry_run, wait, region.or_else(env_region))
                        .await
                }
                None => Err(PlaybookError::InvalidRequest(
                    "--case-id needs --reason: why the containment is undone, for the record"
                        .into(),
                )),
            },
            (None, None) => Err(PlaybookError::InvalidRequest(
                "--case FILE or --case-id ID".into(),
            )),
        },
        Command::Investigate {
            instance,
            region,
            reason,
            until,
            out,
            policy,
            poll_seconds,
            max_checks,
        } => {
            let request = investigate::Request {
                instance,
                region,
                reason,
                until,
                policy,
                poll_seconds,
                max_checks,
            };
            return investigate::run(request, out.as_deref()).await;
        }
        Command::Verify {
            case_id,
            head_sha256,
            offline,
            public_key,
            region,
        } => return verify(case_id, head_sha256, offline, public_key, region).await,
        Command::Download {
            case_id,
            out,
            region,
        } => download(&case_id, &out, region).await,
        Command::Report {
            case_id,
            json,
            region,
        } => return report(&case_id, json, region).await,
        Command::Start {
            instance,
            reason,
            region,
        } => start(instance, reason, region).await,
        Command::Approve {
            case_id,
            reason,
            region,
        } => answer(&case_id, true, reason, region).await,
        Command::Deny {
            case_id,
            reason,
            region,
        } => answer(&case_id, false, Some(reason), region).await,
        Command::Status { case_id, region } => status(&case_id, region).await,
        Command::CheckAmis { region, policy } => check_amis(region, policy.as_deref()).await,
        Command::Cleanup {
            case_id,
            dry_run,
            region,
        } => {
            let asked =
                serde_json::json!({"action": "cleanup", "caseId": case_id, "dryRun": dry_run});
            recovery(asked, region).await
        }
        Command::Hold {
            case_id,
            reason,
            release,
            region,
        } => {
            let action = if release { "release" } else { "hold" };
            let asked = serde_json::json!({"action": action, "caseId": case_id, "reason": reason});
            recovery(asked, region).await
        }
        Command::Readiness {
            regions,
            json,
            fix,
            region,
        } => return readiness::run(region.or_else(env_region), &regions, json, fix).await,
        Command::Bulk(asked) => {
            let region = asked.region.clone().or_else(env_region);
            bulk::bulk(asked, region).await
        }
        Command::BulkStatus { bulk_id, region } => {
            bulk::status(&bulk_id, region.or_else(env_region)).await
        }
    };
    exit_code(outcome.map(|(output, success)| {
        println!(
            "{}",
            text::json_for_terminal(&serde_json::to_string_pretty(&output).unwrap_or_default())
        );
        success
    }))
}

/// 0 when everything asked was done, 1 when something is recorded as not
/// done, 2 (with the error on stderr) when the command failed.
pub(crate) fn exit_code(outcome: Result<bool, PlaybookError>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!(
                "ec2-forensics: {} ({})",
                text::plain(&err.to_string()),
                err.error_type()
            );
            ExitCode::from(2)
        }
    }
}

type Outcome = Result<(Value, bool), PlaybookError>;

fn read_json(path: &Path, what: &str) -> Result<Value, PlaybookError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PlaybookError::Configuration(format!("cannot read {what} {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        PlaybookError::InvalidFinding(format!("{what} {} is not JSON: {e}", path.display()))
    })
}

fn load_policy(path: Option<&Path>) -> Result<Policy, PlaybookError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                PlaybookError::Configuration(format!("cannot read policy {}: {e}", path.display()))
            })?;
            Policy::from_json(&text)
        }
        None => Ok(Policy::default()),
    }
}

fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn triage(event: &Path, policy: Option<&Path>, region: Option<String>) -> Outcome {
    let event = read_json(event, "event")?;
    let policy = load_policy(policy)?;
    let ctx = ParseContext {
        default_region: region.or_else(env_region),
        default_account: None,
    };
    let report = playbook::steps::triage::triage_offline(&event, &ctx, &policy)?;
    Ok((serde_json::to_value(report)?, true))
}

async fn contain(
    instance: String,
    region: Option<String>,
    reason: String,
    dry_run: bool,
    policy: Option<&Path>,
) -> Outcome {
    let policy = match policy {
        Some(_) => Some(load_policy(policy)?),
        None => None,
    };
    let case = contain_by_hand(ByHand {
        region,
        instance_id: instance,
        reason,
        dry_run,
        policy,
    })
    .await?;
    let success = if case.decision.dry_run {
        case.errors.is_empty()
    } else {
        case.is_contained()
    };
    if !success {
        eprintln!("ec2-forensics: the instance is not verified contained; see containment, errors and actions in the case");
    }
    Ok((serde_json::to_value(case)?, success))
}

async fn release(path: &Path, region: Option<String>, dry_run: bool) -> Outcome {
    let mut case = Case::from_input(read_json(path, "case")?)?;
    case.decision.dry_run = dry_run;
    let region = region.unwrap_or_else(|| case.incident.region.clone());
    let responder = Responder::load(Some(region)).await?;
    let actor = &responder.identity.actor;
    let case =
        playbook::steps::release::release_with_leases(&responder, &responder.clients, actor, case)
            .await?;
    let success = case.release.iter().all(|r| r.complete || dry_run);
    if !success {
        eprintln!("ec2-forensics: not everything was restored; see errors and actions in the case");
    }
    Ok((serde_json::to_value(case)?, success))
}

async fn verify(
    case_id: Option<String>,
    head_sha256: Option<String>,
    offline: Option<PathBuf>,
    public_key: Option<PathBuf>,
    region: Option<String>,
) -> ExitCode {
    let verdict = async {
        if let Some(dir) = offline {
            let pinned = playbook::steps::evidence::offline::Pinned {
                case_id: case_id.as_deref(),
                head_sha256: head_sha256.as_deref(),
            };
            return playbook::steps::evidence::offline::verify_offline(
                &dir,
                public_key.as_deref(),
                pinned,
            );
        }
        let case_id = case_id.unwrap_or_default();
        let responder = Responder::load(region.or_else(env_region)).await?;
        playbook::steps::evidence::verify::verify_case(&responder, &case_id).await
    }
    .await;
    exit_code(verdict.map(|verdict| {
        print!("{}", text::lines_for_terminal(&verdict.render()));
        verdict.holds()
    }))
}

/// A hold, its release or a clean-up: through the deployed stack's recovery
/// function when `RECOVERY_URL` is set (AWS authenticates you, and only the
/// stack may sign the case's manifest), else in this process with your own
/// credentials (the local stack, break-glass).
async fn recovery(asked: Value, region: Option<String>) -> Outcome {
    use playbook::steps::recovery::function::{run, Asked};
    let done = if std::env::var_os(function_url::Door::Recovery.variable()).is_some() {
        let region = region.or_else(env_region).ok_or_else(|| {
            PlaybookError::Configuration("no region (AWS_REGION or --region)".into())
        })?;
        function_url::send(function_url::Door::Recovery, &region, &asked).await?
    } else {
        let asked: Asked = serde_json::from_value(asked)?;
        let responder = Responder::load(region.or_else(env_region)).await?;
        run(&responder, &responder.identity.actor, asked).await?
    };
    let complete = done["complete"].as_bool().unwrap_or(false);
    Ok((done, complete))
}

async fn download(case_id: &str, out: &Path, region: Option<String>) -> Outcome {
    let responder = Responder::load(region.or_else(env_region)).await?;
    let downloaded =
        playbook::steps::evidence::offline::download_case(&responder, case_id, out).await?;
    let complete = downloaded.complete();
    if !complete {
        eprintln!(
            "ec2-forensics: the case is downloaded, but not everything holds; run `ec2-forensics verify --offline {}`",
            out.display()
        );
    }
    Ok((serde_json::to_value(downloaded)?, complete))
}

async fn report(case_id: &str, json: bool, region: Option<String>) -> ExitCode {
    let report = async {
        let responder = Responder::load(region.or_else(env_region)).await?;
        playbook::steps::report::read_report(&responder, case_id, json).await
    }
    .await;
    exit_code(report.map(|report| {
        eprintln!(
            "ec2-forensics: {} version {}, as listed by the latest signed manifest (version {}, sequence {})",
            report.key, report.version_id, report.manifest_version_id, report.sequence
        );
        if report.chain_problems > 0 {
            eprintln!(
                "ec2-forensics: warning: {} check(s) of the chain of manifests fail; run `ec2-forensics verify --case-id {case_id}`",
                report.chain_problems
            );
        }
        let shown = report.text;
        if json {
            print!("{}", text::json_for_terminal(&shown));
        } else {
            print!("{}", text::lines_for_terminal(&shown));
        }
        true
    }))
}

async fn start(instance: String, reason: String, region: Option<String>) -> Outcome {
    let responder = Responder::load(region.or_else(env_region)).await?;
    let request = serde_json::json!({
        "instanceId": instance,
        "reason": reason,
        "requestedBy": responder.identity.actor,
        "region": responder.region,
        // Each request is its own input: a second start of the same case is
        // then refused by Step Functions (ExecutionAlreadyExists) and reported
        // as a duplicate, where identical input would be answered with the
        // running execution as if it had started.
        "requestedAt": playbook::case::custody::now_utc(),
    });
    let report = playbook::steps::dispatch::dispatch(&responder, request).await?;
    Ok((serde_json::to_value(report)?, true))
}

async fn answer(
    case_id: &str,
    approve: bool,
    reason: Option<String>,
    region: Option<String>,
) -> Outcome {
    let region = region
        .or_else(env_region)
        .ok_or_else(|| PlaybookError::Configuration("no region (AWS_REGION or --region)".into()))?;
    let answer = serde_json::json!({"caseId": case_id, "approve": approve, "reason": reason});
    let answered = function_url::send(function_url::Door::Approval, &region, &answer).await?;
    Ok((answered, true))
}

async fn check_amis(region: Option<String>, policy: Option<&Path>) -> Outcome {
    let responder = Responder::load(region.or_else(env_region)).await?;
    let policy = match policy {
        Some(path) => load_policy(Some(path))?,
        None => responder.policy.clone(),
    };
    let report = playbook::steps::images::check_running_instances(
        &responder.clients,
        &responder.region,
        &policy.approved_images,
    )
    .await?;
    let clean = report.unapproved.is_empty();
    Ok((serde_json::to_value(report)?, clean))
}

async fn status(case_id: &str, region: Option<String>) -> Outcome {
    let responder = Responder::load(region.or_else(env_region)).await?;
    let status = playbook::steps::status::case_status(&responder, case_id).await?;
    Ok((serde_json::to_value(status)?, true))
}

/// docs/runbook.md says what people run: every `ec2-forensics` command in
/// its `sh` blocks is one this CLI parses, and every example policy is one
/// the responder loads (unknown settings are refused).
#[cfg(test)]
mod runbook {
    use super::*;

    const RUNBOOK: &str = include_str!("../../docs/runbook.md");

    /// The fenced blocks of `language`, each line of them.
    fn blocks(language: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Option<String> = None;
        for line in RUNBOOK.lines() {
            match (&mut current, line.trim_start().strip_prefix("```")) {
                (None, Some(fence)) if fence.trim() == language => current = Some(String::new()),
                (Some(block), Some(_)) => {
                    out.push(std::mem::take(block));
                    current = None;
                }
                (Some(block), None) => {
                    block.push_str(line);
                    block.push('\n');
                }
                (None, _) => {}
            }
        }
        out
    }

    /// A shell line's words: double-quoted words kept whole; a `#` comment dropped.
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let (mut quoted, mut started) = (false, false);
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    started = true;
                }
                '#' if !quoted && !started => break,
                c if c.is_whitespace() && !quoted => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                c => {
                    word.push(c);
                    started = true;
                }
            }
        }
        assert!(!quoted, "an unclosed quote: {line}");
        if started {
            words.push(word);
        }
        words
    }

    #[test]
    fn every_command_in_the_runbook_parses() {
        let commands: Vec<Vec<String>> = blocks("sh")
            .iter()
            .flat_map(|b| b.lines().map(words).collect::<Vec<_>>())
            .filter(|w| w.first().map(String::as_str) == Some("ec2-forensics"))
            .collect();
        assert!(commands.len() >= 20, "{} commands", commands.len());
        let mut subcommands = std::collections::BTreeSet::new();
        for command in &commands {
            if let Err(e) = Cli::try_parse_from(command) {
                panic!("{}: {e}", command.join(" "));
            }
            subcommands.insert(command[1].clone());
        }
        // From detection to recovery: each stage of the runbook has its command.
        for needed in [
            "start",
            "triage",
            "status",
            "approve",
            "deny",
            "contain",
            "report",
            "verify",
            "download",
            "release",
            "bulk",
            "bulk-status",
        ] {
            assert!(
                subcommands.contains(needed),
                "the runbook never runs {needed}"
            );
        }
        // The check can fail: a made-up option is refused.
        assert!(Cli::try_parse_from(["ec2-forensics", "status", "--case", "x"]).is_err());
    }

    #[test]
    fn every_example_policy_in_the_runbook_loads() {
        let policies = blocks("json");
        assert_eq!(policies.len(), 2, "a small team's and a regulated one");
        for text in &policies {
            let policy = Policy::from_json(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_ne!(policy, Policy::default(), "{text}");
        }
        assert!(Policy::from_json(r#"{"minSeverty": 5}"#).is_err());
    }
}
