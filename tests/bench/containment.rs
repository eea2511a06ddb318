//! `make bench`: what break-glass containment costs, measured against moto.
//!
//! `ec2-forensics contain` (identity and triage included, the library code the
//! CLI runs) is driven against a moto server through an SDK HTTP connector that
//! delays every AWS request by an injected latency, can answer a share of them
//! with the throttling errors AWS sends, and records each one. Reported per
//! scenario: AWS requests, sequential waves (the longest chain of requests each
//! starting after the previous one ended: machine-independent), and wall time
//! at 0 ms and 50 ms per request; then, under 30 % throttling over 5 fault
//! seeds, how many runs ended verified contained and the slowest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use playbook::aws::retry::{retry_config, timeout_config};
use playbook::aws::Clients;
use playbook::policy::Policy;
use playbook::steps::contain::{contain_by_hand_with, ByHand};
use system_tests::{Moto, REGION};

/// One AWS request as the connector saw it.
#[derive(Debug, Clone)]
struct Call {
    operation: String,
    start: Duration,
    end: Duration,
    throttled: bool,
}

#[derive(Debug, Clone)]
struct Recorder {
    epoch: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            epoch: Instant::now(),
            calls: Arc::default(),
        }
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("recorder lock"))
    }
}

/// Decides, reproducibly from a seed, which requests are throttled.
#[derive(Debug)]
struct Faults {
    state: Mutex<u64>,
    per_mille: u64,
}

impl Faults {
    fn new(seed: u64, per_mille: u64) -> Self {
        Faults {
            state: Mutex::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            per_mille,
        }
    }

    fn throttle(&self) -> bool {
        let mut x = self.state.lock().expect("faults lock");
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 1000 < self.per_mille
    }
}

#[derive(Debug)]
struct MeasuringConnector {
    inner: SharedHttpConnector,
    latency: Duration,
    recorder: Recorder,
    faults: Option<Arc<Faults>>,
}

impl HttpConnector for MeasuringConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = operation_of(&request);
        let recorder = self.recorder.clone();
        let latency = self.latency;
        let start = recorder.epoch.elapsed();
        let throttled = self.faults.as_ref().is_some_and(|f| f.throttle());
        let response = if throttled {
            HttpConnectorFuture::ready(Ok(throttling_response(&request)))
        } else {
            self.inner.call(request)
        };
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(latency).await;
            let result = response.await;
            let end = recorder.epoch.elapsed();
            recorder.calls.lock().expect("recorder lock").push(Call {
                operation,
                start,
                end,
                throttled,
            });
            result
        })
    }
}

/// The error AWS sends a throttled caller, in the service's own protocol.
fn throttling_response(request: &HttpRequest) -> HttpResponse {
    let body = request
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let (status, text) = if request.headers().get("x-amz-target").is_some() {
        (
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
        )
    } else if body.contains("Version=2016-11-15") {
        (
            503,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>bench</RequestID></Response>".to_owned(),
        )
    } else {
        (
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>bench</RequestId></ErrorResponse>".to_owned(),
        )
    };
    HttpResponse::new(
        status.try_into().expect("a status code"),
        SdkBody::from(text),
    )
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

async fn clients(
    endpoint: &str,
    latency: Duration,
    recorder: Recorder,
    faults: Option<Arc<Faults>>,
) -> Clients {
    let base = aws_smithy_http_client::Builder::new().build_http();
    let client = http_client_fn(move |settings, components| {
        let inner = aws_smithy_runtime_api::client::http::HttpClient::http_connector(
            &base, settings, components,
        );
        SharedHttpConnector::new(MeasuringConnector {
            inner,
            latency,
            recorder: recorder.clone(),
            faults: faults.clone(),
        })
    });
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
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

/// The longest chain of calls in which each starts after the previous one
/// ended: its operations, first to last.
fn critical_chain(calls: &[Call]) -> Vec<String> {
    let mut by_end: Vec<&Call> = calls.iter().collect();
    by_end.sort_by_key(|c| c.end);
    let mut depth: Vec<(usize, Option<usize>)> = Vec::with_capacity(by_end.len());
    for (i, call) in by_end.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| by_end[j].end <= call.start)
            .max_by_key(|&j| depth[j].0);
        depth.push((before.map_or(0, |j| depth[j].0) + 1, before));
    }
    let mut at = (0..by_end.len()).max_by_key(|&i| depth[i].0);
    let mut chain = Vec::new();
    while let Some(i) = at {
        chain.push(by_end[i].operation.clone());
        at = depth[i].1;
    }
    chain.reverse();
    chain
}

fn waves(calls: &[Call]) -> usize {
    critical_chain(calls).len()
}

struct Measurement {
    calls: usize,
    throttled: usize,
    waves: usize,
    wall: Duration,
    by_operation: BTreeMap<String, usize>,
    chain: Vec<String>,
    contained: bool,
}

async fn contain_once(
    moto: &Moto,
    instance_id: &str,
    latency: Duration,
    faults: Option<Arc<Faults>>,
) -> Measurement {
    let recorder = Recorder::new();
    let clients = clients(&moto.endpoint, latency, recorder.clone(), faults).await;
    recorder.take();
    let started = Instant::now();
    let result = contain_by_hand_with(
        clients,
        REGION.into(),
        ByHand {
            region: None,
            instance_id: instance_id.to_owned(),
            reason: format!("bench at {latency:?}"),
            dry_run: false,
            policy: Some(Policy::default()),
        },
    )
    .await;
    let wall = started.elapsed();
    let calls = recorder.take();
    let mut by_operation = BTreeMap::new();
    for call in &calls {
        *by_operation.entry(call.operation.clone()).or_insert(0) += 1;
    }
    Measurement {
        calls: calls.len(),
        throttled: calls.iter().filter(|c| c.throttled).count(),
        waves: waves(&calls),
        wall,
        by_operation,
        chain: critical_chain(&calls),
        contained: result.as_ref().is_ok_and(|c| c.is_contained()),
    }
}

#[tokio::main]
async fn main() {
    println!("containment benchmark: `ec2-forensics contain` (identity, triage, protect, isolate, read-back), library code, moto on 127.0.0.1");
    println!(
        "{:<60} {:>8} {:>6} {:>10} {:>10}",
        "scenario", "requests", "waves", "+0 ms", "+50 ms"
    );
    let scenarios = [
        "victim: 2 ENIs, EIP, ASG, 3 target groups, ELB, profile (first in its VPC)",
        "bare: 1 ENI, same VPC (groups exist)",
        "victim again (already contained)",
    ];
    let mut rows: Vec<(usize, usize, Vec<Duration>, bool)> = vec![(0, 0, Vec::new(), true); 3];
    let mut detail = Vec::new();
    let mut chains = Vec::new();
    for latency_ms in [0_u64, 50] {
        let latency = Duration::from_millis(latency_ms);
        // A fresh emulator per latency, so the first containment in the VPC creates its groups.
        let moto = Moto::start();
        let estate = moto.seed("bench");
        let ids = [
            estate.victim.instance_id.clone(),
            estate.bare.instance_id.clone(),
            estate.victim.instance_id.clone(),
        ];
        for (row, id) in rows.iter_mut().zip(ids) {
            let m = contain_once(&moto, &id, latency, None).await;
            row.0 = m.calls;
            row.1 = row.1.max(m.waves);
            row.2.push(m.wall);
            row.3 &= m.contained;
            if latency_ms == 50 {
                chains.push(m.chain.join(" -> "));
            }
            if latency_ms == 0 && detail.is_empty() {
                detail = m.by_operation.into_iter().collect();
            }
        }
    }
    for (name, (calls, waves, walls, contained)) in scenarios.iter().zip(&rows) {
        println!(
            "{:<60} {:>8} {:>6} {:>8.0}ms {:>8.0}ms{}",
            name,
            calls,
            waves,
            walls[0].as_secs_f64() * 1000.0,
            walls[1].as_secs_f64() * 1000.0,
            if *contained { "" } else { "  NOT CONTAINED" }
        );
    }

    println!(
        "\nthe sequential waves at +50 ms (one chain of requests, each waiting for the previous):"
    );
    for (name, chain) in scenarios.iter().zip(&chains) {
        println!("  {name}:\n    {chain}");
    }
    println!(
        "  latency alone at 50 ms per request: waves x 50 ms = {} ms, {} ms, {} ms; the rest is the emulator's own time (see +0 ms)",
        rows[0].1 * 50,
        rows[1].1 * 50,
        rows[2].1 * 50
    );

    println!("\nunder 30% throttling (RequestLimitExceeded / Throttling, as AWS sends them), +50 ms per request, the victim, 5 fault seeds:");
    let mut contained = 0;
    let mut slowest = Duration::ZERO;
    for seed in 1..=5_u64 {
        let moto = Moto::start();
        let estate = moto.seed("throttled");
        let faults = Arc::new(Faults::new(seed, 300));
        let m = contain_once(
            &moto,
            &estate.victim.instance_id,
            Duration::from_millis(50),
            Some(faults),
        )
        .await;
        contained += usize::from(m.contained);
        slowest = slowest.max(m.wall);
        println!(
            "  seed {seed}: {} requests ({} throttled), {} waves, {:.0} ms, {}",
            m.calls,
            m.throttled,
            m.waves,
            m.wall.as_secs_f64() * 1000.0,
            if m.contained {
                "contained and verified"
            } else {
                "NOT CONTAINED"
            }
        );
    }
    println!(
        "  contained {contained}/5, slowest {:.0} ms",
        slowest.as_secs_f64() * 1000.0
    );

    println!("\nrequests of the first victim containment, by operation:");
    for (operation, count) in detail {
        println!("  {operation:<44} {count}");
    }
}
