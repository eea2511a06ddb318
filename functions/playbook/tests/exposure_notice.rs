//! An instance only exposed to outside activity is observed, and when the
//! policy names a topic a person is told, with the port and the source as the
//! finding reported them; a failed notice is recorded and changes nothing else.
//! Nothing but SNS may be called: every other client answers nothing.

use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};

mod common;
use playbook::aws::{Clients, Config, Identity, Responder};
use playbook::case::{Action, Case, Indication, Policy};
use playbook::steps::triage::{open_case, tell_of_exposure, InstanceFacts};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ec2-forensics-responders";
const INSTANCE: &str = "i-0a1b2c3d4e5f60718";

fn responder(clients: Clients, policy: Policy) -> Responder {
    Responder {
        clients,
        region: "us-east-1".into(),
        identity: Identity {
            actor: "arn:aws:sts::123456789012:assumed-role/ec2-forensics-triage/lambda".into(),
            account: "123456789012".into(),
        },
        allowed_accounts: vec!["123456789012".into()],
        policy,
        state_machine_arn: None,
        bulk_state_machine_arn: None,
        config: Config::default(),
    }
}

fn event(file: &str) -> serde_json::Value {
    let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("event file")).expect("JSON")
}

fn triaged(responder: &Responder, file: &str) -> Case {
    let facts = InstanceFacts {
        states: [(INSTANCE.to_owned(), "running".to_owned())].into(),
        ..InstanceFacts::default()
    };
    open_case(responder, &event(file), Some(facts)).expect("a case")
}

fn with_topic() -> Policy {
    Policy {
        notification_topic_arn: Some(TOPIC.into()),
        ..Policy::default()
    }
}

#[tokio::test]
async fn a_probed_instance_is_observed_and_a_person_is_told_the_port_and_source() {
    let told = mock!(aws_sdk_sns::Client::publish)
        .match_requests(|r| {
            let message = r.message().unwrap_or_default();
            r.topic_arn() == Some(TOPIC)
                && r.subject()
                    .is_some_and(|s| s.contains(INSTANCE) && s.is_ascii())
                && message.contains("Recon:EC2/PortProbeEMRUnprotectedPort")
                && message.contains("instance port(s): 8088")
                && message.contains("source address(es): 203.0.113.45")
                && message.contains("(not verified)")
                && message
                    .contains("GuardDuty table: Recon:EC2/PortProbeEMRUnprotectedPort as TARGET")
        })
        .then_output(|| PublishOutput::builder().message_id("msg-1").build());
    let clients = Clients {
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, &[&told]),
        ..common::quiet_clients()
    };
    let responder = responder(clients, with_topic());
    let mut case = triaged(&responder, "guardduty-port-probe-emr.json");
    assert_eq!(
        case.decision.action,
        Action::Observe,
        "{}",
        case.decision.reason
    );
    tell_of_exposure(&responder, &mut case).await;
    assert_eq!(told.num_calls(), 1, "one notice");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    let last = case.custody.last().expect("custody");
    assert!(last.action.contains("told a person"), "{}", last.action);
    assert_eq!(last.outputs["messageId"], "msg-1");
    playbook::case::custody::verify_chain(&case.custody).expect("the chain still holds");
}

#[tokio::test]
async fn a_failed_notice_is_recorded_and_the_case_stays_observed() {
    let refused = mock!(aws_sdk_sns::Client::publish).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(403).expect("status"),
            aws_smithy_types::body::SdkBody::from(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code>\
                 <Message>not allowed</Message></Error><RequestId>r</RequestId></ErrorResponse>",
            ),
        )
    });
    let clients = Clients {
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, &[&refused]),
        ..common::quiet_clients()
    };
    let responder = responder(clients, with_topic());
    let mut case = triaged(&responder, "guardduty-rdp-bruteforce-target.json");
    tell_of_exposure(&responder, &mut case).await;
    assert_eq!(case.decision.action, Action::Observe);
    let error = case.errors.first().expect("the failed notice is recorded");
    assert_eq!(error.step, "triage");
    assert!(
        error
            .not_done
            .as_deref()
            .unwrap_or_default()
            .contains("no one was told"),
        "{error:?}"
    );
}

#[tokio::test]
async fn only_an_exposed_and_observed_case_with_a_topic_tells_anyone() {
    // No rule for Publish: a call would fail and be recorded as an error.
    let cases = [
        ("guardduty-port-probe-emr.json", Policy::default()),
        ("guardduty-crypto-mining-dns.json", with_topic()),
        ("securityhub-inspector-cve.json", with_topic()),
        ("cloudwatch-alarm-unrelated.json", with_topic()),
    ];
    for (file, policy) in cases {
        let responder = responder(common::quiet_clients(), policy);
        let mut case = triaged(&responder, file);
        let before = case.custody.len();
        tell_of_exposure(&responder, &mut case).await;
        assert!(case.errors.is_empty(), "{file}: {:?}", case.errors);
        assert_eq!(case.custody.len(), before, "{file}: nothing was sent");
        if file == "guardduty-port-probe-emr.json" {
            assert_eq!(
                case.decision.classification.map(|c| c.indication),
                Some(Indication::Exposed)
            );
        }
    }
}
