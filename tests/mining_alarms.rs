//! sync-alarms against moto's CloudWatch: one alarm per signal and
//! instance, under the crypto-mining convention, brought back to the policy
//! and deleted with its instance; an alarm a person made is never touched,
//! nor is the responder's own workstation watched. Then, on the local stack,
//! one of its alarms going to ALARM opens a case through dispatch.

use std::collections::BTreeSet;

use playbook::case::policy::{MiningAlarms, MiningSignal, OnMiningAlarm};
use playbook::policy::Policy;
use playbook::steps::mining_alarms::{sync, SYNC_PREFIX};
use playbook::Responder;
use serde_json::Value;
use system_tests::{event_for, linux_image, LocalStack, Moto};

async fn alarm_names(responder: &Responder) -> BTreeSet<String> {
    responder
        .clients
        .cloudwatch
        .describe_alarms()
        .send()
        .await
        .expect("DescribeAlarms")
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_owned))
        .collect()
}

async fn launch(responder: &Responder, image: &str, profile: Option<&str>) -> String {
    let mut run = responder
        .clients
        .ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if let Some(name) = profile {
        run = run.iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(name)
                .build(),
        );
    }
    run.send().await.expect("RunInstances").instances()[0]
        .instance_id()
        .unwrap()
        .to_owned()
}

async fn put_alarm(responder: &Responder, name: &str, instance: &str) {
    responder
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("InstanceId")
                .value(instance)
                .build(),
        )
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(300)
        .evaluation_periods(1)
        .threshold(50.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
}

#[tokio::test]
async fn the_alarms_follow_the_instances_and_the_policy() {
    let moto = Moto::start();
    let mut responder = moto
        .responder(Policy {
            mining_alarms: MiningAlarms {
                signals: vec![MiningSignal::Cpu, MiningSignal::PoolPorts],
                ..MiningAlarms::default()
            },
            ..Policy::default()
        })
        .await;
    let image = linux_image(&responder.clients).await;
    let iam = &responder.clients.iam;
    let profile = iam
        .create_instance_profile()
        .instance_profile_name("ec2-forensics-workstation")
        .send()
        .await
        .expect("CreateInstanceProfile");
    responder.config.forensic_instance_profile =
        profile.instance_profile().map(|p| p.arn().to_owned());
    let web = launch(&responder, &image, None).await;
    let batch = launch(&responder, &image, None).await;
    let workstation = launch(&responder, &image, Some("ec2-forensics-workstation")).await;
    // A person's own alarm under the convention, and one left behind by an
    // earlier run for an instance long gone.
    put_alarm(&responder, "ec2-forensics-crypto-mining-by-hand", &web).await;
    let stale = format!("{SYNC_PREFIX}cpu-i-0123456789abcdef0");
    put_alarm(&responder, &stale, "i-0123456789abcdef0").await;

    let report = sync(&responder).await.expect("synced");
    let mut want: Vec<String> = [&web, &batch]
        .iter()
        .flat_map(|i| {
            [
                format!("{SYNC_PREFIX}cpu-{i}"),
                format!("{SYNC_PREFIX}pool-ports-{i}"),
            ]
        })
        .collect();
    want.sort();
    let mut created = report.created.clone();
    created.sort();
    assert_eq!(created, want, "{report:?}");
    assert_eq!(report.deleted, vec![stale.clone()]);
    let names = alarm_names(&responder).await;
    assert!(names.contains("ec2-forensics-crypto-mining-by-hand"));
    assert!(
        !names.iter().any(|n| n.contains(&workstation)),
        "the workstation is not watched: {names:?}"
    );
    let cpu = responder
        .clients
        .cloudwatch
        .describe_alarms()
        .alarm_names(format!("{SYNC_PREFIX}cpu-{web}"))
        .send()
        .await
        .expect("DescribeAlarms");
    let cpu = &cpu.metric_alarms()[0];
    assert_eq!(cpu.threshold(), Some(90.0));
    assert_eq!(
        cpu.evaluation_periods(),
        Some(6),
        "30 minutes of 5-minute periods"
    );
    assert_eq!(cpu.dimensions()[0].value(), Some(web.as_str()));

    // Nothing changed: nothing put again.
    let again = sync(&responder).await.expect("synced");
    assert_eq!(again.kept, 4, "{again:?}");
    assert!(again.created.is_empty() && again.updated.is_empty() && again.deleted.is_empty());

    // Someone turns an alarm round by hand (the same metric and threshold,
    // but "below" and missing data as a breach): it is put back.
    let turned = format!("{SYNC_PREFIX}cpu-{web}");
    responder
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&turned)
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("InstanceId")
                .value(&web)
                .build(),
        )
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(300)
        .evaluation_periods(6)
        .datapoints_to_alarm(6)
        .threshold(90.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::LessThanThreshold)
        .treat_missing_data("breaching")
        .send()
        .await
        .expect("PutMetricAlarm");
    let put_back = sync(&responder).await.expect("synced");
    assert_eq!(put_back.updated, vec![turned.clone()], "{put_back:?}");
    let alarm = responder
        .clients
        .cloudwatch
        .describe_alarms()
        .alarm_names(&turned)
        .send()
        .await
        .expect("DescribeAlarms");
    let alarm = &alarm.metric_alarms()[0];
    assert_eq!(
        alarm.comparison_operator(),
        Some(&aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold)
    );
    assert_eq!(alarm.treat_missing_data(), Some("notBreaching"));

    // The policy changes: the alarms follow it.
    responder.policy.mining_alarms.cpu_percent = 80.0;
    let changed = sync(&responder).await.expect("synced");
    assert_eq!(changed.updated.len(), 2, "{changed:?}");
    assert_eq!(changed.kept, 2);

    // An instance goes: its alarms go.
    responder
        .clients
        .ec2
        .terminate_instances()
        .instance_ids(&batch)
        .send()
        .await
        .expect("TerminateInstances");
    let after = sync(&responder).await.expect("synced");
    let mut deleted = after.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            format!("{SYNC_PREFIX}cpu-{batch}"),
            format!("{SYNC_PREFIX}pool-ports-{batch}")
        ]
    );

    // No signal: every alarm of this function goes, the person's stays.
    responder.policy.mining_alarms.signals.clear();
    sync(&responder).await.expect("synced");
    let names = alarm_names(&responder).await;
    assert_eq!(
        names,
        BTreeSet::from(["ec2-forensics-crypto-mining-by-hand".to_owned()])
    );
}

/// The whole signal on the local stack: the deployed sync-alarms function
/// makes the victim's CPU alarm; the alarm goes to ALARM (set by hand: the
/// emulator has no metrics), and the event EventBridge would deliver for
/// it opens a case through dispatch that contains the instance (the policy
/// says contain; by default a person is asked first, `playbook::policy`).
#[tokio::test]
async fn a_crypto_mining_alarm_opens_a_case() {
    let policy = Policy {
        mining_alarms: MiningAlarms {
            signals: vec![MiningSignal::Cpu],
            on_alarm: OnMiningAlarm::Contain,
            ..MiningAlarms::default()
        },
        ..Policy::default()
    };
    let stack = LocalStack::start(Some(&policy));
    let estate = stack.seed("mining");
    let victim = estate.victim.instance_id.clone();
    let report = stack.invoke("sync-alarms", &serde_json::json!({}));
    let name = format!("{SYNC_PREFIX}cpu-{victim}");
    assert!(
        report["created"]
            .as_array()
            .expect("created")
            .iter()
            .any(|n| n == name.as_str()),
        "{report:#}"
    );
    let cloudwatch = stack.clients().await.cloudwatch;
    cloudwatch
        .set_alarm_state()
        .alarm_name(&name)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason(
            "Threshold Crossed: 6 datapoints were greater than or equal to the threshold (90.0).",
        )
        .send()
        .await
        .expect("SetAlarmState");
    let alarm = cloudwatch
        .describe_alarms()
        .alarm_names(&name)
        .send()
        .await
        .expect("DescribeAlarms");
    let alarm = &alarm.metric_alarms()[0];
    assert_eq!(alarm.state_value().map(|s| s.as_str()), Some("ALARM"));

    // The event EventBridge delivers for that state change.
    let mut event: Value = event_for("cloudwatch-alarm-cpu-mining.json", &victim);
    event["resources"][0] = alarm.alarm_arn().expect("an ARN").into();
    event["detail"]["alarmName"] = name.as_str().into();
    event["detail"]["state"]["timestamp"] = "2026-11-30T12:00:00.000+0000".into();
    let dispatched = stack.invoke("dispatch", &event);
    assert_eq!(
        dispatched["cases"][0]["status"], "started",
        "{dispatched:#}"
    );
    let arn = dispatched["cases"][0]["executionArn"]
        .as_str()
        .expect("an execution")
        .to_owned();
    let (status, output) = stack.ended(&arn).await;
    assert_eq!(status, "SUCCEEDED", "{output:#}");
    let case: playbook::Case = serde_json::from_value(output).expect("a Case");
    assert_eq!(
        case.incident.source,
        playbook::case::FindingSource::CloudWatchAlarm
    );
    assert_eq!(case.incident.instance_ids, vec![victim.clone()]);
    system_tests::assert_contained(&case);
}
