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
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "measure.rs"]
#[allow(dead_code)] // each bench uses its part
mod measure;

use measure::{clients, critical_chain, waves, Faults, Recorder, Throttling};
use playbook::policy::Policy;
use playbook::steps::contain::{contain_by_hand_with, ByHand};
use system_tests::{Moto, REGION};

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
    throttling: Option<Arc<Throttling>>,
) -> Measurement {
    let recorder = Recorder::new();
    let clients = clients(&moto.endpoint, latency, recorder.clone(), throttling).await;
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
        let faults = Arc::new(Throttling::Random(Faults::new(seed, 300)));
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
