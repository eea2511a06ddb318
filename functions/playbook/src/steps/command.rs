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
    ]);
    let comment: String = run.comment.chars().take(100).collect();
    let out = ssm
        .send_command()
        .document_name(run.document)
        .instance_ids(run.instance_id)
        .set_parameters(Some(parameters))
        .comment(comment)
        // Delivery: an instance that does not pick the command up in ten
        // minutes is recorded as such rather than waited for.
        .timeout_seconds(600)
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
