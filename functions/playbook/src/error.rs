//! The one error type of the playbook.
//!
//! Every variant has a stable PascalCase `errorType` (see [`PlaybookError::error_type`]):
//! the state machine's `Retry` and `Catch` clauses name exactly these strings, so
//! renaming one is a breaking change to `statemachine/*.asl.json`.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

/// What went wrong in a playbook step, written for the responder who reads it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaybookError {
    /// The event is not JSON of a known shape, or a required field is missing or
    /// of the wrong type.
    #[error("invalid finding: {0}")]
    InvalidFinding(String),

    /// The event is well formed but comes from a source the responder does not handle.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),

    /// The finding is about something other than an EC2 instance (an access key,
    /// an S3 bucket, an EKS cluster...).
    #[error("no EC2 instance in this finding: {0}")]
    NoInstanceInFinding(String),

    /// EC2 does not know the instance (wrong id, wrong account or region, or long gone).
    #[error("instance {instance_id} was not found: {message}")]
    InstanceNotFound {
        /// The id that was looked up.
        instance_id: String,
        /// What AWS said.
        message: String,
    },

    /// The finding is about another account than the one this responder may act in.
    #[error("the finding is in account {found}, but this responder acts in {expected}")]
    WrongAccount {
        /// Accounts this responder acts in.
        expected: String,
        /// The finding's account.
        found: String,
    },

    /// The finding is about another region than the one this responder runs in.
    #[error("the finding is in region {found}, but this responder runs in {expected}")]
    WrongRegion {
        /// The responder's region.
        expected: String,
        /// The finding's region.
        found: String,
    },

    /// AWS throttled the call even after the SDK's own retries; the state machine retries later.
    #[error("{operation} was throttled: {message}")]
    Throttled {
        /// The AWS operation.
        operation: String,
        /// What AWS said.
        message: String,
    },

    /// The responder's role may not make this call.
    #[error("{operation} was denied: {message}")]
    AccessDenied {
        /// The AWS operation.
        operation: String,
        /// What AWS said.
        message: String,
    },

    /// The endpoint could not be reached or answered with a server error; worth a retry.
    #[error("{operation} failed for a transient reason: {message}")]
    ServiceUnavailable {
        /// The AWS operation.
        operation: String,
        /// What went wrong.
        message: String,
    },

    /// Something the step waits for is not there yet (a snapshot, a command); poll again.
    #[error("not ready: {0}")]
    NotReady(String),

    /// EC2 reports a snapshot (or a copy) in state `error`: that evidence is not preserved.
    #[error("snapshot {snapshot_id} failed: {message}")]
    SnapshotFailed {
        /// The snapshot or copy.
        snapshot_id: String,
        /// EC2's state message.
        message: String,
    },

    /// AWS refused the call for a reason that a retry will not fix.
    #[error("{operation} failed with {code}: {message}")]
    AwsService {
        /// The AWS operation.
        operation: String,
        /// AWS's error code.
        code: String,
        /// What AWS said.
        message: String,
    },

    /// The Case handed to a step is not one this step can work on.
    #[error("invalid case: {0}")]
    InvalidCase(String),

    /// The policy document is not valid.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),

    /// `approve` or `deny` named a case whose approval gate is not waiting.
    #[error("case {case_id} is not waiting for approval: {why}")]
    NotAwaitingApproval {
        /// The case.
        case_id: String,
        /// What the case's record says instead.
        why: String,
    },

    /// The function's configuration (environment) is missing or wrong.
    #[error("configuration error: {0}")]
    Configuration(String),

    /// A request made by a person (a bulk run's selectors, an action) is not
    /// one the responder can carry out as written.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A run's requester is not one AWS authenticated: the run did not come
    /// through the start function (its MAC is missing or wrong), or its
    /// request is stale.
    #[error("request not authenticated: {0}")]
    NotAuthenticated(String),

    /// The person who asked for a run tried to approve it: the approver must
    /// be someone else.
    #[error("{who} asked for {run_id} and may not approve it: another person must")]
    SelfApproval {
        /// The run (a bulk id).
        run_id: String,
        /// Who asked and tried to approve.
        who: String,
    },
}

impl PlaybookError {
    /// The stable name that Step Functions sees as the error of a failed Task.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidFinding(_) => "InvalidFinding",
            Self::UnsupportedEvent(_) => "UnsupportedEvent",
            Self::NoInstanceInFinding(_) => "NoInstanceInFinding",
            Self::InstanceNotFound { .. } => "InstanceNotFound",
            Self::WrongAccount { .. } => "WrongAccount",
            Self::WrongRegion { .. } => "WrongRegion",
            Self::Throttled { .. } => "Throttled",
            Self::AccessDenied { .. } => "AccessDenied",
            Self::ServiceUnavailable { .. } => "ServiceUnavailable",
            Self::NotReady(_) => "NotReady",
            Self::SnapshotFailed { .. } => "SnapshotFailed",
            Self::AwsService { .. } => "AwsServiceError",
            Self::InvalidCase(_) => "InvalidCase",
            Self::InvalidPolicy(_) => "InvalidPolicy",
            Self::NotAwaitingApproval { .. } => "NotAwaitingApproval",
            Self::Configuration(_) => "ConfigurationError",
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::NotAuthenticated(_) => "NotAuthenticated",
            Self::SelfApproval { .. } => "SelfApproval",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::ServiceUnavailable { .. } | Self::NotReady(_)
        )
    }

    /// Evidence whose bytes are not what was expected (`ChecksumMismatch`):
    /// a stored object, an uploaded image or a host's result.
    pub fn checksum_mismatch(operation: &str, message: impl Into<String>) -> Self {
        Self::AwsService {
            operation: operation.to_owned(),
            code: "ChecksumMismatch".into(),
            message: message.into(),
        }
    }

    /// AWS's error code, for an error AWS answered with one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Self::AwsService { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the error says a security group does not exist, which for a
    /// group created a moment ago means "not visible yet" (eventual consistency).
    pub fn is_not_yet_visible(&self) -> bool {
        matches!(
            self.aws_code(),
            Some("InvalidGroup.NotFound" | "InvalidSecurityGroupID.NotFound")
        )
    }

    /// Classifies an AWS SDK error by its error code. `instance_id` names the
    /// instance the call was about, so a not-found error can say which.
    pub fn from_sdk<E>(operation: &str, instance_id: Option<&str>, err: &E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        let meta = err.meta();
        let code = meta.code().unwrap_or_default();
        let message = meta
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| error_chain(err));
        classify(operation, instance_id, code, message)
    }
}

fn classify(
    operation: &str,
    instance_id: Option<&str>,
    code: &str,
    message: String,
) -> PlaybookError {
    let operation = operation.to_owned();
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => PlaybookError::Throttled { operation, message },
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnauthorizedAccess"
        | "AuthFailure"
        | "Forbidden" => PlaybookError::AccessDenied { operation, message },
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
            PlaybookError::InstanceNotFound {
                instance_id: instance_id.unwrap_or("(unknown)").to_owned(),
                message,
            }
        }
        "ServiceUnavailable"
        | "Unavailable"
        | "InternalError"
        | "InternalFailure"
        | "ServiceUnavailableException"
        | "InternalServerError" => PlaybookError::ServiceUnavailable { operation, message },
        "" => {
            // No code: the request never got an AWS answer (connection refused,
            // timeout, unparseable response). A retry may well succeed.
            PlaybookError::ServiceUnavailable { operation, message }
        }
        other => PlaybookError::AwsService {
            operation,
            code: other.to_owned(),
            message,
        },
    }
}

/// The whole `source()` chain of an error on one line: the SDK's top-level
/// message ("dispatch failure") says little without its causes.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<PlaybookError> for Diagnostic {
    fn from(err: PlaybookError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

impl From<serde_json::Error> for PlaybookError {
    fn from(err: serde_json::Error) -> Self {
        PlaybookError::InvalidFinding(err.to_string())
    }
}

/// Turns an AWS SDK call's error into a [`PlaybookError`] that names the operation.
pub trait AwsCall<T> {
    /// Classifies the error of `operation` (about `instance_id`, when it is about one).
    fn aws(self, operation: &str, instance_id: Option<&str>) -> Result<T>;
}

impl<T, E> AwsCall<T> for std::result::Result<T, E>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    fn aws(self, operation: &str, instance_id: Option<&str>) -> Result<T> {
        self.map_err(|e| PlaybookError::from_sdk(operation, instance_id, &e))
    }
}

/// The result type of every playbook operation.
pub type Result<T, E = PlaybookError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_of_every_service_map_to_throttled() {
        for code in ["Throttling", "RequestLimitExceeded", "ThrottlingException"] {
            let err = classify("DescribeInstances", None, code, "m".into());
            assert_eq!(err.error_type(), "Throttled", "{code}");
            assert!(err.is_transient());
        }
    }

    #[test]
    fn denied_calls_map_to_access_denied_and_are_not_retried() {
        for code in [
            "UnauthorizedOperation",
            "AccessDenied",
            "AccessDeniedException",
        ] {
            let err = classify("ModifyInstanceAttribute", None, code, "m".into());
            assert_eq!(err.error_type(), "AccessDenied", "{code}");
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn unknown_instance_names_the_instance() {
        let code = "InvalidInstanceID.NotFound";
        let err = classify("DescribeInstances", Some("i-0abc"), code, "m".into());
        assert_eq!(err.error_type(), "InstanceNotFound");
        assert!(err.to_string().contains("i-0abc"));
    }

    #[test]
    fn other_codes_keep_the_code_for_the_reader() {
        let code = "IncorrectInstanceState";
        let err = classify("ModifyInstanceAttribute", None, code, "m".into());
        assert_eq!(err.error_type(), "AwsServiceError");
        assert!(err.to_string().contains("IncorrectInstanceState"));
    }

    #[test]
    fn diagnostic_carries_the_stable_error_type() {
        let diagnostic: Diagnostic = PlaybookError::NotReady("snapshot 40%".into()).into();
        assert_eq!(diagnostic.error_type, "NotReady");
        assert_eq!(diagnostic.error_message, "not ready: snapshot 40%");
    }
}
