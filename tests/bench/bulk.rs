//! `make bench`: a thousand instances at once, against EC2's request token
//! buckets.
//!
//! A VPC of 20 subnets with 50 instances each (tagged as one campaign) in
//! moto, every AWS request delayed by 50 ms, and every EC2 request passed
//! through the token buckets "Request throttling for the Amazon EC2 API"
//! documents (each API its own bucket; a request past it answered
//! `RequestLimitExceeded`, as EC2 answers it). The library code the bulk
//! Lambdas run, at the concurrency the plan sets:
//! - `quarantine-subnets`: plan (reads), the VPC's deny-all ACL, one cut per
//!   subnet; time until every subnet is cut and read back;
//! - `contain`: the playbook's containment per instance (identity, triage,
//!   protection, isolation, read-back: what `contain` runs), as many at once
//!   as the plan's MaxConcurrency, each worker with clients of its own (a
//!   Lambda execution environment each, so each has its own SDK retry quota);
//!   time until every instance is verified isolated.
//!
//! Reported: wall time, requests, throttled requests, by API, and the floor
//! the buckets alone set ((calls - burst) / refill rate of the slowest API).
//! The local stack's own Step Functions and `cargo lambda watch` are not in
//! the loop: that emulator runs one invocation of a function at a time, so a
//! thousand executions there would measure it, not the design (the bulk
//! state machine itself is tested end to end in `cli/tests/bulk.rs`).
//!
//! Usage: bench-bulk [INSTANCES] [SUBNETS] [CONCURRENCY] (default 1000 20,
//! and the plan's MaxConcurrency for `contain`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "measure.rs"]
#[allow(dead_code)] // each bench uses its part
mod measure;

use futures::future::join_all;
use measure::{clients, Call, Ec2Buckets, Recorder, Throttling};
use playbook::aws::Clients;
use playbook::case::bulk::{BulkAction, BulkRequest, Selection, SubnetItem};
use playbook::policy::Policy;
use playbook::steps::bulk::resolve::plan_bulk;
use playbook::steps::bulk::subnets::{cut_subnet, prepare_quarantine_acl};
use playbook::steps::bulk::{max_concurrency, refill_concurrency};
use playbook::steps::contain::{contain_by_hand_with, ByHand};
use system_tests::{launch_into, vpc_with_subnets, Moto, REGION};

const LATENCY: Duration = Duration::from_millis(50);
const CAMPAIGN: &str = "bench-campaign";

struct Estate {
    vpc: String,
    instances: Vec<String>,
}

/// The estate, made without latency or throttling.
async fn estate(clients: &Clients, instances: usize, subnets: usize) -> Estate {
    let (vpc, subnet_ids) = vpc_with_subnets(clients, 40, subnets).await;
    let per_subnet = instances.div_ceil(subnets);
    let mut ids = Vec::new();
    for subnet in subnet_ids {
        let count = per_subnet.min(instances - ids.len()) as i32;
        if count == 0 {
            continue;
        }
        let launched = launch_into(clients, &subnet, count, &[("campaign", CAMPAIGN)], false).await;
        ids.extend(launched.into_iter().map(|(id, _)| id));
    }
    Estate {
        vpc,
        instances: ids,
    }
}

/// Requests, throttled requests, and the busiest APIs with the floor their
/// bucket sets.
fn report(calls: &[Call]) {
    let throttled = calls.iter().filter(|c| c.throttled).count();
    println!("  requests: {} ({} throttled)", calls.len(), throttled);
    let mut by_api: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for call in calls {
        let entry = by_api.entry(call.operation.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(call.throttled);
    }
    let mut rows: Vec<_> = by_api.into_iter().collect();
    rows.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    for (api, (n, t)) in rows.iter().take(12) {
        let (capacity, refill) = Ec2Buckets::size(api, true);
        let served = n - t;
        let floor = (served as f64 - capacity).max(0.0) / refill;
        println!(
            "    {api:<40} {n:>6} ({t:>5} throttled)  bucket {capacity:.0}/{refill:.0} per s: {served} served need >= {floor:.0} s"
        );
    }
}

async fn quarantine_subnets(moto: &Moto, estate: &Estate) {
    println!("\nquarantine-subnets: tag campaign={CAMPAIGN}, whole subnets");
    let recorder = Recorder::new();
    let throttling = Arc::new(Throttling::Ec2Buckets(Ec2Buckets::default()));
    let clients = clients(&moto.endpoint, LATENCY, recorder.clone(), Some(throttling)).await;
    let started = Instant::now();
    let request = BulkRequest {
        action: BulkAction::QuarantineSubnets,
        selection: Selection {
            tags: vec![format!("campaign={CAMPAIGN}")],
            ..Selection::default()
        },
        reason: "bench".into(),
        region: REGION.into(),
        account: None,
        whole_subnet: true,
        requested_by: None,
        requested_at: "bench".into(),
        release_of: None,
        without_snapshots: false,
    };
    let plan = plan_bulk(&clients, request).await.expect("plan");
    let planned = started.elapsed();
    assert!(plan.ready(), "{:?}", plan.refusals);
    println!(
        "  plan: {} instances, {} subnets, {:.1} s (reads only)",
        plan.instances.len(),
        plan.subnets.len(),
        planned.as_secs_f64()
    );
    let acl = prepare_quarantine_acl(&clients.ec2, &estate.vpc, &plan.bulk_id, false)
        .await
        .expect("deny-all ACL");
    let acl_id = acl.network_acl_id.clone().expect("acl id");
    let prepared = started.elapsed();
    let slots = Arc::new(tokio::sync::Semaphore::new(plan.max_concurrency as usize));
    let cuts = join_all(plan.subnets.iter().map(|subnet| {
        let (clients, slots, acl_id) = (&clients, Arc::clone(&slots), acl_id.clone());
        let item = SubnetItem {
            bulk_id: plan.bulk_id.clone(),
            subnet_id: subnet.subnet_id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            account: None,
            whole_subnet: true,
            selected: subnet.selected.clone(),
        };
        async move {
            let _slot = slots.acquire().await.expect("slot");
            let cut = cut_subnet(&clients.ec2, None, &item, &acl_id, false).await;
            (cut.map(|c| c.verified).unwrap_or(false), started.elapsed())
        }
    }))
    .await;
    let verified = cuts.iter().filter(|(v, _)| *v).count();
    let last = cuts.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "  deny-all ACL ready at {:.1} s; every subnet cut and read back at {:.1} s ({verified}/{} verified, {} at once)",
        prepared.as_secs_f64(),
        last.as_secs_f64(),
        cuts.len(),
        plan.max_concurrency
    );
    report(&recorder.take());
}

async fn contain_all(moto: &Moto, estate: &Estate, workers: Option<usize>) {
    // The calls of the containments back to back, at the pace the refill
    // serves (the refill rule the plan uses for items that are nothing but
    // their calls): what EC2 allows a thousand containments. The plan runs
    // `contain` items 16 at once, because an item there is a whole case
    // that mostly waits on memory and snapshots.
    let planned = max_concurrency(BulkAction::Contain, estate.instances.len()) as usize;
    let workers = workers.unwrap_or(refill_concurrency(BulkAction::Contain) as usize);
    println!(
        "\ncontain: {} instances, their calls {workers} at once (the refill's pace; the plan runs {planned} cases at once), on the cut subnets",
        estate.instances.len()
    );
    let recorder = Recorder::new();
    let throttling = Arc::new(Throttling::Ec2Buckets(Ec2Buckets::default()));
    let queue = Arc::new(Mutex::new(
        estate.instances.iter().cloned().collect::<VecDeque<_>>(),
    ));
    let started = Instant::now();
    let outcomes = join_all((0..workers).map(|_| {
        let (recorder, throttling, queue) = (
            recorder.clone(),
            Arc::clone(&throttling),
            Arc::clone(&queue),
        );
        async move {
            let clients = clients(&moto.endpoint, LATENCY, recorder, Some(throttling)).await;
            let mut done = Vec::new();
            loop {
                let Some(id) = queue.lock().expect("queue").pop_front() else {
                    return done;
                };
                let case = contain_by_hand_with(
                    clients.clone(),
                    REGION.into(),
                    ByHand {
                        region: None,
                        instance_id: id.clone(),
                        reason: "bench".into(),
                        dry_run: false,
                        policy: Some(Policy::default()),
                    },
                )
                .await;
                let why = match &case {
                    Ok(case) if case.is_contained() => None,
                    Ok(case) => Some(
                        case.errors
                            .first()
                            .map(|e| e.error_type.clone())
                            .unwrap_or_else(|| "NotContained".into()),
                    ),
                    Err(err) => Some(err.error_type().to_owned()),
                };
                done.push((id, why, started.elapsed()));
            }
        }
    }))
    .await;
    let all: Vec<_> = outcomes.into_iter().flatten().collect();
    let contained = all.iter().filter(|(_, why, _)| why.is_none()).count();
    let last = all.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, why, _) in &all {
        if let Some(why) = why {
            *failures.entry(why.as_str()).or_default() += 1;
        }
    }
    println!(
        "  {contained}/{} verified contained; the last ended at {:.1} s ({:.2} instances/s){}",
        all.len(),
        last.as_secs_f64(),
        all.len() as f64 / last.as_secs_f64().max(0.001),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; not contained: {failures:?}")
        }
    );
    report(&recorder.take());
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let instances: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let subnets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let workers: Option<usize> = args.next().and_then(|a| a.parse().ok());
    println!(
        "bulk benchmark: {instances} instances in {subnets} subnets, moto on 127.0.0.1, +{} ms per request, EC2's documented request token buckets",
        LATENCY.as_millis()
    );
    let moto = Moto::start();
    let setup = moto.clients().await;
    let made = Instant::now();
    let estate = estate(&setup, instances, subnets).await;
    println!(
        "  estate: {} instances made in {:.1} s (no latency, no throttling)",
        estate.instances.len(),
        made.elapsed().as_secs_f64()
    );
    quarantine_subnets(&moto, &estate).await;
    contain_all(&moto, &estate, workers).await;
}
