//! isolate-network: cut the instance off, including connections already open.
//!
//! Security groups do not end tracked connections, so every ENI first moves to
//! an "untracking" group that allows all traffic (all flows become untracked),
//! then to the isolation group, which has no rule at all. Elastic IPs are
//! disassociated; by policy the instance profile is removed and the role's
//! sessions issued before now are denied. Everything changed is recorded with
//! its original value so release-instance can put it back.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::actions::{all_done, apply, attempt, ensure, failures, ActionRecord};
use crate::capture_metadata::describe_instance;
use crate::case::{record_of, upsert, Case, PerInstance};
use crate::custody::{entry, now_utc, sha256_json};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::policy::{AcquisitionOrder, Policy};
use crate::responder::Clients;

/// The step name in custody entries and errors.
pub const STEP: &str = "isolate-network";
/// Tag on every resource the responder creates, naming its purpose.
pub const ROLE_TAG: &str = "ec2-forensics:role";
/// Tag on the suspect instance: the case that contains it.
pub const CASE_TAG: &str = "ec2-forensics:case-id";
/// Tag on the suspect instance: quarantined or released.
pub const STATUS_TAG: &str = "ec2-forensics:status";

/// The security groups the responder keeps in each VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupPurpose {
    /// No ingress, no egress.
    Isolation,
    /// All traffic from and to anywhere: makes existing flows untracked.
    Untracking,
    /// Only HTTPS to the SSM endpoints: memory can still be captured.
    Acquisition,
}

impl GroupPurpose {
    /// The group's name (unique per VPC) and `ec2-forensics:role` tag.
    pub fn name(self) -> &'static str {
        match self {
            Self::Isolation => "ec2-forensics-isolation",
            Self::Untracking => "ec2-forensics-untracking",
            Self::Acquisition => "ec2-forensics-acquisition",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Isolation => "ec2-forensics: isolated instance, no traffic in or out",
            Self::Untracking => "ec2-forensics: transient, all traffic, ends connection tracking",
            Self::Acquisition => "ec2-forensics: isolated instance, HTTPS to SSM endpoints only",
        }
    }
}

/// Whether the instance is fully isolated or only down to the SSM endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IsolationStage {
    /// Only HTTPS to the SSM endpoints (isolate-first, until memory is captured).
    Acquisition,
    /// No traffic at all.
    Full,
}

/// One ENI's security groups before isolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniIsolation {
    /// ENI id.
    pub network_interface_id: String,
    /// Its groups before isolation.
    pub original_group_ids: Vec<String>,
}

/// An Elastic IP that was associated with the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElasticIpRecord {
    /// Allocation id.
    pub allocation_id: String,
    /// The association that was removed.
    pub association_id: Option<String>,
    /// The public address.
    pub public_ip: Option<String>,
    /// The ENI it was on.
    pub network_interface_id: Option<String>,
    /// The private address it mapped to.
    pub private_ip: Option<String>,
    /// The instance it was associated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// The instance profile that was associated with the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileRecord {
    /// The association that was removed.
    pub association_id: String,
    /// Instance profile ARN.
    pub arn: String,
    /// The role inside the profile.
    pub role_name: Option<String>,
    /// Other instances using the same profile (a session revocation hits them too).
    pub shared_with: Vec<String>,
}

/// The inline policy that denies the role's sessions issued before isolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevocation {
    /// The role.
    pub role_name: String,
    /// The inline policy's name.
    pub policy_name: String,
    /// Sessions issued before this UTC time are denied.
    pub issued_before: String,
}

/// What isolate-network did to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIsolation {
    /// Instance id.
    pub instance_id: String,
    /// The instance's VPC.
    pub vpc_id: Option<String>,
    /// Fully isolated, or down to the SSM endpoints.
    pub stage: IsolationStage,
    /// The group the ENIs end in.
    pub isolation_group_id: Option<String>,
    /// The transient all-traffic group.
    pub untracking_group_id: Option<String>,
    /// Every ENI with its original groups.
    pub interfaces: Vec<EniIsolation>,
    /// Elastic IPs that were disassociated.
    pub elastic_ips: Vec<ElasticIpRecord>,
    /// The instance profile that was removed.
    pub instance_profile: Option<InstanceProfileRecord>,
    /// The role-session revocation, if one was made.
    pub session_revocation: Option<SessionRevocation>,
    /// What a responder should know (shared role, already isolated...).
    pub warnings: Vec<String>,
    /// Every change.
    pub actions: Vec<ActionRecord>,
    /// Every change is made or was already so.
    pub complete: bool,
    /// UTC time.
    pub isolated_at: String,
}

impl PerInstance for InstanceIsolation {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// Isolates every instance of the case, concurrently.
pub async fn isolate_instances(clients: &Clients, actor: &str, mut case: Case) -> Result<Case> {
    case.ensure_containment_allowed()?;
    let results = join_all(case.incident.instance_ids.iter().map(|id| {
        let earlier = record_of(&case.isolation, id).cloned();
        let vpc_hint = case
            .metadata_of(id)
            .and_then(|m| m.vpc_id.clone())
            .or_else(|| record_of(&case.protection, id).and_then(|p| p.vpc_id.clone()));
        let request = IsolationRequest {
            case_id: &case.case_id,
            instance_id: id,
            dry_run: case.decision.dry_run,
            policy: &case.policy,
            earlier,
            vpc_hint,
        };
        isolate_instance(clients, request)
    }))
    .await;
    for result in results {
        let isolation = result?;
        case.errors.extend(failures(STEP, &isolation.actions));
        case.custody.push(entry(
            STEP,
            actor,
            format!(
                "{} instance {} ({:?})",
                if case.decision.dry_run { "dry run: would isolate" } else { "isolated" },
                isolation.instance_id,
                isolation.stage
            ),
            &ISOLATE_CALLS,
            json!({ "instanceId": isolation.instance_id, "dryRun": case.decision.dry_run }),
            json!({ "actions": isolation.actions, "complete": isolation.complete, "warnings": isolation.warnings }),
            Some(sha256_json(&isolation.interfaces)),
        ));
        upsert(&mut case.isolation, isolation);
    }
    Ok(case)
}

const ISOLATE_CALLS: [&str; 12] = [
    "DescribeInstances",
    "DescribeAddresses",
    "DescribeIamInstanceProfileAssociations",
    "GetInstanceProfile",
    "DescribeSecurityGroups",
    "CreateSecurityGroup",
    "RevokeSecurityGroupEgress",
    "ModifyNetworkInterfaceAttribute",
    "DisassociateAddress",
    "DisassociateIamInstanceProfile",
    "PutRolePolicy",
    "CreateTags",
];

/// What to isolate and how.
#[derive(Debug, Clone)]
pub struct IsolationRequest<'a> {
    /// The case, for tags and the revocation policy's name.
    pub case_id: &'a str,
    /// The instance.
    pub instance_id: &'a str,
    /// Report, change nothing.
    pub dry_run: bool,
    /// The case's policy.
    pub policy: &'a Policy,
    /// The record of an earlier run on this instance, whose originals are kept.
    pub earlier: Option<InstanceIsolation>,
    /// The VPC, when an earlier step found it (saves a round trip).
    pub vpc_hint: Option<String>,
}

/// Reads what it needs (a failure there changes nothing and fails the step),
/// then isolates.
pub async fn isolate_instance(
    clients: &Clients,
    req: IsolationRequest<'_>,
) -> Result<InstanceIsolation> {
    let ec2 = &clients.ec2;
    let id = req.instance_id;
    let wants_acquisition = req.policy.acquisition_order == AcquisitionOrder::IsolateFirst
        && req
            .earlier
            .as_ref()
            .is_none_or(|e| e.stage != IsolationStage::Acquisition);
    let groups_early = async {
        match &req.vpc_hint {
            Some(vpc) => Some(find_groups(ec2, vpc).await),
            None => None,
        }
    };
    let (instance, addresses, profile, groups_early) = tokio::join!(
        describe_instance(ec2, id),
        describe_addresses(ec2, id),
        describe_profile(clients, id),
        groups_early,
    );
    let (_, instance) = instance?;
    let addresses = addresses.map(|all| addresses_of(all, &instance));
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|s| s.as_str().to_owned());
    let vpc_id = instance
        .vpc_id()
        .map(str::to_owned)
        .or(req.vpc_hint.clone());
    let mut warnings = Vec::new();
    if state.as_deref() == Some("terminated") {
        warnings.push("the instance is terminated: there is nothing left to isolate".to_owned());
        return Ok(InstanceIsolation {
            instance_id: id.to_owned(),
            vpc_id,
            stage: IsolationStage::Full,
            isolation_group_id: None,
            untracking_group_id: None,
            interfaces: Vec::new(),
            elastic_ips: Vec::new(),
            instance_profile: None,
            session_revocation: None,
            warnings,
            actions: Vec::new(),
            complete: true,
            isolated_at: now_utc(),
        });
    }
    let vpc = vpc_id.clone().ok_or_else(|| {
        PlaybookError::InvalidCase(format!(
            "instance {id} is in no VPC; EC2-Classic cannot be isolated"
        ))
    })?;
    let existing = match groups_early.filter(|_| req.vpc_hint.as_deref() == Some(&vpc)) {
        Some(found) => found?,
        None => find_groups(ec2, &vpc).await?,
    };
    let endpoint_groups = if wants_acquisition {
        ssm_endpoint_groups(ec2, &vpc).await?
    } else {
        Vec::new()
    };
    let stage = if wants_acquisition && !endpoint_groups.is_empty() {
        IsolationStage::Acquisition
    } else {
        if wants_acquisition {
            warnings.push(
                "isolate-first was asked for, but the VPC has no SSM interface endpoints: isolated fully"
                    .to_owned(),
            );
        }
        IsolationStage::Full
    };
    let profile = profile?;
    if let Some(p) = &profile {
        if !p.shared_with.is_empty() {
            warnings.push(format!(
                "instance profile {} is also used by {}: revoking the role's sessions affects them too",
                p.arn,
                p.shared_with.join(", ")
            ));
        }
    }
    let interfaces: Vec<EniIsolation> = instance
        .network_interfaces()
        .iter()
        .filter_map(|eni| {
            Some(EniIsolation {
                network_interface_id: eni.network_interface_id()?.to_owned(),
                original_group_ids: eni
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
            })
        })
        .collect();
    let ours: Vec<&String> = existing.values().collect();
    if req.earlier.is_none()
        && interfaces.iter().any(|e| {
            !e.original_group_ids.is_empty()
                && e.original_group_ids.iter().all(|g| ours.contains(&g))
        })
    {
        warnings.push(
            "the instance was already isolated before this run: its original groups are in the case that isolated it"
                .to_owned(),
        );
    }

    // Changes from here on; each ends as an action record.
    let mut actions = Vec::new();
    let (groups, group_actions) =
        ensure_groups(ec2, &vpc, existing, stage, &endpoint_groups, req.dry_run).await;
    actions.extend(group_actions);
    let target_group = match stage {
        IsolationStage::Full => groups.get(&GroupPurpose::Isolation).cloned(),
        IsolationStage::Acquisition => groups.get(&GroupPurpose::Acquisition).cloned(),
    };
    let untracking = groups.get(&GroupPurpose::Untracking).cloned();
    let revocation = revocation_for(&req, profile.as_ref());

    let enis = join_all(interfaces.iter().map(|eni| {
        swap_groups(
            ec2,
            eni,
            untracking.as_deref(),
            target_group.as_deref(),
            req.dry_run,
        )
    }));
    let eips = join_all(addresses.as_deref().unwrap_or_default().iter().map(|eip| {
        let association = eip.association_id.clone().unwrap_or_default();
        apply(
            req.dry_run,
            "disassociate Elastic IP",
            &eip.allocation_id,
            move || async move {
                ec2.disassociate_address()
                    .association_id(association)
                    .send()
                    .await
                    .aws("DisassociateAddress", Some(id))
                    .map(drop)
            },
        )
    }));
    let detach_profile = async {
        let p = profile
            .as_ref()
            .filter(|_| req.policy.detach_instance_profile)?;
        Some(
            apply(
                req.dry_run,
                "disassociate instance profile",
                &p.arn,
                || async {
                    ec2.disassociate_iam_instance_profile()
                        .association_id(&p.association_id)
                        .send()
                        .await
                        .aws("DisassociateIamInstanceProfile", Some(id))
                        .map(drop)
                },
            )
            .await,
        )
    };
    let revoke = async {
        let r = revocation.as_ref()?;
        Some(
            apply(
                req.dry_run,
                "deny role sessions issued before isolation",
                &r.role_name,
                || async {
                    clients
                        .iam
                        .put_role_policy()
                        .role_name(&r.role_name)
                        .policy_name(&r.policy_name)
                        .policy_document(revocation_policy(&r.issued_before))
                        .send()
                        .await
                        .aws("PutRolePolicy", Some(id))
                        .map(drop)
                },
            )
            .await,
        )
    };
    let tagged =
        has_tag(&instance, CASE_TAG, req.case_id) && has_tag(&instance, STATUS_TAG, "quarantined");
    let tag = async {
        ensure(
            tagged,
            req.dry_run,
            "tag instance as quarantined",
            id,
            || async {
                ec2.create_tags()
                    .resources(id)
                    .tags(Tag::builder().key(CASE_TAG).value(req.case_id).build())
                    .tags(Tag::builder().key(STATUS_TAG).value("quarantined").build())
                    .send()
                    .await
                    .aws("CreateTags", Some(id))
                    .map(drop)
            },
        )
        .await
    };
    let (enis, eips, detach_profile, revoke, tag) =
        tokio::join!(enis, eips, detach_profile, revoke, tag);
    actions.extend(enis);
    actions.extend(eips);
    actions.extend(detach_profile);
    actions.extend(revoke);
    actions.push(tag);

    let mut isolation = InstanceIsolation {
        instance_id: id.to_owned(),
        vpc_id: Some(vpc),
        stage,
        isolation_group_id: target_group,
        untracking_group_id: untracking,
        interfaces,
        elastic_ips: addresses.unwrap_or_default(),
        instance_profile: profile.filter(|_| req.policy.detach_instance_profile),
        session_revocation: revocation,
        warnings,
        complete: all_done(&actions),
        actions,
        isolated_at: now_utc(),
    };
    if let Some(earlier) = &req.earlier {
        keep_earlier_originals(&mut isolation, earlier);
    }
    Ok(isolation)
}

/// Whether the instance carries the tag `key` = `value`.
pub fn has_tag(instance: &aws_sdk_ec2::types::Instance, key: &str, value: &str) -> bool {
    instance
        .tags()
        .iter()
        .any(|t| t.key() == Some(key) && t.value() == Some(value))
}

/// A re-run sees the isolated state; the originals are those the first run saw.
pub fn keep_earlier_originals(isolation: &mut InstanceIsolation, earlier: &InstanceIsolation) {
    for eni in &mut isolation.interfaces {
        if let Some(first) = earlier
            .interfaces
            .iter()
            .find(|e| e.network_interface_id == eni.network_interface_id)
        {
            eni.original_group_ids = first.original_group_ids.clone();
        }
    }
    for eip in &earlier.elastic_ips {
        if !isolation
            .elastic_ips
            .iter()
            .any(|e| e.allocation_id == eip.allocation_id)
        {
            isolation.elastic_ips.push(eip.clone());
        }
    }
    if earlier.instance_profile.is_some() {
        isolation.instance_profile = earlier.instance_profile.clone();
    }
    if isolation.session_revocation.is_none() {
        isolation.session_revocation = earlier.session_revocation.clone();
    }
    isolation
        .warnings
        .retain(|w| !w.starts_with("the instance was already isolated"));
}

/// The revocation to make, if the policy asks for one and the instance has a role.
fn revocation_for(
    req: &IsolationRequest<'_>,
    profile: Option<&InstanceProfileRecord>,
) -> Option<SessionRevocation> {
    if !req.policy.revoke_role_sessions {
        return None;
    }
    let role_name = profile?.role_name.clone()?;
    Some(SessionRevocation {
        role_name,
        policy_name: format!("ec2-forensics-revoke-{}", req.case_id),
        issued_before: now_utc(),
    })
}

/// The IAM policy that denies every action to sessions issued before `issued_before`.
pub fn revocation_policy(issued_before: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Ec2ForensicsRevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "DateLessThan": { "aws:TokenIssueTime": issued_before } }
        }]
    })
    .to_string()
}

/// Moves one ENI through the untracking group to its final group.
async fn swap_groups(
    ec2: &aws_sdk_ec2::Client,
    eni: &EniIsolation,
    untracking: Option<&str>,
    target: Option<&str>,
    dry_run: bool,
) -> ActionRecord {
    let action = "move ENI to the isolation group (via the untracking group)";
    let eni_id = eni.network_interface_id.as_str();
    if let Some(target) = target {
        if eni.original_group_ids == [target] {
            return ActionRecord::already_done(action, eni_id);
        }
    }
    apply(dry_run, action, eni_id, || async {
        let (Some(untracking), Some(target)) = (untracking, target) else {
            return Err(PlaybookError::InvalidCase(
                "the isolation groups could not be prepared".into(),
            ));
        };
        for group in [untracking, target] {
            ec2.modify_network_interface_attribute()
                .network_interface_id(eni_id)
                .groups(group)
                .send()
                .await
                .aws("ModifyNetworkInterfaceAttribute", None)?;
        }
        Ok(())
    })
    .await
}

/// The responder's groups that already exist in the VPC, by purpose.
async fn find_groups(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
) -> Result<BTreeMap<GroupPurpose, String>> {
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values(GroupPurpose::Isolation.name())
                .values(GroupPurpose::Untracking.name())
                .values(GroupPurpose::Acquisition.name())
                .build(),
        )
        .send()
        .await
        .aws("DescribeSecurityGroups", None)?;
    let mut groups = BTreeMap::new();
    for group in out.security_groups() {
        let purpose = [
            GroupPurpose::Isolation,
            GroupPurpose::Untracking,
            GroupPurpose::Acquisition,
        ]
        .into_iter()
        .find(|p| group.group_name() == Some(p.name()));
        if let (Some(purpose), Some(id)) = (purpose, group.group_id()) {
            groups.insert(purpose, id.to_owned());
        }
    }
    Ok(groups)
}

/// Creates the groups the stage needs that do not exist yet.
async fn ensure_groups(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    mut groups: BTreeMap<GroupPurpose, String>,
    stage: IsolationStage,
    endpoint_groups: &[String],
    dry_run: bool,
) -> (BTreeMap<GroupPurpose, String>, Vec<ActionRecord>) {
    let mut needed = vec![GroupPurpose::Untracking, GroupPurpose::Isolation];
    if stage == IsolationStage::Acquisition {
        needed.push(GroupPurpose::Acquisition);
    }
    let missing: Vec<GroupPurpose> = needed
        .into_iter()
        .filter(|p| !groups.contains_key(p))
        .collect();
    let created = join_all(missing.iter().map(|purpose| async move {
        let action = format!("create security group {}", purpose.name());
        let (record, created_id) = attempt(dry_run, &action, vpc_id, || {
            create_group(ec2, vpc_id, *purpose, endpoint_groups)
        })
        .await;
        (*purpose, created_id, record)
    }))
    .await;
    let mut actions = Vec::new();
    for (purpose, id, record) in created {
        if let Some(id) = id {
            groups.insert(purpose, id);
        }
        actions.push(record);
    }
    (groups, actions)
}

/// Creates one of the responder's groups with exactly its rules. A group
/// created meanwhile by a concurrent case is found again instead.
async fn create_group(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    purpose: GroupPurpose,
    endpoint_groups: &[String],
) -> Result<String> {
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
    let group_id = match created {
        Ok(out) => out.group_id().unwrap_or_default().to_owned(),
        Err(err)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&err)
                == Some("InvalidGroup.Duplicate") =>
        {
            return find_groups(ec2, vpc_id)
                .await?
                .remove(&purpose)
                .ok_or_else(|| {
                    PlaybookError::InvalidCase(format!("group {} vanished", purpose.name()))
                });
        }
        Err(err) => return Err(PlaybookError::from_sdk("CreateSecurityGroup", None, &err)),
    };
    // A new group allows all egress; only the untracking group keeps it.
    if purpose != GroupPurpose::Untracking {
        ec2.revoke_security_group_egress()
            .group_id(&group_id)
            .ip_permissions(all_traffic())
            .send()
            .await
            .aws("RevokeSecurityGroupEgress", None)?;
    }
    match purpose {
        GroupPurpose::Untracking => {
            ec2.authorize_security_group_ingress()
                .group_id(&group_id)
                .ip_permissions(all_traffic())
                .send()
                .await
                .aws("AuthorizeSecurityGroupIngress", None)?;
        }
        GroupPurpose::Acquisition => {
            let mut https = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443);
            for group in endpoint_groups {
                https =
                    https.user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build());
            }
            ec2.authorize_security_group_egress()
                .group_id(&group_id)
                .ip_permissions(https.build())
                .send()
                .await
                .aws("AuthorizeSecurityGroupEgress", None)?;
        }
        GroupPurpose::Isolation => {}
    }
    Ok(group_id)
}

fn all_traffic() -> IpPermission {
    IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
        .build()
}

/// Security groups of the VPC's SSM interface endpoints.
async fn ssm_endpoint_groups(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<Vec<String>> {
    let out = ec2
        .describe_vpc_endpoints()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .aws("DescribeVpcEndpoints", None)?;
    let mut groups = Vec::new();
    for endpoint in out.vpc_endpoints() {
        let service = endpoint.service_name().unwrap_or_default();
        let is_ssm = ["ssm", "ssmmessages", "ec2messages"]
            .iter()
            .any(|s| service.ends_with(&format!(".{s}")));
        if is_ssm {
            for group in endpoint.groups() {
                if let Some(id) = group.group_id() {
                    if !groups.iter().any(|g| g == id) {
                        groups.push(id.to_owned());
                    }
                }
            }
        }
    }
    Ok(groups)
}

/// Every associated Elastic IP of the region; [`addresses_of`] picks the instance's.
/// (Filtering by `instance-id` misses an address associated through an ENI
/// on some endpoints, so the match is made here, by instance and by ENI.)
pub(crate) async fn describe_addresses(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<Vec<ElasticIpRecord>> {
    let out = ec2
        .describe_addresses()
        .send()
        .await
        .aws("DescribeAddresses", Some(instance_id))?;
    Ok(out
        .addresses()
        .iter()
        .filter(|a| a.association_id().is_some())
        .filter_map(|a| {
            Some(ElasticIpRecord {
                allocation_id: a.allocation_id()?.to_owned(),
                association_id: a.association_id().map(str::to_owned),
                public_ip: a.public_ip().map(str::to_owned),
                network_interface_id: a.network_interface_id().map(str::to_owned),
                private_ip: a.private_ip_address().map(str::to_owned),
                instance_id: a.instance_id().filter(|i| !i.is_empty()).map(str::to_owned),
            })
        })
        .collect())
}

/// The addresses associated with the instance itself or with one of its ENIs.
pub(crate) fn addresses_of(
    addresses: Vec<ElasticIpRecord>,
    instance: &aws_sdk_ec2::types::Instance,
) -> Vec<ElasticIpRecord> {
    let enis: Vec<&str> = instance
        .network_interfaces()
        .iter()
        .filter_map(|e| e.network_interface_id())
        .collect();
    addresses
        .into_iter()
        .filter(|a| {
            a.instance_id.is_some() && a.instance_id.as_deref() == instance.instance_id()
                || a.network_interface_id
                    .as_deref()
                    .is_some_and(|n| enis.contains(&n))
        })
        .collect()
}

/// The instance's profile association, its role, and the other instances using it.
pub(crate) async fn describe_profile(
    clients: &Clients,
    instance_id: &str,
) -> Result<Option<InstanceProfileRecord>> {
    let mut associations = Vec::new();
    let mut token = None;
    loop {
        let page = clients
            .ec2
            .describe_iam_instance_profile_associations()
            .set_next_token(token)
            .send()
            .await
            .aws("DescribeIamInstanceProfileAssociations", Some(instance_id))?;
        associations.extend(page.iam_instance_profile_associations().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let is_live = |a: &&aws_sdk_ec2::types::IamInstanceProfileAssociation| {
        a.state().is_none_or(|s| s.as_str() == "associated")
    };
    let Some(ours) = associations
        .iter()
        .filter(is_live)
        .find(|a| a.instance_id() == Some(instance_id))
    else {
        return Ok(None);
    };
    let arn = ours
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .unwrap_or_default()
        .to_owned();
    let shared_with = associations
        .iter()
        .filter(is_live)
        .filter(|a| a.instance_id() != Some(instance_id))
        .filter(|a| a.iam_instance_profile().and_then(|p| p.arn()) == Some(arn.as_str()))
        .filter_map(|a| a.instance_id().map(str::to_owned))
        .collect();
    let profile_name = arn.rsplit('/').next().unwrap_or_default();
    let role_name = clients
        .iam
        .get_instance_profile()
        .instance_profile_name(profile_name)
        .send()
        .await
        .aws("GetInstanceProfile", Some(instance_id))?
        .instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.role_name().to_owned());
    Ok(Some(InstanceProfileRecord {
        association_id: ours.association_id().unwrap_or_default().to_owned(),
        arn,
        role_name,
        shared_with,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_policy_denies_everything_to_older_sessions() {
        let policy: serde_json::Value =
            serde_json::from_str(&revocation_policy("2026-11-28T10:00:00Z")).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Action"], "*");
        assert_eq!(
            statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-11-28T10:00:00Z"
        );
    }

    #[test]
    fn a_rerun_keeps_the_original_groups_and_addresses() {
        let first = InstanceIsolation {
            instance_id: "i-1".into(),
            vpc_id: Some("vpc-1".into()),
            stage: IsolationStage::Full,
            isolation_group_id: Some("sg-iso".into()),
            untracking_group_id: Some("sg-untrack".into()),
            interfaces: vec![EniIsolation {
                network_interface_id: "eni-1".into(),
                original_group_ids: vec!["sg-web".into()],
            }],
            elastic_ips: vec![ElasticIpRecord {
                allocation_id: "eipalloc-1".into(),
                association_id: Some("eipassoc-1".into()),
                public_ip: Some("203.0.113.10".into()),
                network_interface_id: Some("eni-1".into()),
                private_ip: Some("10.0.0.5".into()),
                instance_id: None,
            }],
            instance_profile: None,
            session_revocation: None,
            warnings: Vec::new(),
            actions: Vec::new(),
            complete: true,
            isolated_at: "t".into(),
        };
        let mut second = InstanceIsolation {
            interfaces: vec![EniIsolation {
                network_interface_id: "eni-1".into(),
                original_group_ids: vec!["sg-iso".into()],
            }],
            elastic_ips: Vec::new(),
            warnings: vec!["the instance was already isolated before this run: x".into()],
            ..first.clone()
        };
        keep_earlier_originals(&mut second, &first);
        assert_eq!(second.interfaces, first.interfaces);
        assert_eq!(second.elastic_ips, first.elastic_ips);
        assert!(second.warnings.is_empty());
    }
}
