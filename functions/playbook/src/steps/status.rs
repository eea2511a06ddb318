//! `ec2-forensics status`: where a case is, from the two records that hold it:
//! the execution's history (which states ran) and the latest stored Case
//! (approval, containment, snapshot and copy progress).

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::types::HistoryEvent;
use serde::Serialize;

use crate::aws::Responder;
use crate::case::{Approval, Case, Decision, DiskProgress};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::dispatch::{execution_arn, execution_name, MAX_ATTEMPTS};
use crate::steps::evidence::store::EvidenceStore;

/// Where a case stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseStatus {
    /// The case.
    pub case_id: String,
    /// Its latest execution, when the state machine has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionSummary>,
    /// The states the execution ran, in order.
    pub steps: Vec<StepRun>,
    /// What triage decided, with the finding's classification: from the
    /// execution's own history (its Triage state's output), else the stored Case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The approval gate, when the case has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The execution waits for a person's answer now (its AwaitApproval
    /// state is running).
    pub awaiting_approval: bool,
    /// Whether the case is contained, once isolation ran (false once the
    /// deployed stack released it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contained: Option<bool>,
    /// The release, when the deployed stack released the case after a
    /// false positive (`release --case-id`): from the responder's own table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<crate::steps::bulk::release_cases::Released>,
    /// Per instance: the isolation stage and the time from detection to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<IsolationTiming>,
    /// What `acquisitionOrder: auto` planned, when it put memory first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquisition_plan: Option<crate::case::isolation::AcquisitionPlan>,
    /// Snapshot and copy progress per volume.
    pub volumes: Vec<VolumeStatus>,
    /// The disk waits' counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_progress: Option<DiskProgress>,
    /// What Security Hub was told about the case's finding, moment by moment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_hub: Vec<SecurityHubStatus>,
    /// Errors recorded in the Case.
    pub errors: Vec<String>,
    /// Where the Case shown came from.
    pub case_from: String,
}

/// How fast one instance was isolated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationTiming {
    /// The instance.
    pub instance_id: String,
    /// `acquisition` or `full`.
    pub stage: crate::case::IsolationStage,
    /// When the activity was detected (the finding's time, else the case's opening).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
    /// When isolation was read back complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Seconds from detection to the first complete isolation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_to_isolation: Option<i64>,
    /// Seconds from the case's opening to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_from_case_opened: Option<i64>,
}

/// One execution of the case.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    /// Its ARN.
    pub arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// Which attempt at the case it is.
    pub attempt: u32,
}

/// One state of the execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRun {
    /// The state's name.
    pub name: String,
    /// `running` until it exits, then `done`; `failed` when the execution failed in it.
    pub status: String,
}

/// One update of the case's finding in Security Hub, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityHubStatus {
    /// The moment of the case.
    pub moment: crate::case::FindingMoment,
    /// When.
    pub at: String,
    /// Security Hub accepted it for the finding (it may take minutes to show).
    pub accepted: bool,
    /// The moment's update sent again before the seal, for the findings
    /// Security Hub had not accepted it for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
    /// Why not, when it did not (or `dry run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// One volume's disk evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The volume.
    pub volume_id: String,
    /// Its snapshot.
    pub snapshot_id: String,
    /// The snapshot's state and progress, e.g. `pending 42%`.
    pub snapshot: String,
    /// The forensic copy and its state, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
}

/// Reads the case's latest execution; the Case is the one its history holds
/// (the newest state output), never one read back from the bucket while an
/// execution exists. Without an execution (a case `investigate` ran), the
/// newest stored `case.json` is shown, and `caseFrom` says it is unsigned.
pub async fn case_status(responder: &Responder, case_id: &str) -> Result<CaseStatus> {
    let execution = match responder.state_machine_arn.as_deref() {
        Some(state_machine) => latest_execution(responder, state_machine, case_id).await?,
        None => None,
    };
    let events = match &execution {
        Some(execution) => history(responder, &execution.arn).await?,
        None => Vec::new(),
    };
    let steps = steps_of(&events);
    let (case, from) = match execution_case(&events, case_id) {
        Some(case) => (Some(case), "the execution's history"),
        None if execution.is_some() => (None, "the execution's history (no Case yet)"),
        None => match EvidenceStore::of(responder) {
            Some(store) => (
                store.latest_case(case_id).await?,
                "the newest case.json in the evidence bucket: not signed, `verify` checks it",
            ),
            None => (None, "nowhere"),
        },
    };
    if execution.is_none() && case.is_none() {
        return Err(PlaybookError::InvalidCase(format!(
            "no execution and no stored Case for case {case_id} (STATE_MACHINE_ARN and EVIDENCE_BUCKET are where it is looked for)"
        )));
    }
    let mut status = status_of(case_id, execution, steps, case.as_ref());
    status.case_from = from.to_owned();
    let latest = status.execution.as_ref().map(|e| e.arn.clone());
    if let Some(latest) = latest {
        let released =
            crate::steps::bulk::release_cases::released_of(responder, case_id, &latest).await?;
        if let Some(released) = released {
            status.contained = Some(false);
            status.released = Some(released);
        }
    }
    if let Some(decision) = triage_decision(&events) {
        status.decision = Some(decision);
    }
    Ok(status)
}

/// The newest Case an execution's states handed on: what the execution
/// itself holds of the case (the output of the last state that exited),
/// once its Triage state succeeded. Before that, and in an execution whose
/// Triage failed, a state's output is the execution's input as whoever
/// started it wrote it (a Catch keeps the input): never a Case of ours.
pub fn execution_case(events: &[HistoryEvent], case_id: &str) -> Option<Case> {
    fn parsed(event: &HistoryEvent) -> Option<(&str, serde_json::Value)> {
        let exited = event.state_exited_event_details()?;
        let value = serde_json::from_str::<serde_json::Value>(exited.output()?).ok()?;
        Some((exited.name(), value))
    }
    let triaged = events.iter().position(|event| {
        parsed(event).is_some_and(|(name, value)| {
            name == "Triage" && value.get("caught").is_none() && value["caseId"] == case_id
        })
    })?;
    events[triaged..]
        .iter()
        .rev()
        .filter_map(parsed)
        .map(|(_, value)| value)
        .filter(|value| value["caseId"] == case_id)
        .find_map(|value| Case::from_input(value).ok())
}

/// The decision the execution's Triage state handed on, from its history.
pub fn triage_decision(events: &[HistoryEvent]) -> Option<Decision> {
    events
        .iter()
        .rev()
        .filter_map(HistoryEvent::state_exited_event_details)
        .filter(|exited| exited.name() == "Triage")
        .filter_map(|exited| exited.output())
        .filter_map(|output| serde_json::from_str::<serde_json::Value>(output).ok())
        .find_map(|case| serde_json::from_value(case.get("decision")?.clone()).ok())
}

/// The status from what was read: pure.
pub fn status_of(
    case_id: &str,
    execution: Option<ExecutionSummary>,
    steps: Vec<StepRun>,
    case: Option<&Case>,
) -> CaseStatus {
    let volumes = case
        .map(|c| {
            c.snapshots
                .iter()
                .map(|v| VolumeStatus {
                    volume_id: v.volume_id.clone(),
                    snapshot_id: v.snapshot.snapshot_id.clone(),
                    snapshot: progress_text(&v.snapshot.state, v.snapshot.progress.as_deref()),
                    copy: v.copy.as_ref().map(|copy| {
                        format!(
                            "{} {}",
                            copy.snapshot_id,
                            progress_text(&copy.state, copy.progress.as_deref())
                        )
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let awaiting_approval = steps
        .iter()
        .any(|s| s.name == crate::steps::approval::AWAIT_STATE && s.status == "running");
    CaseStatus {
        case_id: case_id.to_owned(),
        execution,
        steps,
        decision: case.map(|c| c.decision.clone()),
        awaiting_approval,
        approval: case.and_then(|c| c.approval.clone()),
        contained: case
            .and_then(|c| c.containment.as_ref())
            .map(|c| c.contained),
        released: None,
        isolation: case
            .map(|c| {
                c.isolation
                    .iter()
                    .map(|i| IsolationTiming {
                        instance_id: i.instance_id.clone(),
                        stage: i.stage,
                        detected_at: i.detected_at.clone(),
                        verified_at: i.verified_at.clone(),
                        seconds_to_isolation: i.seconds_to_isolation,
                        seconds_from_case_opened: i.seconds_from_case_opened,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        acquisition_plan: case.and_then(|c| c.acquisition_plan.clone()),
        volumes,
        disk_progress: case
            .filter(|c| !c.snapshots.is_empty())
            .map(|c| c.disk_progress.clone()),
        case_from: String::new(),
        security_hub: case
            .map(|c| c.finding_updates.iter().map(security_hub_status).collect())
            .unwrap_or_default(),
        errors: case
            .map(|c| {
                c.errors
                    .iter()
                    .map(|e| format!("{}: {} {}", e.step, e.error_type, e.message))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn security_hub_status(update: &crate::case::FindingUpdate) -> SecurityHubStatus {
    let why_not = if update.accepted() {
        None
    } else if update.dry_run {
        Some("dry run".to_owned())
    } else if let Some(error) = &update.error {
        Some(error.clone())
    } else {
        Some(
            update
                .not_updated
                .iter()
                .map(|n| format!("{}: {}", n.error_code, n.error_message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    SecurityHubStatus {
        moment: update.moment,
        at: update.at.clone(),
        accepted: update.accepted(),
        again: update.again,
        why_not,
    }
}

fn progress_text(state: &str, progress: Option<&str>) -> String {
    match progress {
        Some(p) if !p.is_empty() => format!("{state} {p}"),
        _ => state.to_owned(),
    }
}

/// The states of an execution's history, in order.
pub fn steps_of(events: &[HistoryEvent]) -> Vec<StepRun> {
    let mut steps: Vec<StepRun> = Vec::new();
    for event in events {
        if let Some(entered) = event.state_entered_event_details() {
            steps.push(StepRun {
                name: entered.name().to_owned(),
                status: "running".into(),
            });
        } else if let Some(exited) = event.state_exited_event_details() {
            if let Some(step) = steps
                .iter_mut()
                .rev()
                .find(|s| s.name == exited.name() && s.status == "running")
            {
                step.status = "done".into();
            }
        } else if event.execution_failed_event_details().is_some() {
            if let Some(step) = steps.iter_mut().rev().find(|s| s.status == "running") {
                step.status = "failed".into();
            }
        }
    }
    steps
}

/// The case's latest execution (attempts are `<case id>-N`).
pub(crate) async fn latest_execution(
    responder: &Responder,
    state_machine: &str,
    case_id: &str,
) -> Result<Option<ExecutionSummary>> {
    let mut latest = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let arn = execution_arn(state_machine, &execution_name(case_id, attempt));
        let described = responder
            .clients
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await;
        match described {
            Ok(out) => {
                latest = Some(ExecutionSummary {
                    arn,
                    status: out.status().as_str().to_owned(),
                    attempt,
                })
            }
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DescribeExecutionError::ExecutionDoesNotExist(_))
                ) =>
            {
                break
            }
            Err(err) => return Err(PlaybookError::from_sdk("DescribeExecution", None, &err)),
        }
    }
    Ok(latest)
}

/// Every event of an execution's history, in order.
pub(crate) async fn history(
    responder: &Responder,
    execution_arn: &str,
) -> Result<Vec<HistoryEvent>> {
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let page = responder
            .clients
            .sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .aws("GetExecutionHistory", None)?;
        events.extend(page.events().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::history_events::{entered, exited, failed};

    #[test]
    fn steps_follow_the_history_and_a_failure_marks_the_running_one() {
        let events = vec![
            entered(1, "Triage"),
            exited(2, "Triage", None),
            entered(3, "RequestApproval"),
            failed(4),
        ];
        let steps = steps_of(&events);
        assert_eq!(
            steps,
            vec![
                StepRun {
                    name: "Triage".into(),
                    status: "done".into()
                },
                StepRun {
                    name: "RequestApproval".into(),
                    status: "failed".into()
                },
            ]
        );
    }

    #[test]
    fn the_decision_comes_from_the_triage_state_of_the_execution() {
        let mut case = crate::case::example_case();
        case.decision = crate::policy::decide(&case.incident, &crate::case::Policy::default());
        let output = serde_json::to_string(&case).unwrap();
        let events = vec![
            exited(1, "Triage", Some(&output)),
            exited(
                2,
                "Decide",
                Some("{\"decision\": {\"action\": \"ignore\", \"reason\": \"forged\"}}"),
            ),
        ];
        let decision = triage_decision(&events).expect("triage's decision");
        assert_eq!(decision, case.decision);
        assert!(decision.classification.is_some());
        assert_eq!(triage_decision(&events[1..]), None);
    }

    #[test]
    fn the_case_shown_is_the_newest_one_the_execution_handed_on() {
        let mut triaged = crate::case::example_case();
        triaged.case_id = "gd-abc".into();
        let mut isolated = triaged.clone();
        isolated.summarise_containment();
        let mut other = triaged.clone();
        other.case_id = "gd-other".into();
        let exit = |id: i64, name: &str, case: &Case| {
            exited(id, name, Some(&serde_json::to_string(case).unwrap()))
        };
        let events = vec![
            exit(1, "Triage", &triaged),
            exit(2, "IsolateNetwork", &isolated),
            exit(3, "Elsewhere", &other),
        ];
        let shown = execution_case(&events, "gd-abc").expect("a Case");
        assert!(shown.containment.is_some(), "the newest of this case");
        assert_eq!(execution_case(&events, "gd-none"), None);
    }

    /// Anyone who may start the forensics state machine can name an
    /// execution after a case and give it a Case-shaped input: Triage fails
    /// on it, its Catch hands the input on, and no state after it produced
    /// that Case. Only what follows a Triage that succeeded counts.
    #[test]
    fn a_case_shaped_input_whose_triage_failed_is_no_case() {
        let mut forged = crate::case::example_case();
        forged.case_id = "gd-abc".into();
        let mut caught = serde_json::to_value(&forged).unwrap();
        caught["caught"] =
            serde_json::json!({"triage": {"Error": "InvalidFinding", "Cause": "not a finding"}});
        let events = vec![
            exited(1, "Triage", Some(&caught.to_string())),
            exited(2, "TriageFailed", Some(&caught.to_string())),
        ];
        assert_eq!(execution_case(&events, "gd-abc"), None);
        // A Case handed on before a Triage that succeeded is not taken either.
        let early = vec![exited(
            1,
            "Elsewhere",
            Some(&serde_json::to_string(&forged).unwrap()),
        )];
        assert_eq!(execution_case(&early, "gd-abc"), None);
    }
}
