//! Bulk: a prepared way to contain, cut off or remove many instances at once.
//!
//! A run is planned before anything changes: its selectors (instance ids, a
//! tag, an Auto Scaling group, a subnet, a VPC, a list of findings) are
//! resolved to instances by reads alone, and the plan says what each action
//! would touch, what it cannot do, and why it refuses (a subnet cut that
//! would also cut network interfaces outside the selection needs
//! `wholeSubnet`). A person sees the plan first; the `bulk` state machine's
//! Distributed Map then runs one item per instance (or per subnet) from the
//! items list the plan wrote.
//!
//! How many items run at once is set by EC2's request token buckets (see
//! "Request throttling for the Amazon EC2 API"): each API has its own bucket,
//! and the tightest bucket an item draws on bounds the useful concurrency.

pub mod cases;
pub mod release_cases;
pub mod resolve;
pub mod run;
pub mod start;
pub mod status;
pub mod subnets;
pub mod terminate;

use std::collections::{BTreeMap, BTreeSet};

use crate::case::bulk::{
    BulkAction, BulkPlan, BulkRequest, Bystander, PlannedInstance, PlannedSubnet, Skipped,
};

/// One EC2 request token bucket, as "Request throttling for the Amazon EC2
/// API" documents it: its capacity (the burst) and refill rate per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The API action.
    pub action: &'static str,
    /// Tokens the bucket holds when full.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// The buckets of the mutating calls a bulk item makes (documented sizes:
/// mutating actions 50 / 5 per second; `ModifyNetworkInterfaceAttribute`,
/// `CreateSnapshots`, `TerminateInstances` 100 / 5; `CreateTags` 100 / 10).
pub const EC2_BUCKETS: [Bucket; 7] = [
    Bucket {
        action: "ReplaceNetworkAclAssociation",
        capacity: 50.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "ModifyInstanceAttribute",
        capacity: 50.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "CreateNetworkAclEntry",
        capacity: 50.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "ModifyNetworkInterfaceAttribute",
        capacity: 100.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "CreateSnapshots",
        capacity: 100.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "TerminateInstances",
        capacity: 100.0,
        refill_per_second: 5.0,
    },
    Bucket {
        action: "CreateTags",
        capacity: 100.0,
        refill_per_second: 10.0,
    },
];

/// The mutating EC2 calls one item of `action` makes, by API action: an
/// instance with one network interface for `contain` (termination
/// protection, shutdown behaviour and DeleteOnTermination; the untracking
/// then the isolation group; one snapshot set; the case tags; a DENY each
/// way on its subnet's ACL), one subnet for `quarantine-subnets`, one
/// instance for `terminate` (protection off, then terminate).
pub fn calls_per_item(action: BulkAction) -> &'static [(&'static str, u32)] {
    match action {
        BulkAction::Contain => &[
            ("ModifyInstanceAttribute", 3),
            ("ModifyNetworkInterfaceAttribute", 2),
            ("CreateSnapshots", 1),
            ("CreateTags", 2),
            ("CreateNetworkAclEntry", 2),
        ],
        BulkAction::QuarantineSubnets | BulkAction::ReleaseSubnets => {
            &[("ReplaceNetworkAclAssociation", 1)]
        }
        BulkAction::Terminate => &[("ModifyInstanceAttribute", 1), ("TerminateInstances", 1)],
        // One instance of a case: its groups back per interface, its
        // attributes (shutdown behaviour, termination protection,
        // DeleteOnTermination), its status tag.
        BulkAction::ReleaseCases => &[
            ("ModifyNetworkInterfaceAttribute", 1),
            ("ModifyInstanceAttribute", 3),
            ("CreateTags", 1),
        ],
    }
}

/// How many cases `release-cases` releases at once: each is a release, a
/// seal and their reads, tens of seconds, not a burst of calls.
pub const CASES_AT_ONCE: u32 = 4;

/// How long, at most, a call should wait for its bucket's refill in a
/// steady run: well inside the retry budget of one call
/// (`retry::MAX_ATTEMPTS`, `retry::OPERATION_DEADLINE`), since retries are
/// not served in order and an unlucky call waits longer than the average.
pub const SETTLE_SECONDS: f64 = 2.0;

/// How many of `items` items run at once. All of them when every bucket's
/// burst covers the whole run (a cut of twenty subnets is one wave).
/// Otherwise the run is paced by the refill rates whatever the concurrency
/// (`make bench`: 100 instances took 31 s at 4, 8 or 16 at once), and more
/// at once only means more throttled retries and a call that runs out of
/// attempts: then as many as the tightest bucket refills for within
/// [`SETTLE_SECONDS`] (`refill x SETTLE_SECONDS / calls per item`, at least 1).
///
/// A `contain` item is a whole case, not a burst of calls: it holds its
/// slot until its case reads contained (seconds where the VPC has the SSM
/// endpoints, up to the policy's memory deadline elsewhere), and most of
/// that time it waits on memory and snapshots, not on EC2. So `contain`
/// runs as many at once as the bursts serve (16 for three
/// `ModifyInstanceAttribute` calls an instance), and the refill rule is for
/// the actions whose items are nothing but their calls.
pub fn max_concurrency(action: BulkAction, items: usize) -> u32 {
    if action == BulkAction::ReleaseCases {
        return (items as u32).clamp(1, CASES_AT_ONCE);
    }
    let fits_the_bursts = calls_per_item(action).iter().all(|(api, calls)| {
        bucket_of(api).is_some_and(|b| items as f64 * f64::from(*calls) <= b.capacity)
    });
    if fits_the_bursts {
        return (items as u32).max(1);
    }
    match action {
        BulkAction::Contain => calls_per_item(action)
            .iter()
            .filter_map(|(api, calls)| {
                Some((bucket_of(api)?.capacity / f64::from(*calls)).floor() as u32)
            })
            .min()
            .unwrap_or(1)
            .max(1),
        _ => refill_concurrency(action),
    }
}

/// How many items, each nothing but its calls, the tightest bucket's
/// refill serves at once within [`SETTLE_SECONDS`]
/// (`refill x SETTLE_SECONDS / calls per item`, at least 1).
pub fn refill_concurrency(action: BulkAction) -> u32 {
    calls_per_item(action)
        .iter()
        .filter_map(|(api, calls)| {
            let bucket = bucket_of(api)?;
            Some((bucket.refill_per_second * SETTLE_SECONDS / f64::from(*calls)).floor() as u32)
        })
        .min()
        .unwrap_or(1)
        .max(1)
}

fn bucket_of(api: &str) -> Option<&'static Bucket> {
    EC2_BUCKETS.iter().find(|b| b.action == api)
}

/// The EC2 instance states a bulk action may act on: not `terminated` nor
/// `shutting-down` (nothing left to contain or remove).
pub fn is_actionable(state: &str) -> bool {
    matches!(state, "pending" | "running" | "stopping" | "stopped")
}

/// A network interface read in an affected subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetInterface {
    /// The interface.
    pub network_interface_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The instance it is attached to, if any.
    pub instance_id: Option<String>,
    /// EC2's interface type.
    pub interface_type: String,
    /// Its description.
    pub description: Option<String>,
}

/// What the reads found for a request: every selected instance (whatever
/// its state), the selectors that matched nothing, and the network
/// interfaces of the subnets the instances are in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Selected instances by id.
    pub instances: BTreeMap<String, PlannedInstance>,
    /// Selectors that matched nothing or could not be used, with why.
    pub skipped: Vec<Skipped>,
    /// The network interfaces of every subnet a selected instance is in.
    pub interfaces: Vec<SubnetInterface>,
}

/// Plans a run from what the reads found: pure, so every refusal is tested
/// without AWS. Nothing outside `resolved` is acted on.
pub fn plan(request: BulkRequest, resolved: Resolved, planned_at: String) -> BulkPlan {
    let bulk_id = request.bulk_id();
    let mut skipped = resolved.skipped;
    let mut refusals = Vec::new();
    if request.selection.is_empty() {
        refusals.push("no selector: a bulk run acts only on what it is told to select".into());
    }
    let mut instances = Vec::new();
    for (id, instance) in resolved.instances {
        if is_actionable(&instance.state) {
            instances.push(instance);
        } else {
            skipped.push(Skipped {
                target: id,
                why: format!("{}: nothing left to act on", instance.state),
            });
        }
    }
    if instances.is_empty() && refusals.is_empty() {
        refusals.push("the selection matches no instance that can be acted on".into());
    }
    let mut subnets = Vec::new();
    let mut vpcs = BTreeSet::new();
    if request.action == BulkAction::Contain {
        vpcs.extend(instances.iter().filter_map(|i| i.vpc_id.clone()));
    }
    if request.action == BulkAction::QuarantineSubnets {
        subnets = affected_subnets(&instances, &resolved.interfaces);
        for subnet in &subnets {
            vpcs.insert(subnet.vpc_id.clone());
            if !subnet.bystanders.is_empty() && !request.whole_subnet {
                refusals.push(format!(
                    "{} also holds {} network interface(s) outside the selection ({}): cutting it cuts them too; ask again with the whole-subnet option to accept that",
                    subnet.subnet_id,
                    subnet.bystanders.len(),
                    bystander_summary(&subnet.bystanders),
                ));
            }
        }
        if let Some(missing) = instances.iter().find(|i| i.subnet_ids.is_empty()) {
            refusals.push(format!(
                "{} is in no subnet that could be read: a subnet cut cannot reach it",
                missing.instance_id
            ));
        }
    }
    let mut limits = limits(request.action);
    if request.action == BulkAction::Terminate && request.without_snapshots {
        limits.insert(
            0,
            "THE APPROVER ACCEPTS TERMINATING INSTANCES WITHOUT A COMPLETED SNAPSHOT OF EVERY VOLUME: their disks are then lost as evidence".into(),
        );
    }
    let item_count = match request.action {
        BulkAction::QuarantineSubnets | BulkAction::ReleaseSubnets => subnets.len(),
        BulkAction::Contain | BulkAction::Terminate => instances.len(),
        BulkAction::ReleaseCases => 0,
    };
    BulkPlan {
        bulk_id,
        max_concurrency: max_concurrency(request.action, item_count),
        request,
        instances,
        subnets,
        vpcs: vpcs.into_iter().collect(),
        cases: Vec::new(),
        skipped,
        refusals,
        limits,
        planned_at,
    }
}

/// A plan of `request` with nothing in it yet, read now: what the release
/// actions (which read the responder's own records, not the estate) fill in.
pub fn empty_plan(request: BulkRequest) -> BulkPlan {
    BulkPlan {
        bulk_id: request.bulk_id(),
        max_concurrency: 1,
        limits: limits(request.action),
        request,
        instances: Vec::new(),
        subnets: Vec::new(),
        vpcs: Vec::new(),
        cases: Vec::new(),
        skipped: Vec::new(),
        refusals: Vec::new(),
        planned_at: crate::case::custody::now_utc(),
    }
}

/// What each action cannot do, said in the plan before it runs.
pub fn limits(action: BulkAction) -> Vec<String> {
    match action {
        BulkAction::QuarantineSubnets => vec![
            "a network ACL filters traffic only where it crosses the subnet's edge: instances in one cut subnet can still reach each other".into(),
            "no network ACL filters DNS to the Route 53 Resolver, instance metadata, the Amazon Time Sync Service, DHCP or Windows license activation".into(),
            "network ACLs are stateless: open connections across the edge stop at once; no instance is examined, snapshotted or marked contained by a subnet cut".into(),
        ],
        BulkAction::Contain => vec![
            "each instance is its own case: the forensics policy applies per case (an approval gate where it asks for one)".into(),
            "a network ACL holds 20 rules per direction by default: past that, DENY entries for instance addresses are refused (NetworkAclRuleLimit) and those instances are not reported contained; cut the subnets first when many instances share them".into(),
        ],
        BulkAction::ReleaseSubnets => vec![
            "a subnet goes back only to the ACL it had before the cut, and only while it is still on that cut's deny-all ACL; a subnet changed since, or held by another run, is left as it is".into(),
            "a subnet with an instance a case still holds is not released: that case's isolation may count on the cut (it adds no DENY entry where the ACL allows nothing); release those cases first".into(),
        ],
        BulkAction::Terminate => vec![
            "an instance is terminated only when every attached volume has a completed evidence snapshot (one a case took), unless the approved plan accepts terminating without them".into(),
            "only instances a case has handled (tagged ec2-forensics:case-id) are terminated".into(),
            "termination ends memory and instance-store data for good".into(),
        ],
        BulkAction::ReleaseCases => vec![
            "each case is released from its own record (the Case its execution holds, never the bucket): what containment changed goes back exactly as recorded, each restoration read back".into(),
            "kept on purpose: the session-revocation policy (credentials issued before containment stay dead), the evidence (snapshots, copies, objects), and the custody record, which the release extends and seals again".into(),
            "an instance another open case holds is left as it is, and that case's release fails until the other case lets go; a case whose execution still runs is not released".into(),
        ],
    }
}

/// The subnets the selected instances are in, each with the interfaces in
/// it that belong to no selected instance.
fn affected_subnets(
    instances: &[PlannedInstance],
    interfaces: &[SubnetInterface],
) -> Vec<PlannedSubnet> {
    let selected: BTreeSet<&str> = instances.iter().map(|i| i.instance_id.as_str()).collect();
    let mut subnets: BTreeMap<String, PlannedSubnet> = BTreeMap::new();
    for instance in instances {
        let Some(vpc_id) = &instance.vpc_id else {
            continue;
        };
        for subnet_id in &instance.subnet_ids {
            let subnet = subnets
                .entry(subnet_id.clone())
                .or_insert_with(|| PlannedSubnet {
                    subnet_id: subnet_id.clone(),
                    vpc_id: vpc_id.clone(),
                    selected: Vec::new(),
                    bystanders: Vec::new(),
                });
            if !subnet.selected.contains(&instance.instance_id) {
                subnet.selected.push(instance.instance_id.clone());
            }
        }
    }
    for interface in interfaces {
        let Some(subnet) = subnets.get_mut(&interface.subnet_id) else {
            continue;
        };
        let ours = interface
            .instance_id
            .as_deref()
            .is_some_and(|id| selected.contains(id));
        if !ours {
            subnet.bystanders.push(Bystander {
                network_interface_id: interface.network_interface_id.clone(),
                instance_id: interface.instance_id.clone(),
                interface_type: interface.interface_type.clone(),
                description: interface.description.clone(),
            });
        }
    }
    subnets.into_values().collect()
}

/// `2 instance(s), 1 nat_gateway`: what a subnet's bystanders are.
fn bystander_summary(bystanders: &[Bystander]) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for b in bystanders {
        let kind = if b.instance_id.is_some() {
            "instance interface"
        } else {
            b.interface_type.as_str()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::bulk::Selection;

    fn request(action: BulkAction, whole_subnet: bool) -> BulkRequest {
        BulkRequest {
            action,
            selection: Selection {
                tags: vec!["campaign=miner".into()],
                ..Selection::default()
            },
            reason: "worm".into(),
            region: "us-east-1".into(),
            account: None,
            whole_subnet,
            requested_by: None,
            requested_at: "2026-11-30T00:00:00Z".into(),
            release_of: None,
            without_snapshots: false,
        }
    }

    fn instance(id: &str, state: &str, subnet: &str) -> PlannedInstance {
        PlannedInstance {
            instance_id: id.into(),
            state: state.into(),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some(subnet.into()),
            subnet_ids: vec![subnet.into()],
            selected_by: vec!["tag:campaign=miner".into()],
            finding: None,
        }
    }

    fn interface(eni: &str, subnet: &str, instance: Option<&str>, kind: &str) -> SubnetInterface {
        SubnetInterface {
            network_interface_id: eni.into(),
            subnet_id: subnet.into(),
            vpc_id: "vpc-1".into(),
            instance_id: instance.map(str::to_owned),
            interface_type: kind.into(),
            description: None,
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            instances: [
                ("i-1".to_owned(), instance("i-1", "running", "subnet-a")),
                ("i-2".to_owned(), instance("i-2", "stopped", "subnet-b")),
                ("i-3".to_owned(), instance("i-3", "terminated", "subnet-b")),
            ]
            .into(),
            skipped: Vec::new(),
            interfaces: vec![
                interface("eni-1", "subnet-a", Some("i-1"), "interface"),
                interface("eni-2", "subnet-b", Some("i-2"), "interface"),
                interface("eni-9", "subnet-b", Some("i-9"), "interface"),
                interface("eni-n", "subnet-b", None, "nat_gateway"),
            ],
        }
    }

    #[test]
    fn a_subnet_cut_that_would_cut_bystanders_is_refused_without_whole_subnet() {
        let plan = plan(
            request(BulkAction::QuarantineSubnets, false),
            resolved(),
            "now".into(),
        );
        assert!(!plan.ready());
        assert_eq!(plan.refusals.len(), 1, "{:?}", plan.refusals);
        assert!(plan.refusals[0].starts_with("subnet-b also holds 2 network interface(s)"));
        assert!(plan.refusals[0].contains("1 instance interface, 1 nat_gateway"));
        let subnet_b = plan.subnets.iter().find(|s| s.subnet_id == "subnet-b");
        assert_eq!(
            subnet_b.map(|s| s.selected.clone()),
            Some(vec!["i-2".into()])
        );
    }

    #[test]
    fn whole_subnet_accepts_the_bystanders_and_lists_them() {
        let plan = plan(
            request(BulkAction::QuarantineSubnets, true),
            resolved(),
            "now".into(),
        );
        assert!(plan.ready(), "{:?}", plan.refusals);
        assert_eq!(plan.item_count(), 2);
        assert_eq!(plan.vpcs, vec!["vpc-1".to_owned()]);
        let bystanders: Vec<&str> = plan.subnets[1]
            .bystanders
            .iter()
            .map(|b| b.network_interface_id.as_str())
            .collect();
        assert_eq!(bystanders, ["eni-9", "eni-n"]);
    }

    #[test]
    fn terminated_instances_are_skipped_with_why_and_never_items() {
        let plan = plan(
            request(BulkAction::Terminate, false),
            resolved(),
            "now".into(),
        );
        let ids: Vec<&str> = plan
            .instances
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].target, "i-3");
        assert!(plan.ready());
    }

    #[test]
    fn no_selector_selects_nothing() {
        let mut asked = request(BulkAction::Contain, false);
        asked.selection = Selection::default();
        let plan = plan(asked, Resolved::default(), "now".into());
        assert!(!plan.ready());
        assert!(plan.refusals[0].starts_with("no selector"));
    }

    #[test]
    fn a_run_the_bursts_cover_goes_at_once_else_at_the_refill_pace() {
        // Twenty subnets: 20 ReplaceNetworkAclAssociation calls, within its 50.
        assert_eq!(max_concurrency(BulkAction::QuarantineSubnets, 20), 20);
        // A hundred: paced by its refill, 5 a second for 2 s.
        assert_eq!(max_concurrency(BulkAction::QuarantineSubnets, 100), 10);
        // Ten instances: 30 ModifyInstanceAttribute calls, within its 50.
        assert_eq!(max_concurrency(BulkAction::Contain, 10), 10);
        // A thousand cases: as many as ModifyInstanceAttribute's 50-token
        // burst serves at three calls each (an item is a whole case).
        assert_eq!(max_concurrency(BulkAction::Contain, 1000), 16);
        assert_eq!(max_concurrency(BulkAction::Terminate, 1000), 10);
        assert_eq!(max_concurrency(BulkAction::Contain, 0), 1);
        // The calls of containments back to back: 3 at the refill's pace.
        assert_eq!(refill_concurrency(BulkAction::Contain), 3);
        for action in [
            BulkAction::Contain,
            BulkAction::QuarantineSubnets,
            BulkAction::Terminate,
            BulkAction::ReleaseSubnets,
            BulkAction::ReleaseCases,
        ] {
            for (api, _) in calls_per_item(action) {
                assert!(
                    EC2_BUCKETS.iter().any(|b| b.action == *api),
                    "{api} has no documented bucket here"
                );
            }
        }
    }

    #[test]
    fn the_bulk_id_changes_with_the_request() {
        let a = request(BulkAction::Contain, false);
        let mut b = a.clone();
        b.requested_at = "2026-11-30T00:00:01Z".into();
        assert_ne!(a.bulk_id(), b.bulk_id());
        assert_eq!(a.bulk_id(), a.clone().bulk_id());
        assert!(a.bulk_id().starts_with("bulk-") && a.bulk_id().len() == 29);
    }
}
