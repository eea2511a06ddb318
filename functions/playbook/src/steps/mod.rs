//! One module per playbook step. Each takes the Case and returns it with its
//! own section filled; `contain` runs protect-instance and isolate-network
//! with their reads in one wave, for the CLI's break-glass containment.

pub mod analysis;
pub mod approval;
pub mod bulk;
pub mod capture_metadata;
pub mod command;
pub mod contain;
pub mod disk;
pub mod dispatch;
pub mod evidence;
#[cfg(test)]
pub(crate) mod history_events;
pub mod images;
pub mod investigate;
pub mod isolate;
pub mod launches;
pub mod lease;
pub mod memory;
pub mod mining_alarms;
pub mod protect;
pub mod readiness;
pub mod recovery;
pub mod release;
pub mod report;
pub mod security_hub;
pub mod status;
pub mod triage;
pub mod workstation;

use aws_sdk_ec2::types::{Filter, Instance};
use futures::future::join_all;

use std::collections::BTreeMap;

use crate::error::{PlaybookError, Result};

/// Tag on every resource the responder creates, naming its purpose.
pub const ROLE_TAG: &str = "ec2-forensics:role";
/// Tag on the suspect instance: the case that contains it.
pub const CASE_TAG: &str = "ec2-forensics:case-id";
/// Tag on the suspect instance: quarantined or released.
pub const STATUS_TAG: &str = "ec2-forensics:status";

/// One instance of the case as EC2 described it (with the owning account), or why not.
pub type Described = (String, Result<(Option<String>, Instance)>);

/// Describes every instance of the case, concurrently, each on its own: one
/// unknown instance does not hide the others.
pub async fn describe_all(ec2: &aws_sdk_ec2::Client, instance_ids: &[String]) -> Vec<Described> {
    join_all(instance_ids.iter().map(|id| async move {
        (
            id.clone(),
            capture_metadata::describe_instance(ec2, id).await,
        )
    }))
    .await
}

/// The filters that find what the responder made for a case in `role`
/// (snapshots, copies, workstations, evidence volumes): its case and role tags.
pub fn case_role_filters(case_id: &str, role: &str) -> Vec<Filter> {
    vec![
        Filter::builder()
            .name(format!("tag:{CASE_TAG}"))
            .values(case_id)
            .build(),
        Filter::builder()
            .name(format!("tag:{ROLE_TAG}"))
            .values(role)
            .build(),
    ]
}

/// Whether EC2 reports the instance terminated: nothing is left to protect or isolate.
pub fn is_terminated(instance: &Instance) -> bool {
    instance.state().and_then(|s| s.name()).map(|s| s.as_str()) == Some("terminated")
}

/// Whether the instance carries the tag `key` = `value`.
pub fn has_tag(instance: &Instance, key: &str, value: &str) -> bool {
    instance
        .tags()
        .iter()
        .any(|t| t.key() == Some(key) && t.value() == Some(value))
}

/// The first error, when every instance's reads failed for a reason a retry
/// may fix: the step then fails, so the state machine retries it; otherwise
/// failures are recorded per instance and the others go on.
pub fn all_failed_transiently<T>(reads: &BTreeMap<String, Result<T>>) -> Option<PlaybookError> {
    let mut first = None;
    for result in reads.values() {
        match result {
            Err(err) if err.is_transient() => {
                first.get_or_insert_with(|| err.clone());
            }
            _ => return None,
        }
    }
    first
}

/// One line of printable ASCII of at most `max` characters: finding text
/// carries no control or bidi character into a mail client or a terminal
/// (SNS subjects and notices).
pub fn printable_line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_failing_transiently_fails_the_step_otherwise_failures_are_per_instance() {
        let throttled = || {
            Err::<(), _>(PlaybookError::Throttled {
                operation: "DescribeInstances".into(),
                message: "slow down".into(),
            })
        };
        let all: BTreeMap<String, Result<()>> =
            [("i-1".into(), throttled()), ("i-2".into(), throttled())].into();
        assert_eq!(
            all_failed_transiently(&all).map(|e| e.error_type()),
            Some("Throttled")
        );
        let some: BTreeMap<String, Result<()>> =
            [("i-1".into(), throttled()), ("i-2".into(), Ok(()))].into();
        assert!(all_failed_transiently(&some).is_none());
    }
}
