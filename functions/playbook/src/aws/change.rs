//! Making one change and recording how it ended.
//!
//! Containment steps read everything first (a failure there changes nothing and
//! the step can simply be retried), then make their changes concurrently; each
//! change ends as one [`ActionRecord`].

use std::future::Future;

use crate::case::{ActionRecord, Outcome};
use crate::error::Result;

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
            let record = ActionRecord::failed(action, target, err.error_type(), err.to_string());
            (record, None)
        }
    }
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
    }
}
