//! Bulk steps against the moto server, each trust boundary attacked first:
//! - a network ACL that carries the quarantine tag but allows traffic is
//!   never used as the deny-all ACL (anyone in the account can tag an ACL);
//! - two runs that cut one subnet: the second finds the first's hold and
//!   neither cuts again nor may release it; only the holder puts back the
//!   original ACL;
//! - terminate refuses an instance no case handled, and one whose volumes
//!   have no completed evidence snapshot, unless the approved plan accepts
//!   it; protection is turned off only for a termination that goes ahead.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceNetworkInterfaceSpecification, ResourceType, RuleAction,
    Tag, TagSpecification,
};
use playbook::aws::Clients;
use playbook::case::bulk::SubnetItem;
use playbook::policy::Policy;
use playbook::steps::bulk::subnets::{
    cut_subnet, denies_everything, prepare_quarantine_acl, release_subnet, SubnetHolds,
    QUARANTINE_ROLE,
};
use playbook::steps::bulk::terminate::{terminate_instance, TerminateItem};
use playbook::steps::disk::{EVIDENCE_ROLE, VOLUME_TAG};
use playbook::steps::{CASE_TAG, ROLE_TAG};
use system_tests::{termination_protected, Moto};

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
    clients
        .ec2
        .describe_network_acls()
        .filters(
            Filter::builder()
                .name("association.subnet-id")
                .values(subnet)
                .build(),
        )
        .send()
        .await
        .expect("acls")
        .network_acls()
        .first()
        .and_then(|a| a.network_acl_id())
        .expect("the subnet's ACL")
        .to_owned()
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
    let holds = SubnetHolds::of(&responder, "123456789012").expect("the lease table");
    let subnet = first_subnet(&clients, &vpc).await;
    let original = acl_of(&clients, &subnet).await;
    let item = |bulk: &str| SubnetItem {
        bulk_id: bulk.into(),
        subnet_id: subnet.clone(),
        vpc_id: vpc.clone(),
        account: None,
        whole_subnet: true,
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
    let not_theirs = release_subnet(ec2, &holds, "bulk-two", &subnet, false)
        .await
        .expect("answered");
    assert!(!not_theirs.restored);
    assert_eq!(
        not_theirs.actions[0].error_type.as_deref(),
        Some("SubnetHeld")
    );
    assert_eq!(acl_of(&clients, &subnet).await, acl, "still cut");

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
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("images")
        .images()
        .iter()
        .find(|i| i.platform().is_none())
        .and_then(|i| i.image_id())
        .expect("image")
        .to_owned();
    let launch = |tagged: bool| {
        let mut request = ec2
            .run_instances()
            .image_id(&image)
            .instance_type("t3.micro".into())
            .min_count(1)
            .max_count(1)
            .disable_api_termination(true)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet)
                    .build(),
            );
        if tagged {
            request = request.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key(CASE_TAG).value("man-bulkterm").build())
                    .build(),
            );
        }
        async move {
            let out = request.send().await.expect("launched");
            let instance = out.instances()[0].clone();
            let volume = instance
                .block_device_mappings()
                .iter()
                .find_map(|m| m.ebs().and_then(|e| e.volume_id()))
                .expect("a root volume")
                .to_owned();
            (instance.instance_id().expect("id").to_owned(), volume)
        }
    };
    let item = |id: &str, without: bool| TerminateItem {
        bulk_id: "bulk-term".into(),
        instance_id: id.into(),
        account: None,
        without_snapshots: without,
    };
    let state = |id: String| async move {
        ec2.describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("read")
            .reservations()[0]
            .instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default()
    };

    // No case has handled this one: never terminated, even if asked to go
    // without snapshots.
    let (stranger, _) = launch(false).await;
    let refused = terminate_instance(ec2, &item(&stranger, true))
        .await
        .expect("answered");
    assert!(!refused.terminated);
    assert_eq!(refused.actions[0].error_type.as_deref(), Some("NotACase"));
    assert_eq!(state(stranger.clone()).await, "running");

    // A case instance whose volume has no evidence snapshot: refused, and
    // its termination protection stays on.
    let (suspect, volume) = launch(true).await;
    let refused = terminate_instance(ec2, &item(&suspect, false))
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

    // A snapshot someone took without the evidence tags does not count.
    ec2.create_snapshot()
        .volume_id(&volume)
        .send()
        .await
        .expect("untagged snapshot");
    let refused = terminate_instance(ec2, &item(&suspect, false))
        .await
        .expect("answered");
    assert!(!refused.terminated);

    // The case's evidence snapshot (completed: moto completes at once).
    ec2.create_snapshot()
        .volume_id(&volume)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(Tag::builder().key(ROLE_TAG).value(EVIDENCE_ROLE).build())
                .tags(Tag::builder().key(VOLUME_TAG).value(&volume).build())
                .tags(Tag::builder().key(CASE_TAG).value("man-bulkterm").build())
                .build(),
        )
        .send()
        .await
        .expect("evidence snapshot");
    let done = terminate_instance(ec2, &item(&suspect, false))
        .await
        .expect("terminated");
    assert!(done.terminated, "{done:?}");
    assert!(!done.without_evidence);
    assert!(done.volumes.iter().all(|v| v.snapshot_id.is_some()));
    assert!(matches!(
        state(suspect.clone()).await.as_str(),
        "shutting-down" | "terminated"
    ));

    // The approved plan accepts going without: terminated, and said so.
    let (bare, _) = launch(true).await;
    ec2.modify_instance_attribute()
        .instance_id(&bare)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .expect("protected");
    let gone = terminate_instance(ec2, &item(&bare, true))
        .await
        .expect("terminated");
    assert!(gone.terminated && gone.without_evidence, "{gone:?}");
}
