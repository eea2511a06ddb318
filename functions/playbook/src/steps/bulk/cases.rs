//! What a bulk item knows of a case: only what the responder itself keeps.
//! Who holds an instance comes from the lease table (only responder roles
//! write it), and what the case did from its execution's own history
//! (never from the bucket, nor from tags anyone in the workload account can
//! set).

use serde_json::{json, Value};

use crate::aws::{Config, Responder};
use crate::case::Case;
use crate::error::{PlaybookError, Result};
use crate::steps::lease::{lease_key, Leases};
use crate::steps::status::{execution_case, history, latest_execution};

/// A case's execution as the bulk item reads it.
#[derive(Debug, Clone)]
pub struct CaseRecord {
    /// The execution (the case's latest attempt).
    pub execution_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// The newest Case the execution handed on.
    pub case: Option<Case>,
}

/// The case's latest execution and its newest Case, if it has run.
pub async fn case_record(responder: &Responder, case_id: &str) -> Result<Option<CaseRecord>> {
    let machine = Config::required(&responder.state_machine_arn, "STATE_MACHINE_ARN")?;
    let Some(execution) = latest_execution(responder, machine, case_id).await? else {
        return Ok(None);
    };
    let events = history(responder, &execution.arn).await?;
    Ok(Some(CaseRecord {
        execution_arn: execution.arn,
        status: execution.status,
        case: execution_case(&events, case_id),
    }))
}

/// The case that holds `instance_id` in the lease table, if any.
pub async fn holding_case(
    responder: &Responder,
    account: &str,
    instance_id: &str,
) -> Result<Option<String>> {
    let leases = Leases::of(responder).ok_or_else(|| {
        PlaybookError::Configuration(
            "LEASE_TABLE is not set: which case holds an instance is kept there".into(),
        )
    })?;
    let key = lease_key(account, &responder.region, instance_id);
    Ok(leases
        .holder(&key)
        .await?
        .map(|lease| lease.case_id)
        .filter(|c| !c.is_empty()))
}

/// Whether the case's instances are contained, for a `contain` item: once
/// its execution's Case reads `containment.contained`, the item is done
/// (the case goes on with its evidence on its own). While the execution
/// runs without it, `NotReady` (the state machine retries); an execution
/// that ended without it, or none at all, is not contained.
pub async fn case_containment(responder: &Responder, case_id: &str) -> Result<Value> {
    let record = case_record(responder, case_id).await?;
    let Some(record) = record else {
        return Ok(json!({ "caseId": case_id, "contained": false,
            "why": "the forensics state machine has no execution of this case" }));
    };
    let containment = record.case.as_ref().and_then(|c| c.containment.as_ref());
    if let Some(containment) = containment.filter(|c| c.contained) {
        return Ok(json!({ "caseId": case_id, "contained": true,
            "verifiedAt": containment.verified_at, "execution": record.status }));
    }
    if record.status == "RUNNING" {
        return Err(PlaybookError::NotReady(format!(
            "case {case_id} runs and is not contained yet"
        )));
    }
    Ok(
        json!({ "caseId": case_id, "contained": false, "execution": record.status,
        "why": "the case ended without its instances read back contained" }),
    )
}
