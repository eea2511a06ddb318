//! `check-ami`: every instance launch (CloudTrail's `RunInstances`, through
//! EventBridge) judged against the policy's `approvedImages`; a launch from
//! an unapproved image opens a case (source `ApprovedImagePolicy`), and the
//! policy's `approvedImages.onUnapproved` decides what it does: observe,
//! notify (a person decides) or contain.
//!
//! The images are read as the launch's own account sees them (the workload
//! role there), the approved list and the golden AMI from the responder's
//! side. The launcher's request (its tags, its image name) decides nothing:
//! only what EC2 says of the image now. An image gone before the check (the
//! launcher deregistered it) is unapproved.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::aws::Responder;
use crate::case::FindingSource;
use crate::error::{PlaybookError, Result};
use crate::findings::{case_id, launch_finding_id, parse_launch, unapproved_launch_event};
use crate::steps::dispatch::{start_case, Dispatched};
use crate::steps::images::{image_facts, judge, listed_ids, parameter_value};

/// One launched instance, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchedInstance {
    /// The instance.
    pub instance_id: String,
    /// Its image.
    pub image_id: String,
    /// Whether the policy approves the image.
    pub approved: bool,
    /// Why (or why not).
    pub why: String,
}

/// What `check-ami` made of one `RunInstances` call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchReport {
    /// CloudTrail's event id.
    pub event_id: String,
    /// The account and Region of the launch.
    pub account: String,
    /// The Region.
    pub region: String,
    /// Who launched, as CloudTrail authenticated them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched_by: Option<String>,
    /// The call failed (its `errorCode`): nothing was launched, nothing judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_call: Option<String>,
    /// Each launched instance, judged.
    pub instances: Vec<LaunchedInstance>,
    /// The case opened for the unapproved ones, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<Dispatched>,
}

/// Judges the instances one `RunInstances` event launched, and opens a case
/// for those on unapproved images.
pub async fn check_launch(responder: &Responder, event: Value) -> Result<LaunchReport> {
    let launch = parse_launch(&event)?;
    let mut report = LaunchReport {
        event_id: launch.event_id.clone(),
        account: launch.account.clone(),
        region: launch.region.clone(),
        launched_by: launch.launched_by.clone(),
        failed_call: launch.error.clone(),
        instances: Vec::new(),
        case: None,
    };
    if launch.error.is_some() {
        tracing::info!(event_id = %launch.event_id, error = ?launch.error, "the launch failed: nothing to check");
        return Ok(report);
    }
    responder.check_scope(Some(&launch.account), &launch.region)?;
    let rules = &responder.policy.approved_images;
    if !rules.is_set() {
        return Err(PlaybookError::InvalidPolicy(
            "the policy's approvedImages names no image, parameter or owner: check-ami has nothing to judge launches by".into(),
        ));
    }
    let state_machine = responder
        .state_machine_arn
        .as_deref()
        .ok_or_else(|| PlaybookError::Configuration("STATE_MACHINE_ARN is not set".into()))?;
    let case_id = case_id(
        FindingSource::ApprovedImagePolicy,
        &launch_finding_id(&launch.event_id),
    );
    let workload = responder
        .workload_for(Some(&launch.account), &case_id)
        .await?;
    let mut listed = listed_ids(&responder.clients, rules).await?;
    // The responder's own workstations run the golden AMI.
    if let Some(golden) = golden_ami(responder).await? {
        listed.insert(golden);
    }
    let images: BTreeSet<String> = launch.instances.iter().map(|(_, i)| i.clone()).collect();
    let facts = image_facts(&workload.clients, &images).await?;
    for (instance_id, image_id) in &launch.instances {
        let verdict = judge(rules, &listed, &facts[image_id]);
        report.instances.push(LaunchedInstance {
            instance_id: instance_id.clone(),
            image_id: image_id.clone(),
            approved: verdict.approved,
            why: verdict.why,
        });
    }
    let unapproved: Vec<(String, String, String)> = report
        .instances
        .iter()
        .filter(|i| !i.approved)
        .map(|i| (i.instance_id.clone(), i.image_id.clone(), i.why.clone()))
        .collect();
    if unapproved.is_empty() {
        tracing::info!(event_id = %launch.event_id, "every launched instance runs an approved image");
        return Ok(report);
    }
    let input = unapproved_launch_event(&launch, &unapproved);
    tracing::warn!(case_id, event_id = %launch.event_id, instances = unapproved.len(), "launched from an unapproved image: a case opens");
    report.case = Some(start_case(responder, state_machine, &case_id, &input).await?);
    Ok(report)
}

/// The golden AMI's id, from its parameter (`GOLDEN_AMI_PARAMETER`), when set.
async fn golden_ami(responder: &Responder) -> Result<Option<String>> {
    let Some(name) = responder.config.golden_ami_parameter.as_deref() else {
        return Ok(None);
    };
    let value = parameter_value(&responder.clients, name).await?;
    Ok(Some(value.trim())
        .filter(|v| v.starts_with("ami-"))
        .map(str::to_owned))
}
