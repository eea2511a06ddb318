//! The Case document: what every step takes and returns, one section more each time.
//!
//! This module is the one definition of the JSON that flows through the state
//! machine (camelCase). It is pure data: it depends on no step. A step never
//! removes what an earlier step wrote; the custody list and the error list only grow.

pub mod actions;
pub mod approval;
pub mod bulk;
pub mod custody;
pub mod evidence;
pub mod incident;
pub mod isolation;
pub mod memory;
pub mod metadata;
pub mod policy;
pub mod protection;
pub mod recovery;
pub mod release;
pub mod security_hub;
pub mod text;
pub mod workstation;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use actions::{all_done, failures, tally, ActionRecord, Outcome};
pub use approval::{Approval, ApprovalAnswer, ApprovalOutcome};
pub use custody::{CaughtError, CustodyEntry, StepError};
pub use evidence::{Artifact, DiskProgress, Encryption, Poll, SnapshotProgress, VolumeEvidence};
pub use incident::{
    Action, Classification, Decision, FindingSource, Incident, Indication, OutsideActivity,
};
pub use isolation::{InstanceIsolation, IsolationStage};
pub use memory::{HostMemoryReport, MemoryCapture, MemoryStatus};
pub use metadata::{
    ConsoleOutput, InstanceMetadata, NetworkInterfaceRecord, Unavailable, VolumeRecord,
};
pub use policy::Policy;
pub use protection::InstanceProtection;
pub use recovery::{
    CaseCleanup, CaseResource, HeldObject, HoldRelease, KeptResource, LegalHold, LockedCopy,
    Removal, ResourceKind,
};
pub use release::InstanceRelease;
pub use security_hub::{FindingMoment, FindingNotUpdated, FindingRef, FindingUpdate};
pub use workstation::{EvidenceVolume, Indicator, VolumeAnalysis, Workstation};

#[cfg(test)]
pub(crate) use incident::example_incident;

use crate::error::{PlaybookError, Result};

/// Whether the case is contained: every instance protected, isolated and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Containment {
    /// `acquisition` while any instance is isolated only down to the SSM
    /// endpoints (isolate-first); `full` otherwise. The state machine reads it.
    pub stage: IsolationStage,
    /// Every instance is protected and isolated, and its ENIs were read back
    /// in the final group. The state machine ends `Contained` only on true.
    pub contained: bool,
    /// The latest read-back time over the instances, when all were verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// The instances that are not contained, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_contained: Vec<String>,
    /// What no security group or network ACL can block, for every instance.
    #[serde(default)]
    pub not_blocked: Vec<String>,
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
    /// The approval gate, when the decision was `approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Captured metadata, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<InstanceMetadata>,
    /// What protect-instance changed, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protection: Vec<InstanceProtection>,
    /// Memory captures, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryCapture>,
    /// The wait for memory captures, which the state machine's loop reads.
    #[serde(default)]
    pub memory_progress: Poll,
    /// What isolate-network changed, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<InstanceIsolation>,
    /// Whether the case is contained, once isolation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<Containment>,
    /// What `acquisitionOrder: auto` chose when it could not isolate first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquisition_plan: Option<isolation::AcquisitionPlan>,
    /// What release-instance restored, one record per instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<InstanceRelease>,
    /// Disk evidence, one record per volume: snapshot, sharing, forensic copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<VolumeEvidence>,
    /// The waits of disk evidence, which the state machine's loops read.
    #[serde(default)]
    pub disk_progress: DiskProgress,
    /// The forensic workstations, one per availability zone holding evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workstations: Vec<Workstation>,
    /// The evidence volumes made from the forensic copies for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_volumes: Vec<EvidenceVolume>,
    /// The wait for workstations and attachments, which the state machine's loop reads.
    #[serde(default)]
    pub workstation_progress: Poll,
    /// What the analysis of each evidence volume found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<VolumeAnalysis>,
    /// The wait for the analysis commands.
    #[serde(default)]
    pub analysis_progress: Poll,
    /// Every object written to the evidence bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Legal holds placed on the case, oldest first; the last one without a
    /// release holds the case now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<LegalHold>,
    /// Every clean-up of the case, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanups: Vec<CaseCleanup>,
    /// What the responder told Security Hub about the case's finding, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finding_updates: Vec<FindingUpdate>,
    /// The chain of custody, append-only and hash-chained.
    #[serde(default)]
    pub custody: Vec<CustodyEntry>,
    /// Every failure, append-only.
    #[serde(default)]
    pub errors: Vec<StepError>,
    /// Errors the state machine caught, by step; folded into `errors` by the next step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caught: BTreeMap<String, CaughtError>,
}

/// What a step inside a `Parallel` state returns: only the sections it fills,
/// so the Parallel's output does not carry the whole Case once per branch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BranchOutput {
    /// Captured metadata.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<InstanceMetadata>,
    /// Protection records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protection: Vec<InstanceProtection>,
    /// Snapshots started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<VolumeEvidence>,
    /// Artifacts stored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Custody entries the branch added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custody: Vec<CustodyEntry>,
    /// Errors the branch recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<StepError>,
    /// Errors the branch's Catch left.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
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
            approval: None,
            metadata: Vec::new(),
            protection: Vec::new(),
            memory: Vec::new(),
            memory_progress: Poll::default(),
            isolation: Vec::new(),
            containment: None,
            acquisition_plan: None,
            release: Vec::new(),
            snapshots: Vec::new(),
            disk_progress: DiskProgress::default(),
            workstations: Vec::new(),
            evidence_volumes: Vec::new(),
            workstation_progress: Poll::default(),
            analysis: Vec::new(),
            analysis_progress: Poll::default(),
            artifacts: Vec::new(),
            holds: Vec::new(),
            cleanups: Vec::new(),
            finding_updates: Vec::new(),
            custody: vec![opened],
            errors: Vec::new(),
            caught: BTreeMap::new(),
        }
    }

    /// Reads a step's input: one Case, or a Case whose `branches` holds the
    /// outputs of a `Parallel` state (merged into it here). Errors a `Catch`
    /// left are folded into `errors`.
    pub fn from_input(mut input: Value) -> Result<Case> {
        let branches = input
            .as_object_mut()
            .and_then(|o| o.remove("branches"))
            .unwrap_or(Value::Null);
        let mut case: Case =
            serde_json::from_value(input).map_err(|e| PlaybookError::InvalidCase(e.to_string()))?;
        if let Value::Array(branches) = branches {
            let branches = branches
                .into_iter()
                .map(|branch| {
                    serde_json::from_value(branch)
                        .map_err(|e| PlaybookError::InvalidCase(format!("a Parallel branch: {e}")))
                })
                .collect::<Result<Vec<BranchOutput>>>()?;
            case.merge_branches(branches);
        }
        case.fold_caught();
        Ok(case)
    }

    /// What this step added to `before`: the output of a step inside a `Parallel`.
    pub fn branch_output(self, before_custody: usize, before_errors: usize) -> BranchOutput {
        BranchOutput {
            metadata: self.metadata,
            protection: self.protection,
            snapshots: self.snapshots,
            artifacts: self.artifacts,
            custody: self.custody.into_iter().skip(before_custody).collect(),
            errors: self.errors.into_iter().skip(before_errors).collect(),
            caught: BTreeMap::new(),
        }
    }

    /// Merges one Parallel branch's sections into the Case.
    pub fn merge_branch(&mut self, branch: BranchOutput) {
        self.merge_branches(vec![branch]);
    }

    /// Merges the Parallel branches' sections into the Case. The branches'
    /// custody entries all followed the same head: they join the chain in
    /// time order, each linked to the one before.
    pub fn merge_branches(&mut self, branches: Vec<BranchOutput>) {
        let mut entries = Vec::new();
        for branch in branches {
            for record in branch.metadata {
                upsert(&mut self.metadata, record);
            }
            for record in branch.protection {
                upsert(&mut self.protection, record);
            }
            for record in branch.snapshots {
                evidence::upsert_volume(&mut self.snapshots, record);
            }
            for record in branch.artifacts {
                evidence::upsert_artifact(&mut self.artifacts, record);
            }
            entries.extend(branch.custody);
            append_new(&mut self.errors, branch.errors);
            for (step, caught) in branch.caught {
                self.caught.entry(step).or_insert(caught);
            }
        }
        entries.sort_by(|a, b| a.at.cmp(&b.at));
        for entry in entries {
            let known = self
                .custody
                .iter()
                .any(|e| e.at == entry.at && e.step == entry.step && e.action == entry.action);
            if !known {
                self.record(entry);
            }
        }
    }

    /// The legal hold that holds the case now: the last one, unless released.
    pub fn hold(&self) -> Option<&LegalHold> {
        self.holds.last().filter(|h| h.released.is_none())
    }

    /// Adds a custody entry at the end of the chain, linked to the one before.
    pub fn record(&mut self, entry: CustodyEntry) {
        custody::append(&mut self.custody, entry);
    }

    /// Moves errors caught by the state machine into the append-only error list.
    fn fold_caught(&mut self) {
        for (state, caught) in std::mem::take(&mut self.caught) {
            self.errors.push(StepError {
                step: kebab_case(&state),
                error_type: caught.error,
                message: caught.cause,
                not_done: None,
                at: custody::now_utc(),
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

    /// Works out whether the case is contained, instance by instance, from
    /// the protection and isolation records (never from the absence of errors).
    pub fn summarise_containment(&mut self) {
        let mut not_contained = Vec::new();
        let mut verified_at: Option<String> = None;
        for id in &self.incident.instance_ids {
            let protected = record_of(&self.protection, id).is_some_and(|p| p.complete);
            let isolation = record_of(&self.isolation, id);
            match isolation {
                Some(i) if i.complete && protected => {
                    if let Some(at) = &i.verified_at {
                        if verified_at.as_ref().is_none_or(|v| at > v) {
                            verified_at = Some(at.clone());
                        }
                    }
                }
                Some(i) if !i.complete => {
                    not_contained.push(format!("{id}: isolation is not complete and verified"))
                }
                Some(_) => not_contained.push(format!("{id}: protection is not complete")),
                None => not_contained.push(format!("{id}: not isolated")),
            }
        }
        let stage = if self
            .isolation
            .iter()
            .any(|i| i.stage == IsolationStage::Acquisition)
        {
            IsolationStage::Acquisition
        } else {
            IsolationStage::Full
        };
        // Isolated only down to the SSM endpoints (isolate-first's
        // acquisition stage) is not contained: the instance still reaches them.
        if stage == IsolationStage::Acquisition {
            not_contained.push(
                "isolated only to the acquisition stage: it still reaches the SSM and S3 endpoints"
                    .into(),
            );
        }
        let contained = not_contained.is_empty() && !self.decision.dry_run;
        if self.decision.dry_run {
            not_contained.push("dry run: nothing was changed".into());
        }
        self.containment = Some(Containment {
            stage,
            contained,
            verified_at: verified_at.filter(|_| contained),
            not_contained,
            not_blocked: isolation::NOT_BLOCKED
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        });
    }

    /// When the activity was detected: the finding's time, else when the
    /// case opened.
    pub fn detected_at(&self) -> Option<String> {
        self.incident
            .observed_at
            .clone()
            .or_else(|| self.custody.first().map(|e| e.at.clone()))
    }

    /// Whether every instance is protected, isolated and read back.
    pub fn is_contained(&self) -> bool {
        self.containment.as_ref().is_some_and(|c| c.contained)
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

/// A freshly opened GuardDuty case (tests).
#[cfg(test)]
pub(crate) fn example_case() -> Case {
    let entry = custody::entry(
        "triage",
        "me",
        "opened",
        &[],
        Value::Null,
        Value::Null,
        None,
    );
    Case::open(
        "gd-1".into(),
        example_incident(FindingSource::GuardDuty, "Backdoor:EC2/Spambot", 8.0),
        Decision {
            action: Action::Respond,
            reason: "test".into(),
            dry_run: false,
            approval_timeout_seconds: None,
            classification: None,
        },
        Policy::default(),
        entry,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_branches_merge_their_sections_custody_and_caught_errors() {
        let case = example_case();
        let mut captured = case.clone();
        captured.metadata.push(InstanceMetadata {
            instance_id: "i-0123456789abcdef0".into(),
            ..InstanceMetadata::default()
        });
        captured.record(custody::entry(
            "capture-metadata",
            "me",
            "captured",
            &[],
            Value::Null,
            Value::Null,
            None,
        ));
        let mut input = serde_json::to_value(&case).unwrap();
        input["branches"] = serde_json::json!([
            captured.branch_output(1, 0),
            {"caught": {"protectInstance": {"Error": "AccessDenied", "Cause": "no"}}}
        ]);
        let merged = Case::from_input(input).unwrap();
        assert_eq!(merged.metadata.len(), 1);
        assert_eq!(
            merged.custody.len(),
            2,
            "triage's entry once, capture's added"
        );
        assert_eq!(merged.errors.len(), 1);
        assert_eq!(merged.errors[0].step, "protect-instance");
        assert_eq!(merged.errors[0].error_type, "AccessDenied");
        assert!(merged.caught.is_empty());
    }

    #[test]
    fn a_case_with_an_instance_not_read_back_is_not_contained() {
        let mut case = example_case();
        case.summarise_containment();
        let summary = case.containment.clone().unwrap();
        assert!(!summary.contained);
        assert!(summary.not_contained[0].contains("not isolated"));
        assert!(!summary.not_blocked.is_empty());
    }

    #[test]
    fn isolated_only_to_the_acquisition_stage_is_not_contained() {
        let id = "i-0123456789abcdef0";
        let mut case = example_case();
        case.protection = vec![serde_json::from_value(serde_json::json!({
            "instanceId": id, "vpcId": "vpc-1", "actions": [], "complete": true,
            "protectedAt": "2026-11-30T00:00:00Z",
            "original": {"terminationProtection": false, "shutdownBehavior": "stop",
                         "deleteOnTermination": [], "autoScalingGroup": null,
                         "targetGroups": [], "loadBalancers": []}
        }))
        .unwrap()];
        let isolation = |stage: &str| -> InstanceIsolation {
            serde_json::from_value(serde_json::json!({
                "instanceId": id, "vpcId": "vpc-1", "stage": stage, "interfaces": [],
                "elasticIps": [], "instanceProfile": null, "sessionRevocation": null,
                "warnings": [], "actions": [], "complete": true,
                "verifiedAt": "2026-11-30T00:00:01Z", "isolatedAt": "2026-11-30T00:00:01Z"
            }))
            .unwrap()
        };
        case.isolation = vec![isolation("acquisition")];
        case.summarise_containment();
        let summary = case.containment.clone().unwrap();
        assert!(!summary.contained, "CompleteIsolation never ran or failed");
        assert_eq!(summary.verified_at, None);
        assert!(
            summary.not_contained[0].contains("acquisition"),
            "{:?}",
            summary.not_contained
        );
        case.isolation = vec![isolation("full")];
        case.summarise_containment();
        assert!(case.is_contained());
    }
}
