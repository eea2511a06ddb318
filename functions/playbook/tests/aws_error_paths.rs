//! Error paths of AWS calls, with aws-smithy-mocks: throttling that outlasts the
//! SDK's retries, AccessDenied on one action, unknown instances. Each ends as
//! the typed error the state machine's Retry and Catch expect, or as a record in
//! the Case, never as a panic or a silent gap.

use aws_sdk_ec2::operation::describe_instance_attribute::DescribeInstanceAttributeOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeOutput;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, Instance, InstanceAttributeName, InstanceState,
    InstanceStateName, Reservation,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use playbook::actions::Outcome;
use playbook::capture_metadata::capture_instance;
use playbook::protect::protect_instance;
use playbook::responder::Clients;

const INSTANCE: &str = "i-0123456789abcdef0";

/// An EC2 query-protocol error body, as EC2 sends it.
fn ec2_error(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
         <Message>{code} (from the mock)</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    )
}

/// DescribeInstances answering every call with the EC2 error `code`.
fn describe_instances_failing(status: u16, code: &str) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .http_status(status, Some(ec2_error(code)))
        .repeatedly()
        .build()
}

fn running_instance() -> DescribeInstancesOutput {
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
                        .build(),
                )
                .build(),
        )
        .build()
}

/// Clients whose EC2 calls follow `rules`; other services answer "nothing here".
fn clients(rules: &[&Rule]) -> Clients {
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
    let no_asg = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_instances)
        .then_output(|| aws_sdk_autoscaling::operation::describe_auto_scaling_instances::DescribeAutoScalingInstancesOutput::builder().build());
    let no_tgs = mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_groups)
        .then_output(|| aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput::builder().build());
    let no_elbs = mock!(aws_sdk_elasticloadbalancing::Client::describe_load_balancers)
        .then_output(|| aws_sdk_elasticloadbalancing::operation::describe_load_balancers::DescribeLoadBalancersOutput::builder().build());
    Clients {
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
        iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &[]),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &[]),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[]),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]),
    }
}

#[tokio::test]
async fn throttling_that_outlasts_the_sdk_retries_is_a_throttled_error() {
    let throttled = describe_instances_failing(503, "RequestLimitExceeded");
    let clients = clients(&[&throttled]);
    let err = capture_instance(&clients.ec2, "us-east-1", INSTANCE)
        .await
        .expect_err("throttled");
    assert_eq!(err.error_type(), "Throttled", "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("DescribeInstances"), "{err}");
}

#[tokio::test]
async fn an_unknown_instance_is_instance_not_found_naming_it() {
    let missing = describe_instances_failing(400, "InvalidInstanceID.NotFound");
    let clients = clients(&[&missing]);
    let err = capture_instance(&clients.ec2, "us-east-1", INSTANCE)
        .await
        .expect_err("not found");
    assert_eq!(err.error_type(), "InstanceNotFound");
    assert!(err.to_string().contains(INSTANCE), "{err}");
}

#[tokio::test]
async fn access_denied_on_describe_is_access_denied() {
    let denied = describe_instances_failing(403, "UnauthorizedOperation");
    let clients = clients(&[&denied]);
    let err = capture_instance(&clients.ec2, "us-east-1", INSTANCE)
        .await
        .expect_err("denied");
    assert_eq!(err.error_type(), "AccessDenied");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn access_denied_on_one_protection_is_recorded_and_the_rest_still_runs() {
    let describe = mock!(aws_sdk_ec2::Client::describe_instances).then_output(running_instance);
    let termination = mock!(aws_sdk_ec2::Client::describe_instance_attribute)
        .match_requests(|r| r.attribute() == Some(&InstanceAttributeName::DisableApiTermination))
        .then_output(|| {
            DescribeInstanceAttributeOutput::builder()
                .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
                .build()
        });
    let shutdown = mock!(aws_sdk_ec2::Client::describe_instance_attribute)
        .match_requests(|r| {
            r.attribute() == Some(&InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        })
        .then_output(|| {
            DescribeInstanceAttributeOutput::builder()
                .instance_initiated_shutdown_behavior(
                    AttributeValue::builder().value("terminate").build(),
                )
                .build()
        });
    let deny_termination_change = mock!(aws_sdk_ec2::Client::modify_instance_attribute)
        .match_requests(|r| r.disable_api_termination().is_some())
        .sequence()
        .http_status(403, Some(ec2_error("UnauthorizedOperation")))
        .repeatedly()
        .build();
    let allow_other_changes = mock!(aws_sdk_ec2::Client::modify_instance_attribute)
        .match_requests(|r| r.disable_api_termination().is_none())
        .then_output(|| ModifyInstanceAttributeOutput::builder().build());
    let clients = clients(&[
        &describe,
        &termination,
        &shutdown,
        &deny_termination_change,
        &allow_other_changes,
    ]);

    let protection = protect_instance(&clients, INSTANCE, false, true, None)
        .await
        .expect("a denied change is recorded, not raised");
    assert!(!protection.complete);
    let outcome = |action: &str| {
        protection
            .actions
            .iter()
            .find(|a| a.action == action)
            .unwrap_or_else(|| panic!("{action} recorded: {:?}", protection.actions))
            .clone()
    };
    let denied = outcome("enable termination protection");
    assert_eq!(denied.outcome, Outcome::Failed);
    assert_eq!(denied.error_type.as_deref(), Some("AccessDenied"));
    assert_eq!(
        outcome("set shutdown behaviour to stop").outcome,
        Outcome::Changed,
        "the rest still runs"
    );
    assert_eq!(
        protection.original.shutdown_behavior.as_deref(),
        Some("terminate")
    );
    let errors = playbook::actions::failures("protect-instance", &protection.actions);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].not_done.as_deref(),
        Some(&*format!("enable termination protection on {INSTANCE}"))
    );
}

#[tokio::test]
async fn a_read_failure_before_any_change_fails_the_step_so_it_can_be_retried() {
    let describe = mock!(aws_sdk_ec2::Client::describe_instances).then_output(running_instance);
    let throttled = mock!(aws_sdk_ec2::Client::describe_instance_attribute)
        .sequence()
        .http_status(503, Some(ec2_error("RequestLimitExceeded")))
        .repeatedly()
        .build();
    let never = mock!(aws_sdk_ec2::Client::modify_instance_attribute)
        .then_output(|| panic!("nothing may change when the originals could not be read"));
    let clients = clients(&[&describe, &throttled, &never]);
    let err = protect_instance(&clients, INSTANCE, false, true, None)
        .await
        .expect_err("throttled read");
    assert_eq!(err.error_type(), "Throttled");
    assert_eq!(never.num_calls(), 0);
}
