//! Network ACL DENY entries for the instance's own addresses.
//!
//! Security groups cannot end some flows: ICMP is always tracked, and flows
//! through a NAT gateway, a Network or Gateway Load Balancer, a transit
//! gateway or Network Firewall are tracked automatically. Network ACLs are
//! stateless and apply at subnet edges: an inbound entry matches the source
//! address, an outbound entry the destination. So a DENY for the instance's
//! address on the ACL of every subnet of its VPC drops its packets where they
//! enter another subnet (the NAT gateway's, the load balancer's, the transit
//! gateway attachment's) and drops the packets headed back to it as they
//! leave. On its own subnet's ACL the entries are harmless: its own traffic
//! never carries its address as the remote side there. Every entry takes the
//! lowest free rule numbers, never touches another rule, and stays within the
//! per-direction rule limit; each is recorded so release removes exactly it.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, NetworkAcl, RuleAction};

use crate::case::isolation::AclEntryRecord;
use crate::error::{AwsCall, Result};

/// The rule number of an ACL's own catch-all entries (`*`), which do not count.
const DEFAULT_RULE_NUMBERS: [i32; 2] = [32767, 32768];

/// The network ACLs of the VPCs that guard at least one subnet.
pub async fn describe_acls(
    ec2: &aws_sdk_ec2::Client,
    vpc_ids: &[String],
) -> Result<Vec<NetworkAcl>> {
    let mut acls = Vec::new();
    let mut token = None;
    loop {
        let page = ec2
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .set_values(Some(vpc_ids.to_vec()))
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await
            .aws("DescribeNetworkAcls", None)?;
        acls.extend(
            page.network_acls()
                .iter()
                .filter(|a| !a.associations().is_empty())
                .cloned(),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(acls);
        }
    }
}

/// The entries one instance needs, planned across every instance of the case
/// so that two instances never pick the same rule number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AclPlan {
    /// Entries to create.
    pub create: Vec<AclEntryRecord>,
    /// DENY entries for the same address that are already there (made by an
    /// earlier run or by someone else): not created again, not recorded as ours.
    pub present: Vec<AclEntryRecord>,
    /// ACL directions that cannot take the entries without passing the rule limit.
    pub over_limit: Vec<String>,
}

/// The address's CIDR for an ACL entry: `/32` for IPv4, `/128` for IPv6.
pub fn host_cidr(address: &str) -> String {
    if address.contains(':') {
        format!("{address}/128")
    } else {
        format!("{address}/32")
    }
}

/// Plans DENY entries, ingress and egress, for each instance's addresses on
/// every ACL: the lowest free rule numbers, within `limit` rules per direction.
pub fn plan_entries(
    acls: &[NetworkAcl],
    addresses: &[(String, Vec<String>)],
    limit: usize,
) -> BTreeMap<String, AclPlan> {
    let mut plans: BTreeMap<String, AclPlan> = addresses
        .iter()
        .map(|(id, _)| (id.clone(), AclPlan::default()))
        .collect();
    for acl in acls {
        let acl_id = acl.network_acl_id().unwrap_or_default();
        for egress in [false, true] {
            let entries: Vec<_> = acl
                .entries()
                .iter()
                .filter(|e| e.egress() == Some(egress))
                .filter(|e| !DEFAULT_RULE_NUMBERS.contains(&e.rule_number().unwrap_or(0)))
                .collect();
            let mut used: BTreeSet<i32> = entries.iter().filter_map(|e| e.rule_number()).collect();
            let denied = |cidr: &str| {
                entries.iter().find(|e| {
                    e.rule_action() == Some(&RuleAction::Deny)
                        && (e.cidr_block() == Some(cidr) || e.ipv6_cidr_block() == Some(cidr))
                })
            };
            let mut wanted = Vec::new();
            for (instance, ips) in addresses {
                for ip in ips {
                    let cidr = host_cidr(ip);
                    match denied(&cidr) {
                        Some(e) => plans.entry(instance.clone()).or_default().present.push(
                            AclEntryRecord {
                                network_acl_id: acl_id.to_owned(),
                                rule_number: e.rule_number().unwrap_or_default(),
                                egress,
                                cidr,
                            },
                        ),
                        None => wanted.push((instance, cidr)),
                    }
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let direction = if egress { "outbound" } else { "inbound" };
            if entries.len() + wanted.len() > limit {
                for (instance, _) in &wanted {
                    let why = format!(
                        "{acl_id} {direction}: {} rules + {} would pass the limit of {limit}",
                        entries.len(),
                        wanted.len()
                    );
                    let plan = plans.entry((*instance).clone()).or_default();
                    if !plan.over_limit.contains(&why) {
                        plan.over_limit.push(why);
                    }
                }
                continue;
            }
            let mut next = 1;
            for (instance, cidr) in wanted {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                plans
                    .entry(instance.clone())
                    .or_default()
                    .create
                    .push(AclEntryRecord {
                        network_acl_id: acl_id.to_owned(),
                        rule_number: next,
                        egress,
                        cidr,
                    });
            }
        }
    }
    plans
}

/// Adds one DENY entry.
pub async fn create_entry(ec2: &aws_sdk_ec2::Client, entry: &AclEntryRecord) -> Result<()> {
    let request = ec2
        .create_network_acl_entry()
        .network_acl_id(&entry.network_acl_id)
        .rule_number(entry.rule_number)
        .protocol("-1")
        .rule_action(RuleAction::Deny)
        .egress(entry.egress);
    let request = if entry.cidr.contains(':') {
        request.ipv6_cidr_block(&entry.cidr)
    } else {
        request.cidr_block(&entry.cidr)
    };
    request
        .send()
        .await
        .aws("CreateNetworkAclEntry", None)
        .map(drop)
}

/// Whether the ACL still holds exactly the entry the responder made: release
/// removes it only then, so it never deletes a rule someone else put at that number.
pub fn still_ours(acls: &[NetworkAcl], entry: &AclEntryRecord) -> Option<bool> {
    let acl = acls
        .iter()
        .find(|a| a.network_acl_id() == Some(entry.network_acl_id.as_str()))?;
    let at_number = acl
        .entries()
        .iter()
        .find(|e| e.rule_number() == Some(entry.rule_number) && e.egress() == Some(entry.egress))?;
    Some(
        at_number.rule_action() == Some(&RuleAction::Deny)
            && (at_number.cidr_block() == Some(entry.cidr.as_str())
                || at_number.ipv6_cidr_block() == Some(entry.cidr.as_str())),
    )
}

/// Removes one entry the responder made.
pub async fn delete_entry(ec2: &aws_sdk_ec2::Client, entry: &AclEntryRecord) -> Result<()> {
    ec2.delete_network_acl_entry()
        .network_acl_id(&entry.network_acl_id)
        .rule_number(entry.rule_number)
        .egress(entry.egress)
        .send()
        .await
        .aws("DeleteNetworkAclEntry", None)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{NetworkAclAssociation, NetworkAclEntry};

    fn entry(number: i32, egress: bool, cidr: &str, action: RuleAction) -> NetworkAclEntry {
        NetworkAclEntry::builder()
            .rule_number(number)
            .egress(egress)
            .cidr_block(cidr)
            .rule_action(action)
            .protocol("-1")
            .build()
    }

    fn acl(entries: Vec<NetworkAclEntry>) -> NetworkAcl {
        NetworkAcl::builder()
            .network_acl_id("acl-1")
            .associations(
                NetworkAclAssociation::builder()
                    .subnet_id("subnet-1")
                    .build(),
            )
            .set_entries(Some(entries))
            .build()
    }

    #[test]
    fn entries_take_the_lowest_free_numbers_and_leave_other_rules_alone() {
        let acls = [acl(vec![
            entry(1, false, "10.0.0.0/8", RuleAction::Allow),
            entry(3, false, "0.0.0.0/0", RuleAction::Allow),
            entry(100, true, "0.0.0.0/0", RuleAction::Allow),
            entry(32767, false, "0.0.0.0/0", RuleAction::Deny),
        ])];
        let plans = plan_entries(
            &acls,
            &[
                ("i-1".into(), vec!["10.0.1.5".into(), "2600:1f18::5".into()]),
                ("i-2".into(), vec!["10.0.1.6".into()]),
            ],
            20,
        );
        let inbound: Vec<(String, i32)> = plans
            .values()
            .flat_map(|p| p.create.iter())
            .filter(|e| !e.egress)
            .map(|e| (e.cidr.clone(), e.rule_number))
            .collect();
        assert_eq!(
            inbound,
            vec![
                ("10.0.1.5/32".to_owned(), 2),
                ("2600:1f18::5/128".to_owned(), 4),
                ("10.0.1.6/32".to_owned(), 5)
            ]
        );
        let outbound: Vec<i32> = plans["i-1"]
            .create
            .iter()
            .filter(|e| e.egress)
            .map(|e| e.rule_number)
            .collect();
        assert_eq!(outbound, vec![1, 2]);
    }

    #[test]
    fn a_full_acl_is_reported_not_overfilled() {
        let acls = [acl((1..=19)
            .map(|n| entry(n, false, "10.0.0.0/8", RuleAction::Allow))
            .collect())];
        let plans = plan_entries(
            &acls,
            &[("i-1".into(), vec!["10.0.1.5".into(), "10.0.1.6".into()])],
            20,
        );
        assert!(plans["i-1"].create.iter().all(|e| e.egress));
        assert_eq!(plans["i-1"].over_limit.len(), 1);
        assert!(
            plans["i-1"].over_limit[0].contains("inbound"),
            "{:?}",
            plans["i-1"].over_limit
        );
    }

    #[test]
    fn an_existing_deny_for_the_address_is_not_added_again() {
        let acls = [acl(vec![entry(7, true, "10.0.1.5/32", RuleAction::Deny)])];
        let plans = plan_entries(&acls, &[("i-1".into(), vec!["10.0.1.5".into()])], 20);
        assert_eq!(plans["i-1"].present.len(), 1);
        assert_eq!(plans["i-1"].create.len(), 1);
        assert!(!plans["i-1"].create[0].egress);
    }

    #[test]
    fn release_touches_a_rule_only_while_it_is_still_ours() {
        let ours = AclEntryRecord {
            network_acl_id: "acl-1".into(),
            rule_number: 2,
            egress: false,
            cidr: "10.0.1.5/32".into(),
        };
        let acls = [acl(vec![entry(2, false, "10.0.1.5/32", RuleAction::Deny)])];
        assert_eq!(still_ours(&acls, &ours), Some(true));
        let replaced = [acl(vec![entry(2, false, "10.9.0.0/16", RuleAction::Allow)])];
        assert_eq!(still_ours(&replaced, &ours), Some(false));
        assert_eq!(still_ours(&[acl(Vec::new())], &ours), None);
    }
}
