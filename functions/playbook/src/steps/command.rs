//! The project's host scripts (infra/host) run through SSM Run Command: one
//! document (`RUN_SCRIPT_DOCUMENT`) downloads the script over a pre-signed
//! URL, checks its SHA-256 and runs it with its arguments. Every input is a
//! document parameter the SSM Agent hands over as an environment variable;
//! none is ever part of the command text. check-command reads how each
//! command ended.

use std::collections::HashMap;

use aws_sdk_ssm::types::CommandInvocationStatus;

use crate::error::{AwsCall, PlaybookError, Result};

/// One run of a shipped script on one instance.
#[derive(Debug, Clone)]
pub struct ScriptRun<'a> {
    /// The SSM document (name or ARN).
    pub document: &'a str,
    /// Where it runs.
    pub instance_id: &'a str,
    /// Pre-signed GET of the script.
    pub script_url: &'a str,
    /// The script's hex SHA-256; the document refuses anything else.
    pub script_sha256: &'a str,
    /// The script's arguments, each one word (the document splits on spaces).
    pub arguments: Vec<String>,
    /// What the command is for, as SSM lists it (at most 100 characters).
    pub comment: String,
    /// How long it may run, in seconds (the document's executionTimeout).
    pub timeout_seconds: u64,
}

/// The longest SSM lets a shell script run: 48 hours.
pub const MAX_EXECUTION_SECONDS: u64 = 172_800;
/// How long SSM may take to deliver a command (SendCommand's timeout).
pub const DELIVERY_SECONDS: u64 = 600;

/// The longest a host script given pre-signed URLs is allowed to run: a
/// URL stops working when the role session that signed it ends, whatever
/// its own expiry says, and a role session lasts at most 12 hours (a
/// Lambda's, AWS does not say how long: a run that outlives it fails its
/// uploads, and the case records the failure). Delivery is counted in.
pub const MAX_RUN_SECONDS: u64 = 12 * 3600 - DELIVERY_SECONDS;

/// The time a host script gets to read `bytes` at `mib_per_second`, plus
/// `fixed` seconds for everything else: at least one hour, at most
/// [`MAX_RUN_SECONDS`].
pub fn execution_timeout(bytes: u64, mib_per_second: u64, fixed: u64) -> u64 {
    (fixed + bytes / (mib_per_second.max(1) * 1024 * 1024)).clamp(3600, MAX_RUN_SECONDS)
}

/// How long the URLs a host script uses must stay valid: its delivery and
/// its whole run (a URL made with a role's session is still valid only as
/// long as that session).
pub fn url_lifetime(timeout_seconds: u64) -> std::time::Duration {
    std::time::Duration::from_secs(DELIVERY_SECONDS + timeout_seconds)
}

/// How a command ended on one instance, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Not ended: SSM's status (Pending, InProgress, Delayed, Cancelling).
    Running(String),
    /// Ended with exit code 0: its standard output and error.
    Succeeded {
        /// Standard output (SSM keeps the first 24,000 characters).
        stdout: String,
        /// Standard error.
        stderr: String,
    },
    /// Ended otherwise: SSM's status, the exit code and standard error.
    Failed {
        /// Failed, TimedOut, Cancelled, DeliveryTimedOut...
        status: String,
        /// The script's exit code (-1 when it did not run).
        code: i32,
        /// Standard error.
        stderr: String,
    },
}

/// Joins the arguments for the document's `arguments` parameter, refusing
/// any that would not stay one word.
pub fn joined_arguments(arguments: &[String]) -> Result<String> {
    for argument in arguments {
        if argument.is_empty() || !argument.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PlaybookError::InvalidCase(format!(
                "a host script argument must be one printable word, not {argument:?}"
            )));
        }
    }
    Ok(arguments.join(" "))
}

/// A command a previous attempt of the same step sent: a step retried after
/// its SendCommand went through (the Lambda cut off, its answer lost) finds
/// it instead of sending a second one.
#[derive(Debug, Clone, PartialEq)]
pub struct SentBefore {
    /// SSM's command id.
    pub command_id: String,
    /// The words of the `arguments` parameter it was sent with.
    pub arguments: Vec<String>,
    /// Its `scriptSha256` parameter.
    pub script_sha256: Option<String>,
    /// When SSM received it (RFC 3339).
    pub requested_at: Option<String>,
}

impl SentBefore {
    /// The values that follow `flag` in the arguments, in order.
    pub fn values_of(&self, flag: &str) -> Vec<&str> {
        self.arguments
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }
}

/// The comment a command is sent with (SSM keeps 100 characters).
fn stored_comment(comment: &str) -> String {
    comment.chars().take(100).collect()
}

/// Whether a document SSM lists (a name, or an ARN for a shared document) is `document`.
fn same_document(listed: &str, document: &str) -> bool {
    let name = |d: &str| d.rsplit('/').next().unwrap_or(d).to_owned();
    listed == document || name(listed) == name(document)
}

/// The newest command sent to `instance_id` with `document` and `comment`
/// (the comment names the case and the step), if one was.
pub async fn sent_before(
    ssm: &aws_sdk_ssm::Client,
    document: &str,
    instance_id: &str,
    comment: &str,
) -> Result<Option<SentBefore>> {
    let comment = stored_comment(comment);
    let mut token = None;
    let mut found: Option<SentBefore> = None;
    loop {
        let page = ssm
            .list_commands()
            .instance_id(instance_id)
            .set_next_token(token)
            .send()
            .await
            .aws("ListCommands", Some(instance_id))?;
        for command in page.commands() {
            let ours = command.comment() == Some(comment.as_str())
                && command
                    .document_name()
                    .is_some_and(|d| same_document(d, document));
            let Some(id) = command.command_id().filter(|_| ours) else {
                continue;
            };
            let parameter = |name: &str| {
                command
                    .parameters()
                    .and_then(|p| p.get(name))
                    .and_then(|v| v.first())
                    .cloned()
            };
            let requested_at = command
                .requested_date_time()
                .map(|t| crate::case::custody::rfc3339(*t));
            let newer = match (&found, &requested_at) {
                (None, _) => true,
                (Some(f), Some(at)) => f.requested_at.as_ref().is_none_or(|seen| at > seen),
                (Some(_), None) => false,
            };
            if newer {
                found = Some(SentBefore {
                    command_id: id.to_owned(),
                    arguments: parameter("arguments")
                        .unwrap_or_default()
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    script_sha256: parameter("scriptSha256"),
                    requested_at,
                });
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// Sends the script to its instance; returns the command id.
pub async fn send_script(ssm: &aws_sdk_ssm::Client, run: &ScriptRun<'_>) -> Result<String> {
    let parameters = HashMap::from([
        ("scriptUrl".to_owned(), vec![run.script_url.to_owned()]),
        (
            "scriptSha256".to_owned(),
            vec![run.script_sha256.to_owned()],
        ),
        (
            "arguments".to_owned(),
            vec![joined_arguments(&run.arguments)?],
        ),
        (
            "executionTimeout".to_owned(),
            vec![run
                .timeout_seconds
                .clamp(1, MAX_EXECUTION_SECONDS)
                .to_string()],
        ),
    ]);
    let comment = stored_comment(&run.comment);
    let out = ssm
        .send_command()
        .document_name(run.document)
        .instance_ids(run.instance_id)
        .set_parameters(Some(parameters))
        .comment(comment)
        // Delivery: an instance that does not pick the command up in ten
        // minutes is recorded as such rather than waited for.
        .timeout_seconds(DELIVERY_SECONDS as i32)
        .send()
        .await
        .aws("SendCommand", Some(run.instance_id))?;
    out.command()
        .and_then(|c| c.command_id())
        .map(str::to_owned)
        .ok_or_else(|| PlaybookError::AwsService {
            operation: "SendCommand".into(),
            code: "NoCommandId".into(),
            message: format!("SSM gave no command id for {}", run.instance_id),
        })
}

/// How the command stands on the instance. Right after SendCommand the
/// invocation may not exist yet (`InvocationDoesNotExist`): it is still running.
pub async fn invocation(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
    instance_id: &str,
) -> Result<Invocation> {
    let out = match ssm
        .get_command_invocation()
        .command_id(command_id)
        .instance_id(instance_id)
        .send()
        .await
        .aws("GetCommandInvocation", Some(instance_id))
    {
        Ok(out) => out,
        Err(err) if err.aws_code() == Some("InvocationDoesNotExist") => {
            return Ok(Invocation::Running("Pending".into()))
        }
        Err(err) => return Err(err),
    };
    let status = out
        .status()
        .cloned()
        .unwrap_or(CommandInvocationStatus::Pending);
    let text = |s: Option<&str>| s.unwrap_or_default().to_owned();
    Ok(match status {
        CommandInvocationStatus::Pending
        | CommandInvocationStatus::InProgress
        | CommandInvocationStatus::Delayed
        | CommandInvocationStatus::Cancelling => Invocation::Running(status.as_str().to_owned()),
        CommandInvocationStatus::Success => Invocation::Succeeded {
            stdout: text(out.standard_output_content()),
            stderr: text(out.standard_error_content()),
        },
        other => Invocation::Failed {
            status: other.as_str().to_owned(),
            code: out.response_code(),
            stderr: text(out.standard_error_content()),
        },
    })
}

/// Stops a command that ran too long.
pub async fn cancel(ssm: &aws_sdk_ssm::Client, command_id: &str, instance_id: &str) -> Result<()> {
    ssm.cancel_command()
        .command_id(command_id)
        .instance_ids(instance_id)
        .send()
        .await
        .aws("CancelCommand", Some(instance_id))?;
    Ok(())
}

/// The last non-empty line of a script's output: where the shipped scripts
/// print their JSON result.
pub fn last_line(stdout: &str) -> Option<&str> {
    stdout.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// The end of a script's standard error, short enough for the Case.
pub fn error_tail(stderr: &str) -> String {
    let trimmed = stderr.trim();
    let start = trimmed
        .char_indices()
        .rev()
        .nth(499)
        .map(|(i, _)| i)
        .unwrap_or(0);
    trimmed[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time follows the size of what a script reads, within SSM's bounds,
    /// and check-command waits for the delivery and the whole run.
    #[test]
    fn timeouts_grow_with_the_bytes_to_read_within_ssms_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(
            execution_timeout(GIB, 100, 1800),
            3600,
            "never under an hour"
        );
        let terabyte = crate::steps::analysis::analysis_timeout(&[Some(1024)]);
        assert_eq!(terabyte, 1800 + 1024 * 1024 / 100);
        assert!(
            terabyte > 7200,
            "a terabyte gets more than the old two hours"
        );
        assert_eq!(
            crate::steps::analysis::analysis_timeout(&[None]),
            terabyte,
            "an unknown size counts as 1 TiB"
        );
        assert_eq!(
            crate::steps::analysis::analysis_timeout(&[Some(16 * 1024); 4]),
            MAX_RUN_SECONDS,
            "never longer than a role session, which signs the URLs"
        );
        assert_eq!(
            crate::steps::memory::capture_timeout(1024 * 1024),
            900 + 1024 * 1024 / 50,
            "1 TiB of memory at 50 MiB/s"
        );
        assert_eq!(url_lifetime(3600).as_secs(), 4200);
        // A longer run is checked less often: the bounded checks cover it.
        let mut poll = crate::case::Poll::default();
        poll.spread(DELIVERY_SECONDS + 3600, 360);
        assert_eq!(poll.wait_seconds, 20, "an hour fits 360 checks 20 s apart");
        poll.spread(DELIVERY_SECONDS + MAX_RUN_SECONDS, 360);
        assert!(poll.wait_seconds * 359 >= DELIVERY_SECONDS + MAX_RUN_SECONDS);
        assert_eq!(poll.wait_seconds, 121);
    }

    #[test]
    fn arguments_stay_one_word_each() {
        let ok = joined_arguments(&["--part-size".into(), "8388608".into()]).unwrap();
        assert_eq!(ok, "--part-size 8388608");
        assert!(joined_arguments(&["two words".into()]).is_err());
        assert!(joined_arguments(&["new\nline".into()]).is_err());
        assert!(joined_arguments(&[String::new()]).is_err());
    }

    #[test]
    fn the_result_is_the_last_non_empty_line_and_errors_keep_their_end() {
        assert_eq!(last_line("progress\n{\"a\":1}\n\n"), Some("{\"a\":1}"));
        assert_eq!(last_line(" \n"), None);
        let long = "x".repeat(2000) + "the end";
        let tail = error_tail(&long);
        assert_eq!(tail.chars().count(), 500);
        assert!(tail.ends_with("the end"));
    }
}
