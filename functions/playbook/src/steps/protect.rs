//! protect-instance: keep the evidence from being destroyed, without disturbing the host.
//!
//! Termination protection on, shutdown behaviour `stop`, DeleteOnTermination off
//! on every EBS volume; out of its Auto Scaling group (which would otherwise
//! terminate or replace it once isolation fails its health checks) and out of
//! every load balancer (which would keep sending it traffic), by instance id
//! and, in IP target groups, by each of its private IPs. The original
//! configuration is recorded so release-instance can put it back.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, EbsInstanceBlockDeviceSpecification, Instance, InstanceAttributeName,
    InstanceBlockDeviceMappingSpecification,
};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use futures::future::join_all;
use futures::{stream, StreamExt};
use serde_json::json;

use crate::aws::{apply, ensure, Clients};
use crate::case::custody::{entry, now_utc, sha256_json};
use crate::case::protection::{
    AsgMembership, AutoScalingExposure, DeviceSetting, InstanceProtection, OriginalConfiguration,
    TargetRegistration,
};
use crate::case::{all_done, failures, record_of, tally, upsert, ActionRecord, Case, StepError};
use crate::error::{AwsCall, Result};
use crate::steps::{all_failed_transiently, describe_all, is_terminated, Described};

/// The step name in custody entries and errors.
pub const STEP: &str = "protect-instance";

/// Target groups whose health is read at once: a large estate's scan is
/// bounded, not a burst that throttles everything else.
pub const TARGET_HEALTH_CONCURRENCY: usize = 8;

const CALLS: [&str; 13] = [
    "DescribeInstances",
    "DescribeInstanceAttribute",
    "DescribeAutoScalingInstances",
    "DescribeAutoScalingGroups",
    "DescribeTargetGroups",
    "DescribeTargetHealth",
    "DescribeLoadBalancers",
    "ModifyInstanceAttribute",
    "DetachInstances",
    "SetInstanceProtection",
    "DeregisterTargets",
    "DeregisterInstancesFromLoadBalancer",
    "CreateTags",
];

/// Protects every instance of the case: reads, then changes.
pub async fn protect_instances(clients: &Clients, actor: &str, case: Case) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let described = describe_all(&clients.ec2, &case.incident.instance_ids).await;
    let prepared = prepare(clients, &case, &described).await;
    if let Some(err) = all_failed_transiently(&prepared) {
        return Err(err);
    }
    Ok(protect(clients, actor, case, prepared).await)
}

/// What protection read about one instance: its configuration now.
#[derive(Debug, Clone)]
pub struct ProtectionReads {
    /// Instance id.
    pub instance_id: String,
    /// The primary VPC.
    pub vpc_id: Option<String>,
    /// Terminated instances need nothing.
    pub terminated: bool,
    /// The configuration now.
    pub current: OriginalConfiguration,
    /// Load-balancer scans that failed even after retries: recorded as failed
    /// actions, never fatal to the rest of the protection (or to isolation).
    pub scan_failures: Vec<ActionRecord>,
}

/// Reads every instance's configuration, concurrently.
pub async fn prepare(
    clients: &Clients,
    case: &Case,
    described: &[Described],
) -> BTreeMap<String, Result<ProtectionReads>> {
    let decrement = !case.policy.asg_launch_replacement;
    join_all(described.iter().map(|(id, instance)| async move {
        let reads = match instance {
            Ok((_, instance)) => read_instance(clients, instance, decrement).await,
            Err(err) => Err(err.clone()),
        };
        (id.clone(), reads)
    }))
    .await
    .into_iter()
    .collect()
}

async fn read_instance(
    clients: &Clients,
    instance: &Instance,
    decrement: bool,
) -> Result<ProtectionReads> {
    let ec2 = &clients.ec2;
    let id = instance.instance_id().unwrap_or_default();
    let vpc_id = instance.vpc_id().map(str::to_owned);
    let terminated = is_terminated(instance);
    if terminated {
        return Ok(ProtectionReads {
            instance_id: id.to_owned(),
            vpc_id,
            terminated,
            current: OriginalConfiguration::default(),
            scan_failures: Vec::new(),
        });
    }
    let vpcs: Vec<String> = instance
        .network_interfaces()
        .iter()
        .filter_map(|e| e.vpc_id().map(str::to_owned))
        .collect();
    let addresses: Vec<String> = instance
        .network_interfaces()
        .iter()
        .flat_map(|e| e.private_ip_addresses())
        .filter_map(|a| a.private_ip_address().map(str::to_owned))
        .collect();
    let (termination, shutdown, asg, registrations, load_balancers) = tokio::join!(
        instance_attribute(ec2, id, InstanceAttributeName::DisableApiTermination),
        instance_attribute(
            ec2,
            id,
            InstanceAttributeName::InstanceInitiatedShutdownBehavior
        ),
        find_auto_scaling_group(clients, id, decrement),
        find_target_registrations(clients, id, &vpcs, &addresses),
        find_classic_load_balancers(clients, id),
    );
    let devices: Vec<DeviceSetting> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            Some(DeviceSetting {
                device_name: m.device_name()?.to_owned(),
                volume_id: ebs.volume_id()?.to_owned(),
                delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
            })
        })
        .collect();
    let mut scan_failures = Vec::new();
    let target_groups = scanned(
        "find the instance's target-group registrations",
        id,
        registrations,
        &mut scan_failures,
    );
    let load_balancers = scanned(
        "find the instance's classic load balancers",
        id,
        load_balancers,
        &mut scan_failures,
    );
    Ok(ProtectionReads {
        instance_id: id.to_owned(),
        vpc_id,
        terminated,
        current: OriginalConfiguration {
            termination_protection: termination?.and_then(|v| v.parse().ok()),
            shutdown_behavior: shutdown?,
            delete_on_termination: devices,
            auto_scaling_group: asg?,
            target_groups,
            load_balancers,
        },
        scan_failures,
    })
}

/// What a load-balancer scan found, or nothing with its failure recorded.
fn scanned<T>(
    what: &str,
    instance_id: &str,
    result: Result<Vec<T>>,
    failures: &mut Vec<ActionRecord>,
) -> Vec<T> {
    result.unwrap_or_else(|err| {
        failures.push(ActionRecord::failed(
            what,
            instance_id,
            err.error_type(),
            format!("{err}: the instance may still receive traffic from them"),
        ));
        Vec::new()
    })
}

/// Makes every instance's changes and records them in the Case.
pub async fn protect(
    clients: &Clients,
    actor: &str,
    mut case: Case,
    prepared: BTreeMap<String, Result<ProtectionReads>>,
) -> Case {
    let dry_run = case.decision.dry_run;
    let mut ready = Vec::new();
    for id in case.incident.instance_ids.clone() {
        match prepared.get(&id) {
            Some(Ok(reads)) => ready.push(reads.clone()),
            Some(Err(err)) => case.errors.push(StepError::new(
                STEP,
                err,
                format!("instance {id} was not protected"),
            )),
            None => {}
        }
    }
    let changed = join_all(
        ready
            .iter()
            .map(|r| protect_changes(clients, &r.instance_id, &r.current, dry_run)),
    )
    .await;
    for (reads, mut actions) in ready.into_iter().zip(changed) {
        actions.extend(reads.scan_failures.iter().cloned());
        let id = reads.instance_id.clone();
        let earlier = record_of(&case.protection, &id).map(|p| p.original.clone());
        let auto_scaling = reads
            .current
            .auto_scaling_group
            .as_ref()
            .map(|group| exposure(group, &actions, dry_run));
        let original = match &earlier {
            Some(earlier) => reads.current.keep_earlier(earlier),
            None => reads.current,
        };
        let protection = InstanceProtection {
            instance_id: id.clone(),
            vpc_id: reads.vpc_id,
            complete: all_done(&actions),
            original,
            auto_scaling,
            actions,
            warnings: if reads.terminated {
                vec!["the instance is terminated: there is nothing left to protect".into()]
            } else {
                Vec::new()
            },
            protected_at: now_utc(),
        };
        case.errors.extend(failures(STEP, &protection.actions));
        case.record(entry(
            STEP,
            actor,
            format!(
                "{} instance {id}",
                if dry_run {
                    "dry run: would protect"
                } else {
                    "protected"
                }
            ),
            &CALLS,
            json!({ "instanceId": id, "dryRun": dry_run }),
            json!({ "changes": tally(&protection.actions), "complete": protection.complete }),
            Some(sha256_json(&protection)),
        ));
        upsert(&mut case.protection, protection);
    }
    case
}

/// The action names, shared with the exposure verdict.
const DETACH: &str = "detach from Auto Scaling group";
const SCALE_IN: &str = "protect from scale-in";

/// Whether the Auto Scaling group can still replace, and so terminate, the instance.
fn exposure(group: &AsgMembership, actions: &[ActionRecord], dry_run: bool) -> AutoScalingExposure {
    let detached = actions.iter().any(|a| a.action == DETACH && a.is_done());
    let state = group.lifecycle_state.as_deref().unwrap_or("unknown");
    let (can_terminate_instance, reason) = if detached {
        (
            false,
            format!(
                "detached from {}: the group no longer manages the instance",
                group.name
            ),
        )
    } else if dry_run {
        (true, format!("dry run: still in {} ({state})", group.name))
    } else {
        let scale_in = actions.iter().any(|a| a.action == SCALE_IN && a.is_done());
        (
            true,
            format!(
                "still in {} ({state}){}: once isolated it fails its health checks, and Auto Scaling replaces unhealthy instances and ignores termination protection{}",
                group.name,
                if group.detachable() { ", the detach failed" } else { ", which cannot be detached in this state" },
                if scale_in { "; it is protected from scale-in only" } else { "" }
            ),
        )
    };
    AutoScalingExposure {
        group: group.name.clone(),
        can_terminate_instance,
        reason,
    }
}

async fn protect_changes(
    clients: &Clients,
    instance_id: &str,
    current: &OriginalConfiguration,
    dry_run: bool,
) -> Vec<ActionRecord> {
    if current == &OriginalConfiguration::default() {
        return Vec::new();
    }
    let ec2 = &clients.ec2;
    let termination = ensure(
        current.termination_protection == Some(true),
        dry_run,
        "enable termination protection",
        instance_id,
        || async {
            ec2.modify_instance_attribute()
                .instance_id(instance_id)
                .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .aws("ModifyInstanceAttribute", Some(instance_id))
                .map(drop)
        },
    );
    let shutdown = ensure(
        current.shutdown_behavior.as_deref() == Some("stop"),
        dry_run,
        "set shutdown behaviour to stop",
        instance_id,
        || set_shutdown_behavior(ec2, instance_id, "stop"),
    );
    let to_change: Vec<&DeviceSetting> = current
        .delete_on_termination
        .iter()
        .filter(|d| d.delete_on_termination)
        .collect();
    let volumes = current
        .delete_on_termination
        .iter()
        .map(|d| d.volume_id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let keep_volumes = ensure(
        to_change.is_empty(),
        dry_run,
        "turn off DeleteOnTermination",
        &volumes,
        || set_delete_on_termination(ec2, instance_id, &to_change, false),
    );
    let asg = async {
        let group = current.auto_scaling_group.as_ref()?;
        if group.detachable() {
            let decrement = group.decremented;
            let record = apply(dry_run, DETACH, &group.name, || async {
                clients
                    .autoscaling
                    .detach_instances()
                    .auto_scaling_group_name(&group.name)
                    .instance_ids(instance_id)
                    .should_decrement_desired_capacity(decrement)
                    .send()
                    .await
                    .aws("DetachInstances", Some(instance_id))
                    .map(drop)
            })
            .await;
            return Some(record.with_detail(if decrement {
                "desired capacity decremented: no replacement is launched"
            } else if group.lifecycle_state.as_deref() == Some("Standby") {
                "detached from Standby without decrementing (a Standby instance is outside the capacity already)"
            } else {
                "the group launches a replacement instance"
            }));
        }
        let record = ensure(
            group.protected_from_scale_in == Some(true),
            dry_run,
            SCALE_IN,
            &group.name,
            || async {
                clients
                    .autoscaling
                    .set_instance_protection()
                    .auto_scaling_group_name(&group.name)
                    .instance_ids(instance_id)
                    .protected_from_scale_in(true)
                    .send()
                    .await
                    .aws("SetInstanceProtection", Some(instance_id))
                    .map(drop)
            },
        )
        .await;
        Some(record.with_detail(format!(
            "{} cannot be detached while {}: protected from scale-in instead",
            instance_id,
            group.lifecycle_state.as_deref().unwrap_or("in this state")
        )))
    };
    let mut by_group: BTreeMap<&str, Vec<&TargetRegistration>> = BTreeMap::new();
    for tg in &current.target_groups {
        by_group.entry(&tg.target_group_arn).or_default().push(tg);
    }
    let target_groups = join_all(by_group.into_iter().map(|(arn, targets)| {
        apply(
            dry_run,
            "deregister from target group",
            arn,
            move || async move {
                clients
                    .elbv2
                    .deregister_targets()
                    .target_group_arn(arn)
                    .set_targets(Some(
                        targets.iter().map(|t| target(instance_id, t)).collect(),
                    ))
                    .send()
                    .await
                    .aws("DeregisterTargets", Some(instance_id))
                    .map(drop)
            },
        )
    }));
    let load_balancers = join_all(current.load_balancers.iter().map(|name| {
        apply(
            dry_run,
            "deregister from classic load balancer",
            name,
            move || async move {
                clients
                    .elb
                    .deregister_instances_from_load_balancer()
                    .load_balancer_name(name)
                    .instances(
                        aws_sdk_elasticloadbalancing::types::Instance::builder()
                            .instance_id(instance_id)
                            .build(),
                    )
                    .send()
                    .await
                    .aws("DeregisterInstancesFromLoadBalancer", Some(instance_id))
                    .map(drop)
            },
        )
    }));
    let (termination, shutdown, keep_volumes, asg, target_groups, load_balancers) = tokio::join!(
        termination,
        shutdown,
        keep_volumes,
        asg,
        target_groups,
        load_balancers
    );
    let mut actions = vec![termination, shutdown, keep_volumes];
    actions.extend(asg);
    actions.extend(target_groups);
    actions.extend(load_balancers);
    actions
}

/// The target description of a registration: by instance id, or by IP with its AZ.
pub fn target(instance_id: &str, registration: &TargetRegistration) -> TargetDescription {
    TargetDescription::builder()
        .id(registration.target_id.as_deref().unwrap_or(instance_id))
        .set_port(registration.port)
        .set_availability_zone(registration.availability_zone.clone())
        .build()
}

/// Sets the shutdown behaviour with the `Attribute`/`Value` form of
/// ModifyInstanceAttribute (one attribute per call, as the API asks).
pub async fn set_shutdown_behavior(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    value: &str,
) -> Result<()> {
    ec2.modify_instance_attribute()
        .instance_id(instance_id)
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .value(value)
        .send()
        .await
        .aws("ModifyInstanceAttribute", Some(instance_id))
        .map(drop)
}

/// Sets DeleteOnTermination on the given volumes.
pub async fn set_delete_on_termination(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    devices: &[&DeviceSetting],
    value: bool,
) -> Result<()> {
    let mut request = ec2.modify_instance_attribute().instance_id(instance_id);
    for device in devices {
        request = request.block_device_mappings(
            InstanceBlockDeviceMappingSpecification::builder()
                .device_name(&device.device_name)
                .ebs(
                    EbsInstanceBlockDeviceSpecification::builder()
                        .volume_id(&device.volume_id)
                        .delete_on_termination(value)
                        .build(),
                )
                .build(),
        );
    }
    request
        .send()
        .await
        .aws("ModifyInstanceAttribute", Some(instance_id))
        .map(drop)
}

/// One instance attribute's value as text (`"true"`, `"stop"`).
pub async fn instance_attribute(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    attribute: InstanceAttributeName,
) -> Result<Option<String>> {
    let out = ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(attribute.clone())
        .send()
        .await
        .aws("DescribeInstanceAttribute", Some(instance_id))?;
    Ok(match attribute {
        InstanceAttributeName::DisableApiTermination => out
            .disable_api_termination()
            .and_then(|v| v.value())
            .map(|v| v.to_string()),
        _ => out
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .map(str::to_owned),
    })
}

/// The instance's Auto Scaling group, its lifecycle state and capacities, if it is in one.
pub async fn find_auto_scaling_group(
    clients: &Clients,
    instance_id: &str,
    decrement: bool,
) -> Result<Option<AsgMembership>> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .aws("DescribeAutoScalingInstances", Some(instance_id))?;
    let Some(member) = out
        .auto_scaling_instances()
        .iter()
        .find(|i| i.instance_id() == Some(instance_id))
    else {
        return Ok(None);
    };
    let Some(name) = member.auto_scaling_group_name() else {
        return Ok(None);
    };
    let groups = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .aws("DescribeAutoScalingGroups", Some(instance_id))?;
    let group = groups.auto_scaling_groups().first();
    let min_size = group.and_then(|g| g.min_size());
    let desired_capacity = group.and_then(|g| g.desired_capacity());
    let lifecycle_state = member.lifecycle_state().map(str::to_owned);
    let standby = lifecycle_state.as_deref() == Some("Standby");
    Ok(Some(AsgMembership {
        name: name.to_owned(),
        protected_from_scale_in: member.protected_from_scale_in(),
        lifecycle_state,
        min_size,
        max_size: group.and_then(|g| g.max_size()),
        desired_capacity,
        decremented: !standby && should_decrement(decrement, min_size, desired_capacity),
    }))
}

/// Decrementing below the minimum size is refused by Auto Scaling; then a
/// replacement must be launched.
pub fn should_decrement(wanted: bool, min_size: Option<i32>, desired: Option<i32>) -> bool {
    wanted && desired.unwrap_or(0) > min_size.unwrap_or(0)
}

/// Every registration of the instance in a target group of its VPCs: by
/// instance id, and in IP-type groups by each of its private IPs. The scan is
/// paginated and reads at most [`TARGET_HEALTH_CONCURRENCY`] groups at once.
pub async fn find_target_registrations(
    clients: &Clients,
    instance_id: &str,
    vpcs: &[String],
    addresses: &[String],
) -> Result<Vec<TargetRegistration>> {
    let mut target_groups = Vec::new();
    let mut marker = None;
    loop {
        let page = clients
            .elbv2
            .describe_target_groups()
            .set_marker(marker)
            .send()
            .await
            .aws("DescribeTargetGroups", Some(instance_id))?;
        target_groups.extend(
            page.target_groups()
                .iter()
                .filter(|tg| tg.vpc_id().is_none_or(|v| vpcs.iter().any(|x| x == v)))
                .filter(|tg| {
                    tg.target_type()
                        .is_none_or(|t| matches!(t.as_str(), "instance" | "ip"))
                })
                .filter_map(|tg| tg.target_group_arn().map(str::to_owned)),
        );
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    let healths: Vec<Result<Vec<TargetRegistration>>> = stream::iter(target_groups)
        .map(|arn| async move {
            let out = clients
                .elbv2
                .describe_target_health()
                .target_group_arn(&arn)
                .send()
                .await
                .aws("DescribeTargetHealth", Some(instance_id))?;
            Ok(out
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target())
                .filter(|t| {
                    t.id()
                        .is_some_and(|id| id == instance_id || addresses.iter().any(|a| a == id))
                })
                .map(|t| TargetRegistration {
                    target_group_arn: arn.clone(),
                    target_id: t.id().filter(|id| *id != instance_id).map(str::to_owned),
                    port: t.port(),
                    availability_zone: t.availability_zone().map(str::to_owned),
                })
                .collect())
        })
        .buffer_unordered(TARGET_HEALTH_CONCURRENCY)
        .collect()
        .await;
    let mut registrations = Vec::new();
    for health in healths {
        registrations.extend(health?);
    }
    registrations.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
    Ok(registrations)
}

/// Every classic load balancer the instance is registered with.
pub async fn find_classic_load_balancers(
    clients: &Clients,
    instance_id: &str,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = clients
            .elb
            .describe_load_balancers()
            .set_marker(marker)
            .send()
            .await
            .aws("DescribeLoadBalancers", Some(instance_id))?;
        names.extend(
            page.load_balancer_descriptions()
                .iter()
                .filter(|lb| {
                    lb.instances()
                        .iter()
                        .any(|i| i.instance_id() == Some(instance_id))
                })
                .filter_map(|lb| lb.load_balancer_name().map(str::to_owned)),
        );
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrement_only_above_the_minimum() {
        assert!(should_decrement(true, Some(1), Some(2)));
        assert!(!should_decrement(true, Some(2), Some(2)));
        assert!(!should_decrement(false, Some(0), Some(3)));
    }

    fn group(state: &str) -> AsgMembership {
        AsgMembership {
            name: "web".into(),
            lifecycle_state: Some(state.into()),
            protected_from_scale_in: Some(false),
            min_size: Some(1),
            max_size: Some(3),
            desired_capacity: Some(2),
            decremented: false,
        }
    }

    #[test]
    fn a_detached_instance_cannot_be_terminated_by_its_group() {
        let actions = [ActionRecord::new(
            DETACH,
            "web",
            crate::case::Outcome::Changed,
        )];
        let e = exposure(&group("InService"), &actions, false);
        assert!(!e.can_terminate_instance, "{}", e.reason);
    }

    #[test]
    fn an_instance_held_by_a_lifecycle_hook_stays_exposed_and_says_why() {
        let actions = [ActionRecord::new(
            SCALE_IN,
            "web",
            crate::case::Outcome::Changed,
        )];
        let e = exposure(&group("Pending:Wait"), &actions, false);
        assert!(e.can_terminate_instance);
        assert!(e.reason.contains("cannot be detached"), "{}", e.reason);
        assert!(e.reason.contains("scale-in"), "{}", e.reason);
        let failed = [ActionRecord::failed(DETACH, "web", "AccessDenied", "no")];
        let e = exposure(&group("InService"), &failed, false);
        assert!(e.can_terminate_instance);
        assert!(e.reason.contains("detach failed"), "{}", e.reason);
    }
}
