//! `approve`, `deny`, `bulk --execute`, `hold` and `cleanup`: one
//! SigV4-signed POST to a Lambda function URL with `AWS_IAM` auth
//! (`APPROVAL_URL`, `START_URL`, `RECOVERY_URL`). AWS checks
//! the signature and hands the function the caller's identity; the CLI never
//! says who it is, and holds no task token.

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use playbook::PlaybookError;
use serde_json::Value;

/// The operation named in errors: what AWS calls an invocation through a URL.
const OPERATION: &str = "InvokeFunctionUrl";

/// Which function URL a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The approval function: `approve`, `deny`.
    Approval,
    /// The start function: `bulk --execute`.
    Start,
    /// The recovery function (cleanup-case): `hold`, `cleanup`.
    Recovery,
}

impl Door {
    /// The environment variable that holds the URL.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Approval => "APPROVAL_URL",
            Self::Start => "START_URL",
            Self::Recovery => "RECOVERY_URL",
        }
    }

    /// Who may call it, for a refusal's message.
    fn who(self) -> &'static str {
        match self {
            Self::Approval => "approvers need lambda:InvokeFunctionUrl on the approval function",
            Self::Start => "requesters need lambda:InvokeFunctionUrl on the start function",
            Self::Recovery => {
                "holders and cleaners need lambda:InvokeFunctionUrl on the cleanup-case function"
            }
        }
    }

    /// The URL, from the environment.
    pub fn url(self) -> Result<String, PlaybookError> {
        std::env::var(self.variable()).map_err(|_| {
            PlaybookError::Configuration(format!(
                "{} is not set: the stack's {} output",
                self.variable(),
                match self {
                    Self::Approval => "ApprovalUrl",
                    Self::Start => "StartUrl",
                    Self::Recovery => "RecoveryUrl",
                }
            ))
        })
    }
}

/// Sends `asked` (an answer `{caseId, approve, reason}`, or a start
/// `{bulk: ...}`) to `door`'s URL, signed with the caller's credentials for
/// `region`; the function's answer, or its typed error.
pub async fn send(door: Door, region: &str, asked: &Value) -> Result<Value, PlaybookError> {
    let url = door.url()?;
    let url = url.as_str();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| PlaybookError::Configuration(format!("{} {url:?}: {e}", door.variable())))?;
    check_scheme(&uri, door)?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let credentials = config
        .credentials_provider()
        .ok_or_else(|| PlaybookError::Configuration("no AWS credentials to sign with".into()))?
        .provide_credentials()
        .await
        .map_err(|e| {
            PlaybookError::Configuration(format!("no AWS credentials to sign with: {e}"))
        })?;
    let identity = credentials.into();
    let body = asked.to_string();
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(uri.clone())
        .header("host", &host)
        .header("content-type", "application/json")
        .body(body.clone())
        .map_err(|e| PlaybookError::Configuration(e.to_string()))?;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("lambda")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| PlaybookError::Configuration(format!("cannot sign: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| PlaybookError::Configuration(format!("cannot sign: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| PlaybookError::Configuration(format!("cannot sign: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| PlaybookError::Configuration(format!("no trusted certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let request = request.map(|b| Full::new(bytes::Bytes::from(b)));
    let response =
        client
            .request(request)
            .await
            .map_err(|e| PlaybookError::ServiceUnavailable {
                operation: OPERATION.into(),
                message: format!("{url}: {e}"),
            })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| PlaybookError::ServiceUnavailable {
            operation: OPERATION.into(),
            message: e.to_string(),
        })?
        .to_bytes();
    let answered: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::json!({"errorType": "InvalidResponse",
                           "errorMessage": String::from_utf8_lossy(&bytes).chars().take(300).collect::<String>()})
    });
    if status.is_success() {
        return Ok(answered);
    }
    Err(refusal(status.as_u16(), &answered, asked, door))
}

/// HTTPS only; plain HTTP only to this machine's loopback (a local stack).
fn check_scheme(uri: &http::Uri, door: Door) -> Result<(), PlaybookError> {
    let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(PlaybookError::Configuration(format!(
            "{} {uri} is not an https:// URL",
            door.variable()
        ))),
    }
}

/// The function's (or AWS's) refusal as the CLI's typed error.
fn refusal(status: u16, answered: &Value, asked: &Value, door: Door) -> PlaybookError {
    let text = |key: &str| answered[key].as_str().unwrap_or_default().to_owned();
    let (error_type, message) = match (text("errorType"), text("Message"), text("message")) {
        (kind, _, _) if !kind.is_empty() => (kind, text("errorMessage")),
        (_, message, _) if !message.is_empty() => (String::new(), message),
        (_, _, message) => (String::new(), message),
    };
    match (status, error_type.as_str()) {
        (_, "NotAwaitingApproval") => PlaybookError::NotAwaitingApproval {
            case_id: asked["caseId"].as_str().unwrap_or_default().to_owned(),
            why: message,
        },
        (_, "SelfApproval") => PlaybookError::SelfApproval {
            run_id: asked["caseId"].as_str().unwrap_or_default().to_owned(),
            who: "you".into(),
        },
        (_, "NotAuthenticated") => PlaybookError::NotAuthenticated(message),
        (_, "InvalidRequest") => PlaybookError::InvalidRequest(message),
        (401 | 403, _) => PlaybookError::AccessDenied {
            operation: OPERATION.into(),
            message: format!("HTTP {status}: {message} ({})", door.who()),
        },
        (500..=599, "Throttled" | "ServiceUnavailable" | "") => PlaybookError::ServiceUnavailable {
            operation: OPERATION.into(),
            message: format!("HTTP {status}: {message}"),
        },
        _ => PlaybookError::AwsService {
            operation: OPERATION.into(),
            code: if error_type.is_empty() {
                format!("HTTP{status}")
            } else {
                error_type
            },
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://abc.lambda-url.us-east-1.on.aws/",
            "http://127.0.0.1:9100/",
        ] {
            assert!(
                check_scheme(&ok.parse().unwrap(), Door::Approval).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://abc.lambda-url.us-east-1.on.aws/",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                check_scheme(&bad.parse().unwrap(), Door::Start).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals_keep_their_meaning() {
        let asked = serde_json::json!({"caseId": "gd-1", "approve": true});
        let late = refusal(
            409,
            &serde_json::json!({"errorType": "NotAwaitingApproval", "errorMessage": "ended"}),
            &asked,
            Door::Approval,
        );
        assert_eq!(late.error_type(), "NotAwaitingApproval");
        let denied = refusal(
            403,
            &serde_json::json!({"Message": "Forbidden"}),
            &asked,
            Door::Approval,
        );
        assert_eq!(denied.error_type(), "AccessDenied");
        let own = refusal(
            403,
            &serde_json::json!({"errorType": "SelfApproval", "errorMessage": "no"}),
            &asked,
            Door::Approval,
        );
        assert_eq!(own.error_type(), "SelfApproval");
        let start = refusal(
            403,
            &serde_json::json!({"Message": "Forbidden"}),
            &serde_json::json!({"bulk": {}}),
            Door::Start,
        );
        assert!(start.to_string().contains("start function"), "{start}");
    }
}
