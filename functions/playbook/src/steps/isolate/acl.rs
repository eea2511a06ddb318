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
//!
//! A network ACL applies the lowest-numbered entry that matches a packet. So a
//! DENY counts only when no lower-numbered entry of its direction can match
//! the address: it takes a number below the first entry whose range holds the
//! address (whatever its protocol or ports: an ALLOW for one port still lets
//! that port through first). When there is no free number below it, the
//! address cannot be denied on that ACL: `NetworkAclRuleShadowed`, and the
//! instance is not reported contained.

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
    /// Addresses no DENY can cover on an ACL direction: an entry that matches
    /// them sits at a number with no free number below it.
    pub shadowed: Vec<String>,
    /// ACL directions that allow nothing at all (a subnet cut by a bulk
    /// run's deny-all ACL): every packet is denied there already, so no
    /// entry is needed, and none takes one of its few rule numbers.
    pub closed: Vec<String>,
}

impl AclPlan {
    /// Adds another plan's entries and reasons (the same instance, other ACLs).
    pub fn merge(&mut self, other: AclPlan) {
        self.create.extend(other.create);
        self.present.extend(other.present);
        self.over_limit.extend(other.over_limit);
        self.shadowed.extend(other.shadowed);
        self.closed.extend(other.closed);
    }
}

/// Whether no entry of `acl` in this direction is an ALLOW: what no entry
/// allows falls to the catch-all DENY every ACL ends with, so the direction
/// denies every packet.
pub fn allows_nothing(acl: &NetworkAcl, egress: bool) -> bool {
    acl.entries()
        .iter()
        .filter(|e| e.egress() == Some(egress))
        .all(|e| e.rule_action() != Some(&RuleAction::Allow))
}

/// Whether `cidr` (an entry's IPv4 or IPv6 range) holds `address`.
pub fn cidr_contains(cidr: &str, address: &str) -> bool {
    use std::net::IpAddr;
    let Some((network, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(address), Ok(bits)) = (
        network.parse::<IpAddr>(),
        address.parse::<IpAddr>(),
        bits.parse::<u32>(),
    ) else {
        return false;
    };
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The range of an ACL entry, IPv4 or IPv6.
fn range_of(entry: &aws_sdk_ec2::types::NetworkAclEntry) -> Option<&str> {
    entry.cidr_block().or(entry.ipv6_cidr_block())
}

/// Whether an entry denies every protocol.
fn denies_everything(entry: &aws_sdk_ec2::types::NetworkAclEntry) -> bool {
    entry.rule_action() == Some(&RuleAction::Deny) && entry.protocol() == Some("-1")
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
    plan_entries_preferring(acls, addresses, limit, &[])
}

/// [`plan_entries`], keeping the numbers chosen when isolation was prepared
/// (`prepared`, from a read made before the memory window) where this read
/// still allows them: the number is free and comes before the first entry
/// that would match the address. Any other address takes the lowest free
/// number that no kept one holds; an address whose prepared number no longer
/// fits is planned anew from this read.
pub fn plan_entries_preferring(
    acls: &[NetworkAcl],
    addresses: &[(String, Vec<String>)],
    limit: usize,
    prepared: &[AclEntryRecord],
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
            let direction = if egress { "outbound" } else { "inbound" };
            if allows_nothing(acl, egress) {
                let why = format!("{acl_id} {direction}: allows nothing (a deny-all ACL)");
                for (instance, _) in addresses {
                    plans
                        .entry(instance.clone())
                        .or_default()
                        .closed
                        .push(why.clone());
                }
                continue;
            }
            // Per address: the first entry that can match it decides first.
            // A DENY that does not cover every protocol lets nothing past
            // that ours would drop, so ours may come after it: the number to
            // stay below is that of the first ALLOW, or of a DENY of
            // everything (then the address is denied already).
            let first_match = |ip: &str| {
                entries
                    .iter()
                    .filter(|e| range_of(e).is_some_and(|r| cidr_contains(r, ip)))
                    .filter(|e| e.rule_action() != Some(&RuleAction::Deny) || denies_everything(e))
                    .min_by_key(|e| e.rule_number().unwrap_or(i32::MAX))
            };
            let mut wanted = Vec::new();
            // Each address once per direction: one DENY serves every holder.
            let mut seen = BTreeSet::new();
            for (instance, ips) in addresses {
                for ip in ips {
                    let cidr = host_cidr(ip);
                    if !seen.insert(cidr.clone()) {
                        continue;
                    }
                    match first_match(ip) {
                        // The address is already denied first, for every protocol.
                        Some(e) if denies_everything(e) => {
                            plans.entry(instance.clone()).or_default().present.push(
                                AclEntryRecord {
                                    network_acl_id: acl_id.to_owned(),
                                    rule_number: e.rule_number().unwrap_or_default(),
                                    egress,
                                    cidr,
                                },
                            )
                        }
                        first => wanted.push((
                            instance,
                            cidr,
                            first.and_then(|e| e.rule_number()).unwrap_or(i32::MAX),
                        )),
                    }
                }
            }
            if wanted.is_empty() {
                continue;
            }
            if entries.len() + wanted.len() > limit {
                for (instance, _, _) in &wanted {
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
            let ceiling = |below: i32| below.min(DEFAULT_RULE_NUMBERS[0]);
            let mut kept: BTreeMap<String, i32> = BTreeMap::new();
            for (_, cidr, below) in &wanted {
                let number = prepared
                    .iter()
                    .find(|p| p.network_acl_id == acl_id && p.egress == egress && &p.cidr == cidr)
                    .map(|p| p.rule_number)
                    .filter(|n| (1..ceiling(*below)).contains(n) && !used.contains(n));
                if let Some(number) = number {
                    if !kept.values().any(|k| *k == number) {
                        kept.insert(cidr.clone(), number);
                    }
                }
            }
            let held: BTreeSet<i32> = kept.values().copied().collect();
            for (instance, cidr, below) in wanted {
                let free = kept.get(cidr.as_str()).copied().or_else(|| {
                    (1..ceiling(below)).find(|n| !used.contains(n) && !held.contains(n))
                });
                let plan = plans.entry(instance.clone()).or_default();
                match free {
                    Some(number) => {
                        used.insert(number);
                        plan.create.push(AclEntryRecord {
                            network_acl_id: acl_id.to_owned(),
                            rule_number: number,
                            egress,
                            cidr,
                        });
                    }
                    None => plan.shadowed.push(format!(
                        "{acl_id} {direction}: rule {below} matches {cidr} first and no number below it is free"
                    )),
                }
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

/// How an entry is named in its action record: `acl-1 rule 3 outbound`.
pub fn entry_target(entry: &AclEntryRecord) -> String {
    format!(
        "{} rule {} {}",
        entry.network_acl_id,
        entry.rule_number,
        if entry.egress { "outbound" } else { "inbound" }
    )
}

/// How a planned DENY ended on its ACL.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// Made, at this number (the planned one, or the next free one when a
    /// concurrent case took the planned number first).
    Made(AclEntryRecord),
    /// The address is already denied first by an entry someone else made.
    Present(AclEntryRecord),
    /// No DENY can be placed any more: `NetworkAclRuleShadowed` or
    /// `NetworkAclRuleLimit`, and why.
    Unplaced(&'static str, String),
}

/// Adds a planned DENY, safe against concurrent cases planning on the same ACL
/// from the same read: when its number was taken first
/// (`NetworkAclEntryAlreadyExists`), the ACL is read again and the entry is
/// planned again from what it now holds. The entry that is made is always
/// below every entry that can match the address, as read last. Each lost
/// race means another entry now stands in the direction, and a direction
/// takes at most `limit` entries (the plan then says `NetworkAclRuleLimit`),
/// so `limit` rounds bound the retries however many cases contend.
pub async fn place_entry(
    ec2: &aws_sdk_ec2::Client,
    planned: &AclEntryRecord,
    limit: usize,
) -> Result<Placed> {
    let mut entry = planned.clone();
    let mut round = 1;
    loop {
        match create_entry(ec2, &entry).await {
            Ok(()) => return Ok(Placed::Made(entry)),
            Err(err)
                if err.aws_code() == Some("NetworkAclEntryAlreadyExists") && round <= limit =>
            {
                round += 1;
                let acls = describe_acl(ec2, &entry.network_acl_id).await?;
                entry = match replan(&acls, &entry, limit) {
                    Placed::Made(next) => next,
                    other => return Ok(other),
                };
            }
            Err(err) => return Err(err),
        }
    }
}

/// One network ACL by id (an id EC2 does not know is its error).
pub async fn describe_acl(ec2: &aws_sdk_ec2::Client, acl_id: &str) -> Result<Vec<NetworkAcl>> {
    let out = ec2
        .describe_network_acls()
        .network_acl_ids(acl_id)
        .send()
        .await
        .aws("DescribeNetworkAcls", None)?;
    Ok(out.network_acls().to_vec())
}

/// The entry's address planned again on its ACL and direction as `acls` now
/// hold them: a new number, or the DENY someone else put first, or why it
/// cannot be placed.
pub fn replan(acls: &[NetworkAcl], entry: &AclEntryRecord, limit: usize) -> Placed {
    let address = entry.cidr.split('/').next().unwrap_or_default().to_owned();
    let acl: Vec<NetworkAcl> = acls
        .iter()
        .filter(|a| a.network_acl_id() == Some(entry.network_acl_id.as_str()))
        .cloned()
        .collect();
    let plan = plan_entries(&acl, &[(String::new(), vec![address])], limit)
        .remove("")
        .unwrap_or_default();
    let same = |e: &&AclEntryRecord| e.egress == entry.egress;
    if let Some(e) = plan.create.iter().find(same) {
        return Placed::Made(e.clone());
    }
    if let Some(e) = plan.present.iter().find(same) {
        return Placed::Present(e.clone());
    }
    let direction = if entry.egress { "outbound" } else { "inbound" };
    let why = |list: &[String]| {
        list.iter()
            .find(|w| w.contains(direction))
            .cloned()
            .unwrap_or_else(|| format!("{} {direction}: no place", entry.network_acl_id))
    };
    if !plan.shadowed.is_empty() {
        return Placed::Unplaced("NetworkAclRuleShadowed", why(&plan.shadowed));
    }
    Placed::Unplaced("NetworkAclRuleLimit", why(&plan.over_limit))
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

/// Whether `entry` denies its address first on its ACL now, read back: the
/// entry is there as made and no lower-numbered ALLOW of its direction can
/// match the address (someone may have added one since it was planned).
pub fn denies_first(
    acls: &[NetworkAcl],
    entry: &AclEntryRecord,
) -> std::result::Result<(), String> {
    if still_ours(acls, entry) != Some(true) {
        return Err(format!(
            "{} rule {} ({}) is not the DENY for {} that was made",
            entry.network_acl_id,
            entry.rule_number,
            if entry.egress { "outbound" } else { "inbound" },
            entry.cidr
        ));
    }
    let address = entry.cidr.split('/').next().unwrap_or_default();
    let acl = acls
        .iter()
        .find(|a| a.network_acl_id() == Some(entry.network_acl_id.as_str()));
    // Only an earlier ALLOW lets a packet past: an earlier DENY, whatever its
    // protocol or ports, drops what it matches before ours would.
    let earlier = acl.into_iter().flat_map(|a| a.entries()).find(|e| {
        e.egress() == Some(entry.egress)
            && e.rule_action() != Some(&RuleAction::Deny)
            && e.rule_number().is_some_and(|n| n < entry.rule_number)
            && range_of(e).is_some_and(|r| cidr_contains(r, address))
    });
    match earlier {
        Some(e) => Err(format!(
            "{} rule {} matches {} before the DENY at {}",
            entry.network_acl_id,
            e.rule_number().unwrap_or_default(),
            entry.cidr,
            entry.rule_number
        )),
        None => Ok(()),
    }
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

    fn planned(number: i32, egress: bool, cidr: &str) -> AclEntryRecord {
        AclEntryRecord {
            network_acl_id: "acl-1".into(),
            rule_number: number,
            egress,
            cidr: cidr.into(),
        }
    }

    /// An inbound entry for TCP port 22 only.
    fn port_22(number: i32, cidr: &str, action: RuleAction) -> NetworkAclEntry {
        NetworkAclEntry::builder()
            .rule_number(number)
            .egress(false)
            .cidr_block(cidr)
            .rule_action(action)
            .protocol("6")
            .port_range(
                aws_sdk_ec2::types::PortRange::builder()
                    .from(22)
                    .to(22)
                    .build(),
            )
            .build()
    }

    /// The rule numbers a plan creates inbound.
    fn inbound_numbers(plan: &AclPlan) -> Vec<i32> {
        plan.create
            .iter()
            .filter(|e| !e.egress)
            .map(|e| e.rule_number)
            .collect()
    }

    /// Two cases planned number 1 from the same read; the other case's DENY
    /// for its own address took it. Ours goes to the next free number, still
    /// below the first entry that matches our address.
    #[test]
    fn a_number_taken_by_a_concurrent_case_is_replanned_to_the_next_free_one() {
        let acls = [acl(vec![
            entry(1, true, "10.0.1.6/32", RuleAction::Deny),
            entry(3, true, "10.0.1.7/32", RuleAction::Deny),
            entry(100, true, "0.0.0.0/0", RuleAction::Allow),
        ])];
        assert_eq!(
            replan(&acls, &planned(1, true, "10.0.1.5/32"), 20),
            Placed::Made(planned(2, true, "10.0.1.5/32"))
        );
    }

    /// The number went to a DENY for the same address (a case that got there
    /// first): the address is denied first, nothing is made, and the entry is
    /// not ours to remove.
    #[test]
    fn a_number_taken_by_the_same_deny_is_present_not_made() {
        let acls = [acl(vec![
            entry(1, false, "10.0.1.5/32", RuleAction::Deny),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
        assert_eq!(
            replan(&acls, &planned(1, false, "10.0.1.5/32"), 20),
            Placed::Present(planned(1, false, "10.0.1.5/32"))
        );
    }

    /// While we lost the race, someone put an ALLOW for the range at the only
    /// number left below the catch-all: no DENY can come first any more.
    #[test]
    fn a_replanned_entry_with_no_number_left_below_the_first_match_is_shadowed() {
        let acls = [acl(vec![
            entry(1, false, "10.0.1.6/32", RuleAction::Deny),
            entry(2, false, "10.0.0.0/8", RuleAction::Allow),
        ])];
        match replan(&acls, &planned(1, false, "10.0.1.5/32"), 20) {
            Placed::Unplaced(kind, why) => {
                assert_eq!(kind, "NetworkAclRuleShadowed");
                assert!(why.contains("inbound"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Numbers chosen when isolation was prepared are kept at the move where
    /// the fresh read still allows them; one taken since, or one that an
    /// ALLOW added since now precedes, is chosen anew from the fresh read,
    /// and no new entry takes a number a kept one holds.
    #[test]
    fn prepared_numbers_are_kept_only_where_the_fresh_read_still_allows_them() {
        let addresses = [(
            "i-1".to_owned(),
            vec!["10.0.1.5".to_owned(), "10.0.1.6".to_owned()],
        )];
        let prepared = [
            planned(3, false, "10.0.1.5/32"),
            planned(4, false, "10.0.1.6/32"),
        ];
        let numbers = |acls: &[NetworkAcl]| -> Vec<(String, i32)> {
            let plans = plan_entries_preferring(acls, &addresses, 20, &prepared);
            plans["i-1"]
                .create
                .iter()
                .filter(|e| !e.egress)
                .map(|e| (e.cidr.clone(), e.rule_number))
                .collect()
        };
        // Nothing changed since: the prepared numbers, not the lowest free (1, 2).
        let unchanged = [acl(vec![entry(100, false, "0.0.0.0/0", RuleAction::Allow)])];
        assert_eq!(
            numbers(&unchanged),
            [("10.0.1.5/32".into(), 3), ("10.0.1.6/32".into(), 4)]
        );
        // Someone took 3: .5 gets the lowest free number, not 4 (.6 keeps it).
        let taken = [acl(vec![
            entry(3, false, "192.0.2.0/24", RuleAction::Deny),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
        assert_eq!(
            numbers(&taken),
            [("10.0.1.5/32".into(), 1), ("10.0.1.6/32".into(), 4)]
        );
        // An ALLOW for .6 at 2 now precedes its prepared 4: .6 must come
        // before it, so it takes 1; .5 keeps 3.
        let allowed = [acl(vec![
            entry(2, false, "10.0.1.6/32", RuleAction::Allow),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
        assert_eq!(
            numbers(&allowed),
            [("10.0.1.5/32".into(), 3), ("10.0.1.6/32".into(), 1)]
        );
    }

    /// A subnet cut by a bulk run sits on an ACL with no ALLOW: the address
    /// is denied there already, and no entry spends one of its rule numbers.
    #[test]
    fn an_acl_that_allows_nothing_needs_no_entry() {
        let acls = [acl(vec![
            entry(32767, false, "0.0.0.0/0", RuleAction::Deny),
            entry(32767, true, "0.0.0.0/0", RuleAction::Deny),
        ])];
        let plans = plan_entries(&acls, &[("i-1".into(), vec!["10.0.1.5".into()])], 20);
        let plan = &plans["i-1"];
        assert!(
            plan.create.is_empty() && plan.over_limit.is_empty(),
            "{plan:?}"
        );
        assert_eq!(plan.closed.len(), 2, "{plan:?}");
        // One ALLOW in a direction opens it: that direction needs its DENY.
        let half = [acl(vec![
            entry(100, true, "0.0.0.0/0", RuleAction::Allow),
            entry(32767, false, "0.0.0.0/0", RuleAction::Deny),
        ])];
        let plans = plan_entries(&half, &[("i-1".into(), vec!["10.0.1.5".into()])], 20);
        assert_eq!(plans["i-1"].create, vec![planned(1, true, "10.0.1.5/32")]);
        assert_eq!(plans["i-1"].closed.len(), 1);
    }

    #[test]
    fn entries_take_the_lowest_free_numbers_below_the_first_entry_that_matches() {
        let acls = [acl(vec![
            entry(2, false, "192.168.0.0/16", RuleAction::Allow),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
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
                ("10.0.1.5/32".to_owned(), 1),
                ("2600:1f18::5/128".to_owned(), 3),
                ("10.0.1.6/32".to_owned(), 4)
            ],
            "below rule 100, which matches every IPv4 address; rule 2 does not match them"
        );
        assert!(plans.values().all(|p| p.shadowed.is_empty()));
    }

    /// An ALLOW at a lower number than any free one matches the address
    /// first: a DENY after it would block nothing (network ACLs take the
    /// first match), so none is made and the address is reported shadowed.
    #[test]
    fn an_allow_that_matches_first_shadows_any_deny_behind_it() {
        let acls = [acl(vec![
            entry(1, false, "10.0.0.0/8", RuleAction::Allow),
            entry(1, true, "10.0.0.0/16", RuleAction::Allow),
        ])];
        let plans = plan_entries(&acls, &[("i-1".into(), vec!["10.0.1.5".into()])], 20);
        assert!(plans["i-1"].create.is_empty(), "{:?}", plans["i-1"].create);
        assert_eq!(
            plans["i-1"].shadowed.len(),
            2,
            "{:?}",
            plans["i-1"].shadowed
        );
        assert!(plans["i-1"].shadowed[0].contains("rule 1 matches 10.0.1.5/32 first"));
        // An ALLOW for one port only still lets that port through first.
        let one_port = port_22(5, "10.0.1.0/24", RuleAction::Allow);
        let plans = plan_entries(
            &[acl(vec![one_port])],
            &[("i-1".into(), vec!["10.0.1.5".into()])],
            20,
        );
        let inbound = inbound_numbers(&plans["i-1"]);
        assert_eq!(inbound, vec![1], "below the port rule");
    }

    #[test]
    fn a_deny_read_back_counts_only_while_nothing_matches_before_it() {
        let ours = AclEntryRecord {
            network_acl_id: "acl-1".into(),
            rule_number: 5,
            egress: false,
            cidr: "10.0.1.5/32".into(),
        };
        let alone = [acl(vec![
            entry(5, false, "10.0.1.5/32", RuleAction::Deny),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
        assert_eq!(denies_first(&alone, &ours), Ok(()));
        let raced = [acl(vec![
            entry(2, false, "10.0.0.0/16", RuleAction::Allow),
            entry(5, false, "10.0.1.5/32", RuleAction::Deny),
        ])];
        let err = denies_first(&raced, &ours).unwrap_err();
        assert!(err.contains("rule 2 matches 10.0.1.5/32 before"), "{err}");
        assert!(denies_first(&[acl(Vec::new())], &ours).is_err(), "gone");
        // An earlier DENY, for one port or all, lets nothing past that ours
        // would drop: the address is still denied first.
        let denied_earlier = [acl(vec![
            entry(1, false, "10.0.1.5/32", RuleAction::Deny),
            entry(5, false, "10.0.1.5/32", RuleAction::Deny),
        ])];
        assert_eq!(denies_first(&denied_earlier, &ours), Ok(()));
    }

    /// A DENY for one port comes first and nothing is free below it: ours
    /// may go after it (it lets nothing past that ours would drop), below the
    /// first ALLOW, and the address is not reported shadowed.
    #[test]
    fn a_partial_deny_first_does_not_shadow() {
        let one_port_deny = port_22(1, "10.0.0.0/8", RuleAction::Deny);
        let acls = [acl(vec![
            one_port_deny,
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
        let plans = plan_entries(&acls, &[("i-1".into(), vec!["10.0.1.5".into()])], 20);
        assert!(
            plans["i-1"].shadowed.is_empty(),
            "{:?}",
            plans["i-1"].shadowed
        );
        let inbound = inbound_numbers(&plans["i-1"]);
        assert_eq!(inbound, vec![2], "after the port DENY, before the ALLOW");
    }

    /// An address read twice (two ENIs reported with one address, or two
    /// instances of the case) gets one DENY per direction, not two where the
    /// second sits behind the first.
    #[test]
    fn an_address_held_twice_is_planned_once() {
        let acls = [acl(vec![
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
            entry(100, true, "0.0.0.0/0", RuleAction::Allow),
        ])];
        let plans = plan_entries(
            &acls,
            &[
                ("i-1".into(), vec!["10.0.1.5".into(), "10.0.1.5".into()]),
                ("i-2".into(), vec!["10.0.1.5".into()]),
            ],
            20,
        );
        let made: Vec<_> = plans.values().flat_map(|p| &p.create).collect();
        assert_eq!(made.len(), 2, "one inbound and one outbound: {made:?}");
        assert!(made.iter().all(|e| e.rule_number == 1));
    }

    #[test]
    fn cidr_containment_is_exact() {
        assert!(cidr_contains("10.0.0.0/8", "10.255.1.1"));
        assert!(!cidr_contains("10.0.0.0/8", "11.0.0.1"));
        assert!(cidr_contains("0.0.0.0/0", "203.0.113.9"));
        assert!(cidr_contains("10.0.1.5/32", "10.0.1.5"));
        assert!(!cidr_contains("10.0.1.5/32", "10.0.1.6"));
        assert!(cidr_contains("2600:1f18::/56", "2600:1f18::5"));
        assert!(
            !cidr_contains("2600:1f18::/56", "10.0.1.5"),
            "families never mix"
        );
        assert!(cidr_contains("::/0", "2600:1f18::5"));
        assert!(!cidr_contains("not a cidr", "10.0.1.5"));
    }

    #[test]
    fn a_full_acl_is_reported_not_overfilled() {
        let acls = [acl((1..=19)
            .map(|n| entry(n, false, "10.0.0.0/8", RuleAction::Allow))
            .chain([entry(100, true, "0.0.0.0/0", RuleAction::Allow)])
            .collect())];
        let plans = plan_entries(
            &acls,
            &[("i-1".into(), vec!["10.0.1.5".into(), "10.0.1.6".into()])],
            20,
        );
        assert_eq!(plans["i-1"].create.len(), 2);
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
        let acls = [acl(vec![
            entry(7, true, "10.0.1.5/32", RuleAction::Deny),
            entry(100, true, "0.0.0.0/0", RuleAction::Allow),
            entry(100, false, "0.0.0.0/0", RuleAction::Allow),
        ])];
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
