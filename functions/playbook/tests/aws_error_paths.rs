//! Error paths of AWS calls, with aws-smithy-mocks: throttling that then
//! succeeds (attempts counted), throttling that outlasts every retry, an
//! ENI move that fails halfway and is rolled back, AccessDenied on each
//! isolation action, unknown instances. Each ends as the typed error the state
//! machine's Retry and Catch expect, or as a record in the Case: never a panic,
//! never a silent gap, never `Contained` for what was not read back.

use aws_sdk_ec2::operation::describe_addresses::DescribeAddressesOutput;
use aws_sdk_ec2::operation::describe_iam_instance_profile_associations::DescribeIamInstanceProfileAssociationsOutput;
use aws_sdk_ec2::operation::describe_instance_attribute::DescribeInstanceAttributeOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_network_acls::DescribeNetworkAclsOutput;
use aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput;
use aws_sdk_ec2::operation::describe_security_group_rules::DescribeSecurityGroupRulesOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::types::{
    Address, AttributeBooleanValue, AttributeValue, GroupIdentifier, IamInstanceProfile,
    IamInstanceProfileAssociation, IamInstanceProfileAssociationState, Instance,
    InstanceAttributeName, InstanceNetworkInterface, InstancePrivateIpAddress, InstanceState,
    InstanceStateName, IpPermission, IpRange, Ipv6Range, NetworkAcl, NetworkAclAssociation,
    NetworkInterface, Reservation, SecurityGroup,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

mod common;
use playbook::aws::retry::{retry_config, timeout_config};
use playbook::aws::Clients;
use playbook::case::{Case, Outcome};
use playbook::findings::case_id;
use playbook::steps::capture_metadata::capture_instance;
use playbook::steps::isolate::isolate_instances;
use playbook::steps::protect::protect_instances;

const INSTANCE: &str = "i-0123456789abcdef0";
const ENI: &str = "eni-1";
const ORIGINAL_GROUP: &str = "sg-web";
const ISOLATION_GROUP: &str = "sg-iso";
const UNTRACKING_GROUP: &str = "sg-untrack";
const ACTOR: &str = "arn:aws:iam::123456789012:user/tests";

/// An EC2 query-protocol error body, as EC2 sends it.
fn ec2_error(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
         <Message>{code} (from the mock)</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    )
}

/// An IAM (and other query services') error body.
fn query_error(code: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} (from the mock)</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
    )
}

fn instance() -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder()
        .reservations(
            Reservation::builder()
                .owner_id("123456789012")
                .instances(
                    Instance::builder()
                        .instance_id(INSTANCE)
                        .vpc_id("vpc-1")
                        .state(
                            InstanceState::builder()
                                .name(InstanceStateName::Running)
                                .build(),
                        )
                        .network_interfaces(
                            InstanceNetworkInterface::builder()
                                .network_interface_id(ENI)
                                .vpc_id("vpc-1")
                                .subnet_id("subnet-1")
                                .groups(GroupIdentifier::builder().group_id(ORIGINAL_GROUP).build())
                                .private_ip_addresses(
                                    InstancePrivateIpAddress::builder()
                                        .private_ip_address("10.0.0.5")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build()
}

fn all_traffic() -> IpPermission {
    IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
        .build()
}

fn groups() -> DescribeSecurityGroupsOutput {
    DescribeSecurityGroupsOutput::builder()
        .security_groups(
            SecurityGroup::builder()
                .group_id(ISOLATION_GROUP)
                .group_name("ec2-forensics-isolation")
                .vpc_id("vpc-1")
                .build(),
        )
        .security_groups(
            SecurityGroup::builder()
                .group_id(UNTRACKING_GROUP)
                .group_name("ec2-forensics-untracking")
                .vpc_id("vpc-1")
                .ip_permissions(all_traffic())
                .ip_permissions_egress(all_traffic())
                .build(),
        )
        .build()
}

fn eip(associated: bool) -> DescribeAddressesOutput {
    let out = DescribeAddressesOutput::builder();
    if !associated {
        return out.build();
    }
    out.addresses(
        Address::builder()
            .allocation_id("eipalloc-1")
            .association_id("eipassoc-1")
            .network_interface_id(ENI)
            .public_ip("203.0.113.10")
            .build(),
    )
    .build()
}

fn profile(associated: bool) -> DescribeIamInstanceProfileAssociationsOutput {
    let out = DescribeIamInstanceProfileAssociationsOutput::builder();
    if !associated {
        return out.build();
    }
    out.iam_instance_profile_associations(
        IamInstanceProfileAssociation::builder()
            .association_id("iip-assoc-1")
            .instance_id(INSTANCE)
            .state(IamInstanceProfileAssociationState::Associated)
            .iam_instance_profile(
                IamInstanceProfile::builder()
                    .arn("arn:aws:iam::123456789012:instance-profile/web")
                    .build(),
            )
            .build(),
    )
    .build()
}

/// The operations isolation changes the estate with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    MoveEni,
    DisassociateAddress,
    DisassociateProfile,
    RevokeSessions,
    Tag,
    AclEntry,
}

const CHANGES: [Change; 6] = [
    Change::MoveEni,
    Change::DisassociateAddress,
    Change::DisassociateProfile,
    Change::RevokeSessions,
    Change::Tag,
    Change::AclEntry,
];

/// A healthy estate for one instance; `deny` makes one change AccessDenied,
/// `first` rules take precedence over the estate's own.
fn clients(deny: Option<Change>, first: Vec<Rule>) -> Clients {
    let denied = move |change: Change| deny == Some(change);
    let ec2_denied = || Some(ec2_error("UnauthorizedOperation"));
    let mut rules = first;
    rules.push(mock!(aws_sdk_ec2::Client::describe_instances).then_output(instance));
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_instance_attribute)
            .match_requests(|r| {
                r.attribute() == Some(&InstanceAttributeName::DisableApiTermination)
            })
            .then_output(|| {
                DescribeInstanceAttributeOutput::builder()
                    .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
                    .build()
            }),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_instance_attribute).then_output(|| {
            DescribeInstanceAttributeOutput::builder()
                .instance_initiated_shutdown_behavior(
                    AttributeValue::builder().value("terminate").build(),
                )
                .build()
        }),
    );
    rules.push(mock!(aws_sdk_ec2::Client::modify_instance_attribute).then_output(|| {
        aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeOutput::builder().build()
    }));
    rules.push(mock!(aws_sdk_ec2::Client::describe_security_groups).then_output(groups));
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_volumes).then_output(|| {
            aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput::builder().build()
        }),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::get_console_output).then_output(|| {
            aws_sdk_ec2::operation::get_console_output::GetConsoleOutputOutput::builder().build()
        }),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::get_console_screenshot)
            .sequence()
            .http_status(400, Some(ec2_error("UnsupportedOperation")))
            .repeatedly()
            .build(),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::create_security_group)
            .sequence()
            .http_status(400, Some(ec2_error("InvalidGroup.Duplicate")))
            .repeatedly()
            .build(),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_addresses)
            .sequence()
            .output(|| eip(true))
            .output(move || eip(denied(Change::DisassociateAddress)))
            .repeatedly()
            .build(),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_iam_instance_profile_associations)
            .sequence()
            .output(|| profile(true))
            .output(move || profile(denied(Change::DisassociateProfile)))
            .repeatedly()
            .build(),
    );
    // The ACL before the change (as AWS reports a subnet's usual ACL: ALLOW
    // all at 100, the catch-all DENY, each direction), then as read back:
    // the instance's DENY entries at the numbers the plan took (1, each
    // direction).
    let network_acl = |denies: bool| {
        let entry = |number: i32, egress: bool, cidr: &str, action| {
            aws_sdk_ec2::types::NetworkAclEntry::builder()
                .rule_number(number)
                .egress(egress)
                .cidr_block(cidr)
                .rule_action(action)
                .protocol("-1")
                .build()
        };
        let deny = |egress: bool| {
            entry(
                1,
                egress,
                "10.0.0.5/32",
                aws_sdk_ec2::types::RuleAction::Deny,
            )
        };
        let usual = |egress: bool| {
            [
                entry(
                    100,
                    egress,
                    "0.0.0.0/0",
                    aws_sdk_ec2::types::RuleAction::Allow,
                ),
                entry(
                    32767,
                    egress,
                    "0.0.0.0/0",
                    aws_sdk_ec2::types::RuleAction::Deny,
                ),
            ]
        };
        let mut entries: Vec<_> = usual(false).into_iter().chain(usual(true)).collect();
        if denies {
            entries.extend([deny(false), deny(true)]);
        }
        DescribeNetworkAclsOutput::builder()
            .network_acls(
                NetworkAcl::builder()
                    .network_acl_id("acl-1")
                    .vpc_id("vpc-1")
                    .associations(
                        NetworkAclAssociation::builder()
                            .subnet_id("subnet-1")
                            .build(),
                    )
                    .set_entries(Some(entries))
                    .build(),
            )
            .build()
    };
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_network_acls)
            .sequence()
            .output(move || network_acl(false))
            .output(move || network_acl(true))
            .repeatedly()
            .build(),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_network_interfaces).then_output(move || {
            let group = if denied(Change::MoveEni) {
                ORIGINAL_GROUP
            } else {
                ISOLATION_GROUP
            };
            DescribeNetworkInterfacesOutput::builder()
                .network_interfaces(
                    NetworkInterface::builder()
                        .network_interface_id(ENI)
                        .groups(GroupIdentifier::builder().group_id(group).build())
                        .build(),
                )
                .build()
        }),
    );
    rules.push(
        mock!(aws_sdk_ec2::Client::describe_security_group_rules)
            .then_output(|| DescribeSecurityGroupRulesOutput::builder().build()),
    );
    let change = |c: Change| {
        if denied(c) {
            Some(403)
        } else {
            None
        }
    };
    macro_rules! change_rule {
        ($op:path, $c:expr, $ok:expr) => {
            match change($c) {
                Some(status) => mock!($op)
                    .sequence()
                    .http_status(status, ec2_denied())
                    .repeatedly()
                    .build(),
                None => mock!($op).then_output($ok),
            }
        };
    }
    rules.push(change_rule!(aws_sdk_ec2::Client::modify_network_interface_attribute, Change::MoveEni, || {
        aws_sdk_ec2::operation::modify_network_interface_attribute::ModifyNetworkInterfaceAttributeOutput::builder().build()
    }));
    rules.push(change_rule!(
        aws_sdk_ec2::Client::disassociate_address,
        Change::DisassociateAddress,
        || {
            aws_sdk_ec2::operation::disassociate_address::DisassociateAddressOutput::builder()
                .build()
        }
    ));
    rules.push(change_rule!(aws_sdk_ec2::Client::disassociate_iam_instance_profile, Change::DisassociateProfile, || {
        aws_sdk_ec2::operation::disassociate_iam_instance_profile::DisassociateIamInstanceProfileOutput::builder().build()
    }));
    rules.push(
        mock!(aws_sdk_ec2::Client::associate_address).then_output(|| {
            aws_sdk_ec2::operation::associate_address::AssociateAddressOutput::builder().build()
        }),
    );
    rules.push(mock!(aws_sdk_ec2::Client::associate_iam_instance_profile).then_output(|| {
        aws_sdk_ec2::operation::associate_iam_instance_profile::AssociateIamInstanceProfileOutput::builder().build()
    }));
    rules.push(mock!(aws_sdk_ec2::Client::delete_network_acl_entry).then_output(|| {
        aws_sdk_ec2::operation::delete_network_acl_entry::DeleteNetworkAclEntryOutput::builder().build()
    }));
    rules.push(change_rule!(
        aws_sdk_ec2::Client::create_tags,
        Change::Tag,
        || { aws_sdk_ec2::operation::create_tags::CreateTagsOutput::builder().build() }
    ));
    rules.push(change_rule!(
        aws_sdk_ec2::Client::create_network_acl_entry,
        Change::AclEntry,
        || {
            aws_sdk_ec2::operation::create_network_acl_entry::CreateNetworkAclEntryOutput::builder()
                .build()
        }
    ));
    let refs: Vec<&Rule> = rules.iter().collect();
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &refs, |c| c
        .retry_config(retry_config())
        .timeout_config(timeout_config()));

    let get_profile = mock!(aws_sdk_iam::Client::get_instance_profile).then_output(|| {
        aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileOutput::builder()
            .instance_profile(
                aws_sdk_iam::types::InstanceProfile::builder()
                    .instance_profile_name("web")
                    .instance_profile_id("AIPA1")
                    .arn("arn:aws:iam::123456789012:instance-profile/web")
                    .path("/")
                    .create_date(aws_smithy_types::DateTime::from_secs(0))
                    .roles(
                        aws_sdk_iam::types::Role::builder()
                            .role_name("web-role")
                            .role_id("AROA1")
                            .arn("arn:aws:iam::123456789012:role/web-role")
                            .path("/")
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .expect("a role"),
                    )
                    .build()
                    .expect("a profile"),
            )
            .build()
    });
    let put_policy = if denied(Change::RevokeSessions) {
        mock!(aws_sdk_iam::Client::put_role_policy)
            .sequence()
            .http_status(403, Some(query_error("AccessDenied")))
            .repeatedly()
            .build()
    } else {
        mock!(aws_sdk_iam::Client::put_role_policy).then_output(|| {
            aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput::builder().build()
        })
    };
    let policies = mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
        aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput::builder()
            .policy_names(format!("ec2-forensics-revoke-{INSTANCE}"))
            .build()
            .expect("a policy list")
    });
    let delete_policy = mock!(aws_sdk_iam::Client::delete_role_policy).then_output(|| {
        aws_sdk_iam::operation::delete_role_policy::DeleteRolePolicyOutput::builder().build()
    });
    let no_asg = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_instances)
        .then_output(|| aws_sdk_autoscaling::operation::describe_auto_scaling_instances::DescribeAutoScalingInstancesOutput::builder().build());
    let no_tgs = mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_groups)
        .then_output(|| aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput::builder().build());
    let no_elbs = mock!(aws_sdk_elasticloadbalancing::Client::describe_load_balancers)
        .then_output(|| aws_sdk_elasticloadbalancing::operation::describe_load_balancers::DescribeLoadBalancersOutput::builder().build());
    let r53 = dns_firewall_rules();
    let r53_refs: Vec<&Rule> = r53.iter().collect();
    Clients {
        cloudtrail: mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, &[]),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[]),
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
        securityhub: mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, &[]),
        route53resolver: mock_client!(aws_sdk_route53resolver, RuleMode::MatchAny, &r53_refs),
        ec2,
        autoscaling: mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, &[&no_asg]),
        elb: mock_client!(
            aws_sdk_elasticloadbalancing,
            RuleMode::MatchAny,
            &[&no_elbs]
        ),
        elbv2: mock_client!(
            aws_sdk_elasticloadbalancingv2,
            RuleMode::MatchAny,
            &[&no_tgs]
        ),
        guardduty: mock_client!(aws_sdk_guardduty, RuleMode::MatchAny, &[]),
        sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &[]),
        iam: mock_client!(
            aws_sdk_iam,
            RuleMode::MatchAny,
            &[&get_profile, &put_policy, &policies, &delete_policy]
        ),
        kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, &[]),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[]),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &[]),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, &[]),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[]),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]),
    }
}

/// DNS Firewall with one rule group already associated to the VPC at priority 100.
fn dns_firewall_rules() -> Vec<Rule> {
    dns_firewall_rules_with(mock!(aws_sdk_route53resolver::Client::disassociate_firewall_rule_group).then_output(|| {
        aws_sdk_route53resolver::operation::disassociate_firewall_rule_group::DisassociateFirewallRuleGroupOutput::builder().build()
    }))
}

/// The same, with `disassociate` answering the release.
fn dns_firewall_rules_with(disassociate: Rule) -> Vec<Rule> {
    use aws_sdk_route53resolver::operation as op;
    use aws_sdk_route53resolver::types::{
        FirewallDomainList, FirewallRuleGroup, FirewallRuleGroupAssociation,
        FirewallRuleGroupAssociationStatus,
    };
    vec![
        mock!(aws_sdk_route53resolver::Client::create_firewall_domain_list).then_output(|| {
            op::create_firewall_domain_list::CreateFirewallDomainListOutput::builder()
                .firewall_domain_list(FirewallDomainList::builder().id("rslvr-fdl-1").build())
                .build()
        }),
        mock!(aws_sdk_route53resolver::Client::create_firewall_rule_group).then_output(|| {
            op::create_firewall_rule_group::CreateFirewallRuleGroupOutput::builder()
                .firewall_rule_group(FirewallRuleGroup::builder().id("rslvr-frg-1").build())
                .build()
        }),
        mock!(aws_sdk_route53resolver::Client::list_firewall_rule_group_associations).then_output(|| {
            op::list_firewall_rule_group_associations::ListFirewallRuleGroupAssociationsOutput::builder()
                .firewall_rule_group_associations(
                    FirewallRuleGroupAssociation::builder()
                        .id("rslvr-frgassoc-theirs")
                        .firewall_rule_group_id("rslvr-frg-theirs")
                        .vpc_id("vpc-1")
                        .priority(100)
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_route53resolver::Client::update_firewall_domains).then_output(|| {
            op::update_firewall_domains::UpdateFirewallDomainsOutput::builder().build()
        }),
        mock!(aws_sdk_route53resolver::Client::create_firewall_rule).then_output(|| {
            op::create_firewall_rule::CreateFirewallRuleOutput::builder().build()
        }),
        mock!(aws_sdk_route53resolver::Client::associate_firewall_rule_group)
            .match_requests(|r| r.priority() == Some(101) && r.vpc_id() == Some("vpc-1"))
            .then_output(|| {
                op::associate_firewall_rule_group::AssociateFirewallRuleGroupOutput::builder()
                    .firewall_rule_group_association(
                        FirewallRuleGroupAssociation::builder()
                            .id("rslvr-frgassoc-1")
                            .status(FirewallRuleGroupAssociationStatus::Updating)
                            .priority(101)
                            .build(),
                    )
                    .build()
            }),
        disassociate,
    ]
}

/// A case whose isolation is full at once (the isolate step as the state
/// machine calls it once memory is done; `auto` reads VPC endpoints first).
fn case() -> Case {
    let mut case = common::responding_case(
        |incident| case_id(incident.detected_by, &incident.finding_id),
        serde_json::json!({
            "source": "Manual", "findingId": "manual:test", "findingType": "Manual", "title": "t",
            "severity": 10.0, "account": "123456789012", "region": "us-east-1",
            "instanceIds": [INSTANCE], "detectedBy": "Manual", "rawReference": "test"
        }),
    );
    case.policy.acquisition_order = playbook::case::policy::AcquisitionOrder::MemoryFirst;
    case
}

async fn contain(clients: &Clients) -> Case {
    let case = protect_instances(clients, ACTOR, case())
        .await
        .expect("protect");
    isolate_instances(clients, ACTOR, case)
        .await
        .expect("isolate")
}

#[tokio::test]
async fn a_healthy_estate_is_contained_and_verified() {
    let case = contain(&clients(None, Vec::new())).await;
    let isolation = &case.isolation[0];
    assert!(isolation.complete, "{:#?}", isolation);
    assert!(isolation.verified_at.is_some());
    assert!(case.is_contained(), "{:?}", case.containment);
    assert_eq!(
        isolation.network_acl_entries.len(),
        2,
        "inbound and outbound deny for 10.0.0.5"
    );
}

#[tokio::test]
async fn a_throttled_call_is_retried_until_it_succeeds() {
    let throttled_twice = mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .http_status(503, Some(ec2_error("RequestLimitExceeded")))
        .times(2)
        .output(instance)
        .repeatedly()
        .build();
    let clients = clients(None, vec![throttled_twice.clone()]);
    let metadata = capture_instance(&clients, "us-east-1", INSTANCE)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(metadata.instance_id, INSTANCE);
    assert_eq!(
        throttled_twice.num_calls(),
        3,
        "two throttled attempts, then success"
    );
}

#[tokio::test]
async fn a_throttled_read_during_isolation_is_retried_not_fatal() {
    let throttled = mock!(aws_sdk_ec2::Client::describe_security_groups)
        .sequence()
        .http_status(400, Some(ec2_error("RequestLimitExceeded")))
        .times(3)
        .output(groups)
        .repeatedly()
        .build();
    let case = contain(&clients(None, vec![throttled.clone()])).await;
    assert!(case.is_contained(), "{:?}", case.containment);
    assert_eq!(throttled.num_calls(), 4);
}

#[tokio::test]
async fn throttling_that_outlasts_every_retry_is_a_throttled_error() {
    let always = mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .http_status(503, Some(ec2_error("RequestLimitExceeded")))
        .repeatedly()
        .build();
    let clients = clients(None, vec![always.clone()]);
    let err = capture_instance(&clients, "us-east-1", INSTANCE)
        .await
        .expect_err("throttled");
    assert_eq!(err.error_type(), "Throttled", "{err}");
    assert!(err.is_transient());
    assert_eq!(
        always.num_calls(),
        playbook::aws::retry::MAX_ATTEMPTS as usize
    );
    let err = protect_instances(&clients, ACTOR, case())
        .await
        .expect_err("every instance's reads throttled: the step fails, to be retried");
    assert_eq!(err.error_type(), "Throttled");
}

#[tokio::test]
async fn a_move_that_fails_halfway_puts_the_original_groups_back() {
    let to_isolation = mock!(aws_sdk_ec2::Client::modify_network_interface_attribute)
        .match_requests(|r| r.groups() == [ISOLATION_GROUP])
        .sequence()
        .http_status(403, Some(ec2_error("UnauthorizedOperation")))
        .repeatedly()
        .build();
    let rollback = mock!(aws_sdk_ec2::Client::modify_network_interface_attribute)
        .match_requests(|r| r.groups() == [ORIGINAL_GROUP])
        .then_output(|| {
            aws_sdk_ec2::operation::modify_network_interface_attribute::ModifyNetworkInterfaceAttributeOutput::builder().build()
        });
    let case = contain(&clients(None, vec![to_isolation.clone(), rollback.clone()])).await;
    let isolation = &case.isolation[0];
    let moved = |name: &str| {
        isolation
            .actions
            .iter()
            .find(|a| a.action == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", isolation.actions))
            .clone()
    };
    assert_eq!(
        moved("move ENI to the untracking group (ends connection tracking)").outcome,
        Outcome::Changed
    );
    let failed = moved("move ENI to its isolation group");
    assert_eq!(failed.outcome, Outcome::Failed);
    assert_eq!(failed.error_type.as_deref(), Some("AccessDenied"));
    assert!(failed
        .detail
        .unwrap()
        .contains("original groups were put back"));
    assert_eq!(
        moved("put the ENI's original groups back").outcome,
        Outcome::Changed
    );
    assert_eq!(
        rollback.num_calls(),
        1,
        "the original groups were put back once"
    );
    assert!(!isolation.complete);
    assert!(isolation.verified_at.is_none());
    assert!(!case.is_contained());
    assert!(
        case.errors.iter().any(|e| e.error_type == "NotContained"),
        "{:?}",
        case.errors
    );
}

#[tokio::test]
async fn access_denied_on_each_isolation_action_is_recorded_and_never_contained() {
    let names = [
        (
            Change::MoveEni,
            "move ENI to the untracking group (ends connection tracking)",
        ),
        (Change::DisassociateAddress, "disassociate Elastic IP"),
        (Change::DisassociateProfile, "disassociate instance profile"),
        (
            Change::RevokeSessions,
            "deny the instance's role sessions issued before isolation",
        ),
        (Change::Tag, "tag instance as quarantined"),
        (Change::AclEntry, "deny 10.0.0.5/32 in network ACL"),
    ];
    for change in CHANGES {
        let name = names.iter().find(|(c, _)| *c == change).unwrap().1;
        let case = contain(&clients(Some(change), Vec::new())).await;
        let isolation = &case.isolation[0];
        let denied: Vec<_> = isolation
            .actions
            .iter()
            .filter(|a| a.outcome == Outcome::Failed)
            .collect();
        assert!(!denied.is_empty(), "{change:?}: {:?}", isolation.actions);
        assert!(
            denied
                .iter()
                .all(|a| a.action == name && a.error_type.as_deref() == Some("AccessDenied")),
            "{change:?}: only {name} fails: {denied:?}"
        );
        assert!(
            isolation
                .actions
                .iter()
                .filter(|a| a.action != name)
                .all(|a| a.is_done()),
            "{change:?}: the rest still runs: {:?}",
            isolation.actions
        );
        assert!(!isolation.complete, "{change:?}");
        assert!(!case.is_contained(), "{change:?}");
        assert!(
            case.errors.iter().any(|e| e.error_type == "AccessDenied"),
            "{change:?}: {:?}",
            case.errors
        );
    }
}

#[tokio::test]
async fn an_unknown_instance_is_instance_not_found_naming_it() {
    let missing = mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .http_status(400, Some(ec2_error("InvalidInstanceID.NotFound")))
        .repeatedly()
        .build();
    let clients = clients(None, vec![missing]);
    let err = capture_instance(&clients, "us-east-1", INSTANCE)
        .await
        .expect_err("not found");
    assert_eq!(err.error_type(), "InstanceNotFound");
    assert!(err.to_string().contains(INSTANCE), "{err}");
    let case = isolate_instances(&clients, ACTOR, case())
        .await
        .expect("recorded per instance");
    assert!(case
        .errors
        .iter()
        .any(|e| e.error_type == "InstanceNotFound"));
    assert!(!case.is_contained());
}

fn dns_case(domain: &str) -> Case {
    let mut case = case();
    case.policy.block_finding_domain = true;
    case.incident.domain = Some(domain.into());
    case
}

#[tokio::test]
async fn the_finding_domain_is_blocked_with_dns_firewall_at_the_lowest_free_priority() {
    let clients = clients(None, Vec::new());
    let case = protect_instances(&clients, ACTOR, dns_case("pool.minexmr.example"))
        .await
        .expect("protect");
    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    let isolation = &case.isolation[0];
    let block = isolation.dns_firewall.first().expect("a block is recorded");
    assert_eq!(block.vpc_id, "vpc-1");
    assert_eq!(
        block.domains,
        ["pool.minexmr.example", "*.pool.minexmr.example"]
    );
    assert_eq!(block.priority, Some(101), "100 is another rule group's");
    assert_eq!(block.association_id.as_deref(), Some("rslvr-frgassoc-1"));
    let action = isolation
        .actions
        .iter()
        .find(|a| a.action.starts_with("block pool.minexmr.example"))
        .expect("the block is an action");
    assert_eq!(action.outcome, Outcome::Changed);
    assert!(case.is_contained(), "{:?}", case.containment);
}

#[tokio::test]
async fn an_aws_domain_is_never_blocked_and_the_case_says_why() {
    let clients = clients(None, Vec::new());
    let case = protect_instances(&clients, ACTOR, dns_case("ssm.us-east-1.amazonaws.com"))
        .await
        .expect("protect");
    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    let isolation = &case.isolation[0];
    assert!(isolation.dns_firewall.is_empty());
    let action = isolation
        .actions
        .iter()
        .find(|a| a.action.starts_with("block ssm.us-east-1.amazonaws.com"))
        .expect("the refusal is recorded");
    assert_eq!(action.error_type.as_deref(), Some("DomainNotBlockable"));
    assert!(action.detail.as_deref().unwrap().contains("AWS itself"));
    assert!(!case.is_contained(), "the policy's block was not made");
}

#[tokio::test]
async fn a_target_group_scan_that_stays_throttled_is_recorded_and_the_rest_is_protected() {
    let mut clients = clients(None, Vec::new());
    let throttled = mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_groups)
        .sequence()
        .http_status(400, Some(query_error("Throttling")))
        .repeatedly()
        .build();
    clients.elbv2 = mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        &[&throttled],
        |c| c
            .retry_config(retry_config())
            .timeout_config(timeout_config())
    );
    let case = protect_instances(&clients, ACTOR, case())
        .await
        .expect("the scan failure is recorded, not raised");
    let protection = &case.protection[0];
    let scan = protection
        .actions
        .iter()
        .find(|a| a.action == "find the instance's target-group registrations")
        .expect("the failed scan is an action");
    assert_eq!(scan.error_type.as_deref(), Some("Throttled"));
    assert!(protection
        .actions
        .iter()
        .any(|a| a.action == "enable termination protection" && a.is_done()));
    assert!(!protection.complete);
    assert_eq!(
        throttled.num_calls(),
        playbook::aws::retry::MAX_ATTEMPTS as usize
    );
    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    assert!(
        case.isolation[0].complete,
        "isolation does not depend on the scan"
    );
    assert!(!case.is_contained(), "protection is incomplete");
}

#[tokio::test]
async fn a_group_created_a_moment_ago_is_retried_until_it_is_visible() {
    let created = mock!(aws_sdk_ec2::Client::create_security_group)
        .match_requests(|r| r.group_name() == Some("ec2-forensics-untracking"))
        .then_output(|| {
            aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupOutput::builder()
                .group_id("sg-new")
                .build()
        });
    let only_isolation = mock!(aws_sdk_ec2::Client::describe_security_groups).then_output(|| {
        DescribeSecurityGroupsOutput::builder()
            .security_groups(
                SecurityGroup::builder()
                    .group_id(ISOLATION_GROUP)
                    .group_name("ec2-forensics-isolation")
                    .vpc_id("vpc-1")
                    .build(),
            )
            .build()
    });
    let not_yet = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .sequence()
        .http_status(400, Some(ec2_error("InvalidGroup.NotFound")))
        .times(2)
        .output(|| {
            aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput::builder().build()
        })
        .repeatedly()
        .build();
    let egress = mock!(aws_sdk_ec2::Client::authorize_security_group_egress).then_output(|| {
        aws_sdk_ec2::operation::authorize_security_group_egress::AuthorizeSecurityGroupEgressOutput::builder().build()
    });
    let clients = clients(
        None,
        vec![created.clone(), only_isolation, not_yet.clone(), egress],
    );
    let case = contain(&clients).await;
    assert_eq!(created.num_calls(), 1);
    assert_eq!(
        not_yet.num_calls(),
        3,
        "two 'not found' answers, then the rules are set"
    );
    let isolation = &case.isolation[0];
    assert!(isolation
        .actions
        .iter()
        .any(|a| a.action == "set the rules of new group ec2-forensics-untracking" && a.is_done()));
    assert_eq!(
        isolation.groups[0].untracking_group_id.as_deref(),
        Some("sg-new")
    );
    assert!(case.is_contained(), "{:?}", case.containment);
}

#[tokio::test]
async fn a_responder_that_may_not_create_groups_uses_the_verified_ones_it_finds() {
    let denied = mock!(aws_sdk_ec2::Client::create_security_group)
        .sequence()
        .http_status(403, Some(ec2_error("UnauthorizedOperation")))
        .repeatedly()
        .build();
    let case = contain(&clients(None, vec![denied.clone()])).await;
    assert_eq!(
        denied.num_calls(),
        0,
        "the groups the lookup found are used: no creation is tried"
    );
    assert!(
        case.isolation[0].actions.iter().all(|a| a.is_done()),
        "{:?}",
        case.isolation[0].actions
    );
    assert!(case.is_contained(), "{:?}", case.containment);
}

#[tokio::test]
async fn release_ends_the_dns_firewall_block_and_a_gone_association_is_already_done() {
    use playbook::steps::release::release_instances;
    let clients = clients(None, Vec::new());
    let case = protect_instances(&clients, ACTOR, dns_case("pool.minexmr.example"))
        .await
        .expect("protect");
    let case = isolate_instances(&clients, ACTOR, case)
        .await
        .expect("isolate");
    let released = release_instances(&clients, ACTOR, case.clone())
        .await
        .expect("release");
    let action = "end the DNS Firewall block of the finding's domain";
    let ended = released.release[0]
        .actions
        .iter()
        .find(|a| a.action == action)
        .expect("the block is ended");
    assert_eq!(ended.outcome, Outcome::Changed);

    let mut gone = clients;
    let not_found = mock!(aws_sdk_route53resolver::Client::disassociate_firewall_rule_group)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"ResourceNotFoundException","message":"no such association"}"#.into(),
            ),
        )
        .repeatedly()
        .build();
    let rules = dns_firewall_rules_with(not_found);
    let refs: Vec<&Rule> = rules.iter().collect();
    gone.route53resolver = mock_client!(aws_sdk_route53resolver, RuleMode::MatchAny, &refs);
    let again = release_instances(&gone, ACTOR, case)
        .await
        .expect("release");
    let ended = again.release[0]
        .actions
        .iter()
        .find(|a| a.action == action)
        .expect("recorded");
    assert_eq!(ended.outcome, Outcome::AlreadyDone, "{ended:?}");
}
