//! `ec2-forensics check-amis` against moto: the running instances launched
//! from an image the policy's `approvedImages` does not approve, and why.
//!
//! Attacks tried: an image named like an approved one but not from an
//! approved owner (a name alone never approves); an image deregistered
//! after the launch (nothing shows it approved); a policy that names
//! nothing to check against (refused, not "all approved").

use std::process::{Command, Output};

use playbook::aws::Clients;
use serde_json::Value;
use system_tests::{linux_image, Moto};

fn cli(moto: &Moto, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ec2-forensics"))
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("WORKLOAD_ROLE_NAME")
        .env_remove("POLICY_FILE")
        .env_remove("POLICY_PARAMETER")
        .output()
        .expect("the CLI runs")
}

async fn launch(clients: &Clients, image: &str) -> String {
    clients
        .ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned()
}

/// An image of this account made from `instance`, named `name`.
async fn image_of(clients: &Clients, instance: &str, name: &str) -> String {
    clients
        .ec2
        .create_image()
        .instance_id(instance)
        .name(name)
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .unwrap()
        .to_owned()
}

fn policy_file(name: &str, policy: &Value) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("check-amis-{}-{name}.json", std::process::id()));
    std::fs::write(&path, policy.to_string()).expect("policy file");
    path
}

#[tokio::test]
async fn the_running_instances_on_unapproved_images_are_listed_with_why() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let amazon = linux_image(&clients).await;
    let builder = launch(&clients, &amazon).await;
    let golden = image_of(&clients, &builder, "golden-web-2026-11").await;
    let rogue = image_of(&clients, &builder, "rogue-miner").await;
    let gone = image_of(&clients, &builder, "golden-web-old").await;
    let listed = image_of(&clients, &builder, "vendor-appliance").await;
    let on_golden = launch(&clients, &golden).await;
    let on_rogue = launch(&clients, &rogue).await;
    let on_gone = launch(&clients, &gone).await;
    let on_listed = launch(&clients, &listed).await;
    clients
        .ec2
        .deregister_image()
        .image_id(&gone)
        .send()
        .await
        .expect("DeregisterImage");
    // A stopped instance can be started at any time: checked too.
    let stopped = launch(&clients, &rogue).await;
    clients
        .ec2
        .stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .expect("StopInstances");
    clients
        .ssm
        .put_parameter()
        .name("/ec2-forensics/approved-amis")
        .value(format!("ami-0000000000000000f, {listed}"))
        .r#type(aws_sdk_ssm::types::ParameterType::StringList)
        .send()
        .await
        .expect("PutParameter");
    let account = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity")
        .account()
        .unwrap()
        .to_owned();

    let policy = policy_file(
        "gapped",
        &serde_json::json!({"approvedImages": {
            "owners": [account],
            "namePatterns": ["golden-*"],
            "parameter": "/ec2-forensics/approved-amis"
        }}),
    );
    let output = cli(&moto, &["check-amis", "--policy", policy.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "unapproved instances found: exit 1; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let why_of = |instance: &str| {
        report["unapproved"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["instanceId"] == instance)
            .map(|u| u["why"].as_str().unwrap_or_default().to_owned())
    };
    assert!(why_of(&on_golden).is_none(), "{report:#}");
    assert!(
        why_of(&on_listed).is_none(),
        "listed in the parameter: {report:#}"
    );
    let stopped_why = why_of(&stopped).expect("a stopped instance can be started again");
    assert!(
        stopped_why.contains("matches no approved pattern"),
        "{stopped_why}"
    );
    let rogue_why = why_of(&on_rogue).expect("the rogue image");
    assert!(
        rogue_why.contains("matches no approved pattern"),
        "{rogue_why}"
    );
    let gone_why = why_of(&on_gone).expect("the deregistered image, named like an approved one");
    assert!(gone_why.contains("nothing shows it approved"), "{gone_why}");
    let amazon_why = why_of(&builder).expect("an Amazon image: its owner is not approved");
    assert!(amazon_why.contains("is not approved"), "{amazon_why}");
    assert_eq!(
        report["unapproved"].as_array().unwrap().len(),
        4,
        "{report:#}"
    );

    // Amazon's images and the rogue image's id approved too: only the
    // deregistered one remains.
    let policy = policy_file(
        "amazon",
        &serde_json::json!({"approvedImages": {
            "owners": [account, "amazon"],
            "namePatterns": ["golden-*", "*"],
            "imageIds": [rogue]
        }}),
    );
    let output = cli(&moto, &["check-amis", "--policy", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let unapproved: Vec<&str> = report["unapproved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(unapproved, vec![on_gone.as_str()], "{report:#}");

    // Nothing to check against: refused, never "all approved".
    let policy = policy_file("empty", &serde_json::json!({}));
    let output = cli(&moto, &["check-amis", "--policy", policy.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.trim_end().ends_with("(InvalidPolicy)"), "{said}");
    for name in ["gapped", "amazon", "empty"] {
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("check-amis-{}-{name}.json", std::process::id())),
        );
    }
}
