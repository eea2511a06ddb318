//! release-instance: after a false positive, put back everything containment changed.
//!
//! Works from the Case alone: the originals that protect-instance and
//! isolate-network recorded. Each restoration first checks the current state,
//! so releasing twice changes nothing the second time.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, IamInstanceProfileSpecification, InstanceAttributeName, Tag,
};
use futures::future::join_all;
use serde_json::json;

use crate::aws::{apply, attempt, ensure, Clients};
use crate::case::custody::{entry, now_utc, sha256_json};
use crate::case::isolation::AclEntryRecord;
use crate::case::protection::{DeviceSetting, TargetRegistration};
use crate::case::{
    all_done, failures, record_of, tally, upsert, ActionRecord, Case, InstanceIsolation,
    InstanceProtection, InstanceRelease,
};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::capture_metadata::describe_instance;
use crate::steps::isolate::credentials::describe_profile;
use crate::steps::isolate::describe_addresses;
use crate::steps::isolate::{acl, dns_firewall};
use crate::steps::protect::{
    find_auto_scaling_group, find_classic_load_balancers, find_target_registrations,
    instance_attribute, set_delete_on_termination, set_shutdown_behavior, target,
};
use crate::steps::{has_tag, CASE_TAG, STATUS_TAG};

/// The step name in custody entries and errors.
pub const STEP: &str = "release-instance";

/// Releases every instance that containment touched, except those another
/// open case holds (its lease), and frees this case's lease of each instance
/// fully released. `workload` acts in the instances' account.
pub async fn release_with_leases(
    responder: &crate::aws::Responder,
    clients: &Clients,
    actor: &str,
    case: Case,
) -> Result<Case> {
    let held = crate::steps::lease::held_elsewhere(responder, &case).await?;
    let mut case = release_except(clients, actor, case, &held).await?;
    if !case.decision.dry_run {
        let done: Vec<String> = case
            .release
            .iter()
            .filter(|r| r.complete)
            .map(|r| r.instance_id.clone())
            .collect();
        crate::steps::lease::free_for(responder, &mut case, &done).await;
    }
    Ok(case)
}

/// Releases every instance that containment touched.
pub async fn release_instances(clients: &Clients, actor: &str, case: Case) -> Result<Case> {
    release_except(clients, actor, case, &std::collections::BTreeMap::new()).await
}

/// Releases every instance that containment touched but those `held` names:
/// each of them is recorded as not released, with the case that holds it.
async fn release_except(
    clients: &Clients,
    actor: &str,
    mut case: Case,
    held: &std::collections::BTreeMap<String, crate::steps::lease::Lease>,
) -> Result<Case> {
    if case.protection.is_empty() && case.isolation.is_empty() {
        return Err(PlaybookError::InvalidCase(
            "the case records no containment (no protection or isolation section): nothing to release"
                .into(),
        ));
    }
    let dry_run = case.decision.dry_run;
    for (id, lease) in held {
        let why = format!(
            "open case {} holds {id} ({:?} since {}): releasing it would un-isolate an instance that case still contains",
            lease.case_id, lease.phase, lease.since
        );
        let record = InstanceRelease {
            instance_id: id.clone(),
            actions: vec![ActionRecord::failed(
                "release the instance",
                id,
                "HeldByAnotherCase",
                &why,
            )],
            notes: vec![why],
            complete: false,
            released_at: now_utc(),
        };
        case.errors.extend(failures(STEP, &record.actions));
        upsert(&mut case.release, record);
    }
    let results = join_all(
        case.incident
            .instance_ids
            .iter()
            .filter(|id| !held.contains_key(*id))
            .map(|id| {
                release_instance(
                    clients,
                    &case.case_id,
                    id,
                    record_of(&case.protection, id),
                    record_of(&case.isolation, id),
                    Keep {
                        termination_protection: case.policy.release_keeps_termination_protection,
                    },
                    dry_run,
                )
            }),
    )
    .await;
    for result in results {
        let release = result?;
        case.errors.extend(failures(STEP, &release.actions));
        case.record(entry(
            STEP,
            actor,
            format!(
                "{} instance {}",
                if dry_run {
                    "dry run: would release"
                } else {
                    "released"
                },
                release.instance_id
            ),
            &[
                "DescribeInstances",
                "ListRolePolicies",
                "ModifyNetworkInterfaceAttribute",
                "AssociateAddress",
                "AssociateIamInstanceProfile",
                "DeleteRolePolicy",
                "DescribeNetworkAcls",
                "DeleteNetworkAclEntry",
                "DisassociateFirewallRuleGroup",
                "ModifyInstanceAttribute",
                "SetInstanceProtection",
                "AttachInstances",
                "RegisterTargets",
                "RegisterInstancesWithLoadBalancer",
                "CreateTags",
            ],
            json!({ "instanceId": release.instance_id, "dryRun": dry_run }),
            json!({ "changes": tally(&release.actions), "complete": release.complete }),
            Some(sha256_json(&release)),
        ));
        upsert(&mut case.release, release);
    }
    Ok(case)
}

/// What a release keeps on purpose beyond the session-revocation policy
/// (which always stays), as the policy says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// Termination protection stays on (`releaseKeepsTerminationProtection`).
    pub termination_protection: bool,
}

/// Reads the current state, then restores what differs from the recorded
/// originals, except what `keep` says stays.
pub async fn release_instance(
    clients: &Clients,
    case_id: &str,
    id: &str,
    protection: Option<&InstanceProtection>,
    isolation: Option<&InstanceIsolation>,
    keep: Keep,
    dry_run: bool,
) -> Result<InstanceRelease> {
    let ec2 = &clients.ec2;
    let revoked_role = isolation
        .and_then(|i| i.session_revocation.as_ref())
        .map(|r| r.role_name.as_str());
    let eni_ids: Vec<String> = isolation
        .map(|i| {
            i.interfaces
                .iter()
                .map(|e| e.network_interface_id.clone())
                .collect()
        })
        .unwrap_or_default();
    // Target groups are scanned in the instance's VPCs: its ENIs' as isolation
    // recorded them, and the primary one protection recorded.
    let mut vpcs: Vec<String> = isolation
        .map(|i| {
            i.interfaces
                .iter()
                .filter_map(|e| e.vpc_id.clone())
                .collect()
        })
        .unwrap_or_default();
    vpcs.extend(protection.and_then(|p| p.vpc_id.clone()));
    vpcs.sort();
    vpcs.dedup();
    let ips: Vec<String> = protection
        .map(|p| {
            p.original
                .target_groups
                .iter()
                .filter_map(|t| t.target_id.clone())
                .collect()
        })
        .unwrap_or_default();
    let (
        instance,
        addresses,
        profile,
        termination,
        shutdown,
        asg,
        registrations,
        load_balancers,
        role_policies,
        acls,
    ) = tokio::join!(
        describe_instance(ec2, id),
        describe_addresses(ec2, Some(id), &eni_ids),
        describe_profile(ec2, &clients.iam, id),
        instance_attribute(ec2, id, InstanceAttributeName::DisableApiTermination),
        instance_attribute(
            ec2,
            id,
            InstanceAttributeName::InstanceInitiatedShutdownBehavior
        ),
        find_auto_scaling_group(clients, id, false),
        find_target_registrations(clients, id, &vpcs, &ips),
        find_classic_load_balancers(clients, id),
        inline_policies(clients, id, revoked_role),
        recorded_acls(ec2, isolation),
    );
    let (_, instance) = instance?;
    let role_policies = role_policies?;
    let acls = acls?;
    let addresses = addresses?;
    let (profile, termination, shutdown) = (profile?, termination?, shutdown?);
    let (asg, registrations, load_balancers) = (asg?, registrations?, load_balancers?);
    let mut notes = Vec::new();
    let mut restorations = Vec::new();

    // The untracking group allows all traffic: originals recorded as it were
    // read mid-move (between the two ENI moves of another run), never the
    // pre-incident groups, and restoring them would open the instance wider
    // than before the incident. (Originals that are the isolation group mean
    // another case had isolated it: putting that back keeps it isolated.)
    let mut refused = Vec::new();
    if let Some(isolation) = isolation {
        let responders: Vec<&str> = isolation
            .groups
            .iter()
            .filter_map(|g| g.untracking_group_id.as_deref())
            .collect();
        for eni in &isolation.interfaces {
            if let Some(own) = eni
                .original_group_ids
                .iter()
                .find(|g| responders.contains(&g.as_str()))
            {
                refused.push(ActionRecord::failed(
                    "restore the ENI's original security groups",
                    &eni.network_interface_id,
                    "OriginalIsUntrackingGroup",
                    format!(
                        "the recorded originals include the responder's all-open untracking group {own}: not restored; set the ENI's groups by hand"
                    ),
                ));
                continue;
            }
            let current: Vec<String> = instance
                .network_interfaces()
                .iter()
                .find(|e| e.network_interface_id() == Some(&eni.network_interface_id))
                .map(|e| {
                    e.groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            restorations.push(Restoration::Groups {
                eni: eni.network_interface_id.clone(),
                groups: eni.original_group_ids.clone(),
                done: same_set(&current, &eni.original_group_ids),
            });
        }
        for eip in &isolation.elastic_ips {
            restorations.push(Restoration::ElasticIp {
                allocation_id: eip.allocation_id.clone(),
                eni: eip.network_interface_id.clone(),
                private_ip: eip.private_ip.clone(),
                done: addresses
                    .iter()
                    .any(|a| a.allocation_id == eip.allocation_id),
            });
        }
        if let Some(original) = &isolation.instance_profile {
            restorations.push(Restoration::Profile {
                arn: original.arn.clone(),
                done: profile.as_ref().is_some_and(|p| p.arn == original.arn),
            });
        }
        for block in &isolation.dns_firewall {
            if let Some(association_id) = &block.association_id {
                restorations.push(Restoration::DnsFirewall {
                    vpc_id: block.vpc_id.clone(),
                    association_id: association_id.clone(),
                });
            }
        }
        for entry in &isolation.network_acl_entries {
            restorations.push(Restoration::AclEntry {
                entry: entry.clone(),
                ours: acl::still_ours(&acls, entry),
            });
        }
        // The session-revocation policy stays: it denies only sessions issued
        // before isolation, which may be in an attacker's hands.
        if let Some(revocation) = &isolation.session_revocation {
            notes.push(if role_policies.contains(&revocation.policy_name) {
                format!(
                    "kept on purpose: the session-revocation policy {} on role {} stays, so \
                     role sessions issued before isolation (credentials that may have been \
                     stolen) stay denied; sessions issued since work",
                    revocation.policy_name, revocation.role_name
                )
            } else {
                format!(
                    "the session-revocation policy {} on role {} is gone (removed by someone \
                     else): sessions issued before isolation work again; put it back",
                    revocation.policy_name, revocation.role_name
                )
            });
        }
    }
    if let Some(protection) = protection {
        let original = &protection.original;
        match original.termination_protection {
            Some(false) if keep.termination_protection => notes.push(
                "kept on purpose: termination protection stays on (the policy's \
                 releaseKeepsTerminationProtection), so the instance the evidence came from \
                 is not terminated by accident; turn it off when that is decided"
                    .to_owned(),
            ),
            Some(value) => restorations.push(Restoration::TerminationProtection {
                value,
                done: termination.as_deref() == Some(if value { "true" } else { "false" }),
            }),
            None => {}
        }
        if let Some(value) = &original.shutdown_behavior {
            restorations.push(Restoration::ShutdownBehavior {
                value: value.clone(),
                done: shutdown.as_deref() == Some(value.as_str()),
            });
        }
        let to_restore: Vec<DeviceSetting> = original
            .delete_on_termination
            .iter()
            .filter(|d| d.delete_on_termination)
            .filter(|d| {
                !instance.block_device_mappings().iter().any(|m| {
                    m.ebs().and_then(|e| e.volume_id()) == Some(d.volume_id.as_str())
                        && m.ebs().and_then(|e| e.delete_on_termination()) == Some(true)
                })
            })
            .cloned()
            .collect();
        if !to_restore.is_empty() {
            restorations.push(Restoration::DeleteOnTermination {
                devices: to_restore,
            });
        }
        // Protection detaches an instance it can detach and protects the
        // others from scale-in: release undoes whichever it was.
        let was_detached = original
            .auto_scaling_group
            .as_ref()
            .is_some_and(|g| g.detachable());
        if let (Some(group), false) = (&original.auto_scaling_group, was_detached) {
            let now = asg.as_ref().filter(|g| g.name == group.name);
            restorations.push(Restoration::ScaleInProtection {
                name: group.name.clone(),
                value: group.protected_from_scale_in.unwrap_or(false),
                done: now
                    .is_none_or(|g| g.protected_from_scale_in == group.protected_from_scale_in),
            });
        }
        if let (Some(group), true) = (&original.auto_scaling_group, was_detached) {
            let done = asg.as_ref().is_some_and(|g| g.name == group.name);
            if !done && !group.decremented {
                notes.push(format!(
                    "Auto Scaling group {} launched a replacement during containment; with this instance back its desired capacity is one above the original {}",
                    group.name,
                    group.desired_capacity.map_or("(unknown)".into(), |c| c.to_string())
                ));
            }
            restorations.push(Restoration::AutoScalingGroup {
                name: group.name.clone(),
                done,
            });
        }
        for tg in &original.target_groups {
            restorations.push(Restoration::TargetGroup {
                registration: tg.clone(),
                done: registrations.iter().any(|r| {
                    r.target_group_arn == tg.target_group_arn && r.target_id == tg.target_id
                }),
            });
        }
        for lb in &original.load_balancers {
            restorations.push(Restoration::LoadBalancer {
                name: lb.clone(),
                done: load_balancers.contains(lb),
            });
        }
    }
    let mut actions = join_all(restorations.iter().map(|r| r.restore(clients, id, dry_run))).await;
    actions.extend(refused);
    actions.push(
        ensure(
            has_tag(&instance, STATUS_TAG, "released"),
            dry_run,
            "tag instance as released",
            id,
            || async {
                ec2.create_tags()
                    .resources(id)
                    .tags(Tag::builder().key(CASE_TAG).value(case_id).build())
                    .tags(Tag::builder().key(STATUS_TAG).value("released").build())
                    .send()
                    .await
                    .aws("CreateTags", Some(id))
                    .map(drop)
            },
        )
        .await,
    );
    Ok(InstanceRelease {
        instance_id: id.to_owned(),
        complete: all_done(&actions),
        actions,
        notes,
        released_at: now_utc(),
    })
}

/// The inline policy names of the role whose sessions were revoked, if any.
async fn inline_policies(clients: &Clients, id: &str, role: Option<&str>) -> Result<Vec<String>> {
    let Some(role) = role else {
        return Ok(Vec::new());
    };
    let out = clients
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .aws("ListRolePolicies", Some(id))?;
    Ok(out.policy_names().to_vec())
}

/// The network ACLs that hold entries the responder recorded.
async fn recorded_acls(
    ec2: &aws_sdk_ec2::Client,
    isolation: Option<&InstanceIsolation>,
) -> Result<Vec<aws_sdk_ec2::types::NetworkAcl>> {
    let mut ids: Vec<String> = isolation
        .map(|i| {
            i.network_acl_entries
                .iter()
                .map(|e| e.network_acl_id.clone())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ec2
        .describe_network_acls()
        .set_network_acl_ids(Some(ids))
        .send()
        .await
        .aws("DescribeNetworkAcls", None)?;
    Ok(out.network_acls().to_vec())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// One thing to put back, and whether it already is.
enum Restoration {
    Groups {
        eni: String,
        groups: Vec<String>,
        done: bool,
    },
    ElasticIp {
        allocation_id: String,
        eni: Option<String>,
        private_ip: Option<String>,
        done: bool,
    },
    Profile {
        arn: String,
        done: bool,
    },
    TerminationProtection {
        value: bool,
        done: bool,
    },
    ShutdownBehavior {
        value: String,
        done: bool,
    },
    DeleteOnTermination {
        devices: Vec<DeviceSetting>,
    },
    AclEntry {
        entry: AclEntryRecord,
        ours: Option<bool>,
    },
    DnsFirewall {
        vpc_id: String,
        association_id: String,
    },
    ScaleInProtection {
        name: String,
        value: bool,
        done: bool,
    },
    AutoScalingGroup {
        name: String,
        done: bool,
    },
    TargetGroup {
        registration: TargetRegistration,
        done: bool,
    },
    LoadBalancer {
        name: String,
        done: bool,
    },
}

impl Restoration {
    async fn restore(&self, clients: &Clients, id: &str, dry_run: bool) -> ActionRecord {
        let ec2 = &clients.ec2;
        match self {
            Self::Groups { eni, groups, done } => {
                ensure(
                    *done,
                    dry_run,
                    "restore the ENI's original security groups",
                    eni,
                    || async {
                        ec2.modify_network_interface_attribute()
                            .network_interface_id(eni)
                            .set_groups(Some(groups.clone()))
                            .send()
                            .await
                            .aws("ModifyNetworkInterfaceAttribute", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::ElasticIp {
                allocation_id,
                eni,
                private_ip,
                done,
            } => {
                ensure(
                    *done,
                    dry_run,
                    "re-associate Elastic IP",
                    allocation_id,
                    || async {
                        let request = ec2.associate_address().allocation_id(allocation_id);
                        let request = match eni {
                            Some(eni) => request
                                .network_interface_id(eni)
                                .set_private_ip_address(private_ip.clone()),
                            None => request.instance_id(id),
                        };
                        request
                            .send()
                            .await
                            .aws("AssociateAddress", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::Profile { arn, done } => {
                ensure(
                    *done,
                    dry_run,
                    "re-associate instance profile",
                    arn,
                    || async {
                        ec2.associate_iam_instance_profile()
                            .instance_id(id)
                            .iam_instance_profile(
                                IamInstanceProfileSpecification::builder().arn(arn).build(),
                            )
                            .send()
                            .await
                            .aws("AssociateIamInstanceProfile", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::TerminationProtection { value, done } => {
                ensure(
                    *done,
                    dry_run,
                    "restore termination protection",
                    id,
                    || async {
                        ec2.modify_instance_attribute()
                            .instance_id(id)
                            .disable_api_termination(
                                AttributeBooleanValue::builder().value(*value).build(),
                            )
                            .send()
                            .await
                            .aws("ModifyInstanceAttribute", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::ShutdownBehavior { value, done } => {
                ensure(*done, dry_run, "restore shutdown behaviour", id, || {
                    set_shutdown_behavior(ec2, id, value)
                })
                .await
            }
            Self::DeleteOnTermination { devices } => {
                let target = devices
                    .iter()
                    .map(|d| d.volume_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let devices: Vec<&DeviceSetting> = devices.iter().collect();
                apply(dry_run, "restore DeleteOnTermination", &target, || {
                    set_delete_on_termination(ec2, id, &devices, true)
                })
                .await
            }
            Self::AclEntry { entry, ours } => {
                let target = acl::entry_target(entry);
                let action = format!("remove the network ACL entry denying {}", entry.cidr);
                match ours {
                    Some(true) => apply(dry_run, &action, &target, || acl::delete_entry(ec2, entry)).await,
                    Some(false) => ActionRecord::already_done(&action, &target).with_detail(
                        "the rule number now holds another rule, which is not the responder's: left alone",
                    ),
                    None => ActionRecord::already_done(&action, &target),
                }
            }
            Self::DnsFirewall {
                vpc_id,
                association_id,
            } => {
                let action = "end the DNS Firewall block of the finding's domain";
                let (record, gone) = attempt(dry_run, action, vpc_id, || async {
                    match dns_firewall::unblock(&clients.route53resolver, association_id).await {
                        Ok(()) => Ok(false),
                        Err(err) if err.aws_code() == Some("ResourceNotFoundException") => Ok(true),
                        Err(err) => Err(err),
                    }
                })
                .await;
                if gone == Some(true) {
                    return ActionRecord::already_done(action, vpc_id)
                        .with_detail("the association is already gone");
                }
                record.with_detail(
                    "the rule group and domain list stay, disassociated, for the case's cleanup",
                )
            }
            Self::ScaleInProtection { name, value, done } => {
                ensure(
                    *done,
                    dry_run,
                    "restore scale-in protection",
                    name,
                    || async {
                        clients
                            .autoscaling
                            .set_instance_protection()
                            .auto_scaling_group_name(name)
                            .instance_ids(id)
                            .protected_from_scale_in(*value)
                            .send()
                            .await
                            .aws("SetInstanceProtection", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::AutoScalingGroup { name, done } => {
                ensure(
                    *done,
                    dry_run,
                    "re-attach to Auto Scaling group",
                    name,
                    || async {
                        clients
                            .autoscaling
                            .attach_instances()
                            .auto_scaling_group_name(name)
                            .instance_ids(id)
                            .send()
                            .await
                            .aws("AttachInstances", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::TargetGroup { registration, done } => {
                let arn = &registration.target_group_arn;
                ensure(
                    *done,
                    dry_run,
                    "re-register with target group",
                    arn,
                    || async {
                        clients
                            .elbv2
                            .register_targets()
                            .target_group_arn(arn)
                            .targets(target(id, registration))
                            .send()
                            .await
                            .aws("RegisterTargets", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
            Self::LoadBalancer { name, done } => {
                ensure(
                    *done,
                    dry_run,
                    "re-register with classic load balancer",
                    name,
                    || async {
                        clients
                            .elb
                            .register_instances_with_load_balancer()
                            .load_balancer_name(name)
                            .instances(
                                aws_sdk_elasticloadbalancing::types::Instance::builder()
                                    .instance_id(id)
                                    .build(),
                            )
                            .send()
                            .await
                            .aws("RegisterInstancesWithLoadBalancer", Some(id))
                            .map(drop)
                    },
                )
                .await
            }
        }
    }
}
