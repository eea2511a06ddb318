//! protect-instance, isolate-network and release-instance against the moto
//! server on the seeded estate: every attribute after each step, repeat runs,
//! the bare instance, dry run, isolate-first, and refusals.

use aws_sdk_ec2::types::Filter;
use playbook::aws::Clients;
use playbook::case::isolation::InstanceIsolation;
use playbook::case::IsolationStage;
use playbook::case::Outcome;
use playbook::case::{record_of, Action, Case};
use playbook::policy::{AcquisitionOrder, Policy};
use playbook::steps::capture_metadata::capture_metadata;
use playbook::steps::isolate::isolate_instances;
use playbook::steps::protect::protect_instances;
use playbook::steps::release::release_instances;
use playbook::steps::triage::triage;
use system_tests::observe::{observe, Observed};
use system_tests::{create_group, ssm_endpoints, Moto, Victim};

const ACTOR: &str = "arn:aws:iam::123456789012:user/test-responder";

/// A subnet of the VPC.
async fn first_subnet(clients: &Clients, vpc: &str) -> String {
    let out = clients
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    out.subnets()[0].subnet_id().unwrap().to_owned()
}

/// The network ACL of the VPC's subnets.
async fn first_acl(clients: &Clients, vpc: &str) -> String {
    let out = clients
        .ec2
        .describe_network_acls()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    out.network_acls()[0].network_acl_id().unwrap().to_owned()
}

/// An image the emulator can launch.
async fn amazon_image(clients: &Clients) -> String {
    let out = clients
        .ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap();
    out.images()[0].image_id().unwrap().to_owned()
}

/// The isolation group an isolation record ends the ENIs of `vpc` in.
fn isolation_group_of(isolation: &InstanceIsolation, vpc: &str) -> String {
    isolation
        .groups
        .iter()
        .find(|g| g.vpc_id == vpc)
        .and_then(|g| g.isolation_group_id.clone())
        .unwrap_or_else(|| panic!("no isolation group in {vpc}: {:?}", isolation.groups))
}

/// Every rule of a group, as DescribeSecurityGroupRules lists them: (egress, protocol, cidr).
async fn rules_of(clients: &Clients, group_id: &str) -> Vec<(bool, String, String)> {
    let out = clients
        .ec2
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(group_id).build())
        .send()
        .await
        .unwrap();
    let mut rules: Vec<(bool, String, String)> = out
        .security_group_rules()
        .iter()
        .map(|r| {
            (
                r.is_egress().unwrap_or(false),
                r.ip_protocol().unwrap_or_default().to_owned(),
                r.cidr_ipv4()
                    .or(r.cidr_ipv6())
                    .unwrap_or("group")
                    .to_owned(),
            )
        })
        .collect();
    rules.sort();
    rules
}

async fn open_case(moto: &Moto, policy: Policy, instance_id: &str) -> Case {
    let responder = moto.responder(policy).await;
    let request =
        serde_json::json!({"instanceId": instance_id, "reason": "test", "requestedBy": "tests"});
    triage(&responder, request)
        .await
        .expect("a manual request opens a case")
}

/// The policy of a step that isolates fully at once: these tests call the
/// isolate step as the state machine calls it once memory is done (`auto`'s
/// choices and stages have tests of their own).
fn full_isolation() -> Policy {
    Policy {
        acquisition_order: AcquisitionOrder::MemoryFirst,
        ..Policy::default()
    }
}

async fn contain(clients: &Clients, case: Case) -> Case {
    let case = protect_instances(clients, ACTOR, case)
        .await
        .expect("protect");
    isolate_instances(clients, ACTOR, case)
        .await
        .expect("isolate")
}

fn outcomes(case: &Case) -> Vec<(String, Outcome)> {
    case.protection
        .iter()
        .flat_map(|p| &p.actions)
        .chain(case.isolation.iter().flat_map(|i| &i.actions))
        .map(|a| (format!("{} on {}", a.action, a.target), a.outcome))
        .collect()
}

#[tokio::test]
async fn contain_then_release_the_victim_restores_everything() {
    let moto = Moto::start();
    let estate = moto.seed("vic");
    let clients = moto.clients().await;
    let victim: &Victim = &estate.victim;
    let id = victim.instance_id.as_str();
    let before = observe(&clients, id, Some(&victim.role_name)).await;
    assert!(!before.termination_protection);
    assert_eq!(before.shutdown_behavior, "terminate");
    assert_eq!(
        before.ip_targets,
        vec![(
            victim.ip_target_group.arn.clone(),
            victim.ip_target_group.ip.clone()
        )]
    );
    assert!(before.acl_denies.is_empty());
    assert_eq!(
        before.auto_scaling_group.as_deref(),
        Some(victim.auto_scaling_group.as_str())
    );
    assert_eq!(before.target_groups.len(), 2);
    assert_eq!(
        before.load_balancers,
        vec![victim.classic_load_balancer.clone()]
    );
    assert!(before.instance_profile.is_some());

    // protect
    let case = open_case(&moto, full_isolation(), id).await;
    let case = protect_instances(&clients, ACTOR, case)
        .await
        .expect("protect");
    let protection = &case.protection[0];
    assert!(protection.complete, "{:?}", protection.actions);
    let protected = observe(&clients, id, Some(&victim.role_name)).await;
    assert!(protected.termination_protection);
    assert_eq!(protected.shutdown_behavior, "stop");
    assert!(
        protected.delete_on_termination.iter().all(|(_, d)| !d),
        "{:?}",
        protected.delete_on_termination
    );
    assert_eq!(protected.auto_scaling_group, None, "detached from the ASG");
    assert!(
        protected.target_groups.is_empty(),
        "out of both target groups"
    );
    assert!(
        protected.ip_targets.is_empty(),
        "out of the IP target group, by its private IP"
    );
    assert!(
        protected.load_balancers.is_empty(),
        "out of the classic ELB"
    );
    assert_eq!(
        protected.eni_groups, before.eni_groups,
        "protect does not touch the network"
    );
    let original = &protection.original;
    assert_eq!(original.termination_protection, Some(false));
    assert_eq!(
        original
            .auto_scaling_group
            .as_ref()
            .map(|g| g.name.as_str()),
        Some(victim.auto_scaling_group.as_str())
    );
    let mut recorded_tgs: Vec<(String, Option<i32>)> = original
        .target_groups
        .iter()
        .filter(|t| t.target_id.is_none())
        .map(|t| (t.target_group_arn.clone(), t.port))
        .collect();
    let ip_registration = original
        .target_groups
        .iter()
        .find(|t| t.target_id.is_some())
        .expect("the IP registration is recorded");
    assert_eq!(
        ip_registration.target_id.as_deref(),
        Some(victim.ip_target_group.ip.as_str())
    );
    assert_eq!(ip_registration.port, Some(victim.ip_target_group.port));
    assert_eq!(original.shutdown_behavior.as_deref(), Some("terminate"));
    recorded_tgs.sort();
    assert_eq!(
        recorded_tgs, before.target_groups,
        "target groups recorded with their ports"
    );
    assert_eq!(original.load_balancers, before.load_balancers);
    assert!(original
        .delete_on_termination
        .iter()
        .all(|d| d.delete_on_termination));

    // isolate
    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    let isolation = &case.isolation[0];
    assert!(isolation.complete, "{:?}", isolation.actions);
    assert_eq!(isolation.stage, IsolationStage::Full);
    system_tests::assert_contained(&case);
    assert!(isolation.verified_at.is_some(), "contained means read back");
    let isolation_group = isolation_group_of(isolation, &estate.vpc_id);
    let untracking_group = isolation.groups[0]
        .untracking_group_id
        .clone()
        .expect("untracking group");
    assert_eq!(
        rules_of(&clients, &isolation_group).await,
        vec![],
        "isolation group: no ingress, no egress"
    );
    let all = |egress: bool| {
        [
            (egress, "-1".to_owned(), "0.0.0.0/0".to_owned()),
            (egress, "-1".to_owned(), "::/0".to_owned()),
        ]
    };
    let mut untracking_rules: Vec<_> = all(false).into_iter().chain(all(true)).collect();
    untracking_rules.sort();
    assert_eq!(
        rules_of(&clients, &untracking_group).await,
        untracking_rules,
        "untracking group: all traffic both ways, IPv4 and IPv6"
    );
    let isolated = observe(&clients, id, Some(&victim.role_name)).await;
    assert_eq!(isolated.eni_groups.len(), 2);
    for (eni, groups) in &isolated.eni_groups {
        assert_eq!(
            groups,
            &vec![isolation_group.clone()],
            "ENI {eni} only in the isolation group"
        );
    }
    assert_eq!(isolated.elastic_ips, vec![], "the EIP is disassociated");
    assert_eq!(
        isolation.elastic_ips[0].allocation_id,
        victim.elastic_ip.allocation_id
    );
    assert_eq!(
        isolated.instance_profile, None,
        "no role credentials left on the host"
    );
    let revocation = isolation
        .session_revocation
        .as_ref()
        .expect("sessions revoked");
    assert_eq!(isolated.role_policies, vec![revocation.policy_name.clone()]);
    let policy_doc = clients
        .iam
        .get_role_policy()
        .role_name(&victim.role_name)
        .policy_name(&revocation.policy_name)
        .send()
        .await
        .unwrap();
    // IAM returns the document URL-encoded.
    assert!(
        policy_doc.policy_document().contains("TokenIssueTime"),
        "{}",
        policy_doc.policy_document()
    );
    assert!(policy_doc.policy_document().contains("Deny"));
    assert!(
        policy_doc.policy_document().contains("SourceInstanceARN")
            && policy_doc.policy_document().contains(id),
        "only the suspect's own sessions are denied: {}",
        policy_doc.policy_document()
    );
    assert!(
        !policy_doc
            .policy_document()
            .contains(&estate.peer.instance_id),
        "the peer sharing the profile keeps working"
    );
    assert_eq!(revocation.policy_name, format!("ec2-forensics-revoke-{id}"));
    assert_eq!(
        isolated.acl_denies.len(),
        4,
        "inbound and outbound deny for each of the two private IPs: {:?}",
        isolated.acl_denies
    );
    assert_eq!(isolation.network_acl_entries.len(), 4);
    let summary = case.containment.as_ref().expect("containment summarised");
    assert!(summary.not_blocked.iter().any(|n| n.contains("DNS")));
    let tags = clients
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(id).build())
        .send()
        .await
        .unwrap();
    let tag = |key: &str| {
        tags.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("ec2-forensics:case-id"), Some(case.case_id.clone()));
    assert_eq!(tag("ec2-forensics:status").as_deref(), Some("quarantined"));
    assert!(case.custody.iter().any(|c| c.step == "protect-instance"));
    assert!(case.custody.iter().any(|c| c.step == "isolate-network"));

    // a second containment changes nothing and keeps the originals
    let again = contain(&clients, case.clone()).await;
    system_tests::assert_contained(&again);
    assert_eq!(
        again.isolation[0].network_acl_entries,
        case.isolation[0].network_acl_entries
    );
    for (action, outcome) in outcomes(&again) {
        assert_eq!(outcome, Outcome::AlreadyDone, "second run: {action}");
    }
    assert_eq!(again.protection[0].original, case.protection[0].original);
    assert_eq!(again.isolation[0].interfaces, case.isolation[0].interfaces);
    assert_eq!(
        observe(&clients, id, Some(&victim.role_name)).await,
        isolated
    );

    // release puts everything back
    let released = release_instances(&clients, ACTOR, again)
        .await
        .expect("release");
    assert!(
        released.release[0].complete,
        "{:?}",
        released.release[0].actions
    );
    assert!(released.errors.is_empty(), "{:?}", released.errors);
    let after = observe(&clients, id, Some(&victim.role_name)).await;
    // Everything but the session-revocation policy: sessions issued before
    // isolation (perhaps stolen) stay denied, and the Case says so.
    let revocation_policy = format!("ec2-forensics-revoke-{id}");
    assert_eq!(
        after.role_policies,
        vec![revocation_policy.clone()],
        "the revocation policy is kept"
    );
    assert!(
        released.release[0]
            .notes
            .iter()
            .any(|n| n.starts_with("kept on purpose") && n.contains(&revocation_policy)),
        "{:?}",
        released.release[0].notes
    );
    assert_eq!(
        Observed {
            role_policies: before.role_policies.clone(),
            ..after
        },
        before,
        "release restores the original configuration"
    );

    // releasing twice changes nothing
    let twice = release_instances(&clients, ACTOR, released)
        .await
        .expect("second release");
    assert!(
        twice.release[0]
            .actions
            .iter()
            .all(|a| a.outcome == Outcome::AlreadyDone),
        "{:?}",
        twice.release[0].actions
    );
    assert!(
        twice
            .custody
            .iter()
            .filter(|c| c.step == "release-instance")
            .count()
            == 2
    );
}

#[tokio::test]
async fn the_bare_instance_is_contained_with_nothing_to_detach() {
    let moto = Moto::start();
    let estate = moto.seed("bare");
    let clients = moto.clients().await;
    let id = estate.bare.instance_id.as_str();
    let before = observe(&clients, id, None).await;
    let case = contain(&clients, open_case(&moto, full_isolation(), id).await).await;
    system_tests::assert_contained(&case);
    let protection = &case.protection[0];
    assert!(protection.original.auto_scaling_group.is_none());
    assert!(
        protection.original.target_groups.is_empty()
            && protection.original.load_balancers.is_empty()
    );
    let actions: Vec<&str> = protection
        .actions
        .iter()
        .map(|a| a.action.as_str())
        .collect();
    assert!(
        !actions
            .iter()
            .any(|a| a.contains("Auto Scaling") || a.contains("deregister")),
        "{actions:?}"
    );
    let isolation = &case.isolation[0];
    assert_eq!(isolation.interfaces.len(), 1);
    assert!(
        isolation.elastic_ips.is_empty()
            && isolation.instance_profile.is_none()
            && isolation.session_revocation.is_none()
    );
    let isolated = observe(&clients, id, None).await;
    assert_eq!(
        isolated.eni_groups[0].1,
        vec![isolation_group_of(isolation, &estate.vpc_id)]
    );
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(released.release[0].complete);
    assert_eq!(observe(&clients, id, None).await, before);
}

/// `releaseKeepsTerminationProtection`: a release puts back everything but
/// termination protection, which stays on and is said to be kept on purpose.
#[tokio::test]
async fn a_release_can_keep_termination_protection_on_purpose() {
    let moto = Moto::start();
    let estate = moto.seed("keepprotection");
    let clients = moto.clients().await;
    let id = estate.bare.instance_id.as_str();
    let before = observe(&clients, id, None).await;
    assert!(!before.termination_protection);
    let policy = Policy {
        release_keeps_termination_protection: true,
        ..full_isolation()
    };
    let case = contain(&clients, open_case(&moto, policy, id).await).await;
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    let release = &released.release[0];
    assert!(release.complete, "{release:?}");
    assert!(
        release
            .notes
            .iter()
            .any(|n| n.starts_with("kept on purpose: termination protection stays on")),
        "{:?}",
        release.notes
    );
    let after = observe(&clients, id, None).await;
    assert!(after.termination_protection, "kept on");
    assert_eq!(
        Observed {
            termination_protection: false,
            ..after
        },
        before,
        "everything else as it was"
    );
}

#[tokio::test]
async fn dry_run_reports_and_changes_nothing() {
    let moto = Moto::start();
    let estate = moto.seed("dry");
    let clients = moto.clients().await;
    let victim = &estate.victim;
    let before = observe(&clients, &victim.instance_id, Some(&victim.role_name)).await;
    let policy = Policy {
        dry_run: true,
        ..full_isolation()
    };
    let case = contain(
        &clients,
        open_case(&moto, policy, &victim.instance_id).await,
    )
    .await;
    assert!(case.decision.dry_run);
    let all = outcomes(&case);
    assert!(all.iter().any(|(_, o)| *o == Outcome::WouldChange));
    assert!(
        all.iter()
            .all(|(_, o)| matches!(o, Outcome::WouldChange | Outcome::AlreadyDone)),
        "{all:?}"
    );
    assert_eq!(
        observe(&clients, &victim.instance_id, Some(&victim.role_name)).await,
        before
    );
    let groups = clients
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values("ec2-forensics-isolation")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        groups.security_groups().is_empty(),
        "a dry run creates no group"
    );
}

#[tokio::test]
async fn isolate_first_keeps_https_to_the_ssm_endpoints_then_isolates_fully() {
    let moto = Moto::start();
    let estate = moto.seed("iso1st");
    let clients = moto.clients().await;
    let endpoint_group = ssm_endpoints(&clients, &estate.vpc_id).await;
    // The memory upload's way out: an S3 interface endpoint with a group of its own.
    let s3_group = s3_interface_endpoint(&clients, &estate.vpc_id, true).await;
    let policy = Policy {
        acquisition_order: AcquisitionOrder::IsolateFirst,
        ..Policy::default()
    };
    let id = estate.bare.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, policy, id).await).await;
    let isolation = &case.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Acquisition);
    let acquisition_group = isolation.groups[0].acquisition_group_id.clone().unwrap();
    let out = clients
        .ec2
        .describe_security_groups()
        .group_ids(&acquisition_group)
        .send()
        .await
        .unwrap();
    let group = &out.security_groups()[0];
    assert_eq!(group.group_name(), Some("ec2-forensics-acquisition"));
    assert!(group.ip_permissions().is_empty(), "no ingress");
    let egress = group.ip_permissions_egress();
    let mut reached = std::collections::BTreeSet::new();
    for permission in egress {
        assert_eq!(
            (permission.from_port(), permission.to_port()),
            (Some(443), Some(443)),
            "{egress:?}"
        );
        assert!(
            permission.ip_ranges().is_empty() && permission.ipv6_ranges().is_empty(),
            "HTTPS to the endpoints only, not to the internet"
        );
        reached.extend(
            permission
                .user_id_group_pairs()
                .iter()
                .filter_map(|p| p.group_id().map(str::to_owned)),
        );
    }
    assert_eq!(
        reached,
        [endpoint_group.clone(), s3_group.clone()].into(),
        "the SSM endpoints and the S3 interface endpoint, nothing else"
    );

    let full = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("complete isolation");
    let isolation = &full.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Full);
    let groups = observe(&clients, id, None).await.eni_groups;
    assert_eq!(
        groups[0].1,
        vec![isolation_group_of(isolation, &estate.vpc_id)]
    );
    assert_eq!(
        isolation.interfaces[0].original_group_ids,
        estate.bare_groups(),
        "the first run's originals are kept"
    );
}

#[tokio::test]
async fn containment_is_refused_for_an_observed_case_and_a_terminated_instance_is_reported() {
    let moto = Moto::start();
    let estate = moto.seed("term");
    let clients = moto.clients().await;
    let mut case = open_case(&moto, full_isolation(), &estate.bare.instance_id).await;
    case.decision.action = Action::Observe;
    let err = protect_instances(&clients, ACTOR, case.clone())
        .await
        .expect_err("observed case");
    assert_eq!(err.error_type(), "InvalidCase");
    let err = isolate_instances(&clients, ACTOR, case)
        .await
        .expect_err("observed case");
    assert_eq!(err.error_type(), "InvalidCase");

    let case = open_case(&moto, full_isolation(), &estate.peer.instance_id).await;
    clients
        .ec2
        .terminate_instances()
        .instance_ids(&estate.peer.instance_id)
        .send()
        .await
        .unwrap();
    let case = contain(&clients, case).await;
    assert!(case.protection[0].warnings[0].contains("terminated"));
    assert!(case.isolation[0].warnings[0].contains("terminated"));
    assert!(
        case.protection[0].actions.is_empty() && case.isolation[0].actions.is_empty(),
        "nothing is attempted"
    );
}

#[tokio::test]
async fn a_stopped_instance_with_five_enis_has_every_eni_isolated() {
    let moto = Moto::start();
    let estate = moto.seed("five");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let subnet = first_subnet(&clients, &estate.vpc_id).await;
    let image = amazon_image(&clients).await;
    let mut launch = ec2
        .run_instances()
        .image_id(image)
        .instance_type("m5.2xlarge".into())
        .min_count(1)
        .max_count(1);
    for index in 0..5 {
        launch = launch.network_interfaces(
            aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification::builder()
                .device_index(index)
                .subnet_id(&subnet)
                .groups(&estate.victim.security_group_ids[index as usize % 2])
                .build(),
        );
    }
    let id = launch.send().await.unwrap().instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let before = observe(&clients, &id, None).await;
    assert_eq!(before.eni_groups.len(), 5);

    let case = contain(&clients, open_case(&moto, full_isolation(), &id).await).await;
    system_tests::assert_contained(&case);
    let isolation = &case.isolation[0];
    assert_eq!(
        isolation.interfaces.len(),
        5,
        "every ENI, not only the primary"
    );
    let isolation_group = isolation_group_of(isolation, &estate.vpc_id);
    for (eni, groups) in observe(&clients, &id, None).await.eni_groups {
        assert_eq!(groups, vec![isolation_group.clone()], "{eni}");
    }
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(released.release[0].complete);
    assert_eq!(observe(&clients, &id, None).await, before);
}

#[tokio::test]
async fn an_open_group_named_like_the_isolation_group_is_made_exact_before_use() {
    let moto = Moto::start();
    let estate = moto.seed("trap");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    // Left by an earlier failed revoke, or made by someone else: SSH open to the world.
    let trap = create_group(&clients, &estate.vpc_id, "ec2-forensics-isolation").await;
    ec2.authorize_security_group_ingress()
        .group_id(&trap)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rules_of(&clients, &trap).await.len(), 2, "SSH in, all out");

    let id = estate.bare.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, full_isolation(), id).await).await;
    system_tests::assert_contained(&case);
    let isolation = &case.isolation[0];
    assert_eq!(
        isolation_group_of(isolation, &estate.vpc_id),
        trap,
        "the group is reused..."
    );
    assert_eq!(
        rules_of(&clients, &trap).await,
        vec![],
        "...only once it holds no rule"
    );
    let repaired = isolation
        .actions
        .iter()
        .find(|a| {
            a.action
                .starts_with("make group ec2-forensics-isolation exact")
        })
        .expect("the repair is recorded");
    assert_eq!(repaired.outcome, Outcome::Changed);
    assert!(
        repaired.action.contains("revoke 2 stray rule(s)"),
        "{}",
        repaired.action
    );
    assert_eq!(
        observe(&clients, id, None).await.eni_groups[0].1,
        vec![trap]
    );
}

/// Someone's ALLOW (SSH from 10.0.0.0/8) at `number` on the instance's VPC ACL.
async fn allow_ssh_at(ec2: &aws_sdk_ec2::Client, acl: &str, number: i32) {
    ec2.create_network_acl_entry()
        .network_acl_id(acl)
        .rule_number(number)
        .protocol("6")
        .port_range(
            aws_sdk_ec2::types::PortRange::builder()
                .from(22)
                .to(22)
                .build(),
        )
        .rule_action(aws_sdk_ec2::types::RuleAction::Allow)
        .egress(false)
        .cidr_block("10.0.0.0/8")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn network_acl_denies_come_before_any_entry_that_matches_and_release_removes_exactly_them() {
    let moto = Moto::start();
    let estate = moto.seed("acl");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let acl = first_acl(&clients, &estate.vpc_id).await;
    // Someone's own rule at number 5, matching the instance's address: it
    // must stay as it is, and the DENY must come before it.
    allow_ssh_at(ec2, &acl, 5).await;
    let id = estate.bare.instance_id.as_str();
    let before = observe(&clients, id, None).await;
    let case = contain(&clients, open_case(&moto, full_isolation(), id).await).await;
    system_tests::assert_contained(&case);
    let entries = &case.isolation[0].network_acl_entries;
    let mut numbers: Vec<(bool, i32)> = entries.iter().map(|e| (e.egress, e.rule_number)).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        vec![(false, 1), (true, 1)],
        "the lowest free number, below the first entry that matches"
    );
    let isolated = observe(&clients, id, None).await;
    assert_eq!(isolated.acl_denies.len(), 2);
    let rules = ec2
        .describe_network_acls()
        .network_acl_ids(&acl)
        .send()
        .await
        .unwrap();
    let own = rules.network_acls()[0]
        .entries()
        .iter()
        .find(|e| e.rule_number() == Some(5) && e.egress() == Some(false))
        .expect("rule 5 is still there");
    assert_eq!(own.cidr_block(), Some("10.0.0.0/8"));
    assert_eq!(
        own.rule_action(),
        Some(&aws_sdk_ec2::types::RuleAction::Allow)
    );

    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(
        released.release[0].complete,
        "{:?}",
        released.release[0].actions
    );
    let after = observe(&clients, id, None).await;
    assert_eq!(after, before, "exactly the responder's entries are gone");
    let still = ec2
        .describe_network_acls()
        .network_acl_ids(&acl)
        .send()
        .await
        .unwrap();
    assert!(still.network_acls()[0]
        .entries()
        .iter()
        .any(|e| e.rule_number() == Some(5) && e.egress() == Some(false)));
}

/// Network ACLs apply the first entry that matches: an ALLOW at rule 1 for
/// the instance's range lets SSH in whatever DENY follows it. No DENY is made
/// behind it, and the instance is not reported contained.
#[tokio::test]
async fn an_allow_that_matches_the_address_first_leaves_the_instance_not_contained() {
    let moto = Moto::start();
    let estate = moto.seed("shadow");
    let clients = moto.clients().await;
    let acl = first_acl(&clients, &estate.vpc_id).await;
    allow_ssh_at(&clients.ec2, &acl, 1).await;
    let id = estate.bare.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, full_isolation(), id).await).await;
    assert!(!case.is_contained(), "{:?}", case.containment);
    let isolation = &case.isolation[0];
    assert!(!isolation.complete);
    let shadowed: Vec<&playbook::case::ActionRecord> = isolation
        .actions
        .iter()
        .filter(|a| a.error_type.as_deref() == Some("NetworkAclRuleShadowed"))
        .collect();
    assert_eq!(shadowed.len(), 1, "{:?}", isolation.actions);
    assert!(
        isolation.network_acl_entries.iter().all(|e| e.egress),
        "no inbound DENY behind the ALLOW: {:?}",
        isolation.network_acl_entries
    );
}

#[tokio::test]
async fn an_eni_in_a_second_vpc_is_isolated_with_that_vpcs_groups() {
    let moto = Moto::start();
    let estate = moto.seed("dual");
    let clients = moto.clients().await;
    let dual = &estate.dual_homed;
    let before = observe(&clients, &dual.instance_id, None).await;
    assert_eq!(before.eni_groups.len(), 2);
    let case = contain(
        &clients,
        open_case(&moto, full_isolation(), &dual.instance_id).await,
    )
    .await;
    system_tests::assert_contained(&case);
    let isolation = &case.isolation[0];
    let first = isolation_group_of(isolation, &estate.vpc_id);
    let second = isolation_group_of(isolation, &dual.second_vpc_id);
    assert_ne!(first, second, "a group belongs to one VPC");
    for (eni, groups) in observe(&clients, &dual.instance_id, None).await.eni_groups {
        let wanted = if eni == dual.second_network_interface_id {
            &second
        } else {
            &first
        };
        assert_eq!(&groups, &vec![wanted.clone()], "{eni}");
    }
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(released.release[0].complete);
    assert_eq!(observe(&clients, &dual.instance_id, None).await, before);
}

#[tokio::test]
async fn an_instance_in_standby_is_detached_and_its_group_can_no_longer_replace_it() {
    let moto = Moto::start();
    let estate = moto.seed("stby");
    let clients = moto.clients().await;
    let id = estate.standby.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, full_isolation(), id).await).await;
    system_tests::assert_contained(&case);
    let protection = &case.protection[0];
    let group = protection
        .original
        .auto_scaling_group
        .as_ref()
        .expect("in the group");
    assert_eq!(group.lifecycle_state.as_deref(), Some("Standby"));
    assert!(
        !group.decremented,
        "a Standby instance is outside the capacity already"
    );
    let exposure = protection.auto_scaling.as_ref().expect("exposure recorded");
    assert!(!exposure.can_terminate_instance, "{}", exposure.reason);
    assert_eq!(observe(&clients, id, None).await.auto_scaling_group, None);
}

#[tokio::test]
async fn in_a_multi_instance_case_one_instance_failing_keeps_the_others_records() {
    let moto = Moto::start();
    let estate = moto.seed("multi");
    let clients = moto.clients().await;
    let bare = estate.bare.instance_id.clone();
    let mut case = open_case(&moto, full_isolation(), &bare).await;
    let gone = "i-0000000000000dead".to_owned();
    case.incident.instance_ids.push(gone.clone());
    let case = contain(&clients, case).await;
    assert!(!case.is_contained(), "one instance is not contained");
    let summary = case.containment.as_ref().unwrap();
    assert!(
        summary.not_contained.iter().any(|n| n.contains(&gone)),
        "{:?}",
        summary.not_contained
    );
    let isolated = record_of(&case.isolation, &bare).expect("the other instance's record is kept");
    assert!(isolated.complete && isolated.verified_at.is_some());
    assert!(record_of(&case.protection, &bare).is_some_and(|p| p.complete));
    assert!(case
        .errors
        .iter()
        .any(|e| e.error_type == "InstanceNotFound" && e.message.contains(&gone)));
}

#[tokio::test]
async fn a_case_at_the_policy_maximum_stays_well_under_the_payload_limit_at_every_state() {
    let moto = Moto::start();
    let estate = moto.seed("wide");
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let policy = full_isolation();
    let image = amazon_image(&clients).await;
    let subnet = first_subnet(&clients, &estate.vpc_id).await;
    let launched = ec2
        .run_instances()
        .image_id(image)
        .instance_type("t3.micro".into())
        .min_count(policy.max_instances as i32)
        .max_count(policy.max_instances as i32)
        .network_interfaces(
            aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&subnet)
                .groups(&estate.victim.security_group_ids[0])
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = launched
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), policy.max_instances);
    let responder = moto.responder(policy).await;
    let request = serde_json::json!({"instanceIds": ids, "reason": "wide", "requestedBy": "tests"});
    let case = triage(&responder, request).await.expect("triage");
    let limit = 256 * 1024;
    let size = |v: &serde_json::Value| serde_json::to_vec(v).unwrap().len();
    let mut sizes = vec![("Triage", size(&serde_json::to_value(&case).unwrap()))];
    let (custody, errors) = (case.custody.len(), case.errors.len());
    let captured = capture_metadata(&responder, case.clone())
        .await
        .expect("capture");
    let protected = protect_instances(&clients, ACTOR, case.clone())
        .await
        .expect("protect");
    let mut parallel = serde_json::to_value(&case).unwrap();
    parallel["branches"] = serde_json::json!([
        captured.branch_output(custody, errors),
        protected.branch_output(custody, errors)
    ]);
    sizes.push(("CaptureAndProtect", size(&parallel)));
    let merged = Case::from_input(parallel).expect("the branches merge");
    assert_eq!(merged.metadata.len(), ids.len());
    assert_eq!(merged.protection.len(), ids.len());
    let isolated = isolate_instances(&clients, ACTOR, merged)
        .await
        .expect("isolate");
    system_tests::assert_contained(&isolated);
    sizes.push((
        "IsolateNetwork",
        size(&serde_json::to_value(&isolated).unwrap()),
    ));
    for (state, bytes) in &sizes {
        println!(
            "{state:<20} {bytes:>7} bytes ({:.0}% of 256 KiB)",
            *bytes as f64 * 100.0 / limit as f64
        );
        assert!(
            *bytes < limit / 2,
            "{state}: {bytes} bytes is not well under 256 KiB"
        );
    }
}

#[tokio::test]
async fn isolate_first_keeps_the_instance_profile_until_the_full_stage() {
    let moto = Moto::start();
    let estate = moto.seed("keep");
    let clients = moto.clients().await;
    ssm_endpoints(&clients, &estate.vpc_id).await;
    let policy = Policy {
        acquisition_order: AcquisitionOrder::IsolateFirst,
        ..Policy::default()
    };
    let victim = &estate.victim;
    let id = victim.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, policy, id).await).await;
    let acquisition = &case.isolation[0];
    assert_eq!(acquisition.stage, IsolationStage::Acquisition);
    assert_eq!(
        case.containment.as_ref().unwrap().stage,
        IsolationStage::Acquisition
    );
    let during = observe(&clients, id, Some(&victim.role_name)).await;
    assert!(
        during.instance_profile.is_some(),
        "the SSM agent keeps its credentials"
    );
    assert!(during.role_policies.is_empty(), "no revocation yet");
    assert!(acquisition.instance_profile.is_none() && acquisition.session_revocation.is_none());

    let full = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("full");
    assert_eq!(full.isolation[0].stage, IsolationStage::Full);
    system_tests::assert_contained(&full);
    let after = observe(&clients, id, Some(&victim.role_name)).await;
    assert_eq!(after.instance_profile, None);
    assert_eq!(
        after.role_policies,
        vec![format!("ec2-forensics-revoke-{id}")]
    );
}

/// Launches `count` instances into the first subnet of the estate's VPC. Each
/// names its primary ENI's groups in a network interface specification: moto
/// 5.2.5 keeps the groups of `SecurityGroupIds` on the primary ENI after
/// ModifyNetworkInterfaceAttribute replaced them (EC2 replaces them).
async fn launch_in_one_subnet(
    clients: &Clients,
    vpc: &str,
    group: &str,
    count: i32,
) -> Vec<String> {
    let subnet = first_subnet(clients, vpc).await;
    let image = amazon_image(clients).await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let out = clients
            .ec2
            .run_instances()
            .image_id(&image)
            .instance_type("t3.micro".into())
            .network_interfaces(
                aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet)
                    .groups(group)
                    .build(),
            )
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .unwrap();
        ids.push(out.instances()[0].instance_id().unwrap().to_owned());
    }
    ids
}

/// `count` instances of one subnet, each with its own case, contained at the
/// same moment (a worm's findings arrive together): every case prepares the
/// VPC's groups and picks ACL numbers from the same reads. Each instance must
/// end contained, its ENIs in the one isolation group, and its own address
/// denied first in both directions.
async fn contain_at_once(count: i32) {
    let moto = Moto::start();
    let estate = moto.seed(&format!("race{count}"));
    let clients = moto.clients().await;
    let ids = launch_in_one_subnet(
        &clients,
        &estate.vpc_id,
        &estate.victim.security_group_ids[0],
        count,
    )
    .await;
    let mut cases = Vec::new();
    for id in &ids {
        cases.push(open_case(&moto, full_isolation(), id).await);
    }
    let contained =
        futures::future::join_all(cases.into_iter().map(|c| contain(&clients, c))).await;
    let acl = first_acl(&clients, &estate.vpc_id).await;
    let entries = clients
        .ec2
        .describe_network_acls()
        .network_acl_ids(&acl)
        .send()
        .await
        .unwrap();
    let entries = entries.network_acls()[0].entries().to_vec();
    let mut groups = std::collections::BTreeSet::new();
    for case in &contained {
        let isolation = &case.isolation[0];
        system_tests::assert_contained(case);
        groups.insert(isolation_group_of(isolation, &estate.vpc_id));
        let described = clients
            .ec2
            .describe_instances()
            .instance_ids(&isolation.instance_id)
            .send()
            .await
            .unwrap();
        let ip = described.reservations()[0].instances()[0]
            .private_ip_address()
            .expect("a private address")
            .to_owned();
        for egress in [false, true] {
            let first = entries
                .iter()
                .filter(|e| e.egress() == Some(egress))
                .filter(|e| {
                    e.cidr_block()
                        .is_some_and(|c| playbook::steps::isolate::acl::cidr_contains(c, &ip))
                })
                .min_by_key(|e| e.rule_number())
                .expect("an entry matches the address");
            assert_eq!(
                (first.rule_action(), first.cidr_block()),
                (
                    Some(&aws_sdk_ec2::types::RuleAction::Deny),
                    Some(format!("{ip}/32").as_str())
                ),
                "{ip} egress={egress}: the first entry that matches is its own DENY"
            );
        }
    }
    assert_eq!(
        groups.len(),
        1,
        "one isolation group for the VPC: {groups:?}"
    );
    let group = groups.into_iter().next().unwrap();
    assert!(
        rules_of(&clients, &group).await.is_empty(),
        "the isolation group holds no rule"
    );
}

#[tokio::test]
async fn two_instances_of_one_subnet_contained_at_the_same_moment_are_both_contained() {
    contain_at_once(2).await;
}

#[tokio::test]
async fn ten_instances_of_one_subnet_contained_at_the_same_moment_are_all_contained() {
    contain_at_once(10).await;
}

/// A responder on the estate's forensic side, with its lease table.
async fn leasing_responder(moto: &Moto, estate: &system_tests::Estate) -> playbook::aws::Responder {
    playbook::aws::Responder {
        config: estate.forensic.config(),
        ..moto.responder(full_isolation()).await
    }
}

/// Ten findings about one instance at the same moment (a worm, or GuardDuty
/// repeating itself): exactly one case responds; every other finding only
/// observes, names the case that holds the instance, and is recorded on that
/// case's lease.
#[tokio::test]
async fn ten_findings_about_one_instance_at_once_open_one_responding_case() {
    let moto = Moto::start();
    let estate = moto.seed("lease");
    let responder = leasing_responder(&moto, &estate).await;
    let id = estate.bare.instance_id.clone();
    let findings: Vec<serde_json::Value> = (0..10)
        .map(|n| system_tests::guardduty_finding(&id, &format!("finding-{n}")))
        .collect();
    let cases =
        futures::future::join_all(findings.into_iter().map(|f| triage(&responder, f))).await;
    let cases: Vec<Case> = cases.into_iter().map(|c| c.expect("triaged")).collect();
    let responding: Vec<&Case> = cases
        .iter()
        .filter(|c| c.decision.action == Action::Respond)
        .collect();
    assert_eq!(
        responding.len(),
        1,
        "{:?}",
        cases
            .iter()
            .map(|c| (&c.case_id, c.decision.action))
            .collect::<Vec<_>>()
    );
    let holder = &responding[0].case_id;
    for case in cases.iter().filter(|c| &c.case_id != holder) {
        assert_eq!(case.decision.action, Action::Observe);
        assert!(
            case.decision.reason.contains(holder.as_str()),
            "{}",
            case.decision.reason
        );
    }
    let lease = clients_item(&moto, &estate, &id).await;
    assert_eq!(lease["caseId"].as_s().unwrap(), holder);
    assert_eq!(lease["laterFindings"].as_l().unwrap().len(), 9);
    // Sealing puts them in the holder's own record.
    let mut sealed = responding[0].clone();
    playbook::steps::lease::note_later_findings(&responder, &mut sealed).await;
    let noted = sealed.custody.last().unwrap();
    assert!(
        noted.action.starts_with("9 later finding(s)"),
        "{}",
        noted.action
    );
    assert_eq!(noted.outputs["laterFindings"].as_array().unwrap().len(), 9);
}

/// The lease item of an instance, as the table holds it.
async fn clients_item(
    moto: &Moto,
    estate: &system_tests::Estate,
    instance_id: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    let clients = moto.clients().await;
    clients
        .dynamodb
        .get_item()
        .table_name(&estate.forensic.lease_table)
        .key(
            "instance",
            aws_sdk_dynamodb::types::AttributeValue::S(playbook::steps::lease::lease_key(
                "123456789012",
                "us-east-1",
                instance_id,
            )),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
        .unwrap_or_default()
}

/// Case B isolated an instance outside the lease (a responder with no lease
/// table); case A holds it. Releasing B must not un-isolate it: the release
/// is refused and recorded. A's own release puts everything back and frees
/// the lease, after which a new finding responds again.
#[tokio::test]
async fn release_never_un_isolates_an_instance_another_open_case_holds() {
    let moto = Moto::start();
    let estate = moto.seed("hold");
    let clients = moto.clients().await;
    let responder = leasing_responder(&moto, &estate).await;
    let id = estate.bare.instance_id.clone();
    let before = observe(&clients, &id, None).await;

    let other = contain(&clients, open_case(&moto, full_isolation(), &id).await).await;
    system_tests::assert_contained(&other);
    let held = triage(&responder, system_tests::guardduty_finding(&id, "holder"))
        .await
        .unwrap();
    assert_eq!(held.decision.action, Action::Respond);
    let mut held = contain(&clients, held).await;
    playbook::steps::lease::quarantine_for(&responder, &mut held).await;
    assert!(held.errors.is_empty(), "{:?}", held.errors);
    let lease = clients_item(&moto, &estate, &id).await;
    assert_eq!(lease["phase"].as_s().unwrap(), "quarantined");
    assert!(
        !lease.contains_key("expiresAt"),
        "a quarantined lease does not run out"
    );

    let isolated = observe(&clients, &id, None).await;
    let refused = playbook::steps::release::release_with_leases(&responder, &clients, ACTOR, other)
        .await
        .unwrap();
    let record = &refused.release[0];
    assert!(!record.complete);
    assert_eq!(
        record.actions[0].error_type.as_deref(),
        Some("HeldByAnotherCase")
    );
    assert!(record.notes[0].contains(&held.case_id));
    assert_eq!(
        observe(&clients, &id, None).await,
        isolated,
        "nothing was released"
    );

    let released = playbook::steps::release::release_with_leases(&responder, &clients, ACTOR, held)
        .await
        .unwrap();
    assert!(
        released.release[0].complete,
        "{:?}",
        released.release[0].actions
    );
    assert!(
        clients_item(&moto, &estate, &id).await.is_empty(),
        "the lease is freed"
    );
    assert_eq!(
        observe(&clients, &id, None).await.eni_groups,
        isolated.eni_groups,
        "A found the instance isolated already and puts back what it found"
    );
    let other = playbook::steps::release::release_with_leases(&responder, &clients, ACTOR, refused)
        .await
        .unwrap();
    assert!(other.release[0].complete, "{:?}", other.release[0].actions);
    assert_eq!(
        observe(&clients, &id, None).await.eni_groups,
        before.eni_groups
    );
    let again = triage(&responder, system_tests::guardduty_finding(&id, "later"))
        .await
        .unwrap();
    assert_eq!(
        again.decision.action,
        Action::Respond,
        "{}",
        again.decision.reason
    );
}

/// The instances SSM lists as Online now.
async fn online(clients: &Clients, id: &str) -> bool {
    clients
        .ssm
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(id)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .instance_information_list()
        .iter()
        .any(|i| i.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online))
}

/// The bench's SSM agent is Online only as SSM would see it: full isolation
/// (no group lets HTTPS out, the profile detached) takes the victim offline,
/// so a command sent after isolation could not reach it here either.
#[tokio::test]
async fn full_isolation_takes_the_ssm_agent_offline() {
    let moto = Moto::start();
    let estate = moto.seed("agent");
    let clients = moto.clients().await;
    let id = estate.victim.instance_id.clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(
        online(&clients, &id).await,
        "registered, with its role and a way out"
    );
    let case = contain(&clients, open_case(&moto, full_isolation(), &id).await).await;
    system_tests::assert_contained(&case);
    assert!(
        !online(&clients, &id).await,
        "isolated: the agent cannot reach SSM"
    );
}

/// Anyone with `ec2:CreateTags` on the instance can write its tags. A retried
/// isolation (its first answer lost after the ENIs moved) must restore the
/// groups the case's lease kept before the move, never groups named by a tag:
/// the attacker tags the instance with the retried step's old tag convention,
/// naming a group that lets everything in, and release must still put back
/// the true originals.
#[tokio::test]
async fn a_retried_isolation_restores_the_groups_its_lease_kept_not_a_forged_tag() {
    let moto = Moto::start();
    let estate = moto.seed("forged");
    let responder = leasing_responder(&moto, &estate).await;
    let clients = &responder.clients;
    let id = estate.bare.instance_id.clone();
    let before = observe(clients, &id, None).await.eni_groups;
    let case = triage(&responder, system_tests::guardduty_finding(&id, "forged"))
        .await
        .expect("triaged");
    assert_eq!(case.decision.action, Action::Respond);
    let case = protect_instances(clients, ACTOR, case)
        .await
        .expect("protect");
    // The first attempt runs to the end; its answer is lost.
    let first = playbook::steps::lease::isolate_holding(&responder, clients, ACTOR, case.clone())
        .await
        .expect("first attempt");
    system_tests::assert_contained(&first);
    let open = create_group(clients, &estate.vpc_id, "attacker-open").await;
    let forged: Vec<aws_sdk_ec2::types::Tag> = before
        .iter()
        .map(|(eni, _)| {
            aws_sdk_ec2::types::Tag::builder()
                .key(format!("ec2-forensics:original-groups:{eni}"))
                .value(&open)
                .build()
        })
        .collect();
    clients
        .ec2
        .create_tags()
        .resources(&id)
        .set_tags(Some(forged))
        .send()
        .await
        .unwrap();
    // The retry, on the same input.
    let retried = playbook::steps::lease::isolate_holding(&responder, clients, ACTOR, case)
        .await
        .expect("retry");
    system_tests::assert_contained(&retried);
    let kept: Vec<(String, Vec<String>)> = retried.isolation[0]
        .interfaces
        .iter()
        .map(|e| (e.network_interface_id.clone(), e.original_group_ids.clone()))
        .collect();
    assert_eq!(
        kept, before,
        "the lease's originals, not the tag's, not the isolation group"
    );
    assert!(
        retried.isolation[0]
            .warnings
            .iter()
            .any(|w| w.contains("the case's lease kept")),
        "{:?}",
        retried.isolation[0].warnings
    );
    let released = release_instances(clients, ACTOR, retried)
        .await
        .expect("release");
    assert!(
        released.release[0].complete,
        "{:?}",
        released.release[0].actions
    );
    assert_eq!(observe(clients, &id, None).await.eni_groups, before);
}

/// A quarantined lease stands for a contained instance. Once the instance is
/// out of the holder's isolation group (restored by hand, here) after the
/// holder isolated it fully, a new finding must not be turned into an
/// observation by that lease, even while the holder's execution still runs
/// (hours of disk evidence): the new case takes it over, with what the holder
/// kept (the original groups), says so in its custody, and responds. While
/// the instance is still isolated, a new finding only observes.
#[tokio::test]
async fn a_quarantined_lease_is_taken_over_once_its_instance_is_no_longer_isolated() {
    let moto = Moto::start();
    let estate = moto.seed("stale-q");
    let responder = leasing_responder(&moto, &estate).await;
    let clients = &responder.clients;
    let id = estate.bare.instance_id.clone();
    let machine = state_machine(&clients.sfn).await;
    let holder_execution = start_execution(&clients.sfn, &machine, "holder").await;
    let mine = start_execution(&clients.sfn, &machine, "mine").await;
    let before = observe(clients, &id, None).await.eni_groups;
    let holder = triage(&responder, in_execution(&id, "first", &holder_execution))
        .await
        .expect("triaged");
    assert_eq!(holder.decision.action, Action::Respond);
    let holder = protect_instances(clients, ACTOR, holder)
        .await
        .expect("protect");
    let holder = playbook::steps::lease::isolate_holding(&responder, clients, ACTOR, holder)
        .await
        .expect("isolate");
    system_tests::assert_contained(&holder);
    let lease = clients_item(&moto, &estate, &id).await;
    assert_eq!(lease["phase"].as_s().unwrap(), "quarantined");

    let while_isolated = triage(&responder, in_execution(&id, "second", &mine))
        .await
        .expect("triaged");
    assert_eq!(while_isolated.decision.action, Action::Observe);

    // Someone puts the ENIs back by hand; the holder's case is never released.
    for (eni, groups) in &before {
        clients
            .ec2
            .modify_network_interface_attribute()
            .network_interface_id(eni)
            .set_groups(Some(groups.clone()))
            .send()
            .await
            .unwrap();
    }
    let next = triage(&responder, in_execution(&id, "fourth", &mine))
        .await
        .expect("triaged");
    assert_eq!(
        next.decision.action,
        Action::Respond,
        "{}",
        next.decision.reason
    );
    let lease = took_over(&moto, &estate, &id, &next, &holder.case_id, "not contained").await;
    assert!(
        lease.contains_key("originalGroups"),
        "the holder's originals carry over: {lease:?}"
    );
}

/// A finding about `instance_id` as the state machine hands it to Triage:
/// with the execution that runs it.
fn in_execution(instance_id: &str, finding: &str, execution: &str) -> serde_json::Value {
    serde_json::json!({
        "event": system_tests::guardduty_finding(instance_id, finding),
        "execution": execution,
    })
}

/// `next` responds after taking over `from`'s lease of `instance_id` (its
/// custody says so, and why), and the lease is `next`'s now; the lease item.
async fn took_over(
    moto: &Moto,
    estate: &system_tests::Estate,
    instance_id: &str,
    next: &Case,
    from: &str,
    why: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    assert_eq!(
        next.decision.action,
        Action::Respond,
        "{}",
        next.decision.reason
    );
    let took = next
        .custody
        .iter()
        .find(|e| e.action.starts_with("took over stale leases"))
        .expect("the takeover is in the custody record");
    assert!(took.action.contains(from), "{}", took.action);
    assert!(took.action.contains(why), "{}", took.action);
    let lease = clients_item(moto, estate, instance_id).await;
    assert_eq!(lease["caseId"].as_s().unwrap(), &next.case_id);
    lease
}

/// A state machine in the emulator whose executions wait an hour.
async fn state_machine(sfn: &aws_sdk_sfn::Client) -> String {
    sfn.create_state_machine()
        .name("forensics")
        .definition(r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/states")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned()
}

/// Starts an execution named `name`; its ARN.
async fn start_execution(sfn: &aws_sdk_sfn::Client, machine: &str, name: &str) -> String {
    sfn.start_execution()
        .state_machine_arn(machine)
        .name(name)
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_owned()
}

/// A responding lease whose holder's execution has ended (it died before
/// isolating) must not block the next finding for the lease's two days;
/// one whose execution still runs does.
#[tokio::test]
async fn a_responding_lease_whose_execution_ended_is_taken_over() {
    let moto = Moto::start();
    let estate = moto.seed("stale-r");
    let responder = leasing_responder(&moto, &estate).await;
    let sfn = &responder.clients.sfn;
    let machine = state_machine(sfn).await;
    let (running, dead, mine) = (
        start_execution(sfn, &machine, "running").await,
        start_execution(sfn, &machine, "dead").await,
        start_execution(sfn, &machine, "mine").await,
    );
    sfn.stop_execution()
        .execution_arn(&dead)
        .send()
        .await
        .unwrap();
    let live = triage(
        &responder,
        in_execution(&estate.bare.instance_id, "live", &running),
    )
    .await
    .expect("triaged");
    assert_eq!(live.decision.action, Action::Respond);
    let blocked = triage(
        &responder,
        in_execution(&estate.bare.instance_id, "blocked", &mine),
    )
    .await
    .expect("triaged");
    assert_eq!(
        blocked.decision.action,
        Action::Observe,
        "its holder's execution still runs"
    );

    // The same with a holder whose execution was stopped before it isolated.
    let id = estate.peer.instance_id.clone();
    let died = triage(&responder, in_execution(&id, "died", &dead))
        .await
        .expect("triaged");
    assert_eq!(died.decision.action, Action::Respond);
    let next = triage(&responder, in_execution(&id, "next", &mine))
        .await
        .expect("triaged");
    assert_eq!(
        next.decision.action,
        Action::Respond,
        "{}",
        next.decision.reason
    );
    let lease = took_over(&moto, &estate, &id, &next, &died.case_id, "ABORTED").await;
    assert_eq!(lease["execution"].as_s().unwrap(), &mine);
}

/// `acquisitionOrder: auto`, the default. With no SSM endpoints in the VPC,
/// isolating first would cut the memory capture off: the first isolate step
/// changes nothing on the instance, prepares the groups (so the move at the
/// deadline is one wave) and plans memory first until `memoryDeadlineSeconds`;
/// the next one isolates fully and records how long detection to isolation
/// took. With the endpoints, auto isolates down to them at once.
#[tokio::test]
async fn auto_isolates_first_where_ssm_endpoints_exist_and_else_plans_memory_first_to_a_deadline() {
    let moto = Moto::start();
    let estate = moto.seed("auto");
    let clients = moto.clients().await;
    let id = estate.bare.instance_id.as_str();
    let before = observe(&clients, id, None).await;
    let case = contain(&clients, open_case(&moto, Policy::default(), id).await).await;
    let plan = case
        .acquisition_plan
        .clone()
        .expect("memory first was planned");
    assert_eq!(plan.order, AcquisitionOrder::MemoryFirst);
    assert!(
        plan.reason
            .contains("lacks an SSM or S3 interface endpoint"),
        "{}",
        plan.reason
    );
    assert_eq!(
        playbook::case::custody::seconds_between(&plan.planned_at, &plan.deadline),
        Some(120)
    );
    assert!(
        case.isolation.is_empty() && case.containment.is_none(),
        "nothing isolated yet"
    );
    // The ACL rule numbers are chosen now, while memory is captured...
    let prepared_entries = plan.prepared_acl_entries.clone();
    assert!(
        !prepared_entries.is_empty() && prepared_entries.iter().all(|e| e.cidr.ends_with("/32")),
        "{prepared_entries:?}"
    );
    assert_eq!(
        observe(&clients, id, None).await.eni_groups,
        before.eni_groups,
        "the instance is untouched"
    );
    let prepared = clients
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .values(&estate.vpc_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("group-name")
                .values("ec2-forensics-isolation")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        prepared.security_groups().len(),
        1,
        "the isolation group is ready"
    );

    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    system_tests::assert_contained(&case);
    let isolation = &case.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Full);
    // ...and kept at the deadline, nothing having changed on the ACLs since.
    let key = |e: &playbook::case::isolation::AclEntryRecord| {
        (
            e.network_acl_id.clone(),
            e.rule_number,
            e.egress,
            e.cidr.clone(),
        )
    };
    let mut placed: Vec<_> = isolation.network_acl_entries.iter().map(key).collect();
    let mut chosen: Vec<_> = prepared_entries.iter().map(key).collect();
    placed.sort();
    chosen.sort();
    assert_eq!(placed, chosen, "the deadline placed the prepared entries");
    assert!(isolation.detected_at.is_some());
    let opened = isolation.seconds_from_case_opened.expect("timed");
    assert!(
        (0..600).contains(&opened),
        "{opened} s after the case opened"
    );
    assert!(isolation.seconds_to_isolation.is_some());

    // The SSM agent's endpoints without S3's: the upload would be cut off.
    ssm_endpoints(&clients, &estate.vpc_id).await;
    let other = estate.peer.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, Policy::default(), other).await).await;
    let plan = case.acquisition_plan.expect("memory first again");
    assert_eq!(plan.deferred, vec![other.to_owned()]);
    assert!(case.isolation.is_empty());

    // An S3 interface endpoint without private DNS: the pre-signed URLs
    // would still go to S3's public addresses, which the stage blocks.
    s3_interface_endpoint(&clients, &estate.vpc_id, false).await;
    let fourth = estate.standby.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, Policy::default(), fourth).await).await;
    assert_eq!(
        case.acquisition_plan.map(|p| p.deferred),
        Some(vec![fourth.to_owned()])
    );

    // Every endpoint: isolated down to them at once, memory until the deadline.
    s3_interface_endpoint(&clients, &estate.vpc_id, true).await;
    let third = estate.victim.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, Policy::default(), third).await).await;
    let plan = case
        .acquisition_plan
        .clone()
        .expect("a deadline for the acquisition stage");
    assert_eq!(plan.order, AcquisitionOrder::IsolateFirst);
    assert!(plan.deferred.is_empty());
    assert_eq!(case.isolation[0].stage, IsolationStage::Acquisition);
}

/// One case, two instances: one whose VPC has every endpoint is isolated down
/// to them at once; the other, with an ENI in a VPC without them, is left as
/// it is until the deadline, not held back with the first (nor the first with
/// it). The next isolation isolates both fully.
#[tokio::test]
async fn auto_treats_each_instance_by_its_own_vpcs() {
    let moto = Moto::start();
    let estate = moto.seed("mixed");
    let clients = moto.clients().await;
    ssm_endpoints(&clients, &estate.vpc_id).await;
    s3_interface_endpoint(&clients, &estate.vpc_id, true).await;
    let (with, without) = (
        estate.peer.instance_id.as_str(),
        estate.dual_homed.instance_id.as_str(),
    );
    let untouched = observe(&clients, without, None).await.eni_groups;
    let responder = moto.responder(Policy::default()).await;
    let request = serde_json::json!({"instanceIds": [with, without], "reason": "test", "requestedBy": "tests"});
    let case = triage(&responder, request).await.expect("a case of two");
    let case = contain(&clients, case).await;
    let plan = case.acquisition_plan.clone().expect("planned");
    assert_eq!(plan.deferred, vec![without.to_owned()]);
    let first = record_of(&case.isolation, with).expect("isolated at once");
    assert_eq!(first.stage, IsolationStage::Acquisition);
    assert!(record_of(&case.isolation, without).is_none());
    assert_eq!(observe(&clients, without, None).await.eni_groups, untouched);
    assert!(!case.is_contained());

    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    system_tests::assert_contained(&case);
    for id in [with, without] {
        assert_eq!(
            record_of(&case.isolation, id).map(|i| i.stage),
            Some(IsolationStage::Full)
        );
    }
}

/// An S3 interface endpoint in `vpc`, with a group of its own (its id) and
/// private DNS on or off.
async fn s3_interface_endpoint(clients: &Clients, vpc: &str, private_dns: bool) -> String {
    let group = create_group(clients, vpc, &format!("s3-endpoint-{private_dns}")).await;
    clients
        .ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .service_name("com.amazonaws.us-east-1.s3")
        .security_group_ids(&group)
        .private_dns_enabled(private_dns)
        .send()
        .await
        .unwrap();
    group
}

/// Originals recorded as the all-open untracking group (read between the two
/// ENI moves of another run) are never restored: that would open the
/// instance wider than before the incident. The release says so and leaves
/// the ENI where it is.
#[tokio::test]
async fn release_never_restores_the_untracking_group() {
    let moto = Moto::start();
    let estate = moto.seed("untracked");
    let clients = moto.clients().await;
    let id = estate.bare.instance_id.clone();
    let mut case = contain(&clients, open_case(&moto, full_isolation(), &id).await).await;
    system_tests::assert_contained(&case);
    let untracking = case.isolation[0].groups[0]
        .untracking_group_id
        .clone()
        .expect("the untracking group");
    case.isolation[0].interfaces[0].original_group_ids = vec![untracking];
    let isolated = observe(&clients, &id, None).await.eni_groups;
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    let record = &released.release[0];
    assert!(!record.complete);
    assert!(
        record
            .actions
            .iter()
            .any(|a| a.error_type.as_deref() == Some("OriginalIsUntrackingGroup")),
        "{:?}",
        record.actions
    );
    assert_eq!(observe(&clients, &id, None).await.eni_groups, isolated);
}
