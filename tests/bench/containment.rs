//! `make bench`: what containment costs, measured on the local stack.
//!
//! Containment (protect-instance then isolate-network, the library code the
//! Lambdas run) is driven against a moto server through an SDK HTTP connector
//! that delays every AWS request by an injected latency and records it. Reported
//! per scenario: AWS API calls, sequential round trips on the critical path
//! (the longest chain of requests each starting after the previous one ended),
//! and wall time, at 0 ms and at 50 ms per request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use playbook::steps::isolate::isolate_instances;
use playbook::policy::Policy;
use playbook::steps::protect::protect_instances;
use playbook::aws::Clients;
use playbook::steps::triage::triage;
use serde_json::json;
use system_tests::{Moto, ACCOUNT, REGION};

/// One AWS request as the connector saw it.
#[derive(Debug, Clone)]
struct Call {
    operation: String,
    start: Duration,
    end: Duration,
}

#[derive(Debug, Clone)]
struct Recorder {
    epoch: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("recorder lock"))
    }
}

#[derive(Debug)]
struct DelayingConnector {
    inner: SharedHttpConnector,
    latency: Duration,
    recorder: Recorder,
}

impl HttpConnector for DelayingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = operation_of(&request);
        let recorder = self.recorder.clone();
        let latency = self.latency;
        let start = recorder.epoch.elapsed();
        let response = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(latency).await;
            let result = response.await;
            let end = recorder.epoch.elapsed();
            recorder.calls.lock().expect("recorder lock").push(Call {
                operation,
                start,
                end,
            });
            result
        })
    }
}

/// The API action: `Action=` of the query protocols, or the JSON protocols' target header.
fn operation_of(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let body = request
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("unknown")
        .to_owned()
}

async fn clients(endpoint: &str, latency: Duration, recorder: Recorder) -> Clients {
    let base = aws_smithy_http_client::Builder::new().build_http();
    let client = http_client_fn(move |settings, components| {
        let inner = aws_smithy_runtime_api::client::http::HttpClient::http_connector(
            &base, settings, components,
        );
        SharedHttpConnector::new(DelayingConnector {
            inner,
            latency,
            recorder: recorder.clone(),
        })
    });
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .http_client(client)
        .load()
        .await;
    Clients::new(&sdk)
}

/// The longest chain of calls in which each starts after the previous one ended.
fn critical_path(calls: &[Call]) -> usize {
    let mut by_end: Vec<&Call> = calls.iter().collect();
    by_end.sort_by_key(|c| c.end);
    let mut depth: Vec<usize> = Vec::with_capacity(by_end.len());
    for (i, call) in by_end.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| by_end[j].end <= call.start)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

struct Measurement {
    calls: usize,
    round_trips: usize,
    wall: Duration,
    by_operation: BTreeMap<String, usize>,
    contained: bool,
}

async fn contain_once(moto: &Moto, instance_id: &str, latency: Duration) -> Measurement {
    let recorder = Recorder {
        epoch: Instant::now(),
        calls: Arc::default(),
    };
    let clients = clients(&moto.endpoint, latency, recorder.clone()).await;
    let responder = moto.responder(Policy::default()).await;
    let reason = format!("bench at {latency:?}");
    let case = triage(
        &responder,
        json!({"instanceId": instance_id, "reason": reason, "requestedBy": "bench"}),
    )
    .await
    .expect("triage");
    recorder.take();
    let actor = format!("arn:aws:iam::{ACCOUNT}:user/bench");
    let started = Instant::now();
    let case = protect_instances(&clients, &actor, case)
        .await
        .expect("protect");
    let case = isolate_instances(&clients, &actor, case)
        .await
        .expect("isolate");
    let wall = started.elapsed();
    let calls = recorder.take();
    let mut by_operation = BTreeMap::new();
    for call in &calls {
        *by_operation.entry(call.operation.clone()).or_insert(0) += 1;
    }
    Measurement {
        calls: calls.len(),
        round_trips: critical_path(&calls),
        wall,
        by_operation,
        contained: case.is_contained(),
    }
}

#[tokio::main]
async fn main() {
    println!("containment benchmark: protect-instance then isolate-network, library code, moto on 127.0.0.1");
    println!(
        "{:<58} {:>6} {:>12} {:>12}",
        "scenario", "calls", "round trips", "wall"
    );
    let mut detail = Vec::new();
    for latency_ms in [0_u64, 50] {
        let latency = Duration::from_millis(latency_ms);
        // A fresh emulator per latency, so the first containment in a VPC creates its groups.
        let moto = Moto::start();
        let estate = moto.seed("bench");
        let scenarios = [
            (
                "victim: 2 ENIs, EIP, ASG, 2 target groups, ELB, profile",
                estate.victim.instance_id.clone(),
            ),
            (
                "bare: 1 ENI, same VPC (isolation groups now exist)",
                estate.bare.instance_id.clone(),
            ),
            (
                "victim again (already contained: reads only)",
                estate.victim.instance_id.clone(),
            ),
        ];
        for (name, id) in scenarios {
            let m = contain_once(&moto, &id, latency).await;
            assert!(m.contained, "{name}: not contained");
            println!(
                "{:<58} {:>6} {:>12} {:>10.0}ms   (+{latency_ms} ms per AWS call)",
                name,
                m.calls,
                m.round_trips,
                m.wall.as_secs_f64() * 1000.0
            );
            if latency_ms == 0 && detail.is_empty() {
                detail = m.by_operation.into_iter().collect();
            }
        }
    }
    println!("\ncalls of the first victim containment, by operation:");
    for (operation, count) in detail {
        println!("  {operation:<44} {count}");
    }
}
