//! What the benches share: an SDK HTTP connector in front of moto that
//! delays every AWS request by an injected latency, can answer requests with
//! the throttling errors AWS sends (a random share of them, or as EC2's
//! request token buckets would), and records each one; and the sequential
//! waves of a run's requests.

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
use system_tests::REGION;

/// One AWS request as the connector saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub start: Duration,
    pub end: Duration,
    pub throttled: bool,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    epoch: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            epoch: Instant::now(),
            calls: Arc::default(),
        }
    }

    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("recorder lock"))
    }
}

/// Decides, reproducibly from a seed, which requests are throttled.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<u64>,
    per_mille: u64,
}

impl Faults {
    pub fn new(seed: u64, per_mille: u64) -> Self {
        Faults {
            state: Mutex::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            per_mille,
        }
    }

    pub fn throttle(&self) -> bool {
        let mut x = self.state.lock().expect("faults lock");
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 1000 < self.per_mille
    }
}

/// Which requests are answered with a throttling error.
#[derive(Debug)]
pub enum Throttling {
    /// A fixed share of every request, drawn from a seed.
    Random(Faults),
    /// EC2 requests beyond their API's token bucket (the other services
    /// only get the latency).
    Ec2Buckets(Ec2Buckets),
}

impl Throttling {
    fn throttle(&self, request: &HttpRequest, operation: &str) -> bool {
        match self {
            Self::Random(faults) => faults.throttle(),
            Self::Ec2Buckets(buckets) => is_ec2(request) && !buckets.take(request, operation),
        }
    }
}

/// EC2's request token buckets as "Request throttling for the Amazon EC2 API"
/// documents them: each API its own bucket, of its category's size and
/// refill rate (or its own, for the uncategorised actions the playbook
/// calls), refilled continuously.
#[derive(Debug)]
pub struct Ec2Buckets {
    epoch: Instant,
    tokens: Mutex<BTreeMap<String, (f64, f64)>>,
}

impl Default for Ec2Buckets {
    fn default() -> Self {
        Ec2Buckets {
            epoch: Instant::now(),
            tokens: Mutex::default(),
        }
    }
}

/// The non-mutating actions with a smaller bucket when called without a
/// filter or pagination.
const UNFILTERED_SMALLER: [&str; 7] = [
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
];

/// Uncategorised actions the playbook calls, with their own sizes.
const OWN_BUCKETS: [(&str, f64, f64); 10] = [
    ("CreateTags", 100.0, 10.0),
    ("DeleteTags", 100.0, 10.0),
    ("ModifyNetworkInterfaceAttribute", 100.0, 5.0),
    ("CreateSnapshots", 100.0, 5.0),
    ("CreateSnapshot", 100.0, 5.0),
    ("TerminateInstances", 100.0, 5.0),
    ("AssociateIamInstanceProfile", 100.0, 5.0),
    ("DisassociateIamInstanceProfile", 100.0, 5.0),
    ("ModifySnapshotAttribute", 100.0, 5.0),
    ("CreateVolume", 100.0, 5.0),
];

impl Ec2Buckets {
    /// The capacity and refill rate of `operation`'s bucket.
    pub fn size(operation: &str, filtered: bool) -> (f64, f64) {
        if let Some((_, capacity, refill)) =
            OWN_BUCKETS.iter().find(|(name, _, _)| *name == operation)
        {
            return (*capacity, *refill);
        }
        let reads = ["Describe", "Get", "List", "Search"];
        if reads.iter().any(|r| operation.starts_with(r)) {
            if !filtered && UNFILTERED_SMALLER.contains(&operation) {
                return (50.0, 10.0);
            }
            return (100.0, 20.0);
        }
        // Mutating actions, and the resource-intensive ones (the same size).
        (50.0, 5.0)
    }

    /// Takes a token from the request's bucket, if there is one.
    fn take(&self, request: &HttpRequest, operation: &str) -> bool {
        let body = request
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let filtered = [
            "Filter.",
            "MaxResults=",
            "NextToken=",
            "InstanceId.",
            "NetworkInterfaceId.",
            "GroupId.",
            "SnapshotId.",
            "VolumeId.",
        ]
        .iter()
        .any(|k| body.contains(k));
        let (capacity, refill) = Self::size(operation, filtered);
        let key = if filtered || !UNFILTERED_SMALLER.contains(&operation) {
            operation.to_owned()
        } else {
            format!("{operation} (unfiltered)")
        };
        let now = self.epoch.elapsed().as_secs_f64();
        let mut tokens = self.tokens.lock().expect("buckets lock");
        let (level, last) = tokens.entry(key).or_insert((capacity, now));
        *level = (*level + (now - *last) * refill).min(capacity);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }
}

fn is_ec2(request: &HttpRequest) -> bool {
    request
        .body()
        .bytes()
        .is_some_and(|b| String::from_utf8_lossy(b).contains("Version=2016-11-15"))
}

#[derive(Debug)]
struct MeasuringConnector {
    inner: SharedHttpConnector,
    latency: Duration,
    recorder: Recorder,
    throttling: Option<Arc<Throttling>>,
}

impl HttpConnector for MeasuringConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = operation_of(&request);
        let recorder = self.recorder.clone();
        let latency = self.latency;
        let start = recorder.epoch.elapsed();
        let throttled = self
            .throttling
            .as_ref()
            .is_some_and(|t| t.throttle(&request, &operation));
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

pub async fn clients(
    endpoint: &str,
    latency: Duration,
    recorder: Recorder,
    throttling: Option<Arc<Throttling>>,
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
            throttling: throttling.clone(),
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
pub fn critical_chain(calls: &[Call]) -> Vec<String> {
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

pub fn waves(calls: &[Call]) -> usize {
    critical_chain(calls).len()
}
