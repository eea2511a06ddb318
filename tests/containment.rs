//! protect-instance, isolate-network and release-instance against the moto
//! server on the seeded estate: every attribute after each step, repeat runs,
//! the bare instance, dry run, isolate-first, and refusals.

use aws_sdk_ec2::types::{Filter, InstanceAttributeName, VpcEndpointType};
use playbook::case::Outcome;
use playbook::case::{Action, Case};
use playbook::case::IsolationStage;
use playbook::steps::isolate::isolate_instances;
use playbook::policy::{AcquisitionOrder, Policy};
use playbook::steps::protect::protect_instances;
use playbook::steps::release::release_instances;
use playbook::aws::Clients;
use playbook::steps::triage::triage;
use system_tests::{Moto, Victim};

const ACTOR: &str = "arn:aws:iam::123456789012:user/test-responder";

/// Everything containment may change on an instance, as EC2 and friends report it now.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    termination_protection: bool,
    shutdown_behavior: String,
    delete_on_termination: Vec<(String, bool)>,
    eni_groups: Vec<(String, Vec<String>)>,
    elastic_ips: Vec<(String, Option<String>)>,
    instance_profile: Option<String>,
    auto_scaling_group: Option<String>,
    target_groups: Vec<(String, Option<i32>)>,
    load_balancers: Vec<String>,
    role_policies: Vec<String>,
}

async fn observe(clients: &Clients, id: &str, role: Option<&str>) -> Observed {
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
            if d.target().and_then(|t| t.id()) == Some(id) {
                target_groups.push((arn.to_owned(), d.target().and_then(|t| t.port())));
            }
        }
    }
    target_groups.sort();
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
    }
}

async fn open_case(moto: &Moto, policy: Policy, instance_id: &str) -> Case {
    let responder = moto.responder(policy).await;
    let request =
        serde_json::json!({"instanceId": instance_id, "reason": "test", "requestedBy": "tests"});
    triage(&responder, request)
        .await
        .expect("a manual request opens a case")
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

async fn group_rules(clients: &Clients, group_id: &str) -> (usize, usize) {
    let out = clients
        .ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .unwrap();
    let group = &out.security_groups()[0];
    (
        group.ip_permissions().len(),
        group.ip_permissions_egress().len(),
    )
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
    let case = open_case(&moto, Policy::default(), id).await;
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
        .map(|t| (t.target_group_arn.clone(), t.port))
        .collect();
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
    assert!(case.is_contained());
    let isolation_group = isolation
        .isolation_group_id
        .clone()
        .expect("isolation group");
    let untracking_group = isolation
        .untracking_group_id
        .clone()
        .expect("untracking group");
    assert_eq!(
        group_rules(&clients, &isolation_group).await,
        (0, 0),
        "isolation group: no ingress, no egress"
    );
    assert_eq!(
        group_rules(&clients, &untracking_group).await,
        (1, 1),
        "untracking group: all traffic both ways"
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
        isolation
            .warnings
            .iter()
            .any(|w| w.contains(&estate.peer.instance_id)),
        "the shared instance profile is warned about: {:?}",
        isolation.warnings
    );
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
    assert_eq!(after, before, "release restores the original configuration");

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
    let case = contain(&clients, open_case(&moto, Policy::default(), id).await).await;
    assert!(case.is_contained(), "{:?}", case.errors);
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
        vec![isolation.isolation_group_id.clone().unwrap()]
    );
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(released.release[0].complete);
    assert_eq!(observe(&clients, id, None).await, before);
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
        ..Policy::default()
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
    let endpoint_group = clients
        .ec2
        .create_security_group()
        .group_name("ssm-endpoints")
        .description("SSM interface endpoints")
        .vpc_id(&estate.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    for service in ["ssm", "ssmmessages", "ec2messages"] {
        clients
            .ec2
            .create_vpc_endpoint()
            .vpc_id(&estate.vpc_id)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.us-east-1.{service}"))
            .security_group_ids(&endpoint_group)
            .send()
            .await
            .unwrap();
    }
    let policy = Policy {
        acquisition_order: AcquisitionOrder::IsolateFirst,
        ..Policy::default()
    };
    let id = estate.bare.instance_id.as_str();
    let case = contain(&clients, open_case(&moto, policy, id).await).await;
    let isolation = &case.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Acquisition);
    let acquisition_group = isolation.isolation_group_id.clone().unwrap();
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
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!(
        (egress[0].from_port(), egress[0].to_port()),
        (Some(443), Some(443))
    );
    assert_eq!(
        egress[0].user_id_group_pairs()[0].group_id(),
        Some(endpoint_group.as_str())
    );
    assert!(
        egress[0].ip_ranges().is_empty(),
        "HTTPS to the endpoints only, not to the internet"
    );

    let full = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("complete isolation");
    let isolation = &full.isolation[0];
    assert_eq!(isolation.stage, IsolationStage::Full);
    let groups = observe(&clients, id, None).await.eni_groups;
    assert_eq!(
        groups[0].1,
        vec![isolation.isolation_group_id.clone().unwrap()]
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
    let mut case = open_case(&moto, Policy::default(), &estate.bare.instance_id).await;
    case.decision.action = Action::Observe;
    let err = protect_instances(&clients, ACTOR, case.clone())
        .await
        .expect_err("observed case");
    assert_eq!(err.error_type(), "InvalidCase");
    let err = isolate_instances(&clients, ACTOR, case)
        .await
        .expect_err("observed case");
    assert_eq!(err.error_type(), "InvalidCase");

    let case = open_case(&moto, Policy::default(), &estate.peer.instance_id).await;
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
    let subnet = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .values(&estate.vpc_id)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_owned();
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_owned();
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

    let case = contain(&clients, open_case(&moto, Policy::default(), &id).await).await;
    assert!(case.is_contained(), "{:?}", case.errors);
    let isolation = &case.isolation[0];
    assert_eq!(
        isolation.interfaces.len(),
        5,
        "every ENI, not only the primary"
    );
    let isolation_group = isolation.isolation_group_id.clone().unwrap();
    for (eni, groups) in observe(&clients, &id, None).await.eni_groups {
        assert_eq!(groups, vec![isolation_group.clone()], "{eni}");
    }
    let released = release_instances(&clients, ACTOR, case)
        .await
        .expect("release");
    assert!(released.release[0].complete);
    assert_eq!(observe(&clients, &id, None).await, before);
}
