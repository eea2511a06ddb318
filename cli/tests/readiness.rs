//! `ec2-forensics readiness` against moto: an account with deliberate gaps
//! reports each gap with its fix and exits 1; the same account made ready
//! passes and exits 0.
//!
//! moto lacks EBS snapshot Block Public Access, EC2's Allowed AMIs setting
//! and SSM's DescribeInstanceInformation: those checks say "could not be
//! read" here (a warning, never a pass); their judgement is tested on its
//! own (`playbook::steps::readiness` unit tests, and the aws-smithy-mocks
//! test of `--fix allowed-amis`).

use std::collections::BTreeMap;
use std::process::{Command, Output};

use playbook::aws::Clients;
use serde_json::Value;
use system_tests::{linux_image, Moto};

const HOME: &str = "us-east-1";
const OTHER: &str = "eu-west-1";
const SIGNER: &str = "arn:aws:iam::123456789012:role/ec2-forensics/custody-signer/*";

fn readiness(moto: &Moto, env: &BTreeMap<&str, String>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ec2-forensics"));
    command
        .arg("readiness")
        .args(["--regions", &format!("{HOME},{OTHER}")])
        .args(args)
        .env("AWS_REGION", HOME)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for name in [
        "WORKLOAD_ROLE_NAME",
        "ALLOWED_ACCOUNTS",
        "POLICY_FILE",
        "POLICY_PARAMETER",
        "EVIDENCE_BUCKET",
        "CUSTODY_SIGNING_KEY",
        "GOLDEN_AMI_PARAMETER",
        "FORENSIC_SUBNETS",
        "APPROVAL_TOPIC_ARN",
        "RUN_SCRIPT_DOCUMENT",
        "DEAD_LETTER_QUEUE_URL",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command.output().expect("the CLI runs")
}

/// The verdicts of a JSON run by check (and Region).
fn verdicts(output: &Output) -> BTreeMap<String, (String, String, String)> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            let key = match c["region"].as_str() {
                Some(region) => format!("{}@{region}", c["check"].as_str().unwrap()),
                None => c["check"].as_str().unwrap().to_owned(),
            };
            let text = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
            (key, (text("verdict"), text("found"), text("fix")))
        })
        .collect()
}

fn in_region(clients: &Clients, region: &str) -> (aws_sdk_guardduty::Client, aws_sdk_ec2::Client) {
    let region = aws_config::Region::new(region.to_owned());
    (
        aws_sdk_guardduty::Client::from_conf(
            clients
                .guardduty
                .config()
                .to_builder()
                .region(region.clone())
                .build(),
        ),
        aws_sdk_ec2::Client::from_conf(clients.ec2.config().to_builder().region(region).build()),
    )
}

async fn bucket(clients: &Clients, name: &str, locked: bool) {
    clients
        .s3
        .create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(locked)
        .send()
        .await
        .expect("CreateBucket");
}

async fn versioning(
    clients: &Clients,
    name: &str,
    status: aws_sdk_s3::types::BucketVersioningStatus,
) {
    clients
        .s3
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(status)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
}

/// A signing key with (or without) the stack's Deny of signing to all but
/// the seal role.
async fn signing_key(clients: &Clients, limited: bool) -> String {
    let mut statements = vec![serde_json::json!({
        "Sid": "AccountAdministers", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"
    })];
    if limited {
        statements.push(serde_json::json!({
            "Sid": "OnlySealEvidenceSigns", "Effect": "Deny", "Principal": {"AWS": "*"},
            "Action": "kms:Sign", "Resource": "*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": SIGNER}}
        }));
    }
    clients
        .kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .policy(serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string())
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

#[tokio::test]
async fn a_gapped_account_is_told_each_gap_with_its_fix_and_a_ready_one_passes() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let (guardduty_home, ec2_home) = in_region(&clients, HOME);
    let (guardduty_other, ec2_other) = in_region(&clients, OTHER);

    // ------------------------------------------------------------ the gaps
    // A trail in one Region only, not validating its log files, into an
    // unprotected bucket; GuardDuty on at home only; no Security Hub; an
    // evidence bucket without Object Lock; a custody key any principal of
    // the account may sign with; a golden AMI that is old and not ours; no
    // forensic subnets; no SSM endpoints; an approval topic no one reads;
    // an event in the dead-letter queue.
    bucket(&clients, "trail-logs", false).await;
    clients
        .cloudtrail
        .create_trail()
        .name("home-only")
        .s3_bucket_name("trail-logs")
        .send()
        .await
        .expect("CreateTrail");
    clients
        .cloudtrail
        .start_logging()
        .name("home-only")
        .send()
        .await
        .expect("StartLogging");
    guardduty_home
        .create_detector()
        .enable(true)
        .send()
        .await
        .expect("CreateDetector");
    bucket(&clients, "evidence-unlocked", false).await;
    let open_key = signing_key(&clients, false).await;
    let stock = linux_image(&clients).await;
    clients
        .ssm
        .put_parameter()
        .name("/ec2-forensics/golden-ami")
        .value(&stock)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("PutParameter");
    let topic = clients
        .sns
        .create_topic()
        .name("approvals")
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .unwrap()
        .to_owned();
    let dead_letters = clients
        .sqs
        .create_queue()
        .queue_name("dead-letters")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .unwrap()
        .to_owned();
    clients
        .sqs
        .send_message()
        .queue_url(&dead_letters)
        .message_body(r#"{"source": "aws.guardduty", "detail-type": "GuardDuty Finding"}"#)
        .send()
        .await
        .expect("SendMessage");
    // moto dates its images now: a limit of 0 days makes this one too old.
    let strict = std::env::temp_dir().join(format!("readiness-{}.json", std::process::id()));
    std::fs::write(&strict, r#"{"goldenAmiMaxAgeDays": 0}"#).expect("policy file");
    let mut env = BTreeMap::from([
        ("POLICY_FILE", strict.display().to_string()),
        ("EVIDENCE_BUCKET", "evidence-unlocked".to_owned()),
        ("CUSTODY_SIGNING_KEY", open_key),
        (
            "GOLDEN_AMI_PARAMETER",
            "/ec2-forensics/golden-ami".to_owned(),
        ),
        ("APPROVAL_TOPIC_ARN", topic.clone()),
        ("DEAD_LETTER_QUEUE_URL", dead_letters.clone()),
    ]);

    let gapped = readiness(&moto, &env, &["--json"]);
    assert_eq!(
        gapped.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gapped.stderr)
    );
    let found = verdicts(&gapped);
    let failed = |key: &str| {
        let (verdict, what, fix) = found
            .get(key)
            .unwrap_or_else(|| panic!("{key}: {found:#?}"));
        assert_eq!(verdict, "fail", "{key}: {what}");
        assert!(!fix.is_empty(), "{key} says how to fix it");
        what.clone()
    };
    assert!(failed("cloudtrail.trail").contains("no logging multi-Region trail"));
    failed(&format!("cloudtrail.region@{OTHER}"));
    assert!(
        !found.contains_key(&format!("cloudtrail.region@{HOME}")),
        "the home-Region trail covers its Region"
    );
    failed("cloudtrail.bucket");
    assert_eq!(found[&format!("guardduty.detector@{HOME}")].0, "pass");
    failed(&format!("guardduty.detector@{OTHER}"));
    failed(&format!("securityhub.hub@{HOME}"));
    assert!(failed("evidence.object-lock").contains("no Object Lock"));
    failed("evidence.policy");
    assert!(failed("custody.key").contains("any principal"));
    let golden = failed("workstation.golden-ami");
    assert!(
        golden.contains("owned by") && golden.contains("days old"),
        "{golden}"
    );
    failed("workstation.subnets");
    assert_eq!(found[&format!("ssm.endpoints@{HOME}")].0, "warn");
    assert!(failed("approval.topic").contains("no confirmed subscriber"));
    assert!(failed("dead-letter.queue").contains("1 message(s)"));
    // What moto cannot answer is a warning that says so, never a pass.
    for key in [
        format!("ebs.snapshot-block-public-access@{HOME}"),
        format!("ec2.allowed-amis@{OTHER}"),
    ] {
        let (verdict, what, _) = &found[&key];
        assert_eq!(verdict, "warn", "{key}: {what}");
        assert!(what.contains("could not be read"), "{key}: {what}");
    }

    // The table says the same, and the closing line says not ready.
    let table = readiness(&moto, &env, &[]);
    assert_eq!(table.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        shown.contains("FAIL") && shown.contains("cloudtrail.trail"),
        "{shown}"
    );
    assert!(shown.contains("not ready:"), "{shown}");

    // ------------------------------------------------------ made ready
    bucket(&clients, "trail-logs-ready", false).await;
    clients
        .s3
        .put_public_access_block()
        .bucket("trail-logs-ready")
        .public_access_block_configuration(
            aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .expect("PutPublicAccessBlock");
    versioning(
        &clients,
        "trail-logs-ready",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    clients
        .cloudtrail
        .delete_trail()
        .name("home-only")
        .send()
        .await
        .expect("DeleteTrail");
    clients
        .cloudtrail
        .create_trail()
        .name("everywhere")
        .s3_bucket_name("trail-logs-ready")
        .is_multi_region_trail(true)
        .enable_log_file_validation(true)
        .send()
        .await
        .expect("CreateTrail");
    clients
        .cloudtrail
        .start_logging()
        .name("everywhere")
        .send()
        .await
        .expect("StartLogging");
    guardduty_other
        .create_detector()
        .enable(true)
        .send()
        .await
        .expect("CreateDetector");
    clients
        .securityhub
        .enable_security_hub()
        .send()
        .await
        .expect("EnableSecurityHub");
    for ec2 in [&ec2_home, &ec2_other] {
        ec2.enable_ebs_encryption_by_default()
            .send()
            .await
            .expect("EnableEbsEncryptionByDefault");
    }
    bucket(&clients, "evidence-locked", true).await;
    clients
        .s3
        .put_object_lock_configuration()
        .bucket("evidence-locked")
        .object_lock_configuration(
            aws_sdk_s3::types::ObjectLockConfiguration::builder()
                .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                .rule(
                    aws_sdk_s3::types::ObjectLockRule::builder()
                        .default_retention(
                            aws_sdk_s3::types::DefaultRetention::builder()
                                .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                                .days(90)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("PutObjectLockConfiguration");
    versioning(
        &clients,
        "evidence-locked",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    clients
        .s3
        .put_bucket_policy()
        .bucket("evidence-locked")
        .policy(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": ["arn:aws:s3:::evidence-locked", "arn:aws:s3:::evidence-locked/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            }, {
                "Sid": "DenyEvidenceDeletion", "Effect": "Deny", "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": ["arn:aws:s3:::evidence-locked", "arn:aws:s3:::evidence-locked/*"]
            }]})
            .to_string(),
        )
        .send()
        .await
        .expect("PutBucketPolicy");
    let limited_key = signing_key(&clients, true).await;
    // The workstation image: this account's own, made now.
    let builder = ec2_home
        .run_instances()
        .image_id(&stock)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let golden = ec2_home
        .create_image()
        .instance_id(&builder)
        .name("ec2-forensics-workstation")
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .unwrap()
        .to_owned();
    ec2_home
        .terminate_instances()
        .instance_ids(&builder)
        .send()
        .await
        .expect("TerminateInstances");
    clients
        .ssm
        .put_parameter()
        .name("/ec2-forensics/golden-ami")
        .value(&golden)
        .overwrite(true)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("PutParameter");
    // A forensic subnet in every zone, and the SSM endpoints in every VPC.
    let subnets = ec2_home
        .describe_subnets()
        .send()
        .await
        .expect("DescribeSubnets");
    let mut by_zone = BTreeMap::new();
    for subnet in subnets.subnets() {
        by_zone
            .entry(subnet.availability_zone().unwrap().to_owned())
            .or_insert_with(|| subnet.subnet_id().unwrap().to_owned());
    }
    let forensic_subnets: Vec<String> = by_zone.iter().map(|(z, s)| format!("{z}={s}")).collect();
    let vpcs = ec2_home.describe_vpcs().send().await.expect("DescribeVpcs");
    for vpc in vpcs.vpcs() {
        for service in ["ssm", "ssmmessages", "ec2messages", "s3"] {
            ec2_home
                .create_vpc_endpoint()
                .vpc_id(vpc.vpc_id().unwrap())
                .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
                .private_dns_enabled(true)
                .service_name(format!("com.amazonaws.{HOME}.{service}"))
                .send()
                .await
                .expect("CreateVpcEndpoint");
        }
    }
    clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("on-call@example.com")
        .send()
        .await
        .expect("Subscribe");
    clients
        .sqs
        .purge_queue()
        .queue_url(&dead_letters)
        .send()
        .await
        .expect("PurgeQueue");
    env.remove("POLICY_FILE");
    env.insert("EVIDENCE_BUCKET", "evidence-locked".to_owned());
    env.insert("CUSTODY_SIGNING_KEY", limited_key);
    env.insert("FORENSIC_SUBNETS", forensic_subnets.join(","));

    let ready = readiness(&moto, &env, &["--json"]);
    let found = verdicts(&ready);
    let failures: Vec<_> = found.iter().filter(|(_, v)| v.0 == "fail").collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        ready.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    for key in [
        "cloudtrail.trail".to_owned(),
        "cloudtrail.bucket".to_owned(),
        format!("guardduty.detector@{OTHER}"),
        format!("securityhub.hub@{HOME}"),
        format!("ebs.encryption-by-default@{OTHER}"),
        "evidence.object-lock".to_owned(),
        "evidence.versioning".to_owned(),
        "evidence.policy".to_owned(),
        "custody.key".to_owned(),
        "workstation.golden-ami".to_owned(),
        "workstation.subnets".to_owned(),
        format!("ssm.endpoints@{HOME}"),
        "approval.topic".to_owned(),
        "dead-letter.queue".to_owned(),
    ] {
        let (verdict, what, _) = found
            .get(&key)
            .unwrap_or_else(|| panic!("{key}: {found:#?}"));
        assert_eq!(verdict, "pass", "{key}: {what}");
    }
    assert!(found["custody.key"].1.contains(SIGNER));
}

#[test]
fn regions_that_are_not_names_are_refused_before_any_call() {
    let output = Command::new(env!("CARGO_BIN_EXE_ec2-forensics"))
        .args(["readiness", "--regions", "us-east-1;rm -rf /"])
        .env("AWS_REGION", HOME)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("the CLI runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("InvalidRequest"), "{stderr}");
}
