//! The approval gate's steps against the moto server: the request publishes
//! and records itself in the Case (no token anywhere); a timeout is recorded
//! by the policy's `onApprovalTimeout` from the execution's own Case, whatever
//! a bucket writer stored meanwhile; a gate that has ended cannot be answered.

use playbook::case::ApprovalOutcome;
use playbook::policy::{ApprovalTimeout, Policy, TagRule};
use playbook::steps::approval::{answer_approval, record_approval, request_approval};
use playbook::steps::triage::triage;
use playbook::Responder;
use serde_json::json;
use system_tests::{event_for, guardduty_finding, Estate, Moto};

async fn gated(moto: &Moto, estate: &Estate, on_timeout: ApprovalTimeout) -> Responder {
    let mut responder = moto
        .responder(Policy {
            approval_tags: vec![TagRule {
                key: "Environment".into(),
                values: vec!["staging".into()],
            }],
            on_approval_timeout: on_timeout,
            ..Policy::default()
        })
        .await;
    responder.config = estate.forensic.config();
    // The token lives only in an execution's history; this test runs none.
    responder.state_machine_arn =
        Some("arn:aws:states:us-east-1:123456789012:stateMachine:forensics".into());
    responder
}

#[tokio::test]
async fn no_answer_in_time_follows_the_policy_and_ends_the_gate() {
    let moto = Moto::start();
    let estate = moto.seed("gate");
    for (on_timeout, proceeds) in [
        (ApprovalTimeout::Stop, false),
        (ApprovalTimeout::Contain, true),
    ] {
        let responder = gated(&moto, &estate, on_timeout).await;
        let finding = guardduty_finding(
            &estate.victim.instance_id,
            &format!("timeout{on_timeout:?}"),
        );
        let opened = triage(&responder, finding).await.expect("triage");
        assert_eq!(
            opened.decision.approval_timeout_seconds,
            Some(responder.policy.approval_timeout_seconds)
        );
        let opened = serde_json::to_value(&opened).unwrap();

        let asked = request_approval(&responder, opened.clone())
            .await
            .expect("request");
        let approval = asked.approval.as_ref().expect("the request is recorded");
        assert!(!approval.message_id.is_empty(), "published to SNS");
        assert_eq!(
            asked.custody.last().map(|e| e.step.as_str()),
            Some("request-approval")
        );
        assert!(
            !serde_json::to_string(&asked).unwrap().contains("token"),
            "no token in the Case"
        );

        // While the execution waits, a writer of the evidence bucket swaps
        // the stored Case: other instances, a dry run, a forged approval.
        let mut forged = asked.clone();
        forged.incident.instance_ids = vec!["i-0fffffffffffffff0".into()];
        forged.decision.dry_run = true;
        let store =
            playbook::steps::evidence::store::EvidenceStore::required(&responder).expect("store");
        store
            .put_case(&mut forged)
            .await
            .expect("the writer's version");

        // What Step Functions hands record-approval after the timeout: the
        // execution's own Case (as RequestApproval left it) and the caught error.
        let timed_out = json!({"Error": "States.Timeout", "Cause": ""});
        let flowing = serde_json::to_value(&asked).unwrap();
        let recorded = record_approval(&responder, json!({"case": flowing, "answer": timed_out}))
            .await
            .expect("record");
        let approval = recorded.approval.as_ref().expect("approval");
        assert_eq!(
            approval.answer.as_ref().map(|a| a.outcome),
            Some(ApprovalOutcome::TimedOut)
        );
        assert_eq!(approval.proceed, proceeds, "{on_timeout:?}");
        assert_eq!(
            recorded.incident.instance_ids,
            vec![estate.victim.instance_id.clone()],
            "the swapped Case in the bucket was not adopted"
        );
        assert!(!recorded.decision.dry_run);
        let steps: Vec<&str> = recorded.custody.iter().map(|e| e.step.as_str()).collect();
        // A case that waits for a person holds no lease; it takes one only
        // once it may proceed.
        if proceeds {
            assert_eq!(
                steps,
                ["triage", "request-approval", "record-approval", "lease"]
            );
        } else {
            assert_eq!(steps, ["triage", "request-approval", "record-approval"]);
        }
        let last = recorded
            .custody
            .iter()
            .rfind(|e| e.step == "record-approval")
            .unwrap();
        assert_eq!(last.actor, responder.identity.actor, "no person answered");
        assert!(
            last.action.contains(if proceeds {
                "contain anyway"
            } else {
                "not touched"
            }),
            "{}",
            last.action
        );

        let late = answer_approval(
            &responder,
            &recorded.case_id,
            true,
            None,
            "arn:aws:iam::123456789012:user/soc",
        )
        .await
        .unwrap_err();
        assert_eq!(late.error_type(), "NotAwaitingApproval");
    }
}

#[tokio::test]
async fn a_request_without_a_topic_fails_with_a_typed_error_and_nothing_waits() {
    let moto = Moto::start();
    let estate = moto.seed("notopic");
    let mut responder = gated(&moto, &estate, ApprovalTimeout::Stop).await;
    responder.config.approval_topic_arn = None;
    let opened = triage(
        &responder,
        event_for(
            "guardduty-crypto-mining-dns.json",
            &estate.victim.instance_id,
        ),
    )
    .await
    .expect("triage");
    let case_id = opened.case_id.clone();
    let err = request_approval(&responder, serde_json::to_value(&opened).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ConfigurationError");
    assert!(err.to_string().contains("APPROVAL_TOPIC_ARN"), "{err}");
    let err = answer_approval(
        &responder,
        &case_id,
        true,
        None,
        "arn:aws:iam::123456789012:user/soc",
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.error_type(),
        "NotAwaitingApproval",
        "no execution waits for an answer"
    );
}

/// Anyone who can call `states:SendTaskSuccess` with the gate's token could
/// hand the execution an "approval" naming any ARN. Only the approval
/// function can make the MAC (`kms:GenerateMac` on the approval key), and
/// record-approval checks it against the answer and this execution: an
/// approval without it, with a made-up one, with one made for another
/// execution, or with its reason changed, is not an approval.
#[tokio::test]
async fn an_approval_without_the_approval_functions_mac_over_it_is_not_an_approval() {
    let moto = Moto::start();
    let estate = moto.seed("mac");
    let responder = gated(&moto, &estate, ApprovalTimeout::Stop).await;
    let finding = guardduty_finding(&estate.victim.instance_id, "macgate");
    let opened = triage(&responder, finding).await.expect("triage");
    let asked = request_approval(&responder, serde_json::to_value(&opened).unwrap())
        .await
        .expect("request");
    let case = serde_json::to_value(&asked).unwrap();
    let execution = format!(
        "arn:aws:states:us-east-1:123456789012:execution:forensics:{}",
        asked.case_id
    );
    let by = "arn:aws:iam::123456789012:user/approver";
    let at = "2026-11-30T10:00:00Z";
    let mac_for = |execution: &str, reason: Option<&str>| {
        let message = playbook::case::approval::mac_message(
            execution,
            &asked.case_id,
            ApprovalOutcome::Approved,
            by,
            at,
            reason,
        );
        let kms = responder.clients.kms.clone();
        let key = estate.forensic.approval_mac_key_arn.clone();
        async move {
            let out = kms
                .generate_mac()
                .key_id(key)
                .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
                .message(aws_smithy_types::Blob::new(message))
                .send()
                .await
                .unwrap();
            aws_smithy_types::base64::encode(out.mac().unwrap().as_ref())
        }
    };
    let approval = |mac: Option<String>, reason: &str| {
        json!({"caseId": asked.case_id, "outcome": "approved", "by": by, "at": at,
               "reason": reason, "mac": mac})
    };
    let genuine = mac_for(&execution, Some("miner confirmed")).await;
    let elsewhere = mac_for(&format!("{execution}-2"), Some("miner confirmed")).await;
    for (what, answer) in [
        ("no MAC", approval(None, "miner confirmed")),
        (
            "a made-up MAC",
            approval(
                Some(aws_smithy_types::base64::encode([7u8; 32])),
                "miner confirmed",
            ),
        ),
        (
            "another execution's MAC",
            approval(Some(elsewhere), "miner confirmed"),
        ),
        (
            "a changed reason",
            approval(Some(genuine.clone()), "something else"),
        ),
    ] {
        let recorded = record_approval(
            &responder,
            json!({"case": case, "answer": answer, "execution": execution}),
        )
        .await
        .expect("record");
        let approval = recorded.approval.as_ref().unwrap();
        assert!(!approval.proceed, "{what}: not an approval");
        let answer = approval.answer.as_ref().unwrap();
        assert_eq!(answer.outcome, ApprovalOutcome::NotRequested, "{what}");
        assert!(
            answer.reason.as_deref().unwrap().contains("valid MAC"),
            "{what}"
        );
    }
    let recorded = record_approval(
        &responder,
        json!({"case": case, "answer": approval(Some(genuine), "miner confirmed"), "execution": execution}),
    )
    .await
    .expect("record");
    let approval = recorded.approval.as_ref().unwrap();
    assert!(
        approval.proceed,
        "the approval function's own answer proceeds"
    );
    assert_eq!(approval.answer.as_ref().unwrap().by.as_deref(), Some(by));

    // A denial in a person's name (SendTaskFailure with the token) is checked
    // the same way: forged, it is no answer, and onApprovalTimeout decides.
    let denial = |mac: Option<String>| {
        let cause = json!({"caseId": asked.case_id, "outcome": "denied", "by": by, "at": at,
                           "reason": "change freeze", "mac": mac});
        json!({"Error": "ApprovalDenied", "Cause": cause.to_string()})
    };
    let forged = record_approval(
        &responder,
        json!({"case": case, "answer": denial(None), "execution": execution}),
    )
    .await
    .expect("record");
    let answer = forged.approval.as_ref().unwrap().answer.as_ref().unwrap();
    assert_eq!(answer.outcome, ApprovalOutcome::NotRequested);
    assert!(answer.by.is_none(), "no one is named for a forged denial");
    let message = playbook::case::approval::mac_message(
        &execution,
        &asked.case_id,
        ApprovalOutcome::Denied,
        by,
        at,
        Some("change freeze"),
    );
    let mac = responder
        .clients
        .kms
        .generate_mac()
        .key_id(&estate.forensic.approval_mac_key_arn)
        .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
        .message(aws_smithy_types::Blob::new(message))
        .send()
        .await
        .unwrap();
    let genuine = aws_smithy_types::base64::encode(mac.mac().unwrap().as_ref());
    let denied = record_approval(
        &responder,
        json!({"case": case, "answer": denial(Some(genuine)), "execution": execution}),
    )
    .await
    .expect("record");
    let answer = denied.approval.as_ref().unwrap().answer.as_ref().unwrap();
    assert_eq!(answer.outcome, ApprovalOutcome::Denied);
    assert_eq!(answer.by.as_deref(), Some(by));
}

/// A case waiting for a person holds no lease, so it never turns a finding
/// that needs no approval into an observation (an attacker could otherwise
/// shield an instance with a low finding that waits for approval). When the
/// waiting case may proceed and the instance is held by then, it ends as an
/// observation recorded on the holder's lease: no second containment.
#[tokio::test]
async fn a_case_waiting_for_approval_holds_no_lease_and_yields_to_the_case_that_holds_one() {
    let moto = Moto::start();
    let estate = moto.seed("waits");
    let gated = gated(&moto, &estate, ApprovalTimeout::Contain).await;
    let id = estate.victim.instance_id.clone();
    let waiting = triage(&gated, guardduty_finding(&id, "waitingcase"))
        .await
        .expect("triage");
    assert_eq!(waiting.decision.action, playbook::case::Action::Approve);
    let asked = request_approval(&gated, serde_json::to_value(&waiting).unwrap())
        .await
        .expect("request");

    let mut responder = moto.responder(Policy::default()).await;
    responder.config = estate.forensic.config();
    let urgent = triage(&responder, guardduty_finding(&id, "urgentcase"))
        .await
        .expect("triage");
    assert_eq!(
        urgent.decision.action,
        playbook::case::Action::Respond,
        "{}",
        urgent.decision.reason
    );

    let timed_out = json!({"Error": "States.Timeout", "Cause": ""});
    let recorded = record_approval(
        &gated,
        json!({"case": serde_json::to_value(&asked).unwrap(), "answer": timed_out}),
    )
    .await
    .expect("record");
    assert!(!recorded.approval.as_ref().unwrap().proceed);
    assert_eq!(recorded.decision.action, playbook::case::Action::Observe);
    assert!(
        recorded.decision.reason.contains(&urgent.case_id),
        "{}",
        recorded.decision.reason
    );
}
