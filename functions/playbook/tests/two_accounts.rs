//! The two-account path, with aws-smithy-mocks (moto cannot show a snapshot
//! shared with another account to that account): the responder in the
//! forensic account assumes the workload role with the case id in the session
//! name, grants the forensic account the use of customer keys, re-encrypts the
//! AWS-managed-key snapshot under the sharing key before sharing it, shares
//! with the forensic account only, and copies everything there under the
//! forensic key.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput;
use aws_sdk_ec2::operation::describe_snapshot_attribute::DescribeSnapshotAttributeOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput;
use aws_sdk_ec2::types::{CreateVolumePermission, Snapshot, SnapshotState, Tag};
use aws_sdk_kms::operation::create_grant::CreateGrantOutput;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_sdk_sts::types::{AssumedRoleUser, Credentials};
use aws_smithy_mocks::{mock, mock_client, RuleMode};

mod common;
use playbook::aws::retry::{retry_config, timeout_config};
use playbook::aws::{Clients, Config, Identity, Responder};
use playbook::case::evidence::{SnapshotProgress, VolumeEvidence};
use playbook::case::{Case, Encryption, InstanceMetadata, Policy, VolumeRecord};
use playbook::steps::disk::copy::copy_snapshots;
use playbook::steps::disk::share::share_snapshots;

const FORENSIC: &str = "222222222222";
const WORKLOAD: &str = "111111111111";
const INSTANCE: &str = "i-0123456789abcdef0";
const CUSTOMER_KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/customer";
const AWS_EBS_KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/aws-ebs";
const SHARING_KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/sharing";
const FORENSIC_KEY: &str = "arn:aws:kms:us-east-1:222222222222:key/forensic";

fn case() -> Case {
    let mut case = common::responding_case(
        |_| "gd-two-accounts".into(),
        serde_json::json!({
            "source": "GuardDuty", "findingId": "arn:aws:guardduty:us-east-1:111111111111:detector/d/finding/f",
            "findingType": "Backdoor:EC2/C&CActivity.B", "title": "t", "severity": 8.0,
            "account": WORKLOAD, "region": "us-east-1", "instanceIds": [INSTANCE],
            "detectedBy": "GuardDuty", "rawReference": "test"
        }),
    );
    let volume =
        |id: &str, device: &str, key: Option<&str>, manager: Option<&str>, aliases: &[&str]| {
            VolumeRecord {
                volume_id: id.into(),
                device_name: Some(device.into()),
                encrypted: Some(key.is_some()),
                kms_key_id: key.map(str::to_owned),
                kms_key_manager: manager.map(str::to_owned),
                kms_key_aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                ..VolumeRecord::default()
            }
        };
    case.metadata.push(InstanceMetadata {
        instance_id: INSTANCE.into(),
        volumes: vec![
            volume(
                "vol-customer",
                "/dev/xvda",
                Some(CUSTOMER_KEY),
                Some("CUSTOMER"),
                &["alias/app"],
            ),
            volume(
                "vol-managed",
                "/dev/sdf",
                Some(AWS_EBS_KEY),
                Some("AWS"),
                &["alias/aws/ebs"],
            ),
            volume("vol-plain", "/dev/sdg", None, None, &[]),
        ],
        ..InstanceMetadata::default()
    });
    for (volume, snapshot) in [
        ("vol-customer", "snap-customer"),
        ("vol-managed", "snap-managed"),
        ("vol-plain", "snap-plain"),
    ] {
        case.snapshots.push(VolumeEvidence {
            instance_id: INSTANCE.into(),
            volume_id: volume.into(),
            snapshot: SnapshotProgress {
                snapshot_id: snapshot.into(),
                state: "completed".into(),
                ..SnapshotProgress::default()
            },
            ..VolumeEvidence::default()
        });
    }
    case
}

/// Every (operation, detail) the mocks saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn responder(seen: &Seen, copy_of_managed_completed: bool) -> Responder {
    let s = seen.clone();
    let assume = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(move |r| {
            s.lock().unwrap().push(format!("AssumeRole {} {}", r.role_arn().unwrap_or_default(), r.role_session_name().unwrap_or_default()));
            true
        })
        .then_output(|| {
            AssumeRoleOutput::builder()
                .credentials(
                    Credentials::builder()
                        .access_key_id("ASIAWORKLOAD")
                        .secret_access_key("secret")
                        .session_token("token")
                        .expiration(aws_smithy_types::DateTime::from_secs(4_102_444_800))
                        .build()
                        .unwrap(),
                )
                .assumed_role_user(
                    AssumedRoleUser::builder()
                        .assumed_role_id("AROA:ec2-forensics-gd-two-accounts")
                        .arn(format!("arn:aws:sts::{WORKLOAD}:assumed-role/ec2-forensics-workload/ec2-forensics-gd-two-accounts"))
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let s = seen.clone();
    let grant = mock!(aws_sdk_kms::Client::create_grant)
        .match_requests(move |r| {
            s.lock().unwrap().push(format!(
                "CreateGrant {} {} {} {}",
                r.key_id().unwrap_or_default(),
                r.grantee_principal().unwrap_or_default(),
                r.retiring_principal().unwrap_or_default(),
                r.name().unwrap_or_default()
            ));
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_id("grant-1")
                .grant_token("token")
                .build()
        });
    let s = seen.clone();
    let share = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .match_requests(move |r| {
            s.lock().unwrap().push(format!(
                "ModifySnapshotAttribute {} {}",
                r.snapshot_id().unwrap_or_default(),
                r.user_ids().join(",")
            ));
            true
        })
        .then_output(|| ModifySnapshotAttributeOutput::builder().build());
    let permissions = mock!(aws_sdk_ec2::Client::describe_snapshot_attribute).then_output(|| {
        DescribeSnapshotAttributeOutput::builder()
            .create_volume_permissions(CreateVolumePermission::builder().user_id(FORENSIC).build())
            .build()
    });
    // The re-encrypted copy of the AWS-managed-key snapshot: none in the first
    // round (it is made then), found completed in the second.
    let found_copy = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .match_requests(|r| {
            r.filters().iter().any(|f| {
                f.name() == Some("tag:ec2-forensics:role")
                    && f.values().contains(&"sharing-copy".to_owned())
            })
        })
        .then_output(move || {
            // None in the first round (it is made then), completed in the second.
            if !copy_of_managed_completed {
                return DescribeSnapshotsOutput::builder().build();
            }
            let state = SnapshotState::Completed;
            DescribeSnapshotsOutput::builder()
                .snapshots(
                    Snapshot::builder()
                        .snapshot_id("snap-managed-shared")
                        .state(state)
                        .kms_key_id(SHARING_KEY)
                        .tags(
                            Tag::builder()
                                .key("ec2-forensics:source-snapshot")
                                .value("snap-managed")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let nothing_yet = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .then_output(|| DescribeSnapshotsOutput::builder().build());
    let s = seen.clone();
    let copy = mock!(aws_sdk_ec2::Client::copy_snapshot)
        .match_requests(move |r| {
            s.lock().unwrap().push(format!(
                "CopySnapshot {} {} {:?}",
                r.source_snapshot_id().unwrap_or_default(),
                r.kms_key_id().unwrap_or_default(),
                r.encrypted()
            ));
            true
        })
        .then_output(|| {
            CopySnapshotOutput::builder()
                .snapshot_id("snap-copy")
                .build()
        });
    let s = seen.clone();
    let re_encrypt = mock!(aws_sdk_ec2::Client::copy_snapshot)
        .match_requests(move |r| {
            let sharing = r.kms_key_id() == Some(SHARING_KEY);
            if sharing {
                s.lock().unwrap().push(format!(
                    "CopySnapshot {} {} {:?}",
                    r.source_snapshot_id().unwrap_or_default(),
                    r.kms_key_id().unwrap_or_default(),
                    r.encrypted()
                ));
            }
            sharing
        })
        .then_output(|| {
            CopySnapshotOutput::builder()
                .snapshot_id("snap-managed-shared")
                .build()
        });
    let ec2 = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        &[
            &share,
            &permissions,
            &found_copy,
            &nothing_yet,
            &re_encrypt,
            &copy
        ],
        |c| c
            .retry_config(retry_config())
            .timeout_config(timeout_config())
    );
    let clients = Clients {
        ec2,
        kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, &[&grant]),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[&assume]),
        ..common::quiet_clients()
    };
    Responder {
        clients,
        region: "us-east-1".into(),
        identity: Identity {
            actor: format!("arn:aws:sts::{FORENSIC}:assumed-role/ec2-forensics-share/lambda"),
            account: FORENSIC.into(),
        },
        allowed_accounts: vec![FORENSIC.into(), WORKLOAD.into()],
        policy: Policy::default(),
        state_machine_arn: None,
        bulk_state_machine_arn: None,
        config: Config {
            workload_role_name: Some("ec2-forensics-workload".into()),
            forensic_kms_key: Some(FORENSIC_KEY.into()),
            sharing_kms_key: Some(SHARING_KEY.into()),
            ..Config::default()
        },
    }
}

fn sharing_of<'a>(case: &'a Case, volume: &str) -> &'a playbook::case::evidence::Sharing {
    case.snapshots
        .iter()
        .find(|v| v.volume_id == volume)
        .and_then(|v| v.sharing.as_ref())
        .unwrap_or_else(|| panic!("sharing of {volume}"))
}

#[tokio::test]
async fn every_encryption_reaches_the_forensic_account_and_is_copied_under_its_key() {
    let seen: Seen = Arc::default();
    let case = case();

    // While the re-encrypted copy is pending, the other two are shared; it waits.
    let responder = responder(&seen, false);
    let workload = responder.workload(&case).await.expect("the workload role");
    assert_eq!(workload.account, WORKLOAD);
    assert!(workload
        .actor
        .contains(":assumed-role/ec2-forensics-workload/ec2-forensics-gd-two-accounts"));
    let case = share_snapshots(&responder, &workload, case)
        .await
        .expect("share");
    assert!(sharing_of(&case, "vol-customer").ready);
    assert!(sharing_of(&case, "vol-plain").ready);
    assert!(
        !sharing_of(&case, "vol-managed").ready,
        "its copy under the sharing key is pending"
    );
    assert!(!case.disk_progress.sharing.settled);
    assert_eq!(case.disk_progress.sharing.pending, 1);

    // Once it completes, the next round shares the copy.
    let responder = responder_again(&seen);
    let workload = responder.workload(&case).await.expect("the workload role");
    let case = share_snapshots(&responder, &workload, case)
        .await
        .expect("share again");
    assert!(case.disk_progress.sharing.settled, "{:?}", case.errors);
    let case = copy_snapshots(&responder, case).await.expect("copy");

    let seen = seen.lock().unwrap().clone();
    let has = |line: &str| seen.iter().any(|s| s == line);
    assert!(
        has(&format!("AssumeRole arn:aws:iam::{WORKLOAD}:role/ec2-forensics-workload ec2-forensics-gd-two-accounts")),
        "{seen:#?}"
    );
    let root = format!("arn:aws:iam::{FORENSIC}:root");
    assert!(
        has(&format!(
            "CreateGrant {CUSTOMER_KEY} {root} {root} ec2-forensics-gd-two-accounts"
        )),
        "{seen:#?}"
    );
    assert!(
        has(&format!(
            "CreateGrant {SHARING_KEY} {root} {root} ec2-forensics-gd-two-accounts"
        )),
        "{seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.starts_with(&format!("CreateGrant {AWS_EBS_KEY}"))),
        "the AWS managed key is never granted"
    );
    assert!(has(&format!(
        "ModifySnapshotAttribute snap-customer {FORENSIC}"
    )));
    assert!(has(&format!(
        "ModifySnapshotAttribute snap-plain {FORENSIC}"
    )));
    assert!(has(&format!(
        "ModifySnapshotAttribute snap-managed-shared {FORENSIC}"
    )));
    assert!(
        !seen
            .iter()
            .any(|s| s == &format!("ModifySnapshotAttribute snap-managed {FORENSIC}")),
        "the aws/ebs snapshot itself is never shared"
    );
    assert!(
        has(&format!(
            "CopySnapshot snap-managed {SHARING_KEY} Some(true)"
        )),
        "re-encrypted under the sharing key: {seen:#?}"
    );
    for source in ["snap-customer", "snap-plain", "snap-managed-shared"] {
        assert!(
            has(&format!("CopySnapshot {source} {FORENSIC_KEY} Some(true)")),
            "{source} copied under the forensic key: {seen:#?}"
        );
    }

    let managed = case
        .snapshots
        .iter()
        .find(|v| v.volume_id == "vol-managed")
        .unwrap();
    assert_eq!(managed.encryption, Some(Encryption::AwsManagedKey));
    let sharing = managed.sharing.as_ref().unwrap();
    assert_eq!(
        sharing.source_snapshot_id.as_deref(),
        Some("snap-managed-shared")
    );
    assert_eq!(sharing.shared_with.as_deref(), Some(FORENSIC));
    assert!(sharing.verified_private);
    let grant = sharing.grant.as_ref().expect("the grant is recorded");
    assert_eq!(grant.retiring_principal, root);
    assert!(grant.operations.contains(&"Decrypt".to_owned()));
    for volume in &case.snapshots {
        assert_eq!(
            volume.copy.as_ref().map(|c| c.kms_key_id.as_deref()),
            Some(Some(FORENSIC_KEY))
        );
    }
    assert!(case.errors.is_empty(), "{:?}", case.errors);
    let steps: Vec<&str> = case.custody.iter().map(|c| c.step.as_str()).collect();
    assert!(
        steps.iter().filter(|s| **s == "share-snapshots").count() == 3
            && steps.contains(&"copy-snapshots")
    );
    assert!(playbook::case::custody::verify_chain(&case.custody).is_ok());
}

fn responder_again(seen: &Seen) -> Responder {
    responder(seen, true)
}

#[tokio::test]
async fn a_finding_in_an_account_not_allowed_gets_no_role_assumed() {
    let seen: Seen = Arc::default();
    let mut responder = responder(&seen, true);
    responder.allowed_accounts = vec![FORENSIC.into()];
    let err = responder.workload(&case()).await.expect_err("refused");
    assert_eq!(err.error_type(), "WrongAccount");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| !s.starts_with("AssumeRole")));
}

#[tokio::test]
async fn a_snapshot_shared_with_anyone_else_is_not_ready() {
    let seen: Seen = Arc::default();
    let responder = responder(&seen, true);
    let public = mock!(aws_sdk_ec2::Client::describe_snapshot_attribute).then_output(|| {
        DescribeSnapshotAttributeOutput::builder()
            .create_volume_permissions(CreateVolumePermission::builder().user_id(FORENSIC).build())
            .create_volume_permissions(
                CreateVolumePermission::builder()
                    .group(aws_sdk_ec2::types::PermissionGroup::All)
                    .build(),
            )
            .build()
    });
    let share = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .then_output(|| ModifySnapshotAttributeOutput::builder().build());
    let mut clients = responder.clients.clone();
    clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[&public, &share]);
    let responder = Responder {
        clients,
        ..responder
    };
    let mut case = case();
    case.snapshots.retain(|v| v.volume_id == "vol-plain");
    let workload = responder.workload(&case).await.unwrap();
    let case = share_snapshots(&responder, &workload, case)
        .await
        .expect("share");
    let sharing = sharing_of(&case, "vol-plain");
    assert!(!sharing.verified_private && !sharing.ready);
    assert!(
        case.errors
            .iter()
            .any(|e| e.error_type == "SnapshotNotPrivate" && e.message.contains("public")),
        "{:?}",
        case.errors
    );
    assert_eq!(case.disk_progress.sharing.failed, 1);
    assert!(
        case.disk_progress.sharing.settled,
        "nothing left that a wait would change"
    );

    // The loop's next round leaves it for a person: no call, no second error.
    let errors = case.errors.len();
    let calls = share.num_calls();
    let case = share_snapshots(&responder, &workload, case)
        .await
        .expect("share again");
    assert_eq!(case.errors.len(), errors);
    assert_eq!(share.num_calls(), calls);
    assert!(!sharing_of(&case, "vol-plain").ready);
}
