//! The responder's security groups in one VPC, trusted by nothing but their rules.
//!
//! A group found by name may hold rules someone else added (or an earlier
//! failed revoke left), so every group is read rule by rule and made exactly
//! what it must be: stray rules revoked by rule id, missing rules added. The
//! groups are looked up first and only a missing one is created (one more
//! round trip for the first containment in a VPC, no mutating request for
//! every later one: EC2's mutating buckets are what bound a bulk run); a
//! creation that answers `InvalidGroup.Duplicate` lost a race with another
//! case, and the lookup is made again.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup, SecurityGroupRule, Tag,
    TagSpecification, UserIdGroupPair,
};
use futures::future::join_all;

use crate::aws::attempt;
use crate::aws::retry::until_visible;
use crate::case::isolation::{GroupPurpose, VpcGroups};
use crate::case::ActionRecord;
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::ROLE_TAG;

/// Whom a rule lets traffic come from or go to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// An IPv4 range.
    Ipv4(String),
    /// An IPv6 range.
    Ipv6(String),
    /// Another security group.
    Group(String),
    /// A managed prefix list.
    PrefixList(String),
}

/// One rule, in the same shape whether it came from `DescribeSecurityGroups`
/// (permissions) or `DescribeSecurityGroupRules` (rules with ids).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleSpec {
    /// Outbound (true) or inbound.
    pub egress: bool,
    /// `-1` for all traffic, else `tcp`, `udp`, `icmp`, a number...
    pub protocol: String,
    /// Port range; `None` for all traffic.
    pub ports: Option<(i32, i32)>,
    /// The other side.
    pub peer: Peer,
}

impl RuleSpec {
    fn new(egress: bool, protocol: &str, from: Option<i32>, to: Option<i32>, peer: Peer) -> Self {
        let protocol = if protocol == "all" { "-1" } else { protocol };
        let ports = match (protocol, from, to) {
            ("-1", _, _) => None,
            (_, Some(from), Some(to)) => Some((from, to)),
            _ => None,
        };
        RuleSpec {
            egress,
            protocol: protocol.to_owned(),
            ports,
            peer,
        }
    }

    fn all_traffic(egress: bool, peer: Peer) -> Self {
        Self::new(egress, "-1", None, None, peer)
    }
}

/// Exactly the rules a group of `purpose` must hold.
pub fn wanted_rules(purpose: GroupPurpose, endpoint_groups: &[String]) -> BTreeSet<RuleSpec> {
    match purpose {
        GroupPurpose::Isolation => BTreeSet::new(),
        GroupPurpose::Untracking => [false, true]
            .into_iter()
            .flat_map(|egress| {
                [
                    RuleSpec::all_traffic(egress, Peer::Ipv4("0.0.0.0/0".into())),
                    RuleSpec::all_traffic(egress, Peer::Ipv6("::/0".into())),
                ]
            })
            .collect(),
        GroupPurpose::Acquisition => endpoint_groups
            .iter()
            .map(|g| RuleSpec::new(true, "tcp", Some(443), Some(443), Peer::Group(g.clone())))
            .collect(),
    }
}

/// The rules of a group as `DescribeSecurityGroups` lists them.
pub fn rules_of_group(group: &SecurityGroup) -> BTreeSet<RuleSpec> {
    let mut rules = BTreeSet::new();
    for (egress, permissions) in [
        (false, group.ip_permissions()),
        (true, group.ip_permissions_egress()),
    ] {
        for p in permissions {
            let protocol = p.ip_protocol().unwrap_or("-1");
            let rule = |peer| RuleSpec::new(egress, protocol, p.from_port(), p.to_port(), peer);
            for r in p.ip_ranges() {
                rules.extend(r.cidr_ip().map(|c| rule(Peer::Ipv4(c.to_owned()))));
            }
            for r in p.ipv6_ranges() {
                rules.extend(r.cidr_ipv6().map(|c| rule(Peer::Ipv6(c.to_owned()))));
            }
            for g in p.user_id_group_pairs() {
                rules.extend(g.group_id().map(|c| rule(Peer::Group(c.to_owned()))));
            }
            for l in p.prefix_list_ids() {
                rules.extend(
                    l.prefix_list_id()
                        .map(|c| rule(Peer::PrefixList(c.to_owned()))),
                );
            }
        }
    }
    rules
}

/// A rule as `DescribeSecurityGroupRules` lists it, with its id.
pub fn rule_with_id(rule: &SecurityGroupRule) -> Option<(String, RuleSpec)> {
    let peer = if let Some(c) = rule.cidr_ipv4() {
        Peer::Ipv4(c.to_owned())
    } else if let Some(c) = rule.cidr_ipv6() {
        Peer::Ipv6(c.to_owned())
    } else if let Some(g) = rule.referenced_group_info().and_then(|g| g.group_id()) {
        Peer::Group(g.to_owned())
    } else {
        Peer::PrefixList(rule.prefix_list_id().unwrap_or_default().to_owned())
    };
    let spec = RuleSpec::new(
        rule.is_egress().unwrap_or(false),
        rule.ip_protocol().unwrap_or("-1"),
        rule.from_port(),
        rule.to_port(),
        peer,
    );
    Some((rule.security_group_rule_id()?.to_owned(), spec))
}

/// What must change for a group holding `present` to hold exactly `wanted`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleRepair {
    /// Rules to revoke (by id, once ids are known).
    pub stray: Vec<RuleSpec>,
    /// Rules to add.
    pub missing: Vec<RuleSpec>,
}

impl RuleRepair {
    /// Compares what a group holds with what it must hold.
    pub fn of(present: &BTreeSet<RuleSpec>, wanted: &BTreeSet<RuleSpec>) -> Self {
        RuleRepair {
            stray: present.difference(wanted).cloned().collect(),
            missing: wanted.difference(present).cloned().collect(),
        }
    }

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.stray.is_empty() && self.missing.is_empty()
    }
}

/// The groups of `vpc_id` for `purposes`: found or created, each made exact.
/// Every change is an action record; a purpose whose group could not be made
/// right is left out of the result, so nothing moves an ENI into it.
pub async fn prepare_groups(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    purposes: &[GroupPurpose],
    endpoint_groups: &[String],
    dry_run: bool,
) -> Result<(VpcGroups, Vec<ActionRecord>)> {
    // Looked up first, created only where missing: a creation is a
    // mutating request, and EC2's mutating buckets are the scarce ones
    // (50, refilled at 5 a second) when many instances are contained at
    // once; the lookup is a read (100, at 20 a second).
    let found = find_groups(ec2, vpc_id).await?;
    let known = |purpose: &GroupPurpose| {
        found
            .iter()
            .find(|g| g.group_name() == Some(purpose.name()))
    };
    let created: BTreeMap<GroupPurpose, std::result::Result<Option<String>, Creation>> = join_all(
        purposes
            .iter()
            .filter(|p| known(p).is_none())
            .map(|purpose| async move {
                if dry_run {
                    return (*purpose, Ok(None));
                }
                (*purpose, create_group(ec2, vpc_id, *purpose).await)
            }),
    )
    .await
    .into_iter()
    .collect();
    let mut groups = VpcGroups {
        vpc_id: vpc_id.to_owned(),
        ..VpcGroups::default()
    };
    let mut actions = Vec::new();
    let mut repairs = Vec::new();
    let mut look_again = false;
    for purpose in purposes {
        let purpose = *purpose;
        let wanted = wanted_rules(purpose, endpoint_groups);
        let action = format!("create security group {}", purpose.name());
        if let Some(group) = known(&purpose) {
            let id = group.group_id().unwrap_or_default().to_owned();
            let repair = RuleRepair::of(&rules_of_group(group), &wanted);
            repairs.push((purpose, id, repair, false));
            continue;
        }
        match created.get(&purpose) {
            Some(Ok(Some(id))) => {
                actions.push(ActionRecord::new(
                    &action,
                    vpc_id,
                    crate::case::Outcome::Changed,
                ));
                // A new group holds one rule: all IPv4 egress.
                let present =
                    BTreeSet::from([RuleSpec::all_traffic(true, Peer::Ipv4("0.0.0.0/0".into()))]);
                repairs.push((purpose, id.clone(), RuleRepair::of(&present, &wanted), true));
            }
            Some(Err(Failed(err))) => actions.push(ActionRecord::failed(
                &action,
                vpc_id,
                err.error_type(),
                err.to_string(),
            )),
            _ if dry_run => actions.push(ActionRecord::new(
                &action,
                vpc_id,
                crate::case::Outcome::WouldChange,
            )),
            // A concurrent case made it after our lookup (`InvalidGroup.Duplicate`).
            _ => look_again = true,
        }
    }
    if look_again {
        // Created by a concurrent case after our lookup: look once more.
        let found = find_groups(ec2, vpc_id).await?;
        for purpose in purposes {
            let known = repairs.iter().any(|(p, ..)| p == purpose);
            if let (false, Some(group)) = (
                known,
                found
                    .iter()
                    .find(|g| g.group_name() == Some(purpose.name())),
            ) {
                let wanted = wanted_rules(*purpose, endpoint_groups);
                let repair = RuleRepair::of(&rules_of_group(group), &wanted);
                let id = group.group_id().unwrap_or_default().to_owned();
                repairs.push((*purpose, id, repair, false));
            }
        }
    }
    let repaired = join_all(
        repairs
            .into_iter()
            .map(|(purpose, id, repair, fresh)| async move {
                if repair.is_empty() {
                    return (purpose, id, None);
                }
                let action = if fresh {
                    format!("set the rules of new group {}", purpose.name())
                } else {
                    format!(
                        "make group {} exact: revoke {} stray rule(s), add {} missing",
                        purpose.name(),
                        repair.stray.len(),
                        repair.missing.len()
                    )
                };
                let wanted = wanted_rules(purpose, endpoint_groups);
                let (record, _) = attempt(dry_run, &action, &id, || {
                    make_exact(ec2, &id, &wanted, repair, fresh)
                })
                .await;
                (purpose, id, Some(record))
            }),
    )
    .await;
    for (purpose, id, record) in repaired {
        let usable = record.as_ref().is_none_or(ActionRecord::is_done);
        if let Some(record) = record {
            actions.push(record);
        }
        if usable {
            groups.set(purpose, id);
        }
    }
    Ok((groups, actions))
}

/// How a speculative creation ended.
enum Creation {
    /// The group exists already: use the one the lookup found.
    Duplicate,
    /// The creation failed for another reason.
    Failed(PlaybookError),
}
use Creation::{Duplicate, Failed};

/// Creates one of the responder's groups, tagged with its role.
async fn create_group(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    purpose: GroupPurpose,
) -> std::result::Result<Option<String>, Creation> {
    let created = ec2
        .create_security_group()
        .group_name(purpose.name())
        .description(purpose.description())
        .vpc_id(vpc_id)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key(ROLE_TAG).value(purpose.name()).build())
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.group_id().map(str::to_owned)),
        Err(err) if err.code() == Some("InvalidGroup.Duplicate") => Err(Duplicate),
        Err(err) => Err(Failed(PlaybookError::from_sdk(
            "CreateSecurityGroup",
            None,
            &err,
        ))),
    }
}

/// The responder's groups that exist in the VPC (by name; verified by the caller).
async fn find_groups(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<Vec<SecurityGroup>> {
    let names = GroupPurpose::ALL.map(GroupPurpose::name);
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .set_values(Some(names.iter().map(|n| (*n).to_owned()).collect()))
                .build(),
        )
        .send()
        .await
        .aws("DescribeSecurityGroups", None)?;
    Ok(out.security_groups().to_vec())
}

/// How often a group is read again and repaired when a concurrent case changed
/// it between our read and our change.
const RACE_ROUNDS: usize = 4;

/// Whether a rule change failed because someone else made the same change
/// first: a containment of another instance in the VPC, preparing the same
/// group at the same moment.
fn lost_a_race(err: &PlaybookError) -> bool {
    matches!(
        err.aws_code(),
        Some(
            "InvalidPermission.Duplicate"
                | "InvalidPermission.NotFound"
                | "InvalidSecurityGroupRuleId.NotFound"
        )
    )
}

/// Makes a group hold exactly `wanted`. Two cases in one VPC prepare the same
/// groups at once: a rule the other added first (`InvalidPermission.Duplicate`)
/// or revoked first (`...NotFound`) sends this case back to read the group
/// again; the group is accepted only once it reads exact.
async fn make_exact(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    wanted: &BTreeSet<RuleSpec>,
    first: RuleRepair,
    fresh: bool,
) -> Result<()> {
    let mut repair = first;
    let mut fresh = fresh;
    let mut round = 1;
    loop {
        match repair_group(ec2, group_id, &repair, fresh).await {
            Err(err) if lost_a_race(&err) && round < RACE_ROUNDS => {
                round += 1;
                fresh = false;
                let present: BTreeSet<RuleSpec> = read_rules(ec2, group_id)
                    .await?
                    .iter()
                    .filter_map(rule_with_id)
                    .map(|(_, spec)| spec)
                    .collect();
                repair = RuleRepair::of(&present, wanted);
                if repair.is_empty() {
                    return Ok(());
                }
            }
            done => return done,
        }
    }
}

/// Every rule of one group, with its id.
async fn read_rules(ec2: &aws_sdk_ec2::Client, group_id: &str) -> Result<Vec<SecurityGroupRule>> {
    let out = until_visible(|| async {
        ec2.describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(group_id).build())
            .send()
            .await
            .aws("DescribeSecurityGroupRules", None)
    })
    .await?;
    Ok(out
        .security_group_rules()
        .iter()
        .filter(|r| r.group_id() == Some(group_id))
        .cloned()
        .collect())
}

/// Revokes stray rules and adds missing ones. A group found by name has its
/// stray rules revoked by rule id, as read; a group created a moment ago holds
/// only the default egress rule, revoked as that permission (no read needed).
/// A new group may not be visible yet: those calls are retried until it is.
async fn repair_group(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    repair: &RuleRepair,
    fresh: bool,
) -> Result<()> {
    if fresh && !repair.stray.is_empty() {
        let permissions: Vec<IpPermission> = repair.stray.iter().map(permission).collect();
        until_visible(|| async {
            ec2.revoke_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(Some(permissions.clone()))
                .send()
                .await
                .aws("RevokeSecurityGroupEgress", None)
        })
        .await?;
    } else if !repair.stray.is_empty() {
        let rules = read_rules(ec2, group_id).await?;
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for (id, spec) in rules.iter().filter_map(rule_with_id) {
            if repair.stray.contains(&spec) {
                if spec.egress {
                    egress.push(id);
                } else {
                    ingress.push(id);
                }
            }
        }
        let revoke_in = async {
            if ingress.is_empty() {
                return Ok(());
            }
            until_visible(|| async {
                ec2.revoke_security_group_ingress()
                    .group_id(group_id)
                    .set_security_group_rule_ids(Some(ingress.clone()))
                    .send()
                    .await
                    .aws("RevokeSecurityGroupIngress", None)
            })
            .await
            .map(drop)
        };
        let revoke_out = async {
            if egress.is_empty() {
                return Ok(());
            }
            until_visible(|| async {
                ec2.revoke_security_group_egress()
                    .group_id(group_id)
                    .set_security_group_rule_ids(Some(egress.clone()))
                    .send()
                    .await
                    .aws("RevokeSecurityGroupEgress", None)
            })
            .await
            .map(drop)
        };
        let (a, b) = tokio::join!(revoke_in, revoke_out);
        a?;
        b?;
    }
    let (ingress, egress): (Vec<&RuleSpec>, Vec<&RuleSpec>) =
        repair.missing.iter().partition(|r| !r.egress);
    let add_in = async {
        if ingress.is_empty() {
            return Ok(());
        }
        let permissions: Vec<IpPermission> = ingress.iter().copied().map(permission).collect();
        until_visible(|| async {
            ec2.authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(permissions.clone()))
                .send()
                .await
                .aws("AuthorizeSecurityGroupIngress", None)
        })
        .await
        .map(drop)
    };
    let add_out = async {
        if egress.is_empty() {
            return Ok(());
        }
        let permissions: Vec<IpPermission> = egress.iter().copied().map(permission).collect();
        until_visible(|| async {
            ec2.authorize_security_group_egress()
                .group_id(group_id)
                .set_ip_permissions(Some(permissions.clone()))
                .send()
                .await
                .aws("AuthorizeSecurityGroupEgress", None)
        })
        .await
        .map(drop)
    };
    let (a, b) = tokio::join!(add_in, add_out);
    a?;
    b
}

fn permission(rule: &RuleSpec) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(&rule.protocol);
    if let Some((from, to)) = rule.ports {
        p = p.from_port(from).to_port(to);
    }
    p = match &rule.peer {
        Peer::Ipv4(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        Peer::Ipv6(c) => p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
        Peer::Group(g) => p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
        Peer::PrefixList(l) => p.prefix_list_ids(
            aws_sdk_ec2::types::PrefixListId::builder()
                .prefix_list_id(l)
                .build(),
        ),
    };
    p.build()
}

/// The services a memory capture in the acquisition stage needs an
/// interface endpoint for: the SSM agent's three, and S3 for the upload.
pub const ACQUISITION_SERVICES: [&str; 4] = ["ssm", "ssmmessages", "ec2messages", "s3"];

/// Security groups of the VPC's SSM (and S3 interface) endpoints, and
/// whether every one of [`ACQUISITION_SERVICES`] has a usable interface
/// endpoint (available, private DNS on).
pub async fn acquisition_endpoints(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
) -> Result<(Vec<String>, bool)> {
    let out = ec2
        .describe_vpc_endpoints()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .aws("DescribeVpcEndpoints", None)?;
    let mut groups = Vec::new();
    let mut present = std::collections::BTreeSet::new();
    for endpoint in out.vpc_endpoints() {
        let service = endpoint.service_name().unwrap_or_default();
        // Usable: an interface endpoint that is available, with private DNS
        // (the agent and the pre-signed URLs use the services' public names).
        let usable = endpoint.vpc_endpoint_type()
            == Some(&aws_sdk_ec2::types::VpcEndpointType::Interface)
            // The API answers `available` where the SDK's enum says
            // `Available`: compared without case.
            && endpoint
                .state()
                .is_some_and(|s| s.as_str().eq_ignore_ascii_case("available"))
            && endpoint.private_dns_enabled() == Some(true);
        if usable {
            if let Some(name) = ACQUISITION_SERVICES
                .iter()
                .find(|s| service.ends_with(&format!(".{s}")))
            {
                present.insert(*name);
            }
        }
        let is_ssm = ["ssm", "ssmmessages", "ec2messages"]
            .iter()
            .any(|s| service.ends_with(&format!(".{s}")));
        // The memory capture uploads to S3 over pre-signed URLs: through an S3
        // interface endpoint (private DNS) it stays inside the VPC. A gateway
        // endpoint has no group: without an interface endpoint the upload
        // fails in the acquisition stage and the capture is recorded as failed.
        let is_s3_interface = service.ends_with(".s3")
            && endpoint.vpc_endpoint_type()
                == Some(&aws_sdk_ec2::types::VpcEndpointType::Interface);
        if is_ssm || is_s3_interface {
            for group in endpoint.groups() {
                if let Some(id) = group.group_id() {
                    if !groups.iter().any(|g| g == id) {
                        groups.push(id.to_owned());
                    }
                }
            }
        }
    }
    Ok((groups, present.len() == ACQUISITION_SERVICES.len()))
}

/// Whether the rules `DescribeSecurityGroupRules` returned for `group_id` are
/// exactly what a group of `purpose` must hold.
pub fn group_is_exact(
    rules: &[SecurityGroupRule],
    group_id: &str,
    purpose: GroupPurpose,
    endpoint_groups: &[String],
) -> bool {
    let present: BTreeSet<RuleSpec> = rules
        .iter()
        .filter(|r| r.group_id() == Some(group_id))
        .filter_map(rule_with_id)
        .map(|(_, spec)| spec)
        .collect();
    present == wanted_rules(purpose, endpoint_groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_ssh() -> RuleSpec {
        RuleSpec::new(
            false,
            "tcp",
            Some(22),
            Some(22),
            Peer::Ipv4("0.0.0.0/0".into()),
        )
    }

    #[test]
    fn an_isolation_group_holding_rules_has_them_all_revoked() {
        let present = BTreeSet::from([
            open_ssh(),
            RuleSpec::all_traffic(true, Peer::Ipv4("0.0.0.0/0".into())),
        ]);
        let repair = RuleRepair::of(&present, &wanted_rules(GroupPurpose::Isolation, &[]));
        assert_eq!(repair.stray.len(), 2);
        assert!(repair.missing.is_empty());
    }

    #[test]
    fn a_new_untracking_group_needs_ingress_and_ipv6_egress() {
        let fresh = BTreeSet::from([RuleSpec::all_traffic(true, Peer::Ipv4("0.0.0.0/0".into()))]);
        let repair = RuleRepair::of(&fresh, &wanted_rules(GroupPurpose::Untracking, &[]));
        assert!(repair.stray.is_empty());
        assert_eq!(repair.missing.len(), 3);
        assert!(repair
            .missing
            .contains(&RuleSpec::all_traffic(true, Peer::Ipv6("::/0".into()))));
    }

    #[test]
    fn an_untracking_group_with_a_narrower_rule_is_not_exact() {
        let mut present = wanted_rules(GroupPurpose::Untracking, &[]);
        present.insert(open_ssh());
        let repair = RuleRepair::of(&present, &wanted_rules(GroupPurpose::Untracking, &[]));
        assert_eq!(repair.stray, vec![open_ssh()]);
    }

    #[test]
    fn all_traffic_ignores_the_ports_either_api_reports() {
        let from_permissions = RuleSpec::new(true, "-1", None, None, Peer::Ipv6("::/0".into()));
        let from_rules = RuleSpec::new(true, "-1", Some(-1), Some(-1), Peer::Ipv6("::/0".into()));
        assert_eq!(from_permissions, from_rules);
    }

    #[test]
    fn the_acquisition_group_allows_only_https_to_the_endpoints() {
        let wanted = wanted_rules(GroupPurpose::Acquisition, &["sg-endpoints".into()]);
        assert_eq!(wanted.len(), 1);
        let rule = wanted.iter().next().unwrap();
        assert!(rule.egress);
        assert_eq!(rule.ports, Some((443, 443)));
        assert_eq!(rule.peer, Peer::Group("sg-endpoints".into()));
    }
}
