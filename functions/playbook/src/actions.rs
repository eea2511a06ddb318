//! The record of each change a containment step makes, tries, or would make.
//!
//! Containment steps read everything first (a failure there changes nothing and
//! the step can simply be retried), then make their changes concurrently; each
//! change ends as one [`ActionRecord`], so a Case says exactly what happened and
//! what did not.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::case::StepError;
use crate::error::Result;

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
    /// A change that was not needed.
    pub fn already_done(action: &str, target: &str) -> Self {
        Self::new(action, target, Outcome::AlreadyDone)
    }

    fn new(action: &str, target: &str, outcome: Outcome) -> Self {
        Self {
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            error_type: None,
            detail: None,
        }
    }

    /// Adds a note for the reader.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Makes one change, or only records it in a dry run. The change's error does
/// not propagate: it becomes a `Failed` record.
pub async fn apply<F, Fut>(dry_run: bool, action: &str, target: &str, change: F) -> ActionRecord
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    attempt(dry_run, action, target, change).await.0
}

/// Records `alreadyDone` when the estate already is as wanted, else [`apply`]s the change.
pub async fn ensure<F, Fut>(
    already: bool,
    dry_run: bool,
    action: &str,
    target: &str,
    change: F,
) -> ActionRecord
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if already {
        return ActionRecord::already_done(action, target);
    }
    apply(dry_run, action, target, change).await
}

/// Like [`apply`], for a change that produces something (the id of a created resource).
pub async fn attempt<T, F, Fut>(
    dry_run: bool,
    action: &str,
    target: &str,
    change: F,
) -> (ActionRecord, Option<T>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if dry_run {
        return (
            ActionRecord::new(action, target, Outcome::WouldChange),
            None,
        );
    }
    match change().await {
        Ok(made) => {
            tracing::info!(action, target, "changed");
            (
                ActionRecord::new(action, target, Outcome::Changed),
                Some(made),
            )
        }
        Err(err) => {
            tracing::warn!(action, target, error = %err, "change failed");
            let record = ActionRecord {
                error_type: Some(err.error_type().to_owned()),
                detail: Some(err.to_string()),
                ..ActionRecord::new(action, target, Outcome::Failed)
            };
            (record, None)
        }
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
            at: crate::custody::now_utc(),
        })
        .collect()
}

/// Whether every change is made (or was already so).
pub fn all_done(actions: &[ActionRecord]) -> bool {
    actions
        .iter()
        .all(|a| matches!(a.outcome, Outcome::Changed | Outcome::AlreadyDone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PlaybookError;

    #[tokio::test]
    async fn dry_run_does_not_call_the_change() {
        let record = apply(true, "enable termination protection", "i-1", || async {
            panic!("a dry run must not change anything")
        })
        .await;
        assert_eq!(record.outcome, Outcome::WouldChange);
    }

    #[tokio::test]
    async fn a_failed_change_is_recorded_with_its_error_type() {
        let record = apply(false, "detach from Auto Scaling group", "asg-1", || async {
            Err(PlaybookError::AccessDenied {
                operation: "DetachInstances".into(),
                message: "no".into(),
            })
        })
        .await;
        assert_eq!(record.outcome, Outcome::Failed);
        assert_eq!(record.error_type.as_deref(), Some("AccessDenied"));
        let errors = failures("protect-instance", std::slice::from_ref(&record));
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].not_done.as_deref(),
            Some("detach from Auto Scaling group on asg-1")
        );
        assert!(!all_done(&[record]));
    }
}
