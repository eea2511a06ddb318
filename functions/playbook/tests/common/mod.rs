//! What the aws-smithy-mocks tests share. Each test crate uses part of it.
#![allow(dead_code)]

#[path = "../../src/steps/history_events.rs"]
pub mod history_events;

use aws_smithy_mocks::{mock_client, RuleMode};
use playbook::aws::{Clients, Config, Identity, Responder};
use playbook::case::{Action, Case, Decision, Incident, Policy};

/// Clients that answer nothing: a test sets the ones its step calls
/// (`Clients { ec2, ..quiet_clients() }`); any other call fails loudly.
pub fn quiet_clients() -> Clients {
    Clients {
        cloudtrail: mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, &[]),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[]),
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[]),
        autoscaling: mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, &[]),
        elb: mock_client!(aws_sdk_elasticloadbalancing, RuleMode::MatchAny, &[]),
        elbv2: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, &[]),
        guardduty: mock_client!(aws_sdk_guardduty, RuleMode::MatchAny, &[]),
        sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &[]),
        iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &[]),
        kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, &[]),
        route53resolver: mock_client!(aws_sdk_route53resolver, RuleMode::MatchAny, &[]),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[]),
        securityhub: mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, &[]),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &[]),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, &[]),
        ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[]),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]),
    }
}

/// A responder in account 123456789012, us-east-1, acting as the role
/// `role` (its Lambda session), with `clients` and `config`, the default
/// policy and no state machine.
pub fn responder(clients: Clients, role: &str, config: Config) -> Responder {
    Responder {
        clients,
        region: "us-east-1".into(),
        identity: Identity {
            actor: format!("arn:aws:sts::123456789012:assumed-role/{role}/lambda"),
            account: "123456789012".into(),
        },
        allowed_accounts: vec!["123456789012".into()],
        policy: Policy::default(),
        state_machine_arn: None,
        bulk_state_machine_arn: None,
        config,
    }
}

/// A case the policy decided to respond to, opened by triage for `incident`
/// (the normalised finding, as JSON).
pub fn responding_case(
    case_id: impl FnOnce(&Incident) -> String,
    incident: serde_json::Value,
) -> Case {
    let incident: Incident = serde_json::from_value(incident).expect("an incident");
    let opened = playbook::case::custody::entry(
        "triage",
        "arn:aws:iam::123456789012:user/tests",
        "opened",
        &[],
        serde_json::Value::Null,
        serde_json::Value::Null,
        None,
    );
    Case::open(
        case_id(&incident),
        incident,
        Decision {
            action: Action::Respond,
            reason: "test".into(),
            dry_run: false,
            approval_timeout_seconds: None,
            classification: None,
        },
        Policy::default(),
        opened,
    )
}
