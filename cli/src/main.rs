//! `ec2-forensics`: the responder's command-line tool.
//!
//! - `triage`: offline, no AWS call: what the responder would make of an event.
//! - `contain`: break-glass containment with the caller's own credentials, no
//!   deployed stack needed: protect-instance and isolate-network with their
//!   reads in one wave, ended by a read-back.
//! - `release`: restore an instance from the Case that `contain` printed.
//!
//! Results are JSON on stdout; errors are one line on stderr and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use playbook::findings::ParseContext;
use playbook::policy::Policy;
use playbook::steps::contain::{contain_by_hand, ByHand};
use playbook::{Case, PlaybookError, Responder};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "ec2-forensics",
    version,
    about = "Automated EC2 forensics: triage, contain, release"
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
    /// Restore an instance from the Case that `contain` printed.
    Release {
        /// The Case JSON file.
        #[arg(long)]
        case: PathBuf,
        /// Region (else the case's region).
        #[arg(long)]
        region: Option<String>,
        /// Show what would change, change nothing.
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
            region,
            dry_run,
        } => release(&case, region, dry_run).await,
    };
    match outcome {
        Ok((output, success)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_default()
            );
            if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("ec2-forensics: {} ({})", err, err.error_type());
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
    let case = playbook::steps::release::release_instances(&responder.clients, actor, case).await?;
    let success = case.release.iter().all(|r| r.complete || dry_run);
    if !success {
        eprintln!("ec2-forensics: not everything was restored; see errors and actions in the case");
    }
    Ok((serde_json::to_value(case)?, success))
}
