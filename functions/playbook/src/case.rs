//! The Case document: what every step takes and returns, one section more each time.
//!
//! This module is the one definition of the JSON that flows through the state
//! machine (camelCase). A step never removes what an earlier step wrote; the
//! custody list and the error list only grow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{PlaybookError, Result};
use crate::policy::Policy;

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingSource {
    /// An Amazon GuardDuty finding delivered by EventBridge.
    GuardDuty,
    /// An AWS Security Hub finding (imported, or sent by a custom action).
    SecurityHub,
    /// A CloudWatch alarm on an instance metric entering ALARM.
    CloudWatchAlarm,
    /// An EC2 instance state-change notification.
    Ec2StateChange,
    /// A responder asked for it by hand.
    Manual,
}

impl FindingSource {
    /// Short prefix of case ids from this source, so an id says where it came from.
    pub fn case_prefix(self) -> &'static str {
        match self {
            Self::GuardDuty => "gd",
            Self::SecurityHub => "sh",
            Self::CloudWatchAlarm => "cw",
            Self::Ec2StateChange => "ec2",
            Self::Manual => "man",
        }
    }
}

/// The normalised finding: the same fields whatever the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Where the finding came from.
    pub source: FindingSource,
    /// The source's own id for the finding (finding ARN, alarm ARN + time, ...).
    pub finding_id: String,
    /// The source's finding type, e.g. `CryptoCurrency:EC2/BitcoinTool.B!DNS`.
    pub finding_type: String,
    /// One-line human title.
    pub title: String,
    /// Severity on a 0-10 scale, whatever scale the source uses.
    pub severity: f64,
    /// The account the instance lives in; `None` when a manual request named none
    /// (the responder's own account is then meant).
    pub account: Option<String>,
    /// The region the instance lives in.
    pub region: String,
    /// The instances the finding is about.
    pub instance_ids: Vec<String>,
    /// GuardDuty's `resourceRole` (ACTOR or TARGET) where the source says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_role: Option<String>,
    /// The source marked this finding as a sample (generated for testing).
    #[serde(default)]
    pub sample: bool,
    /// The instance's tags as the finding reported them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The instance state the finding reported, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_state: Option<String>,
    /// The instance's launch time as the finding reported it (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_launch_time: Option<String>,
    /// When the source observed the activity (UTC, RFC 3339), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// Who asked for a manual case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Why a manual case was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where to find the original: the EventBridge event id and the finding's ARN or id.
    pub raw_reference: String,
}

/// A plain incident for unit tests: one running instance, nothing optional set.
#[cfg(test)]
pub(crate) fn example_incident(
    source: FindingSource,
    finding_type: &str,
    severity: f64,
) -> Incident {
    Incident {
        source,
        finding_id: "finding-1".into(),
        finding_type: finding_type.into(),
        title: "example".into(),
        severity,
        account: Some("123456789012".into()),
        region: "us-east-1".into(),
        instance_ids: vec!["i-0123456789abcdef0".into()],
        resource_role: None,
        sample: false,
        tags: BTreeMap::new(),
        instance_state: Some("running".into()),
        instance_launch_time: None,
        observed_at: None,
        requested_by: None,
        reason: None,
        raw_reference: "example".into(),
    }
}

/// What triage decided to do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Run the playbook: capture, protect, contain.
    Respond,
    /// Run the playbook once a person approves.
    Approve,
    /// Record the finding, change nothing.
    Observe,
    /// Not a case for this responder.
    Ignore,
}

/// The policy's decision with the reason a person can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The policy asked for a dry run: steps report what they would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A network interface of the suspect instance, as it was when captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceRecord {
    /// ENI id.
    pub network_interface_id: String,
    /// Position on the instance (0 is the primary).
    pub device_index: Option<i32>,
    /// Attachment id.
    pub attachment_id: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// VPC.
    pub vpc_id: Option<String>,
    /// MAC address.
    pub mac_address: Option<String>,
    /// Every private IPv4 address.
    pub private_ip_addresses: Vec<String>,
    /// Every IPv6 address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<String>,
    /// The public IPv4 address, if any.
    pub public_ip: Option<String>,
    /// Security groups on this ENI.
    pub security_group_ids: Vec<String>,
    /// Whether EC2 checks source/destination addresses.
    pub source_dest_check: Option<bool>,
}

/// An EBS volume attached to the suspect instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// Volume id.
    pub volume_id: String,
    /// Device name the instance sees it as.
    pub device_name: Option<String>,
    /// Size in GiB.
    pub size_gib: Option<i32>,
    /// gp3, io2, ...
    pub volume_type: Option<String>,
    /// Whether it is encrypted.
    pub encrypted: Option<bool>,
    /// The KMS key that encrypts it.
    pub kms_key_id: Option<String>,
    /// The snapshot it was created from.
    pub snapshot_id: Option<String>,
    /// Whether terminating the instance deletes it.
    pub delete_on_termination: Option<bool>,
    /// When it was attached (UTC).
    pub attach_time: Option<String>,
}

/// Something the step tried to capture and could not, kept so the gap is on record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// Why it is missing.
    pub reason: String,
}

/// The instance's serial console output, as far as EC2 keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleOutput {
    /// The text (the newest part when `truncated`).
    pub text: String,
    /// SHA-256 of the whole decoded output.
    pub sha256: String,
    /// Length of the whole decoded output in bytes.
    pub bytes: usize,
    /// Only the last part is kept in the Case (Step Functions payloads are limited).
    pub truncated: bool,
}

/// Everything the playbook lists under "capture the instance metadata", for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetadata {
    /// Instance id.
    pub instance_id: String,
    /// Owning account.
    pub account: Option<String>,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Instance type.
    pub instance_type: Option<String>,
    /// State when captured (running, stopped, terminated...).
    pub state: Option<String>,
    /// The AMI it was launched from.
    pub image_id: Option<String>,
    /// Launch time (UTC).
    pub launch_time: Option<String>,
    /// Platform details (Linux/UNIX, Windows...).
    pub platform: Option<String>,
    /// CPU architecture.
    pub architecture: Option<String>,
    /// The key pair it was launched with.
    pub key_name: Option<String>,
    /// VPC of the primary interface.
    pub vpc_id: Option<String>,
    /// Subnet of the primary interface.
    pub subnet_id: Option<String>,
    /// Primary private IPv4 address.
    pub private_ip: Option<String>,
    /// Primary public IPv4 address.
    pub public_ip: Option<String>,
    /// Every network interface.
    pub network_interfaces: Vec<NetworkInterfaceRecord>,
    /// Every security group of the instance (union over ENIs).
    pub security_group_ids: Vec<String>,
    /// Every attached EBS volume.
    pub volumes: Vec<VolumeRecord>,
    /// The instance profile ARN.
    pub iam_instance_profile_arn: Option<String>,
    /// The root device name.
    pub root_device_name: Option<String>,
    /// Instance metadata service options (tokens required or optional).
    pub metadata_http_tokens: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Serial console output, or why there is none.
    pub console_output: Option<ConsoleOutput>,
    /// Why the console output is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_output_unavailable: Option<Unavailable>,
    /// SHA-256 of the console screenshot (JPEG), when EC2 could take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_screenshot_sha256: Option<String>,
    /// Why there is no screenshot, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_screenshot_unavailable: Option<Unavailable>,
    /// When this was captured (UTC).
    pub captured_at: String,
}

/// One entry of the chain of custody: who did what to which evidence, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodyEntry {
    /// The playbook step.
    pub step: String,
    /// The identity that acted (role or user ARN).
    pub actor: String,
    /// What was done, in words.
    pub action: String,
    /// The AWS operations called, in order.
    pub calls: Vec<String>,
    /// UTC time, RFC 3339.
    pub at: String,
    /// What the step was given.
    pub inputs: Value,
    /// What the step produced.
    pub outputs: Value,
    /// SHA-256 of the evidence this entry is about (canonical JSON of the section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A failure recorded in the Case, so nothing is lost or half-done unseen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepError {
    /// The step that failed.
    pub step: String,
    /// The stable error name.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// What did not happen because of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_done: Option<String>,
    /// UTC time, RFC 3339.
    pub at: String,
}

impl StepError {
    /// Records `err` as the failure of `step`, saying what was left undone.
    pub fn new(step: &str, err: &PlaybookError, not_done: impl Into<Option<String>>) -> Self {
        Self {
            step: step.to_owned(),
            error_type: err.error_type().to_owned(),
            message: err.to_string(),
            not_done: not_done.into(),
            at: crate::custody::now_utc(),
        }
    }
}

/// What a state machine `Catch` puts at its `ResultPath`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    /// The error name.
    #[serde(rename = "Error")]
    pub error: String,
    /// The error message or JSON cause.
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// The document every step takes and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    /// Stable id: the same finding always yields the same case (and execution name).
    pub case_id: String,
    /// The normalised finding.
    pub incident: Incident,
    /// What the policy decided.
    pub decision: Decision,
    /// The policy in force when the case was opened: later steps read their options here.
    pub policy: Policy,
    /// Captured metadata, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<InstanceMetadata>,
    /// What protect-instance changed, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protection: Vec<crate::protect::InstanceProtection>,
    /// What isolate-network changed, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<crate::isolate::InstanceIsolation>,
    /// What release-instance restored, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<crate::release::InstanceRelease>,
    /// The chain of custody, append-only.
    #[serde(default)]
    pub custody: Vec<CustodyEntry>,
    /// Every failure, append-only.
    #[serde(default)]
    pub errors: Vec<StepError>,
    /// Errors the state machine caught, by step; folded into `errors` by the next step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caught: BTreeMap<String, CaughtError>,
}

impl Case {
    /// Opens a case: the finding, the decision and the policy that made it,
    /// and the first custody entry.
    pub fn open(
        case_id: String,
        incident: Incident,
        decision: Decision,
        policy: Policy,
        opened: CustodyEntry,
    ) -> Case {
        Case {
            case_id,
            incident,
            decision,
            policy,
            metadata: Vec::new(),
            protection: Vec::new(),
            isolation: Vec::new(),
            release: Vec::new(),
            custody: vec![opened],
            errors: Vec::new(),
            caught: BTreeMap::new(),
        }
    }

    /// Reads a step's input: one Case, or the array of Cases a `Parallel` state
    /// outputs (its branches are merged). Errors a `Catch` left are folded into
    /// `errors`.
    pub fn from_input(input: Value) -> Result<Case> {
        let mut case = match input {
            Value::Array(branches) => {
                let branches = branches
                    .into_iter()
                    .map(serde_json::from_value)
                    .collect::<std::result::Result<Vec<Case>, _>>()
                    .map_err(|e| PlaybookError::InvalidCase(e.to_string()))?;
                Case::merge(branches)?
            }
            other => serde_json::from_value(other)
                .map_err(|e| PlaybookError::InvalidCase(e.to_string()))?,
        };
        case.fold_caught();
        Ok(case)
    }

    /// Merges the outputs of parallel branches that started from the same Case:
    /// each branch filled its own sections; custody and errors are united in order.
    pub fn merge(branches: Vec<Case>) -> Result<Case> {
        let mut branches = branches.into_iter();
        let mut merged = branches
            .next()
            .ok_or_else(|| PlaybookError::InvalidCase("no branch output to merge".into()))?;
        for branch in branches {
            if branch.case_id != merged.case_id {
                return Err(PlaybookError::InvalidCase(format!(
                    "cannot merge case {} into case {}",
                    branch.case_id, merged.case_id
                )));
            }
            merge_records(&mut merged.metadata, branch.metadata);
            merge_records(&mut merged.protection, branch.protection);
            merge_records(&mut merged.isolation, branch.isolation);
            merge_records(&mut merged.release, branch.release);
            append_new(&mut merged.custody, branch.custody);
            append_new(&mut merged.errors, branch.errors);
            for (step, caught) in branch.caught {
                merged.caught.entry(step).or_insert(caught);
            }
        }
        Ok(merged)
    }

    /// Moves errors caught by the state machine into the append-only error list.
    fn fold_caught(&mut self) {
        for (state, caught) in std::mem::take(&mut self.caught) {
            self.errors.push(StepError {
                step: kebab_case(&state),
                error_type: caught.error,
                message: caught.cause,
                not_done: None,
                at: crate::custody::now_utc(),
            });
        }
    }

    /// Refuses containment for a case the policy did not decide to respond to:
    /// a step invoked by hand with an observed or ignored case changes nothing.
    pub fn ensure_containment_allowed(&self) -> Result<()> {
        match self.decision.action {
            Action::Respond | Action::Approve => Ok(()),
            other => Err(PlaybookError::InvalidCase(format!(
                "case {} was decided {other:?} ({}): containment is not allowed",
                self.case_id, self.decision.reason
            ))),
        }
    }

    /// Whether every instance is protected and isolated, with nothing left undone.
    pub fn is_contained(&self) -> bool {
        self.incident.instance_ids.iter().all(|id| {
            let protected = record_of(&self.protection, id).is_some_and(|p| p.complete);
            let isolated = record_of(&self.isolation, id).is_some_and(|i| i.complete);
            protected && isolated
        })
    }

    /// The metadata captured for `instance_id`, if capture-metadata ran.
    pub fn metadata_of(&self, instance_id: &str) -> Option<&InstanceMetadata> {
        record_of(&self.metadata, instance_id)
    }
}

/// A Case section's record about one instance.
pub trait PerInstance {
    /// The instance the record is about.
    fn instance_id(&self) -> &str;
}

impl PerInstance for InstanceMetadata {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// The record about `instance_id` in a Case section, if the step ran for it.
pub fn record_of<'a, T: PerInstance>(records: &'a [T], instance_id: &str) -> Option<&'a T> {
    records.iter().find(|r| r.instance_id() == instance_id)
}

/// Replaces the record about the same instance or adds it: a re-run of a step
/// updates its record instead of duplicating it.
pub fn upsert<T: PerInstance>(records: &mut Vec<T>, record: T) {
    match records
        .iter_mut()
        .find(|r| r.instance_id() == record.instance_id())
    {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
}

fn merge_records<T: PerInstance>(into: &mut Vec<T>, from: Vec<T>) {
    for record in from {
        if record_of(into, record.instance_id()).is_none() {
            into.push(record);
        }
    }
}

/// `captureMetadata` (a state machine path key) as `capture-metadata` (a step name).
fn kebab_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn append_new<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}
