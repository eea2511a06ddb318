//! triage and capture-metadata against the moto server, on the seeded estate.

use playbook::case::custody::sha256_json;
use playbook::case::evidence::encryption_of;
use playbook::case::{Action, Encryption};
use playbook::policy::Policy;
use playbook::steps::capture_metadata::capture_metadata;
use playbook::steps::triage::triage;
use system_tests::{event_for, Moto};

#[tokio::test]
async fn triage_then_capture_records_everything_the_playbook_lists() {
    let moto = Moto::start();
    let estate = moto.seed("cap");
    let victim = &estate.victim;
    let responder = moto.responder(Policy::default()).await;

    let event = event_for("guardduty-crypto-mining-dns.json", &victim.instance_id);
    let case = triage(&responder, event).await.expect("triage");
    assert_eq!(
        case.decision.action,
        Action::Respond,
        "{}",
        case.decision.reason
    );
    assert_eq!(case.incident.instance_state.as_deref(), Some("running"));
    assert_eq!(
        case.incident
            .live_tags
            .get("Application")
            .map(String::as_str),
        Some("storefront"),
        "live tags read from EC2"
    );

    let case = capture_metadata(&responder, case).await.expect("capture");
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    let m = case
        .metadata_of(&victim.instance_id)
        .expect("metadata of the victim");
    assert_eq!(m.instance_type.as_deref(), Some("t3.medium"));
    assert_eq!(m.state.as_deref(), Some("running"));
    assert_eq!(m.region, "us-east-1");
    assert_eq!(m.availability_zone.as_deref(), Some("us-east-1a"));
    assert_eq!(m.vpc_id.as_deref(), Some(estate.vpc_id.as_str()));
    assert!(m.subnet_id.is_some() && m.image_id.is_some() && m.launch_time.is_some());
    assert_eq!(m.key_name.as_deref(), Some("cap-ops"));
    assert_eq!(m.account.as_deref(), Some("123456789012"));
    assert_eq!(
        m.iam_instance_profile_arn.as_deref(),
        Some(victim.instance_profile_arn.as_str())
    );
    assert_eq!(m.tags.get("Name").map(String::as_str), Some("cap-web-1"));

    assert_eq!(m.network_interfaces.len(), 2, "both ENIs");
    for (index, eni_id) in victim.network_interface_ids.iter().enumerate() {
        let eni = m
            .network_interfaces
            .iter()
            .find(|e| &e.network_interface_id == eni_id)
            .unwrap_or_else(|| panic!("ENI {eni_id} recorded"));
        assert_eq!(
            eni.security_group_ids,
            vec![victim.security_group_ids[index].clone()],
            "groups of {eni_id}"
        );
        assert!(
            !eni.private_ip_addresses.is_empty(),
            "private IPs of {eni_id}"
        );
        assert_eq!(eni.vpc_id.as_deref(), Some(estate.vpc_id.as_str()));
    }
    let primary = &m
        .network_interfaces
        .iter()
        .find(|e| e.network_interface_id == victim.network_interface_ids[0])
        .unwrap();
    assert_eq!(
        primary.public_ip.as_deref(),
        Some(victim.elastic_ip.public_ip.as_str()),
        "the EIP is the public address"
    );
    let mut groups = m.security_group_ids.clone();
    groups.sort();
    let mut expected_groups = victim.security_group_ids.clone();
    expected_groups.sort();
    assert_eq!(groups, expected_groups);

    assert_eq!(m.volumes.len(), 3, "all three volumes");
    for volume in &m.volumes {
        assert!(victim.volume_ids.contains(&volume.volume_id));
        assert_eq!(volume.volume_type.as_deref(), Some("gp3"));
        assert_eq!(volume.delete_on_termination, Some(true));
        match volume.device_name.as_deref() {
            Some("/dev/xvda") => {
                assert_eq!(volume.encrypted, Some(true));
                assert_eq!(
                    volume.kms_key_id.as_deref(),
                    Some(victim.kms_key_arn.as_str())
                );
                assert_eq!(volume.kms_key_manager.as_deref(), Some("CUSTOMER"));
                assert_eq!(encryption_of(volume), Ok(Encryption::CustomerKey));
            }
            Some("/dev/sdf") => {
                assert_eq!(volume.encrypted, Some(true));
                assert_eq!(
                    volume.kms_key_id.as_deref(),
                    Some(victim.aws_managed_key_arn.as_str())
                );
                assert!(volume.kms_key_aliases.contains(&"alias/aws/ebs".to_owned()));
                assert_eq!(encryption_of(volume), Ok(Encryption::AwsManagedKey));
            }
            Some("/dev/sdg") => {
                assert_eq!(volume.encrypted, Some(false));
                assert_eq!(encryption_of(volume), Ok(Encryption::Unencrypted));
            }
            other => panic!("unexpected device {other:?}"),
        }
    }
    let sizes: Vec<i32> = m.volumes.iter().filter_map(|v| v.size_gib).collect();
    assert!(
        sizes.contains(&16) && sizes.contains(&32) && sizes.contains(&8),
        "{sizes:?}"
    );

    assert!(
        m.console_output.is_some() || m.console_output_unavailable.is_some(),
        "console output captured or its absence recorded"
    );
    assert!(m.console_screenshot_sha256.is_none());
    assert!(
        m.console_screenshot_unavailable.is_some(),
        "the emulator has no screenshot: recorded, not fatal"
    );

    let entry = case
        .custody
        .iter()
        .find(|c| c.step == "capture-metadata")
        .expect("custody entry");
    assert_eq!(
        entry.sha256.as_deref(),
        Some(sha256_json(m).as_str()),
        "custody digest covers the captured record"
    );
    assert_eq!(entry.actor, responder.identity.actor);
    assert!(entry.calls.contains(&"DescribeInstances".to_owned()));
    assert!(entry.at.ends_with('Z'));
    assert_eq!(case.custody[0].step, "triage");
}

#[tokio::test]
async fn capture_of_an_instance_that_vanished_is_recorded_not_fatal() {
    let moto = Moto::start();
    let estate = moto.seed("gone");
    let responder = moto.responder(Policy::default()).await;
    let mut case = triage(
        &responder,
        event_for("guardduty-crypto-mining-dns.json", &estate.bare.instance_id),
    )
    .await
    .expect("triage");
    case.incident
        .instance_ids
        .push("i-0000000000000dead".into());
    let case = capture_metadata(&responder, case)
        .await
        .expect("capture goes on");
    assert!(
        case.metadata_of(&estate.bare.instance_id).is_some(),
        "the existing instance is captured"
    );
    let error = case
        .errors
        .iter()
        .find(|e| e.step == "capture-metadata")
        .expect("the missing one is recorded");
    assert_eq!(error.error_type, "InstanceNotFound");
    assert!(error
        .not_done
        .as_deref()
        .unwrap_or_default()
        .contains("i-0000000000000dead"));
}

#[tokio::test]
async fn triage_refuses_unknown_instances_and_foreign_scope() {
    let moto = Moto::start();
    moto.seed("scope");
    let responder = moto.responder(Policy::default()).await;

    let unknown = event_for("guardduty-crypto-mining-dns.json", "i-0123456789abcdef0");
    let err = triage(&responder, unknown)
        .await
        .expect_err("unknown instance");
    assert_eq!(err.error_type(), "InstanceNotFound", "{err}");

    let mut foreign = event_for("guardduty-crypto-mining-dns.json", "i-0123456789abcdef0");
    foreign["detail"]["accountId"] = "999999999999".into();
    let err = triage(&responder, foreign)
        .await
        .expect_err("foreign account");
    assert_eq!(err.error_type(), "WrongAccount", "{err}");

    let mut elsewhere = event_for("guardduty-crypto-mining-dns.json", "i-0123456789abcdef0");
    elsewhere["detail"]["region"] = "eu-west-1".into();
    let err = triage(&responder, elsewhere)
        .await
        .expect_err("foreign region");
    assert_eq!(err.error_type(), "WrongRegion", "{err}");

    let sample = event_for("guardduty-sample-finding.json", "unused");
    let case = triage(&responder, sample)
        .await
        .expect("a sample needs no lookup");
    assert_eq!(case.decision.action, Action::Ignore);
}
