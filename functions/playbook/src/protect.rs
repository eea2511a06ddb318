//! protect-instance: keep the evidence from being destroyed, without disturbing the host.
//!
//! Termination protection on, shutdown behaviour `stop`, DeleteOnTermination off
//! on every EBS volume; out of its Auto Scaling group (which would otherwise
//! terminate or replace it) and out of every load balancer (which would keep
//! sending it traffic). The original configuration is recorded so
//! release-instance can put it back.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, EbsInstanceBlockDeviceSpecification,
    InstanceAttributeName, InstanceBlockDeviceMappingSpecification,
};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::actions::{all_done, apply, ensure, failures, ActionRecord};
use crate::capture_metadata::describe_instance;
use crate::case::{record_of, upsert, Case, PerInstance};
use crate::custody::{entry, now_utc, sha256_json};
use crate::error::{AwsCall, Result};
use crate::responder::Clients;

/// The step name in custody entries and errors.
pub const STEP: &str = "protect-instance";

/// A volume's DeleteOnTermination setting before protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSetting {
    /// Device name on the instance.
    pub device_name: String,
    /// Volume id.
    pub volume_id: String,
    /// The setting before protection.
    pub delete_on_termination: bool,
}

/// The instance's Auto Scaling group before it was detached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsgMembership {
    /// Group name.
    pub name: String,
    /// Minimum size before detaching.
    pub min_size: Option<i32>,
    /// Maximum size before detaching.
    pub max_size: Option<i32>,
    /// Desired capacity before detaching.
    pub desired_capacity: Option<i32>,
    /// Whether the detach decremented the desired capacity (no replacement launched).
    pub decremented: bool,
}

/// A target-group registration of the instance before it was deregistered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegistration {
    /// Target group ARN.
    pub target_group_arn: String,
    /// The port the instance was registered on.
    pub port: Option<i32>,
}

/// Everything protect-instance changes, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OriginalConfiguration {
    /// `DisableApiTermination` before protection.
    pub termination_protection: Option<bool>,
    /// `InstanceInitiatedShutdownBehavior` before protection.
    pub shutdown_behavior: Option<String>,
    /// DeleteOnTermination of every EBS volume.
    pub delete_on_termination: Vec<DeviceSetting>,
    /// The Auto Scaling group, if the instance was in one.
    pub auto_scaling_group: Option<AsgMembership>,
    /// ELBv2 target-group registrations.
    pub target_groups: Vec<TargetRegistration>,
    /// Classic load balancers the instance was registered with.
    pub load_balancers: Vec<String>,
}

impl OriginalConfiguration {
    /// Keeps what an earlier run recorded: after a first run changed things, a
    /// second run sees the protected state, which is not the original.
    pub fn keep_earlier(self, earlier: &OriginalConfiguration) -> OriginalConfiguration {
        let mut devices = earlier.delete_on_termination.clone();
        for device in self.delete_on_termination {
            if !devices.iter().any(|d| d.volume_id == device.volume_id) {
                devices.push(device);
            }
        }
        let mut target_groups = earlier.target_groups.clone();
        for tg in self.target_groups {
            if !target_groups.contains(&tg) {
                target_groups.push(tg);
            }
        }
        let mut load_balancers = earlier.load_balancers.clone();
        for lb in self.load_balancers {
            if !load_balancers.contains(&lb) {
                load_balancers.push(lb);
            }
        }
        OriginalConfiguration {
            termination_protection: earlier
                .termination_protection
                .or(self.termination_protection),
            shutdown_behavior: earlier.shutdown_behavior.clone().or(self.shutdown_behavior),
            delete_on_termination: devices,
            auto_scaling_group: earlier
                .auto_scaling_group
                .clone()
                .or(self.auto_scaling_group),
            target_groups,
            load_balancers,
        }
    }
}

/// What protect-instance did to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProtection {
    /// Instance id.
    pub instance_id: String,
    /// The instance's VPC (isolation needs it; saves a lookup).
    pub vpc_id: Option<String>,
    /// The configuration before protection.
    pub original: OriginalConfiguration,
    /// Every change made, already so, would be made (dry run) or failed.
    pub actions: Vec<ActionRecord>,
    /// What a responder should know (a terminated instance...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every change is made or was already so.
    pub complete: bool,
    /// UTC time.
    pub protected_at: String,
}

impl PerInstance for InstanceProtection {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// Protects every instance of the case, concurrently.
pub async fn protect_instances(clients: &Clients, actor: &str, mut case: Case) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let dry_run = case.decision.dry_run;
    let asg_replace = case.policy.asg_launch_replacement;
    let results = join_all(case.incident.instance_ids.iter().map(|id| {
        let earlier = record_of(&case.protection, id).map(|p| p.original.clone());
        protect_instance(clients, id, dry_run, asg_replace, earlier)
    }))
    .await;
    for result in results {
        let protection = result?;
        case.errors.extend(failures(STEP, &protection.actions));
        case.custody.push(entry(
            STEP,
            actor,
            format!(
                "{} instance {}",
                if dry_run {
                    "dry run: would protect"
                } else {
                    "protected"
                },
                protection.instance_id
            ),
            &protect_calls(&protection),
            json!({ "instanceId": protection.instance_id, "dryRun": dry_run }),
            json!({ "actions": protection.actions, "complete": protection.complete }),
            Some(sha256_json(&protection.original)),
        ));
        upsert(&mut case.protection, protection);
    }
    Ok(case)
}

fn protect_calls(protection: &InstanceProtection) -> Vec<&'static str> {
    let mut calls = vec![
        "DescribeInstances",
        "DescribeInstanceAttribute",
        "DescribeAutoScalingInstances",
        "DescribeTargetGroups",
        "DescribeTargetHealth",
        "DescribeLoadBalancers",
    ];
    for action in &protection.actions {
        let call = match action.action.as_str() {
            a if a.starts_with("detach from Auto Scaling") => "DetachInstances",
            a if a.starts_with("deregister from target group") => "DeregisterTargets",
            a if a.starts_with("deregister from classic") => "DeregisterInstancesFromLoadBalancer",
            _ => "ModifyInstanceAttribute",
        };
        if !calls.contains(&call) {
            calls.push(call);
        }
    }
    calls
}

/// Reads the original configuration (any failure here changes nothing and
/// fails the step, so it can be retried), then makes every change concurrently.
pub async fn protect_instance(
    clients: &Clients,
    instance_id: &str,
    dry_run: bool,
    asg_replace: bool,
    earlier: Option<OriginalConfiguration>,
) -> Result<InstanceProtection> {
    let ec2 = &clients.ec2;
    let (instance, termination, shutdown, asg, registrations, load_balancers) = tokio::join!(
        describe_instance(ec2, instance_id),
        instance_attribute(
            ec2,
            instance_id,
            InstanceAttributeName::DisableApiTermination
        ),
        instance_attribute(
            ec2,
            instance_id,
            InstanceAttributeName::InstanceInitiatedShutdownBehavior
        ),
        find_auto_scaling_group(clients, instance_id, !asg_replace),
        find_target_registrations(clients, instance_id),
        find_classic_load_balancers(clients, instance_id),
    );
    let (_, instance) = instance?;
    let vpc_id = instance.vpc_id().map(str::to_owned);
    if instance.state().and_then(|s| s.name()).map(|s| s.as_str()) == Some("terminated") {
        return Ok(InstanceProtection {
            instance_id: instance_id.to_owned(),
            vpc_id,
            original: earlier.unwrap_or_default(),
            actions: Vec::new(),
            warnings: vec!["the instance is terminated: there is nothing left to protect".into()],
            complete: true,
            protected_at: now_utc(),
        });
    }
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
    let current = OriginalConfiguration {
        termination_protection: termination?.and_then(|v| v.parse().ok()),
        shutdown_behavior: shutdown?,
        delete_on_termination: devices.clone(),
        auto_scaling_group: asg?,
        target_groups: registrations?,
        load_balancers: load_balancers?,
    };
    let actions = protect_changes(clients, instance_id, &current, dry_run).await;
    let original = match &earlier {
        Some(earlier) => current.keep_earlier(earlier),
        None => current,
    };
    Ok(InstanceProtection {
        instance_id: instance_id.to_owned(),
        vpc_id,
        complete: all_done(&actions),
        original,
        actions,
        warnings: Vec::new(),
        protected_at: now_utc(),
    })
}

async fn protect_changes(
    clients: &Clients,
    instance_id: &str,
    current: &OriginalConfiguration,
    dry_run: bool,
) -> Vec<ActionRecord> {
    let ec2 = &clients.ec2;
    let termination = async {
        let already = current.termination_protection == Some(true);
        ensure(
            already,
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
        )
        .await
    };
    let shutdown = async {
        let already = current.shutdown_behavior.as_deref() == Some("stop");
        ensure(
            already,
            dry_run,
            "set shutdown behaviour to stop",
            instance_id,
            || async {
                ec2.modify_instance_attribute()
                    .instance_id(instance_id)
                    .instance_initiated_shutdown_behavior(
                        AttributeValue::builder().value("stop").build(),
                    )
                    .send()
                    .await
                    .aws("ModifyInstanceAttribute", Some(instance_id))
                    .map(drop)
            },
        )
        .await
    };
    let keep_volumes = async {
        let action = "turn off DeleteOnTermination";
        let to_change: Vec<&DeviceSetting> = current
            .delete_on_termination
            .iter()
            .filter(|d| d.delete_on_termination)
            .collect();
        let target = current
            .delete_on_termination
            .iter()
            .map(|d| d.volume_id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        ensure(to_change.is_empty(), dry_run, action, &target, || async {
            let mut request = ec2.modify_instance_attribute().instance_id(instance_id);
            for device in &to_change {
                request = request.block_device_mappings(
                    InstanceBlockDeviceMappingSpecification::builder()
                        .device_name(&device.device_name)
                        .ebs(
                            EbsInstanceBlockDeviceSpecification::builder()
                                .volume_id(&device.volume_id)
                                .delete_on_termination(false)
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
        })
        .await
    };
    let asg = async {
        let Some(group) = &current.auto_scaling_group else {
            return None;
        };
        let action = "detach from Auto Scaling group";
        Some(
            apply(dry_run, action, &group.name, || async {
                clients
                    .autoscaling
                    .detach_instances()
                    .auto_scaling_group_name(&group.name)
                    .instance_ids(instance_id)
                    .should_decrement_desired_capacity(group.decremented)
                    .send()
                    .await
                    .aws("DetachInstances", Some(instance_id))
                    .map(drop)
            })
            .await
            .with_detail(if group.decremented {
                "desired capacity decremented: no replacement is launched"
            } else {
                "the group launches a replacement instance"
            }),
        )
    };
    let target_groups = join_all(current.target_groups.iter().map(|tg| {
        apply(
            dry_run,
            "deregister from target group",
            &tg.target_group_arn,
            move || async move {
                clients
                    .elbv2
                    .deregister_targets()
                    .target_group_arn(&tg.target_group_arn)
                    .targets(
                        aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                            .id(instance_id)
                            .set_port(tg.port)
                            .build(),
                    )
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

/// One instance attribute's value as text (`"true"`, `"stop"`).
pub(crate) async fn instance_attribute(
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

/// The instance's Auto Scaling group with its capacities, if it is in one.
pub(crate) async fn find_auto_scaling_group(
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
    let Some(name) = out
        .auto_scaling_instances()
        .iter()
        .find(|i| i.instance_id() == Some(instance_id))
        .and_then(|i| i.auto_scaling_group_name())
    else {
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
    Ok(Some(AsgMembership {
        name: name.to_owned(),
        min_size,
        max_size: group.and_then(|g| g.max_size()),
        desired_capacity,
        decremented: should_decrement(decrement, min_size, desired_capacity),
    }))
}

/// Decrementing below the minimum size is refused by Auto Scaling; then a
/// replacement must be launched.
pub fn should_decrement(wanted: bool, min_size: Option<i32>, desired: Option<i32>) -> bool {
    wanted && desired.unwrap_or(0) > min_size.unwrap_or(0)
}

/// Every target group (in any VPC) in which the instance is a registered target.
pub(crate) async fn find_target_registrations(
    clients: &Clients,
    instance_id: &str,
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
                .filter(|tg| tg.target_type().is_none_or(|t| t.as_str() == "instance"))
                .filter_map(|tg| tg.target_group_arn().map(str::to_owned)),
        );
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    let healths = join_all(target_groups.iter().map(|arn| async move {
        let out = clients
            .elbv2
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .aws("DescribeTargetHealth", Some(instance_id))?;
        Ok::<_, crate::PlaybookError>(
            out.target_health_descriptions()
                .iter()
                .filter_map(|d| d.target())
                .filter(|t| t.id() == Some(instance_id))
                .map(|t| TargetRegistration {
                    target_group_arn: arn.clone(),
                    port: t.port(),
                })
                .collect::<Vec<_>>(),
        )
    }))
    .await;
    let mut registrations = Vec::new();
    for health in healths {
        registrations.extend(health?);
    }
    Ok(registrations)
}

/// Every classic load balancer the instance is registered with.
pub(crate) async fn find_classic_load_balancers(
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

    #[test]
    fn a_second_run_keeps_the_first_runs_originals() {
        let first = OriginalConfiguration {
            termination_protection: Some(false),
            shutdown_behavior: Some("terminate".into()),
            delete_on_termination: vec![DeviceSetting {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-1".into(),
                delete_on_termination: true,
            }],
            auto_scaling_group: Some(AsgMembership {
                name: "web".into(),
                min_size: Some(1),
                max_size: Some(3),
                desired_capacity: Some(2),
                decremented: false,
            }),
            target_groups: vec![TargetRegistration {
                target_group_arn: "tg".into(),
                port: Some(80),
            }],
            load_balancers: vec!["classic".into()],
        };
        let seen_later = OriginalConfiguration {
            termination_protection: Some(true),
            shutdown_behavior: Some("stop".into()),
            delete_on_termination: vec![DeviceSetting {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-1".into(),
                delete_on_termination: false,
            }],
            auto_scaling_group: None,
            target_groups: Vec::new(),
            load_balancers: Vec::new(),
        };
        assert_eq!(seen_later.keep_earlier(&first), first);
    }
}
