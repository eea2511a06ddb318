//! `sync-alarms`: the crypto-mining alarms kept in step with the instances.
//!
//! Every signal the policy's `miningAlarms` names gets one CloudWatch alarm
//! per instance that is not terminated (and carries the policy's tag, if it
//! names one): created for a new instance, brought back to the policy when
//! it differs, deleted once its instance is gone. Each alarm's name starts
//! with the crypto-mining convention's prefix, so its `ALARM` reaches
//! dispatch through the `CryptoMiningAlarm` rule and opens a case like any
//! other. Only alarms named with [`SYNC_PREFIX`] are this function's: an
//! alarm a person made under the convention is never touched. The
//! responder's own workstations (the forensic instance profile) are never
//! watched: their analysis is CPU-bound by design.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};
use serde::Serialize;

use crate::aws::Responder;
use crate::case::policy::{MiningAlarms, MiningSignal};
use crate::error::{PlaybookError, Result};
use crate::findings::classify::CRYPTO_MINING_ALARM_PREFIX;
use crate::steps::capture_metadata::tag_map;
use crate::steps::images::not_terminated;

/// The names of the alarms this function keeps (under the convention's prefix).
pub const SYNC_PREFIX: &str = "ec2-forensics-crypto-mining-sync-";
/// The namespace of the metric filters' metrics (the template's).
pub const NAMESPACE: &str = "EC2Forensics";
/// Connections to mining-pool ports, per instance (VPC flow logs).
pub const POOL_CONNECTIONS: &str = "MiningPoolConnections";
/// DNS queries for known pool domains, per instance (Resolver query logs).
pub const POOL_DNS_QUERIES: &str = "MiningPoolDnsQueries";
/// The metrics' period.
const PERIOD_SECONDS: i32 = 300;
/// DeleteAlarms takes at most this many names.
const DELETE_BATCH: usize = 100;
/// At most this many alarms are put in one run (CloudWatch takes few
/// PutMetricAlarm calls a second): the rest are deferred to the next run,
/// 15 minutes later, so a first run over a large estate ends well inside the
/// function's timeout instead of being cut off half-done.
pub const MAX_PUTS_PER_RUN: usize = 150;

/// One alarm as the policy wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSpec {
    /// Its name.
    pub name: String,
    /// The signal.
    pub signal: MiningSignal,
    /// The instance it watches.
    pub instance_id: String,
    /// The metric's namespace and name.
    pub namespace: String,
    /// The metric.
    pub metric: String,
    /// Average (CPU) or sum (the log signals).
    pub statistic: String,
    /// The threshold (at or above).
    pub threshold: f64,
    /// Consecutive 5-minute periods at or above it.
    pub periods: i32,
}

fn signal_word(signal: MiningSignal) -> &'static str {
    match signal {
        MiningSignal::Cpu => "cpu",
        MiningSignal::PoolPorts => "pool-ports",
        MiningSignal::PoolDns => "pool-dns",
    }
}

/// The alarm of `signal` on `instance_id`, as `rules` say.
pub fn spec(rules: &MiningAlarms, signal: MiningSignal, instance_id: &str) -> AlarmSpec {
    let name = format!("{SYNC_PREFIX}{}-{instance_id}", signal_word(signal));
    debug_assert!(name.starts_with(CRYPTO_MINING_ALARM_PREFIX));
    let (namespace, metric, statistic, threshold, periods) = match signal {
        MiningSignal::Cpu => (
            "AWS/EC2",
            "CPUUtilization",
            "Average",
            rules.cpu_percent,
            i32::try_from(rules.cpu_minutes / 5).unwrap_or(1),
        ),
        MiningSignal::PoolPorts => (NAMESPACE, POOL_CONNECTIONS, "Sum", 1.0, 1),
        MiningSignal::PoolDns => (NAMESPACE, POOL_DNS_QUERIES, "Sum", 1.0, 1),
    };
    AlarmSpec {
        name,
        signal,
        instance_id: instance_id.to_owned(),
        namespace: namespace.to_owned(),
        metric: metric.to_owned(),
        statistic: statistic.to_owned(),
        threshold,
        periods,
    }
}

/// An instance `sync-alarms` may watch, as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The instance.
    pub instance_id: String,
    /// Its tags now.
    pub tags: BTreeMap<String, String>,
    /// Its instance profile's ARN.
    pub instance_profile: Option<String>,
}

/// The alarms the policy wants for `instances`, in instance order, and the
/// instances left without them because of `maxAlarms`: pure.
pub fn desired(
    rules: &MiningAlarms,
    instances: &[Watched],
    workstation_profile: Option<&str>,
) -> (Vec<AlarmSpec>, Vec<String>) {
    let mut signals: Vec<MiningSignal> = rules.signals.clone();
    signals.sort();
    signals.dedup();
    let (mut specs, mut over) = (Vec::new(), Vec::new());
    if signals.is_empty() {
        return (specs, over);
    }
    let mut sorted: Vec<&Watched> = instances.iter().collect();
    sorted.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    for instance in sorted {
        let ours = workstation_profile.is_some_and(|profile| {
            instance
                .instance_profile
                .as_deref()
                .is_some_and(|p| same_profile(p, profile))
        });
        if ours {
            continue;
        }
        if let Some(rule) = &rules.tag {
            if rule.matches(&instance.tags).is_none() {
                continue;
            }
        }
        if specs.len() + signals.len() > rules.max_alarms {
            over.push(instance.instance_id.clone());
            continue;
        }
        specs.extend(
            signals
                .iter()
                .map(|s| spec(rules, *s, &instance.instance_id)),
        );
    }
    (specs, over)
}

/// Whether an instance's profile ARN is the configured workstation profile
/// (an ARN, or a name: the ARN's last part).
fn same_profile(arn: &str, configured: &str) -> bool {
    arn == configured || arn.rsplit('/').next() == Some(configured)
}

/// The comparison every alarm uses.
const COMPARISON: ComparisonOperator = ComparisonOperator::GreaterThanOrEqualToThreshold;
/// A period without data is not a breach (an idle or stopped instance).
const MISSING_DATA: &str = "notBreaching";

/// Whether an existing alarm already is what `spec` says: every field
/// `put` sets, so an alarm changed by hand (a threshold raised out of reach,
/// the comparison turned round) is put back.
fn matches_spec(alarm: &MetricAlarm, spec: &AlarmSpec) -> bool {
    alarm.namespace() == Some(spec.namespace.as_str())
        && alarm.metric_name() == Some(spec.metric.as_str())
        && alarm.statistic().map(|s| s.as_str()) == Some(spec.statistic.as_str())
        && alarm.extended_statistic().is_none()
        && alarm.unit().is_none()
        && alarm.threshold() == Some(spec.threshold)
        && alarm.evaluation_periods() == Some(spec.periods)
        && alarm.datapoints_to_alarm() == Some(spec.periods)
        && alarm.period() == Some(PERIOD_SECONDS)
        && alarm.comparison_operator() == Some(&COMPARISON)
        && alarm.treat_missing_data() == Some(MISSING_DATA)
        && alarm.actions_enabled() != Some(false)
        && alarm.dimensions().len() == 1
        && alarm.dimensions()[0].name() == Some("InstanceId")
        && alarm.dimensions()[0].value() == Some(spec.instance_id.as_str())
}

/// What one run of `sync-alarms` did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The Region.
    pub region: String,
    /// Instances not terminated.
    pub instances: usize,
    /// Alarms the policy wants.
    pub wanted: usize,
    /// Created.
    pub created: Vec<String>,
    /// Put again: they differed from the policy.
    pub updated: Vec<String>,
    /// Deleted: their instance is gone, or the policy no longer wants them.
    pub deleted: Vec<String>,
    /// Already as the policy says.
    pub kept: usize,
    /// Instances left without alarms by `maxAlarms`.
    pub over_limit: Vec<String>,
    /// Alarms left for the next run by [`MAX_PUTS_PER_RUN`].
    pub deferred: Vec<String>,
    /// Alarms that could not be put or deleted, with why.
    pub failed: Vec<String>,
}

/// Brings this function's alarms in step with the instances and the
/// policy: stale alarms deleted first, then the missing or changed ones put
/// (at most [`MAX_PUTS_PER_RUN`]). Any change that failed fails the run
/// (`Incomplete`, after the report is logged), so the schedule's retries and
/// dead-letter queue see it.
pub async fn sync(responder: &Responder) -> Result<SyncReport> {
    let rules = &responder.policy.mining_alarms;
    let clients = &responder.clients;
    let mut report = SyncReport {
        region: responder.region.clone(),
        ..SyncReport::default()
    };
    let instances = watched_instances(responder).await?;
    report.instances = instances.len();
    let (specs, over) = desired(
        rules,
        &instances,
        responder.config.forensic_instance_profile.as_deref(),
    );
    report.wanted = specs.len();
    report.over_limit = over;

    let mut existing: BTreeMap<String, MetricAlarm> = BTreeMap::new();
    let mut pages = clients
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(SYNC_PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| PlaybookError::from_sdk("DescribeAlarms", None, &e))?;
        for alarm in page.metric_alarms() {
            if let Some(name) = alarm.alarm_name() {
                existing.insert(name.to_owned(), alarm.clone());
            }
        }
    }

    let wanted: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let stale: Vec<String> = existing
        .keys()
        .filter(|name| !wanted.contains(name.as_str()))
        .cloned()
        .collect();
    for batch in stale.chunks(DELETE_BATCH) {
        match clients
            .cloudwatch
            .delete_alarms()
            .set_alarm_names(Some(batch.to_vec()))
            .send()
            .await
        {
            Ok(_) => report.deleted.extend(batch.iter().cloned()),
            Err(e) => report.failed.push(format!(
                "deleting {}: {}",
                batch.join(", "),
                PlaybookError::from_sdk("DeleteAlarms", None, &e)
            )),
        }
    }
    let mut puts = 0;
    for spec in &specs {
        let current = existing.get(&spec.name);
        if current.is_some_and(|a| matches_spec(a, spec)) {
            report.kept += 1;
            continue;
        }
        if puts == MAX_PUTS_PER_RUN {
            report.deferred.push(spec.name.clone());
            continue;
        }
        puts += 1;
        match put(responder, spec).await {
            Ok(()) if current.is_some() => report.updated.push(spec.name.clone()),
            Ok(()) => report.created.push(spec.name.clone()),
            Err(err) => report.failed.push(format!("{}: {err}", spec.name)),
        }
    }
    tracing::info!(
        created = report.created.len(),
        updated = report.updated.len(),
        deleted = report.deleted.len(),
        kept = report.kept,
        deferred = report.deferred.len(),
        failed = report.failed.len(),
        "crypto-mining alarms in step"
    );
    if !report.failed.is_empty() {
        let logged = serde_json::to_string(&report).unwrap_or_default();
        tracing::error!(report = %logged, "crypto-mining alarms not all in step");
        return Err(PlaybookError::AwsService {
            operation: "SyncAlarms".into(),
            code: "Incomplete".into(),
            message: format!(
                "{} of the alarms could not be put or deleted: {}",
                report.failed.len(),
                report.failed.join("; ")
            ),
        });
    }
    Ok(report)
}

async fn put(responder: &Responder, spec: &AlarmSpec) -> Result<()> {
    responder
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&spec.name)
        .alarm_description(format!(
            "ec2-forensics sync-alarms: {} on {}; ALARM opens a case (the CryptoMiningAlarm rule)",
            signal_word(spec.signal),
            spec.instance_id
        ))
        .namespace(&spec.namespace)
        .metric_name(&spec.metric)
        .dimensions(
            Dimension::builder()
                .name("InstanceId")
                .value(&spec.instance_id)
                .build(),
        )
        .statistic(Statistic::from(spec.statistic.as_str()))
        .period(PERIOD_SECONDS)
        .evaluation_periods(spec.periods)
        .datapoints_to_alarm(spec.periods)
        .threshold(spec.threshold)
        .comparison_operator(COMPARISON)
        .treat_missing_data(MISSING_DATA)
        .tags(
            Tag::builder()
                .key("ec2-forensics:managed-by")
                .value("sync-alarms")
                .build(),
        )
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("PutMetricAlarm", None, &e))?;
    Ok(())
}

/// The Region's instances that are not terminated (nor terminating).
async fn watched_instances(responder: &Responder) -> Result<Vec<Watched>> {
    Ok(not_terminated(&responder.clients)
        .await?
        .iter()
        .filter_map(|instance| {
            Some(Watched {
                instance_id: instance.instance_id()?.to_owned(),
                tags: tag_map(instance.tags()),
                instance_profile: instance
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .map(str::to_owned),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::policy::TagRule;

    fn instance(id: &str, tags: &[(&str, &str)], profile: Option<&str>) -> Watched {
        Watched {
            instance_id: id.into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            instance_profile: profile.map(str::to_owned),
        }
    }

    #[test]
    fn each_signal_gets_one_alarm_per_watched_instance_under_the_convention() {
        let rules = MiningAlarms {
            signals: vec![MiningSignal::PoolDns, MiningSignal::Cpu, MiningSignal::Cpu],
            cpu_percent: 85.0,
            cpu_minutes: 20,
            ..MiningAlarms::default()
        };
        let instances = [
            instance("i-2", &[], None),
            instance("i-1", &[], None),
            instance(
                "i-ws",
                &[],
                Some("arn:aws:iam::1:instance-profile/ec2-forensics-workstation"),
            ),
        ];
        let (specs, over) = desired(&rules, &instances, Some("ec2-forensics-workstation"));
        assert!(over.is_empty());
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "ec2-forensics-crypto-mining-sync-cpu-i-1",
                "ec2-forensics-crypto-mining-sync-pool-dns-i-1",
                "ec2-forensics-crypto-mining-sync-cpu-i-2",
                "ec2-forensics-crypto-mining-sync-pool-dns-i-2",
            ],
            "the workstation is never watched; a signal named twice is one alarm"
        );
        assert!(names
            .iter()
            .all(|n| n.starts_with(CRYPTO_MINING_ALARM_PREFIX)));
        let cpu = &specs[0];
        assert_eq!((cpu.threshold, cpu.periods), (85.0, 4));
        assert_eq!(cpu.metric, "CPUUtilization");
        assert_eq!(specs[1].metric, POOL_DNS_QUERIES);
        assert_eq!(specs[1].statistic, "Sum");
    }

    #[test]
    fn the_tag_and_the_limit_bound_the_alarms() {
        let rules = MiningAlarms {
            signals: vec![MiningSignal::Cpu, MiningSignal::PoolPorts],
            tag: Some(TagRule {
                key: "mining-watch".into(),
                values: vec!["on".into()],
            }),
            max_alarms: 3,
            ..MiningAlarms::default()
        };
        let instances = [
            instance("i-1", &[("mining-watch", "on")], None),
            instance("i-2", &[("mining-watch", "on")], None),
            instance("i-3", &[("mining-watch", "off")], None),
        ];
        let (specs, over) = desired(&rules, &instances, None);
        assert_eq!(specs.len(), 2, "one instance's two alarms fit under 3");
        assert_eq!(over, vec!["i-2".to_owned()]);
        let (none, _) = desired(&MiningAlarms::default(), &instances, None);
        assert!(none.is_empty(), "no signal, no alarm");
    }
}
