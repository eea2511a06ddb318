//! What containment may change on an instance, read from the emulator: the
//! state a release must put back exactly.

use aws_sdk_ec2::types::{Filter, InstanceAttributeName};
use playbook::aws::Clients;

/// Everything containment may change on an instance, as EC2 and friends report it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Termination protection.
    pub termination_protection: bool,
    /// Instance-initiated shutdown behaviour.
    pub shutdown_behavior: String,
    /// DeleteOnTermination per volume.
    pub delete_on_termination: Vec<(String, bool)>,
    /// Security groups per network interface.
    pub eni_groups: Vec<(String, Vec<String>)>,
    /// Elastic IPs (allocation, interface).
    pub elastic_ips: Vec<(String, Option<String>)>,
    /// The associated instance profile.
    pub instance_profile: Option<String>,
    /// Its Auto Scaling group.
    pub auto_scaling_group: Option<String>,
    /// Target groups it is registered in, with the port.
    pub target_groups: Vec<(String, Option<i32>)>,
    /// Classic Load Balancers it is registered with.
    pub load_balancers: Vec<String>,
    /// Inline policies of `role`.
    pub role_policies: Vec<String>,
    /// Target groups holding one of its addresses.
    pub ip_targets: Vec<(String, String)>,
    /// Network ACL entries for its addresses (ACL, rule, egress, CIDR).
    pub acl_denies: Vec<(String, i32, bool, String)>,
}

/// Reads it: `role` names the instance role whose inline policies are listed
/// (the session-revocation policy is one).
pub async fn observe(clients: &Clients, id: &str, role: Option<&str>) -> Observed {
    let ec2 = &clients.ec2;
    let attribute = |name: InstanceAttributeName| async move {
        ec2.describe_instance_attribute()
            .instance_id(id)
            .attribute(name)
            .send()
            .await
            .unwrap()
    };
    let termination_protection = attribute(InstanceAttributeName::DisableApiTermination)
        .await
        .disable_api_termination()
        .and_then(|v| v.value())
        .unwrap_or(false);
    let shutdown_behavior = attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap_or_default()
        .to_owned();
    let described = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let instance = described.reservations()[0].instances()[0].clone();
    let mut delete_on_termination: Vec<(String, bool)> = instance
        .block_device_mappings()
        .iter()
        .map(|m| {
            let ebs = m.ebs().unwrap();
            (
                ebs.volume_id().unwrap().to_owned(),
                ebs.delete_on_termination().unwrap_or(false),
            )
        })
        .collect();
    delete_on_termination.sort();
    let mut eni_groups: Vec<(String, Vec<String>)> = Vec::new();
    for eni in instance.network_interfaces() {
        let eni_id = eni.network_interface_id().unwrap();
        let out = ec2
            .describe_network_interfaces()
            .network_interface_ids(eni_id)
            .send()
            .await
            .unwrap();
        let mut groups: Vec<String> = out.network_interfaces()[0]
            .groups()
            .iter()
            .map(|g| g.group_id().unwrap().to_owned())
            .collect();
        groups.sort();
        eni_groups.push((eni_id.to_owned(), groups));
    }
    eni_groups.sort();
    let enis: Vec<String> = eni_groups.iter().map(|(e, _)| e.clone()).collect();
    let mut elastic_ips: Vec<(String, Option<String>)> = ec2
        .describe_addresses()
        .send()
        .await
        .unwrap()
        .addresses()
        .iter()
        .filter(|a| {
            a.network_interface_id()
                .is_some_and(|n| enis.iter().any(|e| e == n))
        })
        .map(|a| {
            (
                a.allocation_id().unwrap().to_owned(),
                a.network_interface_id().map(str::to_owned),
            )
        })
        .collect();
    elastic_ips.sort();
    let instance_profile = ec2
        .describe_iam_instance_profile_associations()
        .send()
        .await
        .unwrap()
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.instance_id() == Some(id))
        .filter(|a| a.state().is_none_or(|s| s.as_str() == "associated"))
        .find_map(|a| {
            a.iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_owned)
        });
    let auto_scaling_group = clients
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap()
        .auto_scaling_instances()
        .first()
        .and_then(|i| i.auto_scaling_group_name().map(str::to_owned));
    let ips: Vec<String> = instance
        .network_interfaces()
        .iter()
        .flat_map(|e| e.private_ip_addresses())
        .filter_map(|a| a.private_ip_address().map(str::to_owned))
        .collect();
    let mut ip_targets = Vec::new();
    let mut target_groups = Vec::new();
    for tg in clients
        .elbv2
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
    {
        let arn = tg.target_group_arn().unwrap();
        let health = clients
            .elbv2
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .unwrap();
        for d in health.target_health_descriptions() {
            let target = d.target().and_then(|t| t.id()).unwrap_or_default();
            if target == id {
                target_groups.push((arn.to_owned(), d.target().and_then(|t| t.port())));
            } else if ips.iter().any(|ip| ip == target) {
                ip_targets.push((arn.to_owned(), target.to_owned()));
            }
        }
    }
    target_groups.sort();
    ip_targets.sort();
    let cidrs: Vec<String> = ips.iter().map(|ip| format!("{ip}/32")).collect();
    let vpcs: Vec<String> = instance
        .network_interfaces()
        .iter()
        .filter_map(|e| e.vpc_id().map(str::to_owned))
        .collect();
    let mut acl_denies = Vec::new();
    for acl in ec2
        .describe_network_acls()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(vpcs))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .network_acls()
    {
        for e in acl.entries() {
            if e.cidr_block().is_some_and(|c| cidrs.iter().any(|x| x == c)) {
                acl_denies.push((
                    acl.network_acl_id().unwrap().to_owned(),
                    e.rule_number().unwrap(),
                    e.egress().unwrap(),
                    e.cidr_block().unwrap().to_owned(),
                ));
            }
        }
    }
    acl_denies.sort();
    let mut load_balancers: Vec<String> = clients
        .elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancer_descriptions()
        .iter()
        .filter(|lb| lb.instances().iter().any(|i| i.instance_id() == Some(id)))
        .map(|lb| lb.load_balancer_name().unwrap().to_owned())
        .collect();
    load_balancers.sort();
    let role_policies = match role {
        Some(role) => clients
            .iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec(),
        None => Vec::new(),
    };
    Observed {
        termination_protection,
        shutdown_behavior,
        delete_on_termination,
        eni_groups,
        elastic_ips,
        instance_profile,
        auto_scaling_group,
        target_groups,
        load_balancers,
        role_policies,
        ip_targets,
        acl_denies,
    }
}
