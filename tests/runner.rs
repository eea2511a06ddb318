//! The local runner names a failed invocation as Step Functions does, so the
//! definition's Retry and Catch are what the tests exercise: a Lambda service
//! failure (HTTP 5xx) is `Lambda.ServiceException`, throttling (429)
//! `Lambda.TooManyRequestsException`, no answer `Lambda.SdkClientException`,
//! a function error its `errorType`, an unhandled one without a type
//! `Lambda.Unknown`. With `--lose-first-answers`, a Task's first answer is lost
//! after the function ran and the Retry runs it again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use system_tests::{free_port, repo_root};

/// A Lambda Invoke API on loopback: each function name answers its way.
/// Returns the endpoint and the count of invocations.
fn lambda_api() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let name = request_line
                .split('/')
                .nth(3)
                .unwrap_or_default()
                .to_owned();
            let (status, extra, answer) = match name.as_str() {
                "service-failure" => (
                    "500 Internal Server Error",
                    "",
                    "the service failed".to_owned(),
                ),
                "throttled" => (
                    "429 Too Many Requests",
                    "",
                    "{\"message\":\"Rate exceeded\"}".to_owned(),
                ),
                "typed-error" => (
                    "200 OK",
                    "X-Amz-Function-Error: Unhandled\r\n",
                    json!({"errorType": "InstanceNotFound", "errorMessage": "gone"}).to_string(),
                ),
                "crashed" => (
                    "200 OK",
                    "X-Amz-Function-Error: Unhandled\r\n",
                    "Runtime exited".to_owned(),
                ),
                _ => ("200 OK", "", String::from_utf8(body).unwrap()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (endpoint, calls)
}

/// Runs a one-Task definition calling `function`, with `retry` as its Retry.
fn run(function: &str, endpoint: &str, retry: Value, flags: &[&str]) -> Value {
    let dir = std::env::temp_dir().join(format!("ec2-forensics-runner-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let stem: String = function
        .split('-')
        .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
        .collect();
    let definition = json!({
        "StartAt": "Probe",
        "States": {"Probe": {
            "Type": "Task", "Resource": format!("${{{stem}FunctionArn}}"),
            "Retry": retry, "End": true
        }}
    });
    std::fs::write(dir.join("definition.json"), definition.to_string()).unwrap();
    std::fs::write(dir.join("input.json"), json!({"probe": true}).to_string()).unwrap();
    let runner = repo_root().join("infra/local/runner");
    let out = std::process::Command::new(runner.join("node_modules/.bin/node"))
        .arg(runner.join("run.mjs"))
        .arg("--definition")
        .arg(dir.join("definition.json"))
        .arg("--input")
        .arg(dir.join("input.json"))
        .args(["--lambda-endpoint", endpoint])
        .args(flags)
        .output()
        .expect("the runner runs");
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn invocation_failures_carry_the_names_step_functions_gives_them() {
    let (endpoint, _) = lambda_api();
    for (function, error) in [
        ("service-failure", "Lambda.ServiceException"),
        ("throttled", "Lambda.TooManyRequestsException"),
        ("typed-error", "InstanceNotFound"),
        ("crashed", "Lambda.Unknown"),
    ] {
        let report = run(function, &endpoint, json!([]), &[]);
        assert_eq!(report["status"], "FAILED", "{function}: {report}");
        assert_eq!(report["error"], error, "{function}: {report}");
    }
    let closed = format!("http://127.0.0.1:{}", free_port());
    let report = run("echo", &closed, json!([]), &[]);
    assert_eq!(report["error"], "Lambda.SdkClientException", "{report}");
}

#[test]
fn a_lost_first_answer_is_retried_by_the_definitions_retry_and_only_by_it() {
    let retry = json!([{
        "ErrorEquals": ["Lambda.ClientExecutionTimeoutException"],
        "IntervalSeconds": 1, "MaxAttempts": 2
    }]);
    let (endpoint, calls) = lambda_api();
    let report = run("echo", &endpoint, retry, &["--lose-first-answers"]);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(
        report["faults"],
        json!([{"state": "Probe", "error": "Lambda.ClientExecutionTimeoutException"}])
    );
    assert_eq!(report["output"], json!({"probe": true}));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the function ran twice");

    let (endpoint, calls) = lambda_api();
    let report = run("echo", &endpoint, json!([]), &["--lose-first-answers"]);
    assert_eq!(
        report["status"], "FAILED",
        "without a Retry the loss fails the Task"
    );
    assert_eq!(report["error"], "Lambda.ClientExecutionTimeoutException");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
