//! `ec2-forensics bulk` and `bulk-status`: many instances at once.
//!
//! `bulk` resolves the selectors and shows the plan; nothing changes (a dry
//! run, with the caller's own read access). With `--execute` it sends the
//! request to the start function's URL (`START_URL`, signed with the
//! caller's credentials): AWS authenticates the caller as the requester, and
//! the function starts the deployed bulk state machine, named by the
//! request's bulk id; the state machine plans again with its own role, then
//! waits for another person (`ec2-forensics approve --case-id <bulk id>`).
//! `--wait` follows it with a progress bar per phase.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use playbook::case::bulk::{BulkAction, BulkPlan, BulkRequest, Selection};
use playbook::case::custody::now_utc;
use playbook::steps::bulk::run::plan_request;
use playbook::steps::bulk::start::Started;
use playbook::steps::bulk::status::{bulk_status, BulkStatus};
use playbook::{PlaybookError, Responder};
use serde_json::{json, Value};

use crate::function_url;

/// What the command line asked for (`ec2-forensics bulk`).
#[derive(Debug, clap::Args)]
pub struct Asked {
    /// contain, quarantine-subnets, terminate, release-subnets or release-cases.
    #[arg(long)]
    pub action: String,
    /// release-cases: a case the deployed stack contained (repeatable).
    #[arg(long = "case-id", value_name = "CASE_ID")]
    pub case_ids: Vec<String>,
    /// An instance id (repeatable).
    #[arg(long = "instance", value_name = "ID")]
    pub instances: Vec<String>,
    /// Instances with this tag, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// An Auto Scaling group's instances (repeatable).
    #[arg(long = "asg", value_name = "NAME")]
    pub asgs: Vec<String>,
    /// A subnet's instances (repeatable).
    #[arg(long = "subnet", value_name = "ID")]
    pub subnets: Vec<String>,
    /// A VPC's instances (repeatable).
    #[arg(long = "vpc", value_name = "ID")]
    pub vpcs: Vec<String>,
    /// The instances of finding events: a file with one event, a JSON array, or JSON lines.
    #[arg(long, value_name = "FILE")]
    pub findings: Option<PathBuf>,
    /// quarantine-subnets: also cut subnets that hold other network
    /// interfaces (instances outside the selection, NAT gateways,
    /// load balancer nodes, endpoints).
    #[arg(long)]
    pub whole_subnet: bool,
    /// release-subnets: the quarantine-subnets run to undo.
    #[arg(long, value_name = "BULK_ID")]
    pub release_of: Option<String>,
    /// terminate: ask the approver to accept terminating instances
    /// without a completed snapshot of every volume (said in the plan
    /// and the approval request).
    #[arg(long)]
    pub without_snapshots: bool,
    /// Why, for the record.
    #[arg(long)]
    pub reason: String,
    /// Region (else AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// The workload account (else the responder's own).
    #[arg(long)]
    pub account: Option<String>,
    /// Start the run through START_URL (another person then approves it);
    /// without it, only the plan.
    #[arg(long)]
    pub execute: bool,
    /// With --execute: follow the run until it ends, a progress bar per phase.
    #[arg(long, requires = "execute")]
    pub wait: bool,
}

fn action_of(name: &str) -> Result<BulkAction, PlaybookError> {
    serde_json::from_value(json!(name)).map_err(|_| {
        PlaybookError::InvalidRequest(format!(
            "{name:?} is not an action: contain, quarantine-subnets, terminate, release-subnets or release-cases"
        ))
    })
}

/// The finding events of a file: one event, a JSON array of them, or JSON lines.
fn findings_of(path: &PathBuf) -> Result<Vec<Value>, PlaybookError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PlaybookError::Configuration(format!("cannot read findings {}: {e}", path.display()))
    })?;
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return Ok(match value {
            Value::Array(events) => events,
            event => vec![event],
        });
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| {
                PlaybookError::InvalidFinding(format!(
                    "{} is neither JSON nor JSON lines: {e}",
                    path.display()
                ))
            })
        })
        .collect()
}

/// The request, as the state machine will get it.
pub fn request_of(
    asked: &Asked,
    region: String,
    requested_by: &str,
) -> Result<BulkRequest, PlaybookError> {
    let action = action_of(&asked.action)?;
    if asked.without_snapshots && action != BulkAction::Terminate {
        return Err(PlaybookError::InvalidRequest(
            "--without-snapshots is for --action terminate only".into(),
        ));
    }
    if (action == BulkAction::ReleaseSubnets) != asked.release_of.is_some() {
        return Err(PlaybookError::InvalidRequest(
            "--release-of names the quarantine-subnets run to undo, with --action release-subnets only".into(),
        ));
    }
    let findings = match &asked.findings {
        Some(path) => findings_of(path)?,
        None => Vec::new(),
    };
    Ok(BulkRequest {
        action,
        selection: Selection {
            instance_ids: asked.instances.clone(),
            tags: asked.tags.clone(),
            auto_scaling_groups: asked.asgs.clone(),
            subnets: asked.subnets.clone(),
            vpcs: asked.vpcs.clone(),
            findings,
            case_ids: asked.case_ids.clone(),
        },
        reason: asked.reason.clone(),
        region,
        account: asked.account.clone(),
        whole_subnet: asked.whole_subnet,
        requested_by: Some(requested_by.to_owned()),
        requested_at: now_utc(),
        release_of: asked.release_of.clone(),
        without_snapshots: asked.without_snapshots,
    })
}

/// The plan in a few lines, for a person (stderr).
fn summary(plan: &BulkPlan) -> String {
    let mut lines = vec![format!(
        "bulk {} ({}): {} item(s), {} instance(s), at most {} at once",
        plan.bulk_id,
        plan.request.action.as_str(),
        plan.item_count(),
        plan.instances.len(),
        plan.max_concurrency
    )];
    for subnet in &plan.subnets {
        lines.push(format!(
            "  cut {} ({}): {} selected, {} other interface(s)",
            subnet.subnet_id,
            subnet.vpc_id,
            subnet.selected.len(),
            subnet.bystanders.len()
        ));
    }
    for case in &plan.cases {
        lines.push(format!(
            "  release {} ({}): puts back {} setting(s), keeps {}",
            case.case_id,
            case.instances.join(", "),
            case.restores.len(),
            case.keeps.len()
        ));
        for restore in &case.restores {
            lines.push(format!("    restore {restore}"));
        }
        for keep in &case.keeps {
            lines.push(format!("    keep {keep}"));
        }
    }
    for skipped in &plan.skipped {
        lines.push(format!("  left alone: {}: {}", skipped.target, skipped.why));
    }
    for limit in &plan.limits {
        lines.push(format!("  note: {limit}"));
    }
    for refusal in &plan.refusals {
        lines.push(format!("  REFUSED: {refusal}"));
    }
    lines.push(if plan.ready() {
        "ready: run again with --execute to start it (another person then approves it)".into()
    } else {
        "not ready: nothing would start".into()
    });
    lines.join("\n")
}

/// `bulk`: the plan (dry run), or the started run.
pub async fn bulk(asked: Asked, region: Option<String>) -> Result<(Value, bool), PlaybookError> {
    let responder = Responder::load(region).await?;
    let request = request_of(&asked, responder.region.clone(), &responder.identity.actor)?;
    plan_and_start(&responder, request, asked.execute, asked.wait).await
}

/// `release --case-id`: a case the deployed stack contained, released
/// through it (a `release-cases` run another person approves); with
/// `dry_run`, only the plan: what would be restored and what kept.
pub async fn release_case(
    case_id: &str,
    reason: &str,
    dry_run: bool,
    wait: bool,
    region: Option<String>,
) -> Result<(Value, bool), PlaybookError> {
    let responder = Responder::load(region).await?;
    let request = BulkRequest {
        action: BulkAction::ReleaseCases,
        selection: Selection {
            case_ids: vec![case_id.to_owned()],
            ..Selection::default()
        },
        reason: reason.to_owned(),
        region: responder.region.clone(),
        account: None,
        whole_subnet: false,
        requested_by: Some(responder.identity.actor.clone()),
        requested_at: now_utc(),
        release_of: None,
        without_snapshots: false,
    };
    plan_and_start(&responder, request, !dry_run, wait).await
}

/// The plan, read with the caller's own access and shown; then, with
/// `execute` and a ready plan, the run started through the start function.
async fn plan_and_start(
    responder: &Responder,
    request: BulkRequest,
    execute: bool,
    wait: bool,
) -> Result<(Value, bool), PlaybookError> {
    let (plan, _account) = plan_request(responder, request.clone()).await?;
    eprintln!(
        "{}",
        playbook::case::text::lines_for_terminal(&summary(&plan))
    );
    if !execute || !plan.ready() {
        let ready = plan.ready();
        return Ok((json!(plan), ready));
    }
    // Started through the start function: AWS authenticates you there, and
    // that identity (not the one this plan was read with) is the requester.
    let started: Started = serde_json::from_value(
        function_url::send(
            function_url::Door::Start,
            &responder.region,
            &json!({ "bulk": request }),
        )
        .await?,
    )
    .map_err(|e| PlaybookError::InvalidRequest(format!("the start function's answer: {e}")))?;
    eprintln!(
        "started {} as {}; another person approves it with: ec2-forensics approve --case-id {}",
        started.execution_arn, started.requested_by, started.run_id
    );
    if !wait {
        return Ok((
            json!({
                "bulkId": started.run_id,
                "executionArn": started.execution_arn,
                "requestedBy": started.requested_by,
                "requestedAt": started.requested_at,
            }),
            true,
        ));
    }
    let status = follow(responder, &started.run_id).await?;
    let succeeded = status.status == "SUCCEEDED";
    Ok((json!(status), succeeded))
}

/// `bulk-status`: where a run stands.
pub async fn status(bulk_id: &str, region: Option<String>) -> Result<(Value, bool), PlaybookError> {
    let responder = Responder::load(region).await?;
    let status = bulk_status(&responder, bulk_id).await?;
    let ok =
        status.status != "FAILED" && status.status != "ABORTED" && status.status != "TIMED_OUT";
    Ok((json!(status), ok))
}

/// The phases a run goes through, by the states that make them.
fn phase_of(state: &str) -> &'static str {
    match state {
        "Plan" | "Ready" => "plan",
        "RequestApproval" | "AwaitApproval" | "RecordApproval" | "Approved" => "approval",
        "PrepareVpcs" | "PrepareVpc" => "prepare",
        "Summarise" | "AllDone" | "Done" | "Incomplete" => "summary",
        _ => "items",
    }
}

/// Follows a run until it ends: one progress bar per phase on a terminal,
/// a line per change otherwise.
async fn follow(responder: &Responder, bulk_id: &str) -> Result<BulkStatus, PlaybookError> {
    let terminal = std::io::stderr().is_terminal();
    let all = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = |name: &str, len: u64| {
        let bar = all.add(ProgressBar::new(len).with_style(style.clone()));
        bar.set_prefix(name.to_owned());
        if !terminal {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar
    };
    let phases = ["plan", "approval", "prepare", "items", "summary"];
    let bars: Vec<ProgressBar> = phases.iter().map(|p| bar(p, 1)).collect();
    let mut last_line = String::new();
    loop {
        let status = bulk_status(responder, bulk_id).await?;
        let phase = status.state.as_deref().map(phase_of).unwrap_or("plan");
        let reached = phases.iter().position(|p| *p == phase).unwrap_or(0);
        for (i, bar) in bars.iter().enumerate() {
            if i < reached {
                bar.set_position(bar.length().unwrap_or(1));
            }
        }
        if status.awaiting_approval {
            bars[1].set_message(format!(
                "waiting: ec2-forensics approve --case-id {bulk_id}"
            ));
        }
        let counts = status.map_runs.last();
        if let Some(counts) = counts {
            bars[3].set_length(counts.total.max(1) as u64);
            bars[3].set_position(counts.ended().max(0) as u64);
            bars[3].set_message(format!(
                "{} failed",
                counts.failed + counts.timed_out + counts.aborted
            ));
        }
        let line = format!(
            "[{phase}] {} {}",
            status.status,
            counts.map_or(String::new(), |c| format!(
                "{}/{} items ended, {} failed",
                c.ended(),
                c.total,
                c.failed
            ))
        );
        if !terminal && line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if status.status != "RUNNING" {
            for bar in &bars {
                bar.finish();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
