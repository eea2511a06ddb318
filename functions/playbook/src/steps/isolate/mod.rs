//! isolate-network: cut the instance off, including connections already open,
//! and claim it isolated only after reading the result back.
//!
//! Security groups do not end tracked connections, so every ENI first moves to
//! an "untracking" group that allows all traffic (all flows become untracked),
//! then to the isolation group, which has no rule at all. Flows that stay
//! tracked whatever the groups say are cut by network ACL DENY entries for the
//! instance's addresses. Elastic IPs are disassociated; by policy the instance
//! profile is removed and the instance's own role sessions are denied. Then
//! every ENI, the final groups' rules, the profile and the addresses are read
//! back: only what was read back right is `complete`.
//!
//! Reads come first, in one wave (a failure there changes nothing); the
//! changes that do not depend on each other are made together.

pub mod acl;
pub mod credentials;
pub mod dns_firewall;
pub mod groups;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, Instance, Tag};
use futures::future::join_all;
use serde_json::json;

use crate::aws::{apply, attempt, ensure, Clients};
use crate::case::custody::{entry, now_utc, sha256_json};
use crate::case::isolation::{
    AclEntryRecord, DnsFirewallBlock, ElasticIpRecord, EniIsolation, GroupPurpose,
    InstanceIsolation, InstanceProfileRecord, IsolationStage, SessionRevocation, VpcGroups,
    ALREADY_ISOLATED_WARNING,
};
use crate::case::policy::AcquisitionOrder;
use crate::case::{
    all_done, failures, record_of, tally, upsert, ActionRecord, Case, Outcome, StepError,
};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::{
    all_failed_transiently, describe_all, has_tag, is_terminated, Described, CASE_TAG, STATUS_TAG,
};
use acl::AclPlan;

/// The step name in custody entries and errors.
pub const STEP: &str = "isolate-network";

const CALLS: [&str; 17] = [
    "DescribeInstances",
    "DescribeSecurityGroups",
    "CreateSecurityGroup",
    "DescribeSecurityGroupRules",
    "RevokeSecurityGroupIngress/Egress",
    "AuthorizeSecurityGroupIngress/Egress",
    "DescribeAddresses",
    "DescribeIamInstanceProfileAssociations",
    "GetInstanceProfile",
    "DescribeNetworkAcls",
    "CreateNetworkAclEntry",
    "ModifyNetworkInterfaceAttribute",
    "DisassociateAddress",
    "DisassociateIamInstanceProfile",
    "PutRolePolicy",
    "CreateTags",
    "DescribeNetworkInterfaces",
];

/// Isolates every instance of the case: reads, changes, read-back.
pub async fn isolate_instances(clients: &Clients, actor: &str, case: Case) -> Result<Case> {
    isolate_instances_knowing(clients, actor, case, Vec::new()).await
}

/// [`isolate_instances`], knowing the DENY entries an earlier attempt of this
/// step made for the case (kept in its lease, which only the responder
/// writes): a retry finds them present and records them as the case's own,
/// so release removes them. Any other DENY already there is someone else's.
pub async fn isolate_instances_knowing(
    clients: &Clients,
    actor: &str,
    case: Case,
    own_acl_entries: Vec<AclEntryRecord>,
) -> Result<Case> {
    let (described, prepared) = prepare_isolation(clients, &case, own_acl_entries).await?;
    Ok(isolate(clients, actor, case, described, prepared).await)
}

/// Everything isolation reads before it changes anything (see
/// [`isolate_instances_knowing`]); [`isolate`] then makes the changes.
pub async fn prepare_isolation(
    clients: &Clients,
    case: &Case,
    own_acl_entries: Vec<AclEntryRecord>,
) -> Result<(Vec<Described>, Prepared)> {
    case.ensure_containment_allowed()?;
    let described = describe_all(&clients.ec2, &case.incident.instance_ids).await;
    let mut prepared = prepare(clients, case, &described).await?;
    prepared.own_acl_entries = own_acl_entries;
    if let Some(err) = all_failed_transiently(&prepared.instances) {
        return Err(err);
    }
    Ok((described, prepared))
}

/// What isolation read about one instance before changing anything.
#[derive(Debug, Clone)]
pub struct InstanceReads {
    /// Instance id.
    pub instance_id: String,
    /// The account that owns it.
    pub account: Option<String>,
    /// Its state (running, stopped, terminated...).
    pub state: Option<String>,
    /// The primary ENI's VPC.
    pub vpc_id: Option<String>,
    /// Every ENI with its groups now.
    pub interfaces: Vec<EniIsolation>,
    /// Every private IPv4 and IPv6 address of its ENIs, by the ENI's VPC
    /// (an instance may hold ENIs of several VPCs), each once.
    pub addresses: BTreeMap<String, BTreeSet<String>>,
    /// Its associated Elastic IPs.
    pub elastic_ips: Vec<ElasticIpRecord>,
    /// Its profile association and role.
    pub profile: Option<InstanceProfileRecord>,
    /// Tagged quarantined for this case already.
    pub tagged: bool,
    /// ENIs whose original groups are those the case's lease kept: an
    /// earlier attempt of this step moved them and its answer was lost.
    pub originals_kept: Vec<String>,
    /// The stage this run isolates it to.
    pub stage: IsolationStage,
    /// The acquisition stage was wanted, but a VPC of its ENIs has no SSM
    /// interface endpoints to keep.
    pub lacks_endpoints: bool,
}

impl InstanceReads {
    /// Nothing is left to isolate.
    pub fn terminated(&self) -> bool {
        self.state.as_deref() == Some("terminated")
    }
}

/// Everything read (and the groups prepared) before any change to an instance.
#[derive(Debug)]
pub struct Prepared {
    /// Per instance: its reads, or why they failed.
    pub instances: BTreeMap<String, Result<InstanceReads>>,
    /// The responder's groups per VPC, verified rule by rule.
    pub groups: BTreeMap<String, VpcGroups>,
    /// The changes made to prepare each VPC's groups.
    pub group_actions: BTreeMap<String, Vec<ActionRecord>>,
    /// The SSM endpoints' groups per VPC (isolate-first only).
    pub endpoint_groups: BTreeMap<String, Vec<String>>,
    /// The network ACL entries each instance needs.
    pub acl_plans: BTreeMap<String, AclPlan>,
    /// Why no ACL entries were planned, when the ACLs could not be read.
    pub acl_error: Option<PlaybookError>,
    /// The DENY entries an earlier attempt of this step made for the case.
    pub own_acl_entries: Vec<AclEntryRecord>,
}

/// The stage this run isolates an instance to: isolate-first (and `auto`,
/// until it chose memory first) leaves it reachable from the SSM endpoints on
/// its first run only.
fn stage_for(case: &Case, instance_id: &str) -> IsolationStage {
    let earlier = record_of(&case.isolation, instance_id);
    let first = earlier.is_none_or(|e| e.stage != IsolationStage::Acquisition);
    match case.policy.acquisition_order {
        AcquisitionOrder::IsolateFirst if first => IsolationStage::Acquisition,
        AcquisitionOrder::Auto if first && case.acquisition_plan.is_none() => {
            IsolationStage::Acquisition
        }
        _ => IsolationStage::Full,
    }
}

/// Reads everything isolation needs and prepares the groups of every VPC,
/// concurrently. Per-instance failures are kept per instance.
pub async fn prepare(clients: &Clients, case: &Case, described: &[Described]) -> Result<Prepared> {
    let ec2 = &clients.ec2;
    let mut vpcs = BTreeSet::new();
    let mut acquisition_vpcs = BTreeSet::new();
    for (id, instance) in described {
        if let Ok((_, instance)) = instance {
            if is_terminated(instance) {
                continue;
            }
            for eni in instance.network_interfaces() {
                if let Some(vpc) = eni.vpc_id() {
                    vpcs.insert(vpc.to_owned());
                    if stage_for(case, id) == IsolationStage::Acquisition {
                        acquisition_vpcs.insert(vpc.to_owned());
                    }
                }
            }
        }
    }
    // Under auto, a VPC counts as having the endpoints only with all of
    // them (the agent's three and S3's interface endpoint): with some
    // missing, the acquisition stage would cut the capture off.
    let auto = case.policy.acquisition_order == AcquisitionOrder::Auto;
    let endpoint_groups: BTreeMap<String, Vec<String>> =
        join_all(acquisition_vpcs.iter().map(|vpc| async move {
            (vpc.clone(), groups::acquisition_endpoints(ec2, vpc).await)
        }))
        .await
        .into_iter()
        .map(|(vpc, found)| match found {
            Ok((groups, complete)) if complete || !auto => (vpc, groups),
            _ => (vpc, Vec::new()),
        })
        .collect();
    let dry_run = case.decision.dry_run;
    let prepare_vpcs = join_all(vpcs.iter().map(|vpc| {
        let mut purposes = vec![GroupPurpose::Untracking, GroupPurpose::Isolation];
        let endpoints = endpoint_groups.get(vpc).cloned().unwrap_or_default();
        if !endpoints.is_empty() {
            purposes.push(GroupPurpose::Acquisition);
        }
        async move {
            let prepared = groups::prepare_groups(ec2, vpc, &purposes, &endpoints, dry_run).await;
            (vpc.clone(), prepared)
        }
    }));
    let endpoints = &endpoint_groups;
    let reads = join_all(described.iter().map(|(id, instance)| async move {
        let reads = match instance {
            Ok((owner, instance)) => {
                read_instance(clients, case, owner.clone(), instance, endpoints).await
            }
            Err(err) => Err(err.clone()),
        };
        (id.clone(), reads)
    }));
    let vpc_list: Vec<String> = vpcs.iter().cloned().collect();
    let acls = async {
        if !case.policy.network_acl_deny || vpc_list.is_empty() {
            return Ok(Vec::new());
        }
        acl::describe_acls(ec2, &vpc_list).await
    };
    let (prepared_vpcs, reads, acls) = tokio::join!(prepare_vpcs, reads, acls);
    let mut groups_by_vpc = BTreeMap::new();
    let mut group_actions = BTreeMap::new();
    for (vpc, result) in prepared_vpcs {
        let (groups, actions) = result?;
        groups_by_vpc.insert(vpc.clone(), groups);
        group_actions.insert(vpc, actions);
    }
    let instances: BTreeMap<String, Result<InstanceReads>> = reads.into_iter().collect();
    let (acl_plans, acl_error) = match acls {
        Ok(acls) => {
            let limit = case.policy.network_acl_rule_limit;
            let mut plans: BTreeMap<String, AclPlan> = BTreeMap::new();
            // An address is denied on the ACLs of its own ENI's VPC only.
            for vpc in &vpcs {
                let vpc_acls: Vec<_> = acls
                    .iter()
                    .filter(|a| a.vpc_id() == Some(vpc.as_str()))
                    .cloned()
                    .collect();
                let addresses: Vec<(String, Vec<String>)> = instances
                    .iter()
                    .filter_map(|(id, r)| {
                        let ips = r.as_ref().ok()?.addresses.get(vpc)?;
                        Some((id.clone(), ips.iter().cloned().collect()))
                    })
                    .collect();
                let prepared = case
                    .acquisition_plan
                    .as_ref()
                    .map_or(&[][..], |p| &p.prepared_acl_entries[..]);
                for (id, plan) in
                    acl::plan_entries_preferring(&vpc_acls, &addresses, limit, prepared)
                {
                    plans.entry(id).or_default().merge(plan);
                }
            }
            (plans, None)
        }
        Err(err) => (BTreeMap::new(), Some(err)),
    };
    Ok(Prepared {
        instances,
        groups: groups_by_vpc,
        group_actions,
        endpoint_groups,
        acl_plans,
        acl_error,
        own_acl_entries: Vec::new(),
    })
}

/// Reads what isolation needs about one described instance.
async fn read_instance(
    clients: &Clients,
    case: &Case,
    account: Option<String>,
    instance: &Instance,
    endpoint_groups: &BTreeMap<String, Vec<String>>,
) -> Result<InstanceReads> {
    let id = instance.instance_id().unwrap_or_default();
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|s| s.as_str().to_owned());
    let ours = has_tag(instance, CASE_TAG, &case.case_id);
    let interfaces: Vec<EniIsolation> = instance
        .network_interfaces()
        .iter()
        .filter_map(|eni| {
            let eni_id = eni.network_interface_id()?;
            Some(EniIsolation {
                network_interface_id: eni_id.to_owned(),
                vpc_id: eni.vpc_id().map(str::to_owned),
                subnet_id: eni.subnet_id().map(str::to_owned),
                original_group_ids: eni
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
                group_ids_read_back: Vec::new(),
            })
        })
        .collect();
    let mut addresses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for eni in instance.network_interfaces() {
        let Some(vpc) = eni.vpc_id() else { continue };
        let addresses = addresses.entry(vpc.to_owned()).or_default();
        addresses.extend(
            eni.private_ip_addresses()
                .iter()
                .filter_map(|a| a.private_ip_address().map(str::to_owned)),
        );
        addresses.extend(
            eni.ipv6_addresses()
                .iter()
                .filter_map(|a| a.ipv6_address().map(str::to_owned)),
        );
    }
    let eni_ids: Vec<String> = interfaces
        .iter()
        .map(|e| e.network_interface_id.clone())
        .collect();
    let terminated = is_terminated(instance);
    let (elastic_ips, profile) = if terminated {
        (Ok(Vec::new()), Ok(None))
    } else {
        tokio::join!(
            describe_addresses(&clients.ec2, Some(id), &eni_ids),
            credentials::describe_profile(&clients.ec2, &clients.iam, id),
        )
    };
    let mut stage = stage_for(case, id);
    let wanted = stage;
    if stage == IsolationStage::Acquisition
        && interfaces.iter().any(|e| {
            e.vpc_id
                .as_ref()
                .is_none_or(|v| endpoint_groups.get(v).is_none_or(Vec::is_empty))
        })
    {
        stage = IsolationStage::Full;
    }
    Ok(InstanceReads {
        instance_id: id.to_owned(),
        account,
        state,
        vpc_id: instance.vpc_id().map(str::to_owned),
        interfaces,
        addresses,
        elastic_ips: elastic_ips?,
        profile: profile?,
        tagged: ours && has_tag(instance, STATUS_TAG, "quarantined"),
        originals_kept: Vec::new(),
        lacks_endpoints: wanted != stage,
        stage,
    })
}

/// `auto`'s plan, made on its first isolation of the case. An instance whose
/// VPCs have every endpoint the capture needs is isolated down to them at
/// once; one whose VPCs do not would have its capture cut off, so it is left
/// as it is (its groups are prepared, so the later move is one wave). Either
/// way memory has until `memoryDeadlineSeconds`: check-command cancels a
/// capture still running then, and full isolation follows. Answers the
/// instances left as they are.
fn plan_acquisition(
    case: &mut Case,
    actor: &str,
    ready: &[InstanceReads],
    acl_plans: &BTreeMap<String, AclPlan>,
) -> BTreeSet<String> {
    if case.policy.acquisition_order != AcquisitionOrder::Auto
        || case.acquisition_plan.is_some()
        || case.decision.dry_run
        || ready.iter().all(InstanceReads::terminated)
    {
        return BTreeSet::new();
    }
    let deferred: BTreeSet<String> = ready
        .iter()
        .filter(|r| r.lacks_endpoints && !r.terminated())
        .map(|r| r.instance_id.clone())
        .collect();
    let now = std::time::SystemTime::now();
    let at = |t: std::time::SystemTime| crate::case::custody::rfc3339(t.into());
    let planned_at = at(now);
    let deadline = at(now + std::time::Duration::from_secs(case.policy.memory_deadline_seconds));
    let listed = deferred.iter().cloned().collect::<Vec<_>>().join(", ");
    let plan = crate::case::isolation::AcquisitionPlan {
        order: if deferred.is_empty() {
            AcquisitionOrder::IsolateFirst
        } else {
            AcquisitionOrder::MemoryFirst
        },
        deferred: deferred.iter().cloned().collect(),
        reason: if deferred.is_empty() {
            "every VPC has the SSM and S3 interface endpoints: isolated down to them at once, memory captured through them".to_owned()
        } else {
            format!(
                "a VPC of {listed} lacks an SSM or S3 interface endpoint: isolating first would cut the memory capture off, so {listed} stays as it is until the deadline"
            )
        },
        planned_at,
        deadline,
        prepared_acl_entries: deferred
            .iter()
            .filter_map(|id| acl_plans.get(id))
            .flat_map(|p| p.create.iter().cloned())
            .collect(),
    };
    case.record(entry(
        STEP,
        actor,
        format!(
            "acquisition order auto: {} until {} ({} s), then full isolation whatever the capture's state; {}",
            if deferred.is_empty() {
                "memory in the acquisition stage"
            } else {
                "memory first"
            },
            plan.deadline,
            case.policy.memory_deadline_seconds,
            plan.reason
        ),
        &["DescribeInstances", "DescribeVpcEndpoints", "DescribeSecurityGroups"],
        json!({ "instanceIds": case.incident.instance_ids }),
        json!({ "plan": plan }),
        None,
    ));
    case.acquisition_plan = Some(plan);
    deferred
}

/// Makes the changes, reads the result back, and records everything in the Case.
pub async fn isolate(
    clients: &Clients,
    actor: &str,
    mut case: Case,
    described: Vec<Described>,
    prepared: Prepared,
) -> Case {
    let dry_run = case.decision.dry_run;
    let Prepared {
        instances,
        groups,
        group_actions,
        endpoint_groups,
        acl_plans,
        acl_error,
        own_acl_entries,
    } = prepared;
    let mut ready = Vec::new();
    for (id, _) in &described {
        match instances.get(id) {
            Some(Ok(reads)) => ready.push(reads.clone()),
            Some(Err(err)) => case.errors.push(StepError::new(
                STEP,
                err,
                format!("instance {id} was not isolated"),
            )),
            None => {}
        }
    }
    let deferred = plan_acquisition(&mut case, actor, &ready, &acl_plans);
    ready.retain(|r| !deferred.contains(&r.instance_id));
    // Nothing left to isolate now but terminated instances: no record yet,
    // so the state machine sees nothing isolated and captures memory first.
    if !deferred.is_empty() && ready.iter().all(InstanceReads::terminated) {
        return case;
    }
    let changed = join_all(ready.iter().map(|reads| {
        let plan = acl_plans
            .get(&reads.instance_id)
            .cloned()
            .unwrap_or_default();
        change_instance(
            clients,
            &case,
            reads,
            &groups,
            plan,
            acl_error.as_ref(),
            &own_acl_entries,
        )
    }));
    let (changed, dns_blocks) = tokio::join!(changed, block_domain(clients, &case, &ready));
    let verification = if dry_run {
        None
    } else {
        let with_acl_entries = changed.iter().any(|(_, made, _)| !made.is_empty())
            || case
                .isolation
                .iter()
                .any(|i| !i.network_acl_entries.is_empty());
        Some(read_back(clients, &ready, &groups, &endpoint_groups, with_acl_entries).await)
    };
    for (reads, (mut actions, acl_entries, revocation)) in ready.into_iter().zip(changed) {
        let id = reads.instance_id.clone();
        let vpcs: BTreeSet<&String> = reads
            .interfaces
            .iter()
            .filter_map(|e| e.vpc_id.as_ref())
            .collect();
        let terminated = reads.terminated();
        let mut before: Vec<ActionRecord> = vpcs
            .iter()
            .filter(|_| !terminated)
            .flat_map(|v| group_actions.get(*v).cloned().unwrap_or_default())
            .collect();
        before.append(&mut actions);
        let actions = before;
        let mut isolation = record(&case, &reads, &groups, actions, acl_entries, revocation);
        for (vpc, (block, action)) in &dns_blocks {
            if vpcs.contains(vpc) {
                isolation.actions.push(action.clone());
                isolation.dns_firewall.extend(block.clone());
            }
        }
        if let Some(verification) = &verification {
            verification.apply(&mut isolation, &reads);
        }
        if let Some(earlier) = record_of(&case.isolation, &id).cloned() {
            isolation.keep_earlier(&earlier);
        }
        if isolation.seconds_from_case_opened.is_none() && !dry_run && !reads.terminated() {
            if let Some(verified) = isolation.verified_at.clone() {
                let since = |from: Option<&String>| {
                    from.and_then(|f| crate::case::custody::seconds_between(f, &verified))
                };
                isolation.seconds_to_isolation = since(isolation.detected_at.as_ref());
                isolation.seconds_from_case_opened = since(case.custody.first().map(|e| &e.at));
            }
        }
        case.errors.extend(failures(STEP, &isolation.actions));
        if !isolation.complete && !dry_run && !reads.terminated() {
            case.errors.push(StepError {
                step: STEP.to_owned(),
                error_type: "NotContained".into(),
                message: format!(
                    "instance {id} is not verified isolated: {}",
                    isolation
                        .warnings
                        .last()
                        .cloned()
                        .unwrap_or_else(|| "a change failed".into())
                ),
                not_done: Some(format!("verified isolation of {id}")),
                at: now_utc(),
            });
        }
        case.record(entry(
            STEP,
            actor,
            format!(
                "{} instance {} ({:?}){}",
                if dry_run { "dry run: would isolate" } else { "isolated" },
                id,
                isolation.stage,
                match (&isolation.verified_at, isolation.seconds_to_isolation) {
                    (Some(at), Some(seconds)) => format!(
                        ", read back and verified at {at}, {seconds} s after detection ({} s after the case opened)",
                        isolation.seconds_from_case_opened.unwrap_or_default()
                    ),
                    (Some(at), None) => format!(", read back and verified at {at}"),
                    _ => String::new(),
                }
            ),
            &CALLS,
            json!({ "instanceId": id, "dryRun": dry_run }),
            json!({ "changes": tally(&isolation.actions), "complete": isolation.complete, "verifiedAt": isolation.verified_at }),
            Some(sha256_json(&isolation)),
        ));
        upsert(&mut case.isolation, isolation);
    }
    case.summarise_containment();
    case
}

/// The record of one instance before verification.
fn record(
    case: &Case,
    reads: &InstanceReads,
    groups: &BTreeMap<String, VpcGroups>,
    actions: Vec<ActionRecord>,
    network_acl_entries: Vec<AclEntryRecord>,
    session_revocation: Option<SessionRevocation>,
) -> InstanceIsolation {
    let terminated = reads.terminated();
    let mut warnings = Vec::new();
    if terminated {
        warnings.push("the instance is terminated: there is nothing left to isolate".to_owned());
    }
    if case.policy.acquisition_order == AcquisitionOrder::IsolateFirst
        && reads.stage == IsolationStage::Full
        && record_of(&case.isolation, &reads.instance_id).is_none()
        && !terminated
    {
        warnings.push(
            "isolate-first was asked for, but a VPC of the instance has no SSM interface endpoints: isolated fully at once"
                .to_owned(),
        );
    }
    for eni in &reads.originals_kept {
        warnings.push(format!(
            "{eni}: its groups when read differ from those the case's lease kept before an earlier attempt of this step moved it (its answer was lost); the original groups are the lease's"
        ));
    }
    let ours = |g: &String| groups.values().any(|v| v.contains(g));
    if record_of(&case.isolation, &reads.instance_id).is_none()
        && reads
            .interfaces
            .iter()
            .any(|e| !e.original_group_ids.is_empty() && e.original_group_ids.iter().all(ours))
    {
        warnings.push(format!(
            "{ALREADY_ISOLATED_WARNING}: its original groups are in the case that isolated it"
        ));
    }
    let vpcs: BTreeSet<&String> = reads
        .interfaces
        .iter()
        .filter_map(|e| e.vpc_id.as_ref())
        .collect();
    InstanceIsolation {
        instance_id: reads.instance_id.clone(),
        vpc_id: reads.vpc_id.clone(),
        stage: reads.stage,
        groups: vpcs
            .iter()
            .filter_map(|v| groups.get(*v).cloned())
            .collect(),
        interfaces: reads.interfaces.clone(),
        network_acl_entries,
        elastic_ips: reads.elastic_ips.clone(),
        instance_profile: reads
            .profile
            .clone()
            .filter(|_| case.policy.detach_instance_profile && reads.stage == IsolationStage::Full),
        session_revocation,
        dns_firewall: Vec::new(),
        warnings,
        complete: terminated,
        actions,
        verified_at: None,
        isolated_at: now_utc(),
        detected_at: case.detected_at(),
        seconds_to_isolation: None,
        seconds_from_case_opened: None,
    }
}

/// Blocks the finding's domain with DNS Firewall in each VPC of the ready
/// instances, when the policy asks for it and the finding names a domain that
/// is safe to block. A block an earlier run made is kept, not made again.
async fn block_domain(
    clients: &Clients,
    case: &Case,
    ready: &[InstanceReads],
) -> BTreeMap<String, (Option<DnsFirewallBlock>, ActionRecord)> {
    let Some(domain) = case
        .incident
        .domain
        .as_deref()
        .filter(|_| case.policy.block_finding_domain)
    else {
        return BTreeMap::new();
    };
    let vpcs: BTreeSet<String> = ready
        .iter()
        .filter(|r| !r.terminated())
        .flat_map(|r| r.interfaces.iter().filter_map(|e| e.vpc_id.clone()))
        .collect();
    let action = format!("block {domain} with DNS Firewall");
    let domain = match dns_firewall::blockable(domain) {
        Ok(domain) => domain,
        Err(why) => {
            return vpcs
                .into_iter()
                .map(|vpc| {
                    let record =
                        ActionRecord::failed(&action, &vpc, "DomainNotBlockable", why.clone());
                    (vpc, (None, record))
                })
                .collect();
        }
    };
    let earlier: Vec<&DnsFirewallBlock> = case
        .isolation
        .iter()
        .flat_map(|i| &i.dns_firewall)
        .filter(|b| b.association_id.is_some())
        .collect();
    join_all(vpcs.into_iter().map(|vpc| {
        let done = earlier
            .iter()
            .find(|b| b.vpc_id == vpc)
            .map(|b| (*b).clone());
        let (action, domain) = (&action, &domain);
        async move {
            if let Some(done) = done {
                return (
                    vpc.clone(),
                    (Some(done), ActionRecord::already_done(action, &vpc)),
                );
            }
            if case.decision.dry_run {
                return (
                    vpc.clone(),
                    (None, ActionRecord::new(action, &vpc, Outcome::WouldChange)),
                );
            }
            let (block, result) =
                dns_firewall::block(&clients.route53resolver, &case.case_id, &vpc, domain).await;
            let record = match result {
                Ok(()) => ActionRecord::new(action, &vpc, Outcome::Changed),
                Err(err) => ActionRecord::failed(action, &vpc, err.error_type(), err.to_string()),
            };
            (vpc, (Some(block), record))
        }
    }))
    .await
    .into_iter()
    .collect()
}

/// The group an ENI of `vpc` ends in at `stage`.
fn final_group(
    groups: &BTreeMap<String, VpcGroups>,
    vpc: Option<&String>,
    stage: IsolationStage,
) -> Option<String> {
    let groups = groups.get(vpc?)?;
    let purpose = match stage {
        IsolationStage::Full => GroupPurpose::Isolation,
        IsolationStage::Acquisition => GroupPurpose::Acquisition,
    };
    groups.get(purpose).map(str::to_owned)
}

/// Every change to one instance, concurrently where they do not depend on each other.
async fn change_instance(
    clients: &Clients,
    case: &Case,
    reads: &InstanceReads,
    groups: &BTreeMap<String, VpcGroups>,
    acl_plan: AclPlan,
    acl_error: Option<&PlaybookError>,
    own_acl_entries: &[AclEntryRecord],
) -> (
    Vec<ActionRecord>,
    Vec<AclEntryRecord>,
    Option<SessionRevocation>,
) {
    if reads.terminated() {
        return (Vec::new(), Vec::new(), None);
    }
    let ec2 = &clients.ec2;
    let id = reads.instance_id.as_str();
    let dry_run = case.decision.dry_run;
    let full = reads.stage == IsolationStage::Full;
    let enis =
        join_all(
            reads.interfaces.iter().map(|eni| {
                let untracking = eni
                    .vpc_id
                    .as_ref()
                    .and_then(|v| groups.get(v))
                    .and_then(|g| g.get(GroupPurpose::Untracking))
                    .map(str::to_owned);
                let target = final_group(groups, eni.vpc_id.as_ref(), reads.stage);
                async move {
                    swap_groups(ec2, eni, untracking.as_deref(), target.as_deref(), dry_run).await
                }
            }),
        );
    let eips = join_all(reads.elastic_ips.iter().map(|eip| {
        let association = eip.association_id.clone().unwrap_or_default();
        apply(
            dry_run,
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
    let acl_entries = join_all(acl_plan.create.iter().map(|e| async move {
        let target = acl::entry_target(e);
        let action = format!("deny {} in network ACL", e.cidr);
        let (record, placed) = attempt(dry_run, &action, &target, || {
            acl::place_entry(ec2, e, case.policy.network_acl_rule_limit)
        })
        .await;
        match placed {
            Some(acl::Placed::Made(made)) if made.rule_number != e.rule_number => {
                // A concurrent case took the planned number: say where it went.
                let moved = acl::entry_target(&made);
                (
                    ActionRecord::new(&action, &moved, Outcome::Changed),
                    Some(made),
                )
            }
            Some(acl::Placed::Made(made)) => (record, Some(made)),
            Some(acl::Placed::Present(_)) => (ActionRecord::already_done(&action, &target), None),
            Some(acl::Placed::Unplaced(error_type, why)) => (
                ActionRecord::failed(
                    &action,
                    &target,
                    error_type,
                    format!("{why}: tracked flows through this ACL's subnets are not cut"),
                ),
                None,
            ),
            None => (record, None),
        }
    }));
    let profile = reads.profile.as_ref().filter(|_| full);
    let detach_profile = async {
        let p = profile.filter(|_| case.policy.detach_instance_profile)?;
        Some(
            apply(dry_run, "disassociate instance profile", &p.arn, || async {
                ec2.disassociate_iam_instance_profile()
                    .association_id(&p.association_id)
                    .send()
                    .await
                    .aws("DisassociateIamInstanceProfile", Some(id))
                    .map(drop)
            })
            .await,
        )
    };
    let revocation = profile
        .filter(|_| case.policy.revoke_role_sessions)
        .and_then(|p| p.role_name.as_deref())
        .map(|role| {
            let arn = credentials::instance_arn(
                &case.incident.region,
                reads.account.as_deref().unwrap_or_default(),
                id,
            );
            credentials::revocation(role, id, arn, now_utc())
        });
    let revoke = async {
        let r = revocation.as_ref()?;
        Some(
            apply(
                dry_run,
                "deny the instance's role sessions issued before isolation",
                &r.role_name,
                || async {
                    clients
                        .iam
                        .put_role_policy()
                        .role_name(&r.role_name)
                        .policy_name(&r.policy_name)
                        .policy_document(credentials::revocation_policy(r))
                        .send()
                        .await
                        .aws("PutRolePolicy", Some(id))
                        .map(drop)
                },
            )
            .await,
        )
    };
    let quarantine_tags = vec![
        Tag::builder().key(CASE_TAG).value(&case.case_id).build(),
        Tag::builder().key(STATUS_TAG).value("quarantined").build(),
    ];
    let tag = ensure(
        reads.tagged,
        dry_run,
        "tag instance as quarantined",
        id,
        || async {
            ec2.create_tags()
                .resources(id)
                .set_tags(Some(quarantine_tags.clone()))
                .send()
                .await
                .aws("CreateTags", Some(id))
                .map(drop)
        },
    );
    let (enis, eips, acl_entries, detach_profile, revoke, tag) =
        tokio::join!(enis, eips, acl_entries, detach_profile, revoke, tag);
    let mut actions: Vec<ActionRecord> = enis.into_iter().flatten().collect();
    actions.extend(eips);
    let mut made = Vec::new();
    for (record, entry) in acl_entries {
        actions.push(record);
        made.extend(entry);
    }
    for entry in acl_plan
        .present
        .iter()
        .filter(|e| own_acl_entries.contains(e))
    {
        actions.push(
            ActionRecord::already_done(
                &format!("deny {} in network ACL", entry.cidr),
                &acl::entry_target(entry),
            )
            .with_detail("made by an earlier attempt of this step (its lease lists it): the case's own, so release removes it"),
        );
        made.push(entry.clone());
    }
    let unplaced = (acl_plan
        .over_limit
        .iter()
        .map(|why| (why, "NetworkAclRuleLimit")))
    .chain(
        acl_plan
            .shadowed
            .iter()
            .map(|why| (why, "NetworkAclRuleShadowed")),
    );
    for (why, error_type) in unplaced {
        actions.push(ActionRecord::failed(
            "deny the instance's addresses in network ACL",
            why,
            error_type,
            format!("{why}: tracked flows through this ACL's subnets are not cut"),
        ));
    }
    for why in &acl_plan.closed {
        actions.push(
            ActionRecord::already_done("deny the instance's addresses in network ACL", why)
                .with_detail(
                    "every packet through this ACL direction is denied already: no entry is needed",
                ),
        );
    }
    if let Some(err) = acl_error {
        actions.push(ActionRecord::failed(
            "deny the instance's addresses in network ACLs",
            id,
            err.error_type(),
            err.to_string(),
        ));
    }
    actions.extend(detach_profile);
    actions.extend(revoke);
    actions.push(tag);
    (actions, made, revocation)
}

/// Moves one ENI through the untracking group to its final group. If the
/// second move cannot be made, the ENI never stays in the untracking group
/// (more open than before): its original groups are put back and the failure
/// is recorded.
async fn swap_groups(
    ec2: &aws_sdk_ec2::Client,
    eni: &EniIsolation,
    untracking: Option<&str>,
    target: Option<&str>,
    dry_run: bool,
) -> Vec<ActionRecord> {
    let eni_id = eni.network_interface_id.as_str();
    let to_untracking = "move ENI to the untracking group (ends connection tracking)";
    let to_target = "move ENI to its isolation group";
    if let Some(target) = target {
        if eni.original_group_ids == [target] {
            return vec![ActionRecord::already_done(to_target, eni_id)];
        }
    }
    let (Some(untracking), Some(target)) = (untracking, target) else {
        if dry_run {
            return vec![ActionRecord::new(to_target, eni_id, Outcome::WouldChange)];
        }
        return vec![ActionRecord::failed(
            to_target,
            eni_id,
            "IsolationGroupUnavailable",
            "the VPC's untracking or isolation group could not be made exact: the ENI was left in its original groups",
        )];
    };
    let first = apply(dry_run, to_untracking, eni_id, || {
        move_eni(ec2, eni_id, vec![untracking.to_owned()])
    })
    .await;
    if !first.is_done() {
        return vec![first];
    }
    let second = apply(dry_run, to_target, eni_id, || {
        move_eni(ec2, eni_id, vec![target.to_owned()])
    })
    .await;
    if second.is_done() || dry_run {
        return vec![first, second];
    }
    let rollback = apply(false, "put the ENI's original groups back", eni_id, || {
        move_eni(ec2, eni_id, eni.original_group_ids.clone())
    })
    .await;
    let second = if rollback.is_done() {
        let detail = second.detail.clone().unwrap_or_default();
        second.with_detail(format!("{detail}; the ENI's original groups were put back"))
    } else {
        let detail = second.detail.clone().unwrap_or_default();
        second.with_detail(format!(
            "{detail}; putting the original groups back failed too: the ENI is in the untracking group, which allows all traffic"
        ))
    };
    vec![first, second, rollback]
}

async fn move_eni(ec2: &aws_sdk_ec2::Client, eni_id: &str, groups: Vec<String>) -> Result<()> {
    crate::aws::retry::until_visible(|| async {
        ec2.modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .set_groups(Some(groups.clone()))
            .send()
            .await
            .aws("ModifyNetworkInterfaceAttribute", None)
            .map(drop)
    })
    .await
}

/// What was read back after the changes, for every instance of the case at once.
struct ReadBack {
    /// Groups of each ENI now.
    eni_groups: Result<BTreeMap<String, Vec<String>>>,
    /// Final groups found exact (or the error reading their rules).
    exact_groups: Result<BTreeSet<String>>,
    /// Instances with a live profile association now.
    with_profile: Result<BTreeSet<String>>,
    /// ENIs with an associated Elastic IP now.
    with_address: Result<BTreeSet<String>>,
    /// The network ACLs of the instances' VPCs now (empty when no entry was made).
    acls: Result<Vec<aws_sdk_ec2::types::NetworkAcl>>,
}

async fn read_back(
    clients: &Clients,
    instances: &[InstanceReads],
    groups: &BTreeMap<String, VpcGroups>,
    endpoint_groups: &BTreeMap<String, Vec<String>>,
    with_acl_entries: bool,
) -> ReadBack {
    let ec2 = &clients.ec2;
    let eni_ids: Vec<String> = instances
        .iter()
        .flat_map(|i| i.interfaces.iter().map(|e| e.network_interface_id.clone()))
        .collect();
    let instance_ids: Vec<String> = instances.iter().map(|i| i.instance_id.clone()).collect();
    let mut finals: Vec<(String, GroupPurpose, Vec<String>)> = Vec::new();
    for (vpc, g) in groups {
        let endpoints = endpoint_groups.get(vpc).cloned().unwrap_or_default();
        for purpose in [GroupPurpose::Isolation, GroupPurpose::Acquisition] {
            if let Some(id) = g.get(purpose) {
                finals.push((id.to_owned(), purpose, endpoints.clone()));
            }
        }
    }
    let final_ids: Vec<String> = finals.iter().map(|(id, ..)| id.clone()).collect();
    let enis = async {
        if eni_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = ec2
            .describe_network_interfaces()
            .set_network_interface_ids(Some(eni_ids.clone()))
            .send()
            .await
            .aws("DescribeNetworkInterfaces", None)?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter_map(|n| {
                Some((
                    n.network_interface_id()?.to_owned(),
                    n.groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_owned))
                        .collect(),
                ))
            })
            .collect())
    };
    let rules = async {
        if final_ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let out = ec2
            .describe_security_group_rules()
            .filters(
                Filter::builder()
                    .name("group-id")
                    .set_values(Some(final_ids.clone()))
                    .build(),
            )
            .send()
            .await
            .aws("DescribeSecurityGroupRules", None)?;
        Ok(finals
            .iter()
            .filter(|(id, purpose, endpoints)| {
                groups::group_is_exact(out.security_group_rules(), id, *purpose, endpoints)
            })
            .map(|(id, ..)| id.clone())
            .collect())
    };
    let profiles = async {
        let live = credentials::live_associations(ec2, &instance_ids).await?;
        Ok(live
            .iter()
            .filter_map(|a| a.instance_id().map(str::to_owned))
            .collect())
    };
    let addresses = async {
        let associated = describe_addresses(ec2, None, &eni_ids).await?;
        Ok(associated
            .into_iter()
            .filter_map(|a| a.network_interface_id)
            .collect())
    };
    let acls = async {
        if !with_acl_entries {
            return Ok(Vec::new());
        }
        let vpcs: Vec<String> = groups.keys().cloned().collect();
        acl::describe_acls(ec2, &vpcs).await
    };
    let (eni_groups, exact_groups, with_profile, with_address, acls) =
        tokio::join!(enis, rules, profiles, addresses, acls);
    ReadBack {
        eni_groups,
        exact_groups,
        with_profile,
        with_address,
        acls,
    }
}

impl ReadBack {
    /// Marks the instance complete only if everything read back is right.
    fn apply(&self, isolation: &mut InstanceIsolation, reads: &InstanceReads) {
        if reads.terminated() {
            isolation.complete = true;
            return;
        }
        let mut problems = Vec::new();
        match &self.eni_groups {
            Ok(found) => {
                for eni in &mut isolation.interfaces {
                    let now = found
                        .get(&eni.network_interface_id)
                        .cloned()
                        .unwrap_or_default();
                    let target = isolation
                        .groups
                        .iter()
                        .find(|g| eni.vpc_id.as_deref() == Some(g.vpc_id.as_str()))
                        .and_then(|g| match isolation.stage {
                            IsolationStage::Full => g.isolation_group_id.clone(),
                            IsolationStage::Acquisition => g.acquisition_group_id.clone(),
                        });
                    match &target {
                        Some(t) if now == [t.clone()] => {}
                        _ => problems.push(format!(
                            "ENI {} is in {:?}, not in its isolation group alone",
                            eni.network_interface_id, now
                        )),
                    }
                    if let (Some(t), Ok(exact)) = (&target, &self.exact_groups) {
                        if !exact.contains(t) {
                            problems.push(format!("group {t} does not hold exactly its rules"));
                        }
                    }
                    eni.group_ids_read_back = now;
                }
            }
            Err(err) => problems.push(format!("the ENIs could not be read back: {err}")),
        }
        if let Err(err) = &self.exact_groups {
            problems.push(format!(
                "the isolation groups' rules could not be read back: {err}"
            ));
        }
        if isolation.instance_profile.is_some() {
            match &self.with_profile {
                Ok(with) if with.contains(&isolation.instance_id) => {
                    problems.push("the instance profile is still associated".into())
                }
                Ok(_) => {}
                Err(err) => problems.push(format!(
                    "the profile association could not be read back: {err}"
                )),
            }
        }
        match &self.with_address {
            Ok(with) => {
                for eip in &isolation.elastic_ips {
                    if eip
                        .network_interface_id
                        .as_ref()
                        .is_some_and(|e| with.contains(e))
                    {
                        problems.push(format!(
                            "Elastic IP {} is still associated",
                            eip.allocation_id
                        ));
                    }
                }
            }
            Err(err) => problems.push(format!("the Elastic IPs could not be read back: {err}")),
        }
        if !isolation.network_acl_entries.is_empty() {
            match &self.acls {
                Ok(acls) => problems.extend(
                    isolation
                        .network_acl_entries
                        .iter()
                        .filter_map(|entry| acl::denies_first(acls, entry).err()),
                ),
                Err(err) => {
                    problems.push(format!("the network ACLs could not be read back: {err}"))
                }
            }
        }
        problems.dedup();
        let done = all_done(&isolation.actions);
        isolation.complete = done && problems.is_empty();
        if isolation.complete {
            isolation.verified_at = Some(now_utc());
        } else {
            if !done {
                problems.insert(0, "not every change was made".into());
            }
            isolation
                .warnings
                .push(format!("not verified: {}", problems.join("; ")));
        }
    }
}

/// The instance's associated Elastic IPs, by its ENIs: in a VPC an address is
/// always associated with an ENI (an association "to the instance" is to its
/// primary ENI), and the ENI filter finds it even where the address does not
/// name the instance.
pub async fn describe_addresses(
    ec2: &aws_sdk_ec2::Client,
    instance_id: Option<&str>,
    eni_ids: &[String],
) -> Result<Vec<ElasticIpRecord>> {
    if eni_ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ec2
        .describe_addresses()
        .filters(
            Filter::builder()
                .name("network-interface-id")
                .set_values(Some(eni_ids.to_vec()))
                .build(),
        )
        .send()
        .await
        .aws("DescribeAddresses", instance_id)?;
    Ok(out
        .addresses()
        .iter()
        .filter(|a| a.association_id().is_some())
        .filter_map(|address| {
            Some(ElasticIpRecord {
                allocation_id: address.allocation_id()?.to_owned(),
                association_id: address.association_id().map(str::to_owned),
                public_ip: address.public_ip().map(str::to_owned),
                network_interface_id: address.network_interface_id().map(str::to_owned),
                private_ip: address.private_ip_address().map(str::to_owned),
                instance_id: address
                    .instance_id()
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned),
            })
        })
        .collect())
}
