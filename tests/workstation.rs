//! launch-forensic-instance and attach-evidence against the emulator, beyond
//! the happy path the state machine test walks: a parameter naming an AMI this
//! account does not own is refused and nothing is launched; a zone without a
//! forensic subnet is recorded; a re-run finds the case's workstation and
//! volumes instead of making new ones.

use playbook::case::{Case, SnapshotProgress};
use playbook::steps::workstation::{attach_evidence, launch_forensic_instance, WORKSTATION_ROLE};
use system_tests::{Estate, Moto};

/// A case whose victim has its metadata and three completed forensic copies.
async fn case_with_copies(moto: &Moto, estate: &Estate) -> Case {
    let responder = responder(moto, estate).await;
    let event = system_tests::guardduty_finding(&estate.victim.instance_id, "workstation-test");
    let case = playbook::steps::triage::triage(&responder, event)
        .await
        .unwrap();
    let mut case = playbook::steps::capture_metadata::capture_metadata(&responder, case)
        .await
        .unwrap();
    let ec2 = &responder.clients.ec2;
    for volume_id in &estate.victim.volume_ids {
        let snapshot = ec2
            .create_snapshot()
            .volume_id(volume_id)
            .send()
            .await
            .unwrap();
        let id = snapshot.snapshot_id().unwrap().to_owned();
        case.snapshots.push(playbook::case::VolumeEvidence {
            instance_id: estate.victim.instance_id.clone(),
            volume_id: volume_id.clone(),
            device: None,
            snapshot: SnapshotProgress {
                snapshot_id: id.clone(),
                state: "completed".into(),
                ..SnapshotProgress::default()
            },
            encryption: None,
            sharing: None,
            copy: Some(SnapshotProgress {
                snapshot_id: id,
                state: "completed".into(),
                ..SnapshotProgress::default()
            }),
        });
    }
    case
}

async fn responder(moto: &Moto, estate: &Estate) -> playbook::aws::Responder {
    let mut responder = moto.responder(Default::default()).await;
    responder.config = estate.forensic.config();
    responder
}

async fn workstations(moto: &Moto, case_id: &str) -> Vec<String> {
    let out = moto
        .clients()
        .await
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ec2-forensics:case-id")
                .values(case_id)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ec2-forensics:role")
                .values(WORKSTATION_ROLE)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn only_the_golden_ami_is_launched_once_and_a_rerun_finds_it() {
    let moto = Moto::start();
    let estate = moto.seed("ws");
    let mut responder = responder(&moto, &estate).await;
    let case = case_with_copies(&moto, &estate).await;

    // The parameter names an AMI of another owner: refused, nothing launched.
    let clients = moto.clients().await;
    let foreign = clients
        .ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let parameter = estate.forensic.golden_ami_parameter.clone();
    let put = |value: String| {
        clients
            .ssm
            .put_parameter()
            .name(&parameter)
            .value(value)
            .overwrite(true)
            .send()
    };
    put(foreign.clone()).await.unwrap();
    let refused = launch_forensic_instance(&responder, case.clone())
        .await
        .unwrap();
    assert!(refused.workstations.is_empty());
    let error = refused
        .errors
        .iter()
        .find(|e| e.step == "launch-forensic-instance")
        .expect("the refusal is recorded");
    assert!(
        error.message.contains("not an image this account owns"),
        "{error:?}"
    );
    assert!(refused.evidence_volumes.iter().all(|v| v.state == "failed"));
    assert!(workstations(&moto, &case.case_id).await.is_empty());

    // The golden AMI: launched once; a re-run (a retried state) finds it.
    put(estate.forensic.golden_ami_id.clone()).await.unwrap();
    let launched = launch_forensic_instance(&responder, case.clone())
        .await
        .unwrap();
    assert_eq!(launched.workstations.len(), 1, "{:?}", launched.errors);
    let again = launch_forensic_instance(&responder, case.clone())
        .await
        .unwrap();
    assert_eq!(
        again.workstations[0].instance_id,
        launched.workstations[0].instance_id
    );
    assert_eq!(workstations(&moto, &case.case_id).await.len(), 1);

    // attach-evidence until attached, half a second apart as the state
    // machine's wait loop (the bench's agent registers a moment after
    // launch); a second pass changes nothing.
    let mut attached = launched;
    for _ in 0..10 {
        attached = attach_evidence(&responder, attached).await.unwrap();
        if attached.workstation_progress.settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(attached.workstation_progress.settled);
    assert!(attached.evidence_volumes.iter().all(|v| v.attached));
    let devices: Vec<_> = attached
        .evidence_volumes
        .iter()
        .map(|v| v.device.clone().unwrap())
        .collect();
    assert_eq!(devices, ["/dev/sdf", "/dev/sdg", "/dev/sdh"]);
    let twice = attach_evidence(&responder, attached.clone()).await.unwrap();
    assert_eq!(twice.evidence_volumes, attached.evidence_volumes);

    // A zone without a forensic subnet: recorded, not launched.
    responder.config.forensic_subnets = Some("eu-west-1a=subnet-0123".into());
    let elsewhere = launch_forensic_instance(&responder, case_with_copies(&moto, &estate).await)
        .await
        .unwrap();
    assert!(elsewhere.workstations.is_empty());
    assert!(elsewhere
        .errors
        .iter()
        .any(|e| e.message.contains("no forensic subnet")));
}
