//! Where a bulk run stands: its execution, the state it is in, its plan
//! (from the execution's own history, never from the bucket), its approval,
//! and its map run's item counts (DescribeMapRun).

use serde::Serialize;
use serde_json::Value;

use super::run::{PlanOutput, PLAN_STATE};
use crate::aws::Responder;
use crate::error::{AwsCall, Result};
use crate::steps::dispatch::execution_arn;
use crate::steps::status::history;

/// A map run's item counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRunCounts {
    /// The map run.
    pub map_run_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, ABORTED.
    pub status: String,
    /// Items in all.
    pub total: i64,
    /// Items not started yet.
    pub pending: i64,
    /// Items running.
    pub running: i64,
    /// Items that succeeded.
    pub succeeded: i64,
    /// Items that failed.
    pub failed: i64,
    /// Items that timed out.
    pub timed_out: i64,
    /// Items aborted.
    pub aborted: i64,
}

impl MapRunCounts {
    /// Items that have ended, one way or another.
    pub fn ended(&self) -> i64 {
        self.succeeded + self.failed + self.timed_out + self.aborted
    }
}

/// A bulk run as `ec2-forensics bulk-status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkStatus {
    /// The run.
    pub bulk_id: String,
    /// Its execution.
    pub execution_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// The state it is in (or ended in).
    pub state: Option<String>,
    /// The plan step's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanOutput>,
    /// Whether it waits for a person now.
    pub awaiting_approval: bool,
    /// The recorded approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Value>,
    /// Its map runs' counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub map_runs: Vec<MapRunCounts>,
    /// How it ended, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Reads a bulk run's status.
pub async fn bulk_status(responder: &Responder, bulk_id: &str) -> Result<BulkStatus> {
    let machine = responder.state_machine_of(bulk_id)?;
    let arn = execution_arn(machine, bulk_id);
    let sfn = &responder.clients.sfn;
    let described = sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .aws("DescribeExecution", None)?;
    let events = history(responder, &arn).await?;
    let entered: Vec<&str> = events
        .iter()
        .filter_map(|e| e.state_entered_event_details().map(|d| d.name()))
        .collect();
    let exited_output = |name: &str| {
        events
            .iter()
            .rev()
            .filter_map(|e| e.state_exited_event_details())
            .find(|d| d.name() == name)
            .and_then(|d| d.output())
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
    };
    let plan = exited_output(PLAN_STATE)
        .and_then(|state| serde_json::from_value(state.get("plan")?.clone()).ok());
    let approval = exited_output("RecordApproval").and_then(|state| state.get("approval").cloned());
    let awaiting_approval = described.status().as_str() == "RUNNING"
        && entered.last() == Some(&crate::steps::approval::AWAIT_STATE);
    let mut map_runs = Vec::new();
    let listed = sfn
        .list_map_runs()
        .execution_arn(&arn)
        .send()
        .await
        .aws("ListMapRuns", None)?;
    for run in listed.map_runs() {
        let out = sfn
            .describe_map_run()
            .map_run_arn(run.map_run_arn())
            .send()
            .await
            .aws("DescribeMapRun", None)?;
        let mut counts = MapRunCounts {
            map_run_arn: run.map_run_arn().to_owned(),
            status: out.status().as_str().to_owned(),
            ..MapRunCounts::default()
        };
        if let Some(c) = out.item_counts() {
            counts.total = c.total();
            counts.pending = c.pending();
            counts.running = c.running();
            counts.succeeded = c.succeeded();
            counts.failed = c.failed();
            counts.timed_out = c.timed_out();
            counts.aborted = c.aborted();
        }
        map_runs.push(counts);
    }
    Ok(BulkStatus {
        bulk_id: bulk_id.to_owned(),
        execution_arn: arn,
        status: described.status().as_str().to_owned(),
        state: entered.last().map(|s| (*s).to_owned()),
        plan,
        awaiting_approval,
        approval,
        map_runs,
        error: described.error().map(str::to_owned),
        cause: described.cause().map(str::to_owned),
    })
}
