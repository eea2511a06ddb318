//! The approval gate's section of the Case: the request a person was sent,
//! and the answer (approved, denied, or none in time) that decides whether
//! the playbook touches the instance.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::policy::ApprovalTimeout;

/// The error name `ec2-forensics deny` sends with `SendTaskFailure`; the
/// state machine catches it.
pub const DENIED_ERROR: &str = "ApprovalDenied";

/// The error Step Functions raises when the gate's task times out.
pub const TIMEOUT_ERROR: &str = "States.Timeout";

/// The approval gate of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// When the request went out (UTC, RFC 3339).
    pub requested_at: String,
    /// How long the gate waits.
    pub timeout_seconds: u64,
    /// What no answer in time means.
    pub on_timeout: ApprovalTimeout,
    /// The SNS topic the request was published to.
    pub topic_arn: String,
    /// SNS's id of the published message.
    pub message_id: String,
    /// The answer, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<ApprovalAnswer>,
    /// Whether the playbook goes on to touch the instance: the state
    /// machine's Choice reads it.
    #[serde(default)]
    pub proceed: bool,
}

/// How the gate was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalOutcome {
    /// A person approved.
    Approved,
    /// A person denied.
    Denied,
    /// No one answered in time.
    TimedOut,
    /// The request could not be sent or stored, so no one could answer.
    NotRequested,
}

/// What a person (or the clock) answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAnswer {
    /// Approved, denied, timed out.
    pub outcome: ApprovalOutcome,
    /// Who answered: the caller identity `approve`/`deny` ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// Why, in the person's words (or the error that ended the wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval function's HMAC over the answer and the execution it
    /// answers (base64), which record-approval checks with KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The bytes the approval function's MAC covers: what was answered, by whom,
/// when and why, for which case, in which execution. An answer copied from
/// another execution, or changed in any field, does not verify.
pub fn mac_message(
    execution_arn: &str,
    case_id: &str,
    outcome: ApprovalOutcome,
    by: &str,
    at: &str,
    reason: Option<&str>,
) -> Vec<u8> {
    let outcome = serde_json::to_value(outcome).unwrap_or(Value::Null);
    serde_json::to_vec(&serde_json::json!([
        "ec2-forensics approval answer v1",
        execution_arn,
        case_id,
        outcome,
        by,
        at,
        reason.unwrap_or_default(),
    ]))
    .unwrap_or_default()
}

/// The message the start function's MAC covers: a run, named by its id,
/// as a person AWS authenticated asked for it. The id is a hash of the
/// whole request, requester and time included, so the MAC binds them all.
/// Its first element keeps it apart from an answer's MAC under the same key.
pub fn request_mac_message(run_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!(["ec2-forensics run request v1", run_id]))
        .unwrap_or_default()
}

/// Whether two identities AWS authenticated are the same person for the
/// approval gate: their ARNs equal ignoring case (IAM does not tell user or
/// role names apart by case). Two sessions of one role with different
/// session names count as different people: where approvers share a role,
/// the role's trust policy should pin the session name to the person
/// (`sts:RoleSessionName` = `${aws:username}`, or IAM Identity Center, which
/// names each session after its user).
pub fn same_identity(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether an identity chose its own name: a federated user
/// (`GetFederationToken`), which any IAM user can become under any name,
/// so no one the gate can tell apart from anyone else.
pub fn chooses_own_name(arn: &str) -> bool {
    arn.contains(":federated-user/")
}

/// The requester of a run, from its execution's input, when the run came
/// through the start function (its input carries the start function's MAC,
/// which the plan step verifies before any approval can be asked for).
pub fn authenticated_requester(input: &Value) -> Option<&str> {
    input.get("requestMac")?.as_str()?;
    input.pointer("/request/requestedBy")?.as_str()
}

impl ApprovalAnswer {
    /// Whether the playbook goes on after this answer under `on_timeout`.
    pub fn proceeds(&self, on_timeout: ApprovalTimeout) -> bool {
        match self.outcome {
            ApprovalOutcome::Approved => true,
            ApprovalOutcome::Denied => false,
            ApprovalOutcome::TimedOut | ApprovalOutcome::NotRequested => {
                on_timeout == ApprovalTimeout::Contain
            }
        }
    }

    /// Reads what the gate's task ended with: the output `approve` sent
    /// (`{"outcome": "approved", "by", "at", "reason"}`) or the error the
    /// state machine caught (`{"Error", "Cause"}`: `deny`'s
    /// `ApprovalDenied` with the same JSON as cause, `States.Timeout`, or
    /// the request's own failure). `now` dates an answer that carries no time.
    pub fn from_task_result(result: &Value, now: &str) -> ApprovalAnswer {
        if let Some(error) = result.get("Error").and_then(Value::as_str) {
            let cause = result.get("Cause").and_then(Value::as_str).unwrap_or("");
            return match error {
                DENIED_ERROR => {
                    let told: Value = serde_json::from_str(cause).unwrap_or(Value::Null);
                    ApprovalAnswer {
                        outcome: ApprovalOutcome::Denied,
                        by: text(&told, "by"),
                        at: text(&told, "at").unwrap_or_else(|| now.to_owned()),
                        // The approval function's cause is JSON, its reason
                        // as the person gave it (none is none: the MAC covers it).
                        reason: if told.is_object() {
                            text(&told, "reason")
                        } else {
                            non_empty(cause)
                        },
                        mac: text(&told, "mac"),
                    }
                }
                TIMEOUT_ERROR => ApprovalAnswer {
                    outcome: ApprovalOutcome::TimedOut,
                    by: None,
                    at: now.to_owned(),
                    reason: Some("no one answered before the approval timeout".into()),
                    mac: None,
                },
                other => ApprovalAnswer {
                    outcome: ApprovalOutcome::NotRequested,
                    by: None,
                    at: now.to_owned(),
                    reason: Some(format!("{other}: {cause}")),
                    mac: None,
                },
            };
        }
        match serde_json::from_value::<ApprovalAnswer>(result.clone()) {
            // The approval function always names the ARN AWS authenticated;
            // an approval that names none did not come from it.
            Ok(answer)
                if answer.outcome == ApprovalOutcome::Approved
                    && answer
                        .by
                        .as_deref()
                        .is_some_and(|by| by.starts_with("arn:")) =>
            {
                answer
            }
            // Only `approve` sends a task output; anything else is not an approval.
            _ => ApprovalAnswer {
                outcome: ApprovalOutcome::NotRequested,
                by: None,
                at: now.to_owned(),
                reason: Some(format!(
                    "the gate ended with an answer that is not an approval: {result}"
                )),
                mac: None,
            },
        }
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).and_then(non_empty)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-11-28T10:00:00Z";

    /// The gate keeps a requester from approving their own run only where
    /// the requester is one AWS authenticated (the start function's MAC is
    /// in the input); a name written into an input without it counts for
    /// nothing, in either direction.
    #[test]
    fn the_requester_counts_only_with_the_start_functions_mac() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let started = json!({"request": {"requestedBy": alice}, "requestMac": "bWFj"});
        assert_eq!(authenticated_requester(&started), Some(alice));
        let written = json!({"request": {"requestedBy": alice}});
        assert_eq!(authenticated_requester(&written), None);
        assert!(same_identity(alice, "arn:aws:iam::111122223333:user/ALICE"));
        assert!(!same_identity(alice, "arn:aws:iam::111122223333:user/bob"));
        assert!(!same_identity(
            "arn:aws:sts::111122223333:assumed-role/soc/alice",
            "arn:aws:sts::111122223333:assumed-role/soc/bob"
        ));
        // The two MACs under the one key are over messages that differ in
        // their first element, so neither function's MAC passes for the other's.
        let answer = String::from_utf8(mac_message(
            "arn",
            "bulk-1",
            ApprovalOutcome::Approved,
            alice,
            NOW,
            None,
        ))
        .unwrap();
        assert!(answer.starts_with(r#"["ec2-forensics approval answer v1","#));
        assert!(String::from_utf8(request_mac_message("bulk-1"))
            .unwrap()
            .starts_with(r#"["ec2-forensics run request v1","#));
    }

    #[test]
    fn an_approval_carries_who_and_goes_on() {
        let answer = ApprovalAnswer::from_task_result(
            &json!({"outcome": "approved", "by": "arn:aws:sts::1:assumed-role/soc/ana", "at": "2026-11-28T09:59:00Z"}),
            NOW,
        );
        assert_eq!(answer.outcome, ApprovalOutcome::Approved);
        assert_eq!(
            answer.by.as_deref(),
            Some("arn:aws:sts::1:assumed-role/soc/ana")
        );
        assert_eq!(answer.at, "2026-11-28T09:59:00Z");
        assert!(answer.proceeds(ApprovalTimeout::Stop));
    }

    #[test]
    fn a_denial_is_read_from_the_caught_error_and_stops() {
        let cause = json!({"by": "arn:aws:iam::1:user/bo", "reason": "change freeze", "at": "2026-11-28T09:58:00Z"});
        let answer = ApprovalAnswer::from_task_result(
            &json!({"Error": "ApprovalDenied", "Cause": cause.to_string()}),
            NOW,
        );
        assert_eq!(answer.outcome, ApprovalOutcome::Denied);
        assert_eq!(answer.by.as_deref(), Some("arn:aws:iam::1:user/bo"));
        assert_eq!(answer.reason.as_deref(), Some("change freeze"));
        assert!(!answer.proceeds(ApprovalTimeout::Contain));
    }

    #[test]
    fn no_answer_follows_the_timeout_policy() {
        let answer =
            ApprovalAnswer::from_task_result(&json!({"Error": "States.Timeout", "Cause": ""}), NOW);
        assert_eq!(answer.outcome, ApprovalOutcome::TimedOut);
        assert_eq!(answer.at, NOW);
        assert!(!answer.proceeds(ApprovalTimeout::Stop));
        assert!(answer.proceeds(ApprovalTimeout::Contain));
    }

    #[test]
    fn a_failed_request_or_a_forged_output_is_not_an_approval() {
        let failed = ApprovalAnswer::from_task_result(
            &json!({"Error": "AccessDenied", "Cause": "sns:Publish"}),
            NOW,
        );
        assert_eq!(failed.outcome, ApprovalOutcome::NotRequested);
        assert!(!failed.proceeds(ApprovalTimeout::Stop));
        let odd = ApprovalAnswer::from_task_result(&json!({"outcome": "denied"}), NOW);
        assert_eq!(odd.outcome, ApprovalOutcome::NotRequested);
        let empty = ApprovalAnswer::from_task_result(&json!({}), NOW);
        assert_eq!(empty.outcome, ApprovalOutcome::NotRequested);
        for nameless in [
            json!({"outcome": "approved", "at": NOW}),
            json!({"outcome": "approved", "by": "the CISO", "at": NOW}),
        ] {
            let answer = ApprovalAnswer::from_task_result(&nameless, NOW);
            assert_eq!(answer.outcome, ApprovalOutcome::NotRequested, "{nameless}");
            assert!(!answer.proceeds(ApprovalTimeout::Stop));
        }
    }
}
