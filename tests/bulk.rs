//! Bulk steps against the moto server, each trust boundary attacked first:
//! - a network ACL that carries the quarantine tag but allows traffic is
//!   never used as the deny-all ACL (anyone in the account can tag an ACL);
//! - two runs that cut one subnet: the second finds the first's hold and
//!   neither cuts again nor may release it; only the holder puts back the
//!   original ACL, and not while a case holds an instance of the subnet;
//! - a cut without the whole-subnet option re-reads the subnet and stops
//!   when interfaces outside the selection are there;
//! - terminate trusts no tag and no snapshot the workload account can make:
//!   an instance no case holds in the responder's lease table is never
//!   terminated; one whose case still runs, or whose case recorded no
//!   completed snapshot and forensic copy of every volume, only when the
//!   approved plan accepts it; protection is turned off only for a
//!   termination that goes ahead.

use aws_sdk_ec2::types::{Filter, ResourceType, RuleAction, Tag, TagSpecification};
use playbook::aws::Clients;
use playbook::case::bulk::{BulkAction, BulkRequest, Selection, SubnetItem};
use playbook::case::{SnapshotProgress, VolumeEvidence};
use playbook::policy::Policy;
use playbook::steps::bulk::run::{bulk_step, plan_request};
use playbook::steps::bulk::subnets::{
    cut_subnet, denies_everything, instances_in_subnet, prepare_quarantine_acl, release_subnet,
    SubnetHolds, QUARANTINE_ROLE,
};
use playbook::steps::bulk::terminate::{terminate_instance, CaseEvidence, TerminateItem};
use playbook::steps::disk::{EVIDENCE_ROLE, VOLUME_TAG};
use playbook::steps::lease::{lease_key, Leases};
use playbook::steps::{CASE_TAG, ROLE_TAG};
use serde_json::json;
use system_tests::{launch_into, subnet_acl, termination_protected, Moto};

async fn first_subnet(clients: &Clients, vpc: &str) -> String {
    clients
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .expect("subnets")
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id())
        .min()
        .expect("a subnet")
        .to_owned()
}

async fn acl_of(clients: &Clients, subnet: &str) -> String {
    subnet_acl(clients, subnet).await.0
}

#[tokio::test]
async fn a_tagged_acl_that_allows_traffic_is_not_the_quarantine_and_two_runs_never_both_cut() {
    let moto = Moto::start();
    let estate = moto.seed("bulkcut");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let vpc = estate.vpc_id.clone();

    // Someone tags an ACL of their own as the quarantine ACL, with an ALLOW in it.
    let decoy = ec2
        .create_network_acl()
        .vpc_id(&vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::NetworkAcl)
                .tags(Tag::builder().key(ROLE_TAG).value(QUARANTINE_ROLE).build())
                .build(),
        )
        .send()
        .await
        .expect("decoy")
        .network_acl()
        .and_then(|a| a.network_acl_id())
        .expect("id")
        .to_owned();
    ec2.create_network_acl_entry()
        .network_acl_id(&decoy)
        .rule_number(100)
        .protocol("-1")
        .rule_action(RuleAction::Allow)
        .egress(false)
        .cidr_block("0.0.0.0/0")
        .send()
        .await
        .expect("allow");
    let prepared = prepare_quarantine_acl(ec2, &vpc, "bulk-one", false)
        .await
        .expect("prepared");
    let acl = prepared.network_acl_id.clone().expect("an ACL");
    assert_ne!(acl, decoy, "the tagged ACL that allows traffic is not used");
    assert!(prepared.verified);
    assert!(prepared
        .action
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("not used"));
    let again = prepare_quarantine_acl(ec2, &vpc, "bulk-two", false)
        .await
        .expect("found");
    assert_eq!(
        again.network_acl_id.as_deref(),
        Some(acl.as_str()),
        "found, not made twice"
    );

    // Run one cuts the subnet; run two finds run one's hold.
    let mut responder = moto.responder(Policy::default()).await;
    responder.config = estate.forensic.config();
    responder.bulk_state_machine_arn =
        Some("arn:aws:states:us-east-1:123456789012:stateMachine:ec2-forensics-bulk".into());
    let holds = SubnetHolds::of(&responder, "123456789012").expect("the lease table");
    let subnet = first_subnet(&clients, &vpc).await;
    let original = acl_of(&clients, &subnet).await;
    let item = |bulk: &str| SubnetItem {
        bulk_id: bulk.into(),
        subnet_id: subnet.clone(),
        vpc_id: vpc.clone(),
        account: None,
        whole_subnet: true,
        selected: Vec::new(),
    };
    // An item that names the decoy as the quarantine ACL changes nothing.
    let refused = cut_subnet(ec2, Some(&holds), &item("bulk-one"), &decoy, false)
        .await
        .expect("answered");
    assert!(!refused.verified);
    assert_eq!(
        refused.actions[0].error_type.as_deref(),
        Some("QuarantineAclNotDenyAll")
    );
    assert_eq!(acl_of(&clients, &subnet).await, original);

    // Without --whole-subnet, interfaces that are not the selection's (the
    // seeded instances here, as if they had appeared after the plan) stop
    // the cut, read again at cut time.
    let narrow = SubnetItem {
        whole_subnet: false,
        selected: vec!["i-0123456789abcdef0".into()],
        ..item("bulk-one")
    };
    let refused = cut_subnet(ec2, Some(&holds), &narrow, &acl, false)
        .await
        .expect("answered");
    assert_eq!(
        refused.actions[0].error_type.as_deref(),
        Some("SubnetHoldsOthers")
    );
    assert_eq!(acl_of(&clients, &subnet).await, original);
    assert!(
        holds.get(&subnet).await.expect("read").is_none(),
        "no hold taken"
    );

    let first = cut_subnet(ec2, Some(&holds), &item("bulk-one"), &acl, false)
        .await
        .expect("cut");
    assert!(first.verified, "{first:?}");
    assert_eq!(first.original_acl_id.as_deref(), Some(original.as_str()));
    assert_eq!(acl_of(&clients, &subnet).await, acl);
    // A retry of the same item (its answer lost) changes nothing more.
    let retried = cut_subnet(ec2, Some(&holds), &item("bulk-one"), &acl, false)
        .await
        .expect("retry");
    assert!(retried.verified);
    assert_eq!(retried.original_acl_id.as_deref(), Some(original.as_str()));

    let second = cut_subnet(ec2, Some(&holds), &item("bulk-two"), &acl, false)
        .await
        .expect("second");
    assert_eq!(second.held_by.as_deref(), Some("bulk-one"));
    assert!(
        second.original_acl_id.is_none(),
        "it does not claim the cut"
    );
    assert!(second.verified, "the subnet stands cut: {second:?}");
    assert_eq!(
        holds
            .get(&subnet)
            .await
            .expect("read")
            .map(|h| h.relied_on_by),
        Some(vec!["bulk-two".to_owned()]),
        "the second run's reliance is on the hold"
    );
    // A release finds what to undo in the hold table, with no execution
    // history to read (none here: as after the 90 days Step Functions keeps
    // a closed execution's history): the holder's cut, the second run's
    // reliance, and nothing for a run that has neither.
    let release_of = |run: &str| BulkRequest {
        action: BulkAction::ReleaseSubnets,
        selection: Selection::default(),
        reason: "false positive".into(),
        region: "us-east-1".into(),
        account: None,
        whole_subnet: false,
        requested_by: None,
        requested_at: "2026-11-30T16:00:00Z".into(),
        release_of: Some(run.into()),
        without_snapshots: false,
    };
    for run in ["bulk-one", "bulk-two"] {
        let (plan, _) = plan_request(&responder, release_of(run))
            .await
            .expect("planned");
        let subnets: Vec<(&str, &str)> = plan
            .subnets
            .iter()
            .map(|p| (p.subnet_id.as_str(), p.vpc_id.as_str()))
            .collect();
        assert_eq!(subnets, vec![(subnet.as_str(), vpc.as_str())], "{run}");
        assert!(plan.refusals.is_empty(), "{run}: {:?}", plan.refusals);
    }
    let (nothing, _) = plan_request(&responder, release_of("bulk-three"))
        .await
        .expect("planned");
    assert!(nothing.subnets.is_empty());
    assert!(
        nothing.refusals[0].contains("holds no subnet cut"),
        "{:?}",
        nothing.refusals
    );

    // The holder's release would un-cut the subnet under the second run,
    // unrecorded: refused while the second run relies on it.
    let under_another = release_subnet(ec2, &holds, "bulk-one", &subnet, false)
        .await
        .expect("answered");
    assert!(!under_another.restored);
    assert_eq!(
        under_another.actions[0].error_type.as_deref(),
        Some("SubnetReliedOn"),
        "{under_another:?}"
    );
    assert_eq!(acl_of(&clients, &subnet).await, acl, "still cut");
    // A run that neither holds nor relies on the cut may not release it.
    let not_theirs = release_subnet(ec2, &holds, "bulk-three", &subnet, false)
        .await
        .expect("answered");
    assert!(!not_theirs.restored && !not_theirs.reliance_ended);
    assert_eq!(
        not_theirs.actions[0].error_type.as_deref(),
        Some("SubnetHeld")
    );
    // The second run's release lets go; the cut stays the holder's.
    let let_go = release_subnet(ec2, &holds, "bulk-two", &subnet, false)
        .await
        .expect("answered");
    assert!(let_go.reliance_ended && !let_go.restored, "{let_go:?}");
    assert_eq!(acl_of(&clients, &subnet).await, acl, "still cut");
    let hold = holds.get(&subnet).await.expect("read").expect("held");
    assert_eq!(hold.bulk_id, "bulk-one");
    assert!(hold.relied_on_by.is_empty(), "{hold:?}");

    // A case holds an instance of the subnet: its isolation may count on the
    // cut (no DENY entry where the ACL allows nothing), so the release step
    // refuses until that case lets go.
    let inside = instances_in_subnet(ec2, &subnet).await.expect("instances");
    let leases = Leases::of(&responder).expect("the lease table");
    let key = lease_key("123456789012", "us-east-1", &inside[0]);
    leases
        .take(&key, "man-holding", None, 1_800_000_000)
        .await
        .expect("a case holds it");
    let step = |bulk: &str| {
        json!({"step": "release-subnet", "item": {
            "bulkId": bulk, "subnetId": subnet, "vpcId": vpc, "account": "123456789012"}})
    };
    let refused = bulk_step(&responder, step("bulk-one"))
        .await
        .expect("answered");
    assert_eq!(refused["restored"], false);
    assert_eq!(
        refused["actions"][0]["errorType"], "CasesHoldInstances",
        "{refused:#}"
    );
    assert_eq!(acl_of(&clients, &subnet).await, acl, "still cut");
    assert!(leases.free(&key, "man-holding").await.expect("freed"));

    let released = release_subnet(ec2, &holds, "bulk-one", &subnet, false)
        .await
        .expect("released");
    assert!(released.restored, "{released:?}");
    assert_eq!(
        acl_of(&clients, &subnet).await,
        original,
        "exactly the ACL it had"
    );
    assert!(
        holds.get(&subnet).await.expect("read").is_none(),
        "the hold is freed"
    );
    let twice = release_subnet(ec2, &holds, "bulk-one", &subnet, false)
        .await
        .expect("answered");
    assert_eq!(
        twice.actions[0].error_type.as_deref(),
        Some("NotThisRunsCut")
    );

    let acls = ec2
        .describe_network_acls()
        .network_acl_ids(&acl)
        .send()
        .await
        .expect("read");
    assert!(acls.network_acls().iter().all(denies_everything));
}

#[tokio::test]
async fn terminate_goes_ahead_only_for_a_case_instance_with_its_evidence_complete() {
    let moto = Moto::start();
    let estate = moto.seed("bulkterm");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let subnet = first_subnet(&clients, &estate.vpc_id).await;
    // What anyone in the workload account can write: the case tag.
    let launch = || async {
        launch_into(&clients, &subnet, 1, &[(CASE_TAG, "man-forged")], true)
            .await
            .remove(0)
    };
    let item = |id: &str, without: bool| TerminateItem {
        bulk_id: "bulk-term".into(),
        instance_id: id.into(),
        account: None,
        without_snapshots: without,
    };
    let state = |id: String| async move { system_tests::instance_state(ec2, &id).await };
    let recorded =
        |instance: &str, volume: &str, snapshot: &str, copy: Option<&str>| VolumeEvidence {
            instance_id: instance.into(),
            volume_id: volume.into(),
            device: None,
            snapshot: progress(snapshot, "completed"),
            encryption: None,
            sharing: None,
            copy: copy.map(|state| progress("snap-copy", state)),
        };

    // The case tag and a snapshot tagged as evidence are what anyone in the
    // workload account can make: with no case holding the instance in the
    // responder's lease table, nothing is terminated, even when the plan
    // accepts going without snapshots.
    let (suspect, volume) = launch().await;
    ec2.create_snapshot()
        .volume_id(&volume)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(Tag::builder().key(ROLE_TAG).value(EVIDENCE_ROLE).build())
                .tags(Tag::builder().key(VOLUME_TAG).value(&volume).build())
                .build(),
        )
        .send()
        .await
        .expect("a forged evidence snapshot");
    let refused = terminate_instance(ec2, &item(&suspect, true), None)
        .await
        .expect("answered");
    assert!(!refused.terminated);
    assert_eq!(refused.actions[0].error_type.as_deref(), Some("NotACase"));
    assert_eq!(state(suspect.clone()).await, "running");

    // Its case still runs (memory, snapshots, analysis may be under way).
    let running = CaseEvidence {
        case_id: "man-1".into(),
        running: true,
        volumes: vec![recorded(&suspect, &volume, "snap-1", Some("completed"))],
    };
    let refused = terminate_instance(ec2, &item(&suspect, true), Some(&running))
        .await
        .expect("answered");
    assert_eq!(
        refused.actions[0].error_type.as_deref(),
        Some("CaseStillRunning")
    );

    // The case ended with the snapshot but no completed forensic copy.
    let no_copy = CaseEvidence {
        running: false,
        volumes: vec![recorded(&suspect, &volume, "snap-1", Some("pending"))],
        ..running.clone()
    };
    let refused = terminate_instance(ec2, &item(&suspect, false), Some(&no_copy))
        .await
        .expect("answered");
    assert!(!refused.terminated);
    assert_eq!(
        refused.actions[0].error_type.as_deref(),
        Some("EvidenceNotComplete")
    );
    assert!(refused.actions[0]
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains(&volume));
    assert!(
        termination_protected(ec2, &suspect).await,
        "protection untouched"
    );
    assert_eq!(state(suspect.clone()).await, "running");

    // The case read back the snapshot and its copy completed.
    let complete = CaseEvidence {
        volumes: vec![recorded(&suspect, &volume, "snap-1", Some("completed"))],
        ..no_copy.clone()
    };
    let done = terminate_instance(ec2, &item(&suspect, false), Some(&complete))
        .await
        .expect("terminated");
    assert!(done.terminated, "{done:?}");
    assert!(!done.without_evidence);
    assert_eq!(done.volumes[0].snapshot_id.as_deref(), Some("snap-1"));
    assert!(matches!(
        state(suspect.clone()).await.as_str(),
        "shutting-down" | "terminated"
    ));

    // The approved plan accepts going without: terminated, and said so.
    let (bare, _) = launch().await;
    let nothing = CaseEvidence {
        volumes: Vec::new(),
        ..no_copy
    };
    let gone = terminate_instance(ec2, &item(&bare, true), Some(&nothing))
        .await
        .expect("terminated");
    assert!(gone.terminated && gone.without_evidence, "{gone:?}");
}

fn progress(id: &str, state: &str) -> SnapshotProgress {
    SnapshotProgress {
        snapshot_id: id.into(),
        state: state.into(),
        progress: None,
        kms_key_id: None,
        message: None,
        started_at: None,
        checked_at: None,
    }
}

/// Finding text is hostile: a finding that names one of this account's
/// instances but says it is about another account opens no case in this
/// one. The plan is refused, with why, and nothing starts.
#[tokio::test]
async fn a_finding_about_another_account_is_refused_in_the_plan() {
    let moto = Moto::start();
    let estate = moto.seed("bulkacct");
    let responder = moto.responder(Policy::default()).await;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events/guardduty-crypto-mining-dns.json"),
    )
    .expect("the example finding");
    let mut finding: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    finding["account"] = json!("999999999999");
    finding["detail"]["accountId"] = json!("999999999999");
    finding["detail"]["resource"]["instanceDetails"]["instanceId"] =
        json!(estate.victim.instance_id);
    let request = BulkRequest {
        action: BulkAction::Contain,
        selection: Selection {
            findings: vec![finding],
            ..Selection::default()
        },
        reason: "campaign".into(),
        region: "us-east-1".into(),
        account: None,
        whole_subnet: false,
        requested_by: None,
        requested_at: "2026-11-30T16:00:00Z".into(),
        release_of: None,
        without_snapshots: false,
    };
    let (plan, account) = plan_request(&responder, request).await.expect("planned");
    assert_eq!(account, "123456789012");
    assert!(!plan.ready(), "{plan:#?}");
    assert!(
        plan.refusals.iter().any(|r| r.contains(&format!(
            "the finding that chose {} is about account 999999999999",
            estate.victim.instance_id
        ))),
        "{:?}",
        plan.refusals
    );
}

/// A holder's release that is refused (the subnet was moved since the cut)
/// leaves the hold as it was: another run can still come to rely on the cut,
/// and the holder can try again.
#[tokio::test]
async fn a_refused_release_leaves_the_cut_open_to_reliance() {
    let moto = Moto::start();
    let estate = moto.seed("bulkrefused");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let vpc = estate.vpc_id.clone();
    let mut responder = moto.responder(Policy::default()).await;
    responder.config = estate.forensic.config();
    let holds = SubnetHolds::of(&responder, "123456789012").expect("the lease table");
    let subnet = first_subnet(&clients, &vpc).await;
    let acl = prepare_quarantine_acl(ec2, &vpc, "bulk-a", false)
        .await
        .expect("prepared")
        .network_acl_id
        .expect("an ACL");
    let item = SubnetItem {
        bulk_id: "bulk-a".into(),
        subnet_id: subnet.clone(),
        vpc_id: vpc.clone(),
        account: None,
        whole_subnet: true,
        selected: Vec::new(),
    };
    let cut = cut_subnet(ec2, Some(&holds), &item, &acl, false)
        .await
        .expect("cut");
    assert!(cut.verified, "{cut:?}");
    // Someone moves the subnet to an ACL of their own.
    let theirs = ec2
        .create_network_acl()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("acl")
        .network_acl()
        .and_then(|a| a.network_acl_id())
        .expect("id")
        .to_owned();
    let (_, association) = subnet_acl(&clients, &subnet).await;
    ec2.replace_network_acl_association()
        .association_id(association)
        .network_acl_id(&theirs)
        .send()
        .await
        .expect("moved");
    let refused = release_subnet(ec2, &holds, "bulk-a", &subnet, false)
        .await
        .expect("answered");
    assert_eq!(
        refused.actions[0].error_type.as_deref(),
        Some("ChangedSinceCut")
    );
    assert_eq!(acl_of(&clients, &subnet).await, theirs, "left as it is");
    assert!(
        holds.rely(&subnet, "bulk-a", "bulk-b").await.expect("rely"),
        "the refused release left no mark that keeps other runs from relying on the cut"
    );
    assert_eq!(
        holds.get(&subnet).await.expect("read").map(|h| h.bulk_id),
        Some("bulk-a".to_owned())
    );
}
