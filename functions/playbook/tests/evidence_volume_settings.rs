//! attach-evidence asks for each evidence volume the most gp3 allows for
//! its size and the 300 MiB/s initialization rate; where EC2 refuses those
//! settings (a region or partition without them), the volume is made plain
//! gp3 under a client token of its own instead of not at all. EC2 and SSM
//! are mocked.

use aws_sdk_ec2::operation::create_volume::{CreateVolumeError, CreateVolumeOutput};
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::types::{Instance, InstanceState, InstanceStateName, Reservation, VolumeState};
use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use serde_json::json;

mod common;
use playbook::aws::{Clients, Config};
use playbook::case::metadata::{InstanceMetadata, VolumeRecord};
use playbook::findings::case_id;
use playbook::steps::workstation::{attach_evidence, reading_performance, INITIALIZATION_RATE};

const WORKSTATION: &str = "i-0ffffffffffffffff";
const SOURCE: &str = "vol-0bbbbbbbbbbbbbbb2";

#[tokio::test]
async fn refused_fast_settings_fall_back_to_plain_gp3() {
    let mut case = common::responding_case(
        |i| case_id(i.detected_by, &i.finding_id),
        json!({
            "source": "GuardDuty", "findingId": "f-volume", "findingType": "Backdoor:EC2/C&CActivity.B",
            "title": "t", "severity": 8.0, "account": "123456789012", "region": "us-east-1",
            "instanceIds": ["i-0123456789abcdef0"], "detectedBy": "GuardDuty", "rawReference": "r"
        }),
    );
    case.metadata = vec![InstanceMetadata {
        instance_id: "i-0123456789abcdef0".into(),
        volumes: vec![VolumeRecord {
            volume_id: SOURCE.into(),
            size_gib: Some(100),
            ..Default::default()
        }],
        ..Default::default()
    }];
    case.workstations = vec![serde_json::from_value(json!({
        "availabilityZone": "us-east-1a", "subnetId": "subnet-1", "imageId": "ami-1",
        "instanceId": WORKSTATION, "state": "running"
    }))
    .expect("a workstation record")];
    case.evidence_volumes = vec![serde_json::from_value(json!({
        "sourceVolumeId": SOURCE, "instanceId": "i-0123456789abcdef0",
        "copySnapshotId": "snap-1", "availabilityZone": "us-east-1a", "state": "pending"
    }))
    .expect("an evidence volume record")];

    let running = mock!(aws_sdk_ec2::Client::describe_instances).then_output(|| {
        DescribeInstancesOutput::builder()
            .reservations(
                Reservation::builder()
                    .instances(
                        Instance::builder()
                            .instance_id(WORKSTATION)
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
    });
    let (iops, throughput) = reading_performance(Some(100));
    let refused = mock!(aws_sdk_ec2::Client::create_volume)
        .match_requests(move |r| {
            r.iops() == Some(iops)
                && r.throughput() == Some(throughput)
                && r.volume_initialization_rate() == Some(INITIALIZATION_RATE)
        })
        .then_error(|| {
            CreateVolumeError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidParameterValue")
                    .message("The parameter VolumeInitializationRate is not supported.")
                    .build(),
            )
        });
    let plain = mock!(aws_sdk_ec2::Client::create_volume)
        .match_requests(|r| {
            r.iops().is_none()
                && r.throughput().is_none()
                && r.volume_initialization_rate().is_none()
        })
        .then_output(|| {
            CreateVolumeOutput::builder()
                .volume_id("vol-0ccccccccccccccc3")
                .state(VolumeState::Creating)
                .build()
        });
    let agent = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .then_output(|| DescribeInstanceInformationOutput::builder().build());
    let responder = common::responder(
        Clients {
            ec2: mock_client!(
                aws_sdk_ec2,
                RuleMode::MatchAny,
                &[&running, &refused, &plain]
            ),
            ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[&agent]),
            ..common::quiet_clients()
        },
        "attach-evidence",
        Config::default(),
    );

    let case = attach_evidence(&responder, case)
        .await
        .expect("attach-evidence");
    assert_eq!(
        refused.num_calls(),
        1,
        "the fast settings were asked for first"
    );
    assert_eq!(plain.num_calls(), 1, "then a plain gp3 volume");
    assert_eq!(
        case.evidence_volumes[0].volume_id.as_deref(),
        Some("vol-0ccccccccccccccc3")
    );
}
