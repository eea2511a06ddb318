//! `make bench`: each Lambda's footprint, measured on its release build (what
//! `make package` zips and ships).
//!
//! Every function's `bootstrap` is started against a Runtime API of this
//! bench's own (on 127.0.0.1) and against a moto server with a seeded victim
//! estate, and is given one real invocation: the functions run in the order
//! the state machine runs them, each fed the previous one's Case. Reported per
//! function:
//! - init: process start until its first `GET /runtime/invocation/next`
//!   (cold start: loading, configuration, clients; no network call happens
//!   here; the binary is read once beforehand so that the disk does not count);
//! - invoke: that request until the function posts its answer (against the
//!   local emulator: a relative figure, not AWS latency);
//! - peak RSS: the process's high-water mark (`VmHWM`) once it asks for the
//!   next invocation, against the 128 MB the template gives every function;
//! - the zipped size of `target/lambda/<fn>/bootstrap.zip`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{event_for, repo_root, Estate, Moto, ACCOUNT, REGION};

/// What the Runtime API saw of one process.
enum Seen {
    /// The first `next`: the end of init.
    Ready(Instant),
    /// The invocation's answer (or its error, with `errorType`).
    Answered(Instant, Value, bool),
    /// The second `next`: the invocation is over.
    Idle,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// Serves one connection of the Runtime API: one invocation of `event`.
fn serve_connection(
    stream: TcpStream,
    event: Vec<u8>,
    function: String,
    seen: mpsc::Sender<Seen>,
    first: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    while let Some((method, path, body)) = read_request(&mut reader) {
        if method == "GET" && path.ends_with("/invocation/next") {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let _ = seen.send(Seen::Ready(Instant::now()));
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_millis()
                    + 120_000;
                respond(
                    &mut writer,
                    "200 OK",
                    &[
                        ("content-type", "application/json".into()),
                        ("lambda-runtime-aws-request-id", "bench-request-1".into()),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"),
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000".into(),
                        ),
                    ],
                    &event,
                );
            } else {
                // The function waits for work: the invocation is over. Never answer.
                let _ = seen.send(Seen::Idle);
                std::thread::sleep(Duration::from_secs(3600));
            }
        } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = seen.send(Seen::Answered(
                Instant::now(),
                value,
                path.ends_with("/error"),
            ));
            respond(&mut writer, "202 Accepted", &[], b"{}");
        } else {
            let _ = seen.send(Seen::Answered(
                Instant::now(),
                json!({"errorType": "InitError", "errorMessage": String::from_utf8_lossy(&body)}),
                true,
            ));
            respond(&mut writer, "202 Accepted", &[], b"{}");
        }
    }
}

/// One function's measurement.
struct Footprint {
    init: Duration,
    invoke: Duration,
    peak_rss_kib: u64,
    output: Value,
    failed: bool,
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn measure(function: &str, env: &BTreeMap<String, String>, event: &Value) -> Footprint {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    let payload = event.to_string().into_bytes();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let function = function.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (payload, function, tx, first) =
                    (payload.clone(), function.clone(), tx.clone(), first.clone());
                std::thread::spawn(move || serve_connection(stream, payload, function, tx, first));
            }
        });
    }
    // Read once first, so that the disk does not count: Lambda starts the
    // bootstrap from its own storage, the same for every function.
    let _ = std::fs::read(binary(function));
    let started = Instant::now();
    let mut child: Child = Command::new(binary(function))
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{function}: {e} (run `make package` first)"));
    let wait = |what: &str| {
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{function}: no {what} within 120 s"))
    };
    let Seen::Ready(ready) = wait("first request") else {
        panic!("{function}: answered before asking for work")
    };
    let Seen::Answered(answered, output, failed) = wait("answer") else {
        panic!("{function}: asked for more work without answering")
    };
    let _ = wait("second request");
    let peak_rss_kib = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Footprint {
        init: ready - started,
        invoke: answered - ready,
        peak_rss_kib,
        output,
        failed,
    }
}

fn binary(function: &str) -> PathBuf {
    repo_root()
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(function)
}

fn zipped_size(function: &str) -> u64 {
    std::fs::metadata(
        repo_root()
            .join("target/lambda")
            .join(function)
            .join("bootstrap.zip"),
    )
    .map(|m| m.len())
    .unwrap_or(0)
}

/// moto's Step Functions: a state machine named `name` for dispatch (and
/// start-run) to start executions of.
fn state_machine(endpoint: &str, name: &str) -> String {
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .args(["-c", "import boto3,sys; c=boto3.client('stepfunctions', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing'); print(c.create_state_machine(name=sys.argv[2], roleArn='arn:aws:iam::123456789012:role/sfn', definition='{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":600,\"End\":true}}}')['stateMachineArn'])", endpoint, name])
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// moto's KMS: an HMAC key, the approval key the start function MACs runs with.
fn mac_key(endpoint: &str) -> String {
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .args(["-c", "import boto3,sys; c=boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing'); print(c.create_key(KeySpec='HMAC_256', KeyUsage='GENERATE_VERIFY_MAC')['KeyMetadata']['Arn'])", endpoint])
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The function URL event AWS hands start-run for a signed request by `who`.
fn url_event(who: &str, body: &Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "bench", "domainName": "bench.lambda-url.us-east-1.on.aws",
            "domainPrefix": "bench", "requestId": "bench-1", "routeKey": "$default", "stage": "$default",
            "time": "30/Nov/2026:12:00:00 +0000", "timeEpoch": 1_796_040_000_000_i64,
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "authorizer": {"iam": {"accessKey": "AKIABENCH", "accountId": ACCOUNT, "callerId": "AIDABENCH",
                                   "cognitoIdentity": null, "principalOrgId": null,
                                   "userArn": who, "userId": "AIDABENCH"}},
        },
        "body": body.to_string(), "isBase64Encoded": false,
    })
}

fn environment(
    moto: &Moto,
    estate: &Estate,
    policy_file: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = estate
        .forensic
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        // S3 over HTTPS, as on AWS: the host scripts take https URLs only.
        ("AWS_ENDPOINT_URL_S3", moto.s3_endpoint.clone()),
        (
            "SSL_CERT_FILE",
            system_tests::bench_tls_dir()
                .join("ca.pem")
                .display()
                .to_string(),
        ),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("POLICY_FILE", policy_file.display().to_string()),
        (
            "STATE_MACHINE_ARN",
            state_machine(&moto.endpoint, "forensics"),
        ),
        (
            "BULK_STATE_MACHINE_ARN",
            state_machine(&moto.endpoint, "bulk"),
        ),
        ("APPROVAL_MAC_KEY", mac_key(&moto.endpoint)),
        ("RUST_LOG", "info".into()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

fn main() {
    let moto = Moto::start();
    let estate = moto.seed("footprint");
    // The seeded victim is tagged Environment=staging: this policy sends it
    // through the approval gate, so every function has work, and contains it
    // when no one answers.
    let policy_file = std::env::temp_dir().join(format!(
        "ec2-forensics-bench-policy-{}.json",
        std::process::id()
    ));
    std::fs::write(
        &policy_file,
        r#"{"approvalTags": [{"key": "Environment", "values": ["staging"]}], "onApprovalTimeout": "contain", "acquisitionOrder": "memoryFirst"}"#,
    )
    .expect("policy");
    let env = environment(&moto, &estate, &policy_file);
    let finding = event_for(
        "guardduty-crypto-mining-dns.json",
        &estate.victim.instance_id,
    );

    let mut rows = Vec::new();
    let mut run = |function: &str, event: Value| -> Value {
        let measured = measure(function, &env, &event);
        assert!(!measured.failed, "{function} failed: {}", measured.output);
        rows.push((
            function.to_owned(),
            measured.init,
            measured.invoke,
            measured.peak_rss_kib,
            zipped_size(function),
        ));
        measured.output
    };
    run("dispatch", finding.clone());
    let opened = run("triage", finding);
    let asked = run("request-approval", opened);
    assert!(asked["approval"]["messageId"].is_string());
    // No one answers: an approval counts only with the approval function's
    // KMS MAC over it (the bench has no MAC key), and this policy contains
    // a case no one answered in time.
    let timed_out = json!({"outcome": "timedOut", "at": "2026-11-28T00:00:00Z"});
    let mut case = run(
        "record-approval",
        json!({"case": asked, "answer": timed_out}),
    );
    assert_eq!(case["approval"]["proceed"], true);
    for step in [
        "capture-metadata",
        "protect-instance",
        "snapshot-volumes",
        "acquire-memory",
        "check-command",
        "isolate-network",
        "check-snapshots",
        "share-snapshots",
        "copy-snapshots",
        "check-snapshots",
        "launch-forensic-instance",
        "attach-evidence",
        "run-forensics",
        "check-command",
        "seal-evidence",
    ] {
        case = run(step, case);
        // The evidence volumes are created, then attached, and the
        // workstation's agent comes online: attach-evidence runs until
        // run-forensics has work (as the state machine's loop runs it).
        let ready = |case: &Value| {
            case["workstations"][0]["agent"] == "Online"
                && case["evidenceVolumes"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty() && v.iter().all(|v| v["attached"] == true))
        };
        let mut tries = 0;
        while step == "attach-evidence" && !ready(&case) && tries < 10 {
            std::thread::sleep(std::time::Duration::from_secs(1));
            case = run(step, case);
            tries += 1;
        }
    }
    assert_eq!(
        case["containment"]["contained"], true,
        "the bench's case ends contained"
    );
    // What the measured invocations had to do: the footprint of a step
    // that found nothing to do says little.
    for m in case["memory"].as_array().into_iter().flatten() {
        println!(
            "memory of {}: {} {} (part URLs {}, part size {})",
            m["instanceId"], m["status"], m["reason"], m["partUrls"], m["partSize"]
        );
    }
    for w in case["workstations"].as_array().into_iter().flatten() {
        println!(
            "workstation {}: {} agent {} command {} {}, archive uploads {}",
            w["instanceId"],
            w["state"],
            w["agent"],
            w["commandId"],
            w["reason"],
            w["archiveUploads"]
        );
    }
    run("release-instance", case);
    // The bulk function: one VPC's deny-all network ACL, found or made and
    // read back (the preparation before a subnet cut).
    let prepared = run(
        "bulk",
        json!({"step": "prepare-vpc", "bulkId": "bulk-footprint", "vpcId": estate.vpc_id, "account": ACCOUNT}),
    );
    assert_eq!(prepared["verified"], true, "{prepared}");
    // start-run: a person's request through its function URL, MACed and started.
    let request = json!({"bulk": {
        "action": "quarantine-subnets", "selection": {"vpcs": [estate.vpc_id]},
        "reason": "footprint", "region": REGION, "wholeSubnet": true,
        "requestedAt": "2026-11-30T12:00:00Z"}});
    let started = run(
        "start-run",
        url_event(&format!("arn:aws:iam::{ACCOUNT}:user/analyst"), &request),
    );
    assert_eq!(started["statusCode"], 200, "{started}");
    let _ = std::fs::remove_file(&policy_file);

    println!(
        "\nLambda footprint: release build, one cold invocation each against moto (`make bench`)\n"
    );
    println!("| function | zipped | init | invoke | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    let mut seen = std::collections::BTreeSet::new();
    for (function, init, invoke, rss, zipped) in &rows {
        let note = if seen.insert(function.clone()) {
            ""
        } else {
            " (copies)"
        };
        println!(
            "| {function}{note} | {:.1} MiB | {:.1} ms | {:.0} ms | {:.1} MiB |",
            *zipped as f64 / (1024.0 * 1024.0),
            init.as_secs_f64() * 1000.0,
            invoke.as_secs_f64() * 1000.0,
            *rss as f64 / 1024.0
        );
    }
    let worst_init = rows.iter().map(|r| r.1).max().unwrap_or_default();
    let worst_rss = rows.iter().map(|r| r.3).max().unwrap_or_default();
    println!(
        "\nslowest init {:.1} ms (target 10 ms); largest peak RSS {:.1} MiB (target 16 MiB; every function runs at 128 MB)",
        worst_init.as_secs_f64() * 1000.0,
        worst_rss as f64 / 1024.0
    );
}
