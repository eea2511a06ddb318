//! The record of each change a containment step makes, tries, or would make.
//!
//! Every change ends as one [`ActionRecord`], so a Case says exactly what
//! happened and what did not; none is silent.

use serde::{Deserialize, Serialize};

use super::custody::{now_utc, StepError};

/// How one change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The change was made.
    Changed,
    /// It was already so; nothing was changed.
    AlreadyDone,
    /// Dry run: it would have been changed.
    WouldChange,
    /// The change was attempted and failed.
    Failed,
}

/// One change to the estate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    /// What, in the playbook's words (`enable termination protection`).
    pub action: String,
    /// What it was done to (an instance, ENI, group, target group...).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The error type of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Why it failed, or what else a reader should know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ActionRecord {
    /// A change with the given outcome.
    pub fn new(action: &str, target: &str, outcome: Outcome) -> Self {
        Self {
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            error_type: None,
            detail: None,
        }
    }

    /// A change that was not needed.
    pub fn already_done(action: &str, target: &str) -> Self {
        Self::new(action, target, Outcome::AlreadyDone)
    }

    /// A change that failed with `error_type`, and why.
    pub fn failed(action: &str, target: &str, error_type: &str, detail: impl Into<String>) -> Self {
        Self {
            error_type: Some(error_type.to_owned()),
            detail: Some(detail.into()),
            ..Self::new(action, target, Outcome::Failed)
        }
    }

    /// Adds a note for the reader.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Whether the change is made (or was already so).
    pub fn is_done(&self) -> bool {
        matches!(self.outcome, Outcome::Changed | Outcome::AlreadyDone)
    }
}

/// The Case errors for the failed changes of `step`: each says what was not done.
pub fn failures(step: &str, actions: &[ActionRecord]) -> Vec<StepError> {
    actions
        .iter()
        .filter(|a| a.outcome == Outcome::Failed)
        .map(|a| StepError {
            step: step.to_owned(),
            error_type: a.error_type.clone().unwrap_or_default(),
            message: a.detail.clone().unwrap_or_default(),
            not_done: Some(format!("{} on {}", a.action, a.target)),
            at: now_utc(),
        })
        .collect()
}

/// How many changes ended each way: what a custody entry records of a step's
/// changes (the section itself, with every change, is hashed into the entry).
pub fn tally(actions: &[ActionRecord]) -> serde_json::Value {
    let count = |o: Outcome| actions.iter().filter(|a| a.outcome == o).count();
    serde_json::json!({
        "changed": count(Outcome::Changed),
        "alreadyDone": count(Outcome::AlreadyDone),
        "wouldChange": count(Outcome::WouldChange),
        "failed": count(Outcome::Failed),
    })
}

/// Whether every change is made (or was already so).
pub fn all_done(actions: &[ActionRecord]) -> bool {
    actions.iter().all(ActionRecord::is_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_becomes_a_case_error_naming_what_was_not_done() {
        let record = ActionRecord::failed(
            "detach from Auto Scaling group",
            "asg-1",
            "AccessDenied",
            "DetachInstances was denied",
        );
        let errors = failures("protect-instance", std::slice::from_ref(&record));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].error_type, "AccessDenied");
        assert_eq!(
            errors[0].not_done.as_deref(),
            Some("detach from Auto Scaling group on asg-1")
        );
        assert!(!all_done(&[record]));
        assert!(all_done(&[ActionRecord::already_done("x", "y")]));
    }
}
