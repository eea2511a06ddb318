//! investigate: the whole playbook in-process, with the caller's credentials
//! and no deployed stack, in the state machine's order and with its checks:
//! triage; capture-metadata, protect-instance and snapshot-volumes side by
//! side; acquire-memory and its wait (before isolation, or inside
//! isolate-first's acquisition stage); isolate-network; the snapshot wait;
//! share-snapshots (repeated until ready); copy-snapshots; the copy wait;
//! launch-forensic-instance, attach-evidence (repeated until attached),
//! run-forensics and its wait; seal-evidence, which writes the report.
//!
//! As in the state machine, a failure after containment never undoes it: it is
//! recorded and the case is sealed with what was captured.

use std::str::FromStr;
use std::time::Duration;

use serde_json::json;

use crate::aws::clients::connect;
use crate::aws::{identify, Clients, PolicySource, Responder, Workload};
use crate::case::policy::AcquisitionOrder;
use crate::case::{Action, Case, IsolationStage, Policy, StepError};
use crate::error::{PlaybookError, Result};
use crate::steps::disk::{check, copy, share, snapshot};
use crate::steps::evidence::seal;
use crate::steps::{analysis, capture_metadata, isolate, memory, protect, triage, workstation};

/// Where an investigation may stop (`--until`). The evidence gathered so far
/// is always sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Triage, capture, protection, snapshots started, isolation.
    Contain,
    /// ... and every snapshot completed.
    Snapshots,
    /// ... and shared and copied under the forensic key.
    Copies,
    /// ... and analysed on a forensic workstation: the whole playbook.
    Analysis,
}

impl FromStr for Stage {
    type Err = PlaybookError;
    fn from_str(s: &str) -> Result<Stage> {
        match s {
            "contain" => Ok(Stage::Contain),
            "snapshots" => Ok(Stage::Snapshots),
            "copies" => Ok(Stage::Copies),
            "analysis" => Ok(Stage::Analysis),
            other => Err(PlaybookError::Configuration(format!(
                "--until {other}: one of contain, snapshots, copies, analysis"
            ))),
        }
    }
}

/// A responder's request to investigate one instance.
#[derive(Debug, Clone)]
pub struct Investigation {
    /// The region, when not the configured one.
    pub region: Option<String>,
    /// The instance.
    pub instance_id: String,
    /// Why.
    pub reason: String,
    /// The last stage to run.
    pub until: Stage,
    /// A policy document instead of the configured one.
    pub policy: Option<Policy>,
    /// The wait between two checks (the state machine's Wait states).
    pub poll_interval: Duration,
    /// The most checks of one wait (the state machine's bound).
    pub max_checks: u32,
}

/// Where progress is reported: one line per step, and each snapshot's progress.
pub trait Progress: Sync {
    /// A step ended.
    fn step(&self, step: &str, detail: &str);
    /// A snapshot or copy was checked.
    fn snapshot(&self, snapshot_id: &str, label: &str, percent: u64, state: &str);
}

/// Runs the investigation with clients built from the environment.
pub async fn investigate(request: Investigation, progress: &dyn Progress) -> Result<Case> {
    let (clients, region) = connect(request.region.clone()).await?;
    investigate_with(clients, region, request, progress).await
}

/// [`investigate`] with clients already built (tests).
pub async fn investigate_with(
    clients: Clients,
    region: String,
    request: Investigation,
    progress: &dyn Progress,
) -> Result<Case> {
    let policy = async {
        match request.policy.clone() {
            Some(policy) => Ok(policy),
            None => PolicySource::from_env().load(&clients.ssm).await,
        }
    };
    let (identity, policy) = tokio::join!(identify(&clients.sts), policy);
    let responder = Responder::assemble(clients, region, identity?, policy?)?;
    let event = json!({
        "instanceId": request.instance_id,
        "reason": request.reason,
        "requestedBy": responder.identity.actor,
    });
    let (case, workload) = triage::triage_in_workload(&responder, &event, None).await?;
    progress.step(
        triage::STEP,
        &format!("{:?}: {}", case.decision.action, case.decision.reason),
    );
    let Some(workload) =
        workload.filter(|_| matches!(case.decision.action, Action::Respond | Action::Approve))
    else {
        return Ok(case);
    };
    let run = Run {
        responder: &responder,
        workload: &workload,
        request: &request,
        progress,
    };
    let case = run.contain(case).await?;
    let case = run.disk_evidence(case).await;
    let case = run.analysis(case).await;
    Ok(run.seal(case).await)
}

struct Run<'a> {
    responder: &'a Responder,
    workload: &'a Workload,
    request: &'a Investigation,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    /// capture-metadata, protect-instance and snapshot-volumes side by side,
    /// then isolate-network (twice when isolate-first leaves an acquisition stage).
    async fn contain(&self, mut case: Case) -> Result<Case> {
        let (clients, actor) = (&self.workload.clients, self.workload.actor.as_str());
        let (custody, errors) = (case.custody.len(), case.errors.len());
        let (captured, protected, snapshotted) = tokio::join!(
            capture_metadata::capture_metadata(self.responder, case.clone()),
            protect::protect_instances(clients, actor, case.clone()),
            snapshot::snapshot_volumes(self.responder, self.workload, case.clone()),
        );
        let mut branches = Vec::new();
        for (step, result) in [
            (capture_metadata::STEP, captured),
            (protect::STEP, protected),
            (snapshot::STEP, snapshotted),
        ] {
            match result {
                Ok(done) => branches.push(done.branch_output(custody, errors)),
                Err(err) => case.errors.push(StepError::new(
                    step,
                    &err,
                    format!("{step} did not run to its end"),
                )),
            }
        }
        case.merge_branches(branches);
        self.progress.step(
            "capture, protect, snapshot",
            &format!(
                "{} metadata records, {} protected, {} snapshots started",
                case.metadata.len(),
                case.protection.iter().filter(|p| p.complete).count(),
                case.snapshots.len()
            ),
        );
        // The state machine's order (statemachine/forensics.asl.json).
        let memory_first = case.policy.acquisition_order == AcquisitionOrder::MemoryFirst;
        if memory_first {
            case = self.memory(case).await;
        }
        let mut case = isolate::isolate_instances(clients, actor, case).await?;
        if !memory_first {
            // In the acquisition stage, or left as it is by auto until the
            // deadline, or (no SSM endpoints) fully isolated: acquire-memory
            // records why it could not capture.
            case = self.memory(case).await;
        }
        if case
            .containment
            .as_ref()
            .is_none_or(|c| c.stage == IsolationStage::Acquisition)
        {
            case = isolate::isolate_instances(clients, actor, case).await?;
        }
        if case.acquisition_plan.is_some() {
            // Under auto's plan the finished images are read back only now
            // (the loop before isolation counted them as done).
            case = match self
                .attempt(memory::CHECK_STEP, case, |c| {
                    memory::check_memory(self.responder, self.workload, c)
                })
                .await
            {
                Ok(case) | Err(case) => case,
            };
            case = self.check_memory(case).await;
        }
        let summary = case.containment.clone();
        self.progress.step(
            isolate::STEP,
            &match summary {
                Some(c) if c.contained => format!(
                    "contained, verified at {}",
                    c.verified_at.unwrap_or_default()
                ),
                Some(c) => format!("NOT contained: {}", c.not_contained.join("; ")),
                None => "no containment summary".into(),
            },
        );
        Ok(case)
    }

    /// The snapshot wait, sharing, copies and their wait, as far as `--until` asks.
    async fn disk_evidence(&self, case: Case) -> Case {
        if self.request.until < Stage::Snapshots {
            return case;
        }
        let case = match self
            .wait(
                case,
                |c| c.disk_progress.snapshots.settled,
                |c| c.disk_progress.snapshots.checks,
            )
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        self.progress.step(
            "snapshots",
            &format!(
                "{} completed, {} failed",
                case.snapshots
                    .iter()
                    .filter(|v| v.snapshot.is_completed())
                    .count(),
                case.disk_progress.snapshots.failed
            ),
        );
        if self.request.until < Stage::Copies {
            return case;
        }
        let mut case = case;
        loop {
            case = match self
                .attempt(share::STEP, case, |c| {
                    share::share_snapshots(self.responder, self.workload, c)
                })
                .await
            {
                Ok(case) => case,
                Err(case) => return case,
            };
            let poll = &case.disk_progress.sharing;
            if poll.settled || poll.checks >= self.request.max_checks {
                break;
            }
            tokio::time::sleep(self.request.poll_interval).await;
        }
        self.progress.step(
            share::STEP,
            &format!(
                "{} ready for the forensic account",
                case.snapshots
                    .iter()
                    .filter(|v| v.sharing.as_ref().is_some_and(|s| s.ready))
                    .count()
            ),
        );
        let case = match self
            .attempt(copy::STEP, case, |c| {
                copy::copy_snapshots(self.responder, c)
            })
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        let case = match self
            .wait(
                case,
                |c| c.disk_progress.copies.settled,
                |c| c.disk_progress.copies.checks,
            )
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        self.progress.step(
            copy::STEP,
            &format!(
                "{} forensic copies completed",
                case.snapshots
                    .iter()
                    .filter(|v| v.copy.as_ref().is_some_and(|c| c.is_completed()))
                    .count()
            ),
        );
        case
    }

    /// acquire-memory, then check-command until every capture ended (or the
    /// bound). A failure is recorded; containment goes on.
    async fn memory(&self, case: Case) -> Case {
        let case = match self
            .attempt(memory::ACQUIRE_STEP, case, |c| {
                memory::acquire_memory(self.responder, self.workload, c)
            })
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        let case = self.check_memory(case).await;
        self.progress.step(
            memory::ACQUIRE_STEP,
            &case
                .memory
                .iter()
                .map(|m| format!("{}: {:?}", m.instance_id, m.status))
                .collect::<Vec<_>>()
                .join(", "),
        );
        case
    }

    /// check-command on the captures until they settle.
    async fn check_memory(&self, case: Case) -> Case {
        self.repeat(
            memory::CHECK_STEP,
            case,
            |c| memory::check_memory(self.responder, self.workload, c),
            |c| c.memory_progress.settled,
            |c| c.memory_progress.checks,
        )
        .await
    }

    /// The forensic workstation, its evidence volumes and the analysis, when
    /// `--until analysis`.
    async fn analysis(&self, case: Case) -> Case {
        if self.request.until < Stage::Analysis {
            return case;
        }
        let case = match self
            .attempt(workstation::LAUNCH_STEP, case, |c| {
                workstation::launch_forensic_instance(self.responder, c)
            })
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        let case = self
            .repeat(
                workstation::ATTACH_STEP,
                case,
                |c| workstation::attach_evidence(self.responder, c),
                |c| c.workstation_progress.settled,
                |c| c.workstation_progress.checks,
            )
            .await;
        let case = match self
            .attempt(analysis::STEP, case, |c| {
                analysis::run_forensics(self.responder, c)
            })
            .await
        {
            Ok(case) => case,
            Err(case) => return case,
        };
        let case = self
            .repeat(
                analysis::CHECK_STEP,
                case,
                |c| analysis::check_analysis(self.responder, c),
                |c| c.analysis_progress.settled,
                |c| c.analysis_progress.checks,
            )
            .await;
        self.progress.step(
            analysis::STEP,
            &format!(
                "{} volumes analysed, {} indicators",
                case.analysis
                    .iter()
                    .filter(|a| a.status == "analysed")
                    .count(),
                case.analysis
                    .iter()
                    .map(|a| a.indicators.len())
                    .sum::<usize>()
            ),
        );
        case
    }

    /// Runs a check step until `settled` (or the bound), waiting between runs
    /// as the state machine's Wait state does.
    async fn repeat<F, Fut>(
        &self,
        step: &str,
        mut case: Case,
        run: F,
        settled: impl Fn(&Case) -> bool,
        checks: impl Fn(&Case) -> u32,
    ) -> Case
    where
        F: Fn(Case) -> Fut,
        Fut: std::future::Future<Output = Result<Case>>,
    {
        let start = checks(&case);
        while !settled(&case) && checks(&case) - start < self.request.max_checks {
            tokio::time::sleep(self.request.poll_interval).await;
            case = match self.attempt(step, case, &run).await {
                Ok(case) => case,
                Err(case) => return case,
            };
        }
        case
    }

    /// check-snapshots until `settled` or the bound, reporting every snapshot.
    async fn wait(
        &self,
        mut case: Case,
        settled: impl Fn(&Case) -> bool,
        checks: impl Fn(&Case) -> u32,
    ) -> std::result::Result<Case, Case> {
        let start = checks(&case);
        loop {
            case = self
                .attempt(check::STEP, case, |c| {
                    check::check_snapshots(&self.responder.clients, self.workload, c)
                })
                .await?;
            for volume in &case.snapshots {
                let label = format!(
                    "{} {}",
                    volume.volume_id,
                    volume.device.as_deref().unwrap_or("")
                );
                let mut shown = vec![("snapshot", &volume.snapshot)];
                if let Some(copy) = &volume.copy {
                    shown.push(("copy", copy));
                }
                for (what, p) in shown {
                    self.progress.snapshot(
                        &p.snapshot_id,
                        &format!("{what} of {label}"),
                        crate::steps::disk::percent(p),
                        &p.state,
                    );
                }
            }
            if settled(&case) || checks(&case) - start >= self.request.max_checks {
                return Ok(case);
            }
            tokio::time::sleep(self.request.poll_interval).await;
        }
    }

    /// Runs one evidence step; its error is recorded and ends the evidence chain.
    async fn attempt<F, Fut>(
        &self,
        step: &str,
        case: Case,
        run: F,
    ) -> std::result::Result<Case, Case>
    where
        F: FnOnce(Case) -> Fut,
        Fut: std::future::Future<Output = Result<Case>>,
    {
        let before = case.clone();
        match run(case).await {
            Ok(case) => Ok(case),
            Err(err) => {
                let mut case = before;
                case.errors.push(StepError::new(
                    step,
                    &err,
                    format!("{step} did not complete: the case is sealed with what was captured"),
                ));
                self.progress.step(step, &format!("failed: {err}"));
                Err(case)
            }
        }
    }

    /// seal-evidence; its failure is recorded.
    async fn seal(&self, case: Case) -> Case {
        let case = match self
            .attempt(seal::STEP, case, |c| seal::seal_evidence(self.responder, c))
            .await
        {
            Ok(case) | Err(case) => case,
        };
        let manifest = case.artifacts.iter().find(|a| a.kind == "manifest");
        self.progress.step(
            seal::STEP,
            &match manifest {
                Some(m) => format!("manifest {} version {}", m.key, m.version_id),
                None => "no manifest written".into(),
            },
        );
        case
    }
}

/// What was asked and is not done, for the exit code: empty when everything
/// up to `until` was done and the case is sealed.
pub fn not_done(case: &Case, until: Stage) -> Vec<String> {
    let mut missing = Vec::new();
    if !matches!(case.decision.action, Action::Respond | Action::Approve) {
        missing.push(format!(
            "the policy decided {:?}: {}",
            case.decision.action, case.decision.reason
        ));
        return missing;
    }
    if !case.is_contained() && !case.decision.dry_run {
        missing.push("the instance is not verified contained".into());
    }
    for error in &case.errors {
        missing.push(format!(
            "{}: {} ({})",
            error.step, error.message, error.error_type
        ));
    }
    if until >= Stage::Snapshots {
        for v in case.snapshots.iter().filter(|v| !v.snapshot.is_completed()) {
            missing.push(format!(
                "snapshot {} of {} is {}",
                v.snapshot.snapshot_id, v.volume_id, v.snapshot.state
            ));
        }
        if case.snapshots.is_empty() {
            missing.push("no snapshot was taken".into());
        }
    }
    if until >= Stage::Copies {
        for v in &case.snapshots {
            match &v.copy {
                Some(c) if c.is_completed() => {}
                Some(c) => missing.push(format!(
                    "forensic copy {} of {} is {}",
                    c.snapshot_id, v.volume_id, c.state
                )),
                None => missing.push(format!("{} has no forensic copy", v.volume_id)),
            }
        }
    }
    if until >= Stage::Analysis {
        for a in case.analysis.iter().filter(|a| a.status != "analysed") {
            missing.push(format!(
                "the copy of {} was not analysed: {}",
                a.source_volume_id,
                a.reason.as_deref().unwrap_or("?")
            ));
        }
        let copies = case
            .snapshots
            .iter()
            .filter(|v| v.copy.as_ref().is_some_and(|c| c.is_completed()))
            .count();
        if copies > 0 && case.analysis.is_empty() {
            missing.push("no evidence volume was analysed".into());
        }
    }
    if !case.artifacts.iter().any(|a| a.kind == "signature") {
        missing.push("the manifest is not signed".into());
    }
    missing
}
