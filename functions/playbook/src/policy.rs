//! The response policy's decision: [`decide`] is a pure function of the
//! incident and the policy document (`case::Policy`).

use crate::case::policy::OnMiningAlarm;
pub use crate::case::policy::{glob_match, AcquisitionOrder, ApprovalTimeout, Policy, TagRule};
use crate::case::{Action, Classification, Decision, FindingSource, Incident, Indication};
use crate::findings::classify::classify;
use crate::steps::mining_alarms::SYNC_PREFIX;

/// Decides what to do about `incident` under `policy`, with the reason.
pub fn decide(incident: &Incident, policy: &Policy) -> Decision {
    let classification = classify(incident);
    let (action, reason) = decide_action(incident, &classification, policy);
    let reason = if policy.dry_run && matches!(action, Action::Respond | Action::Approve) {
        format!("dry run, nothing will be changed: {reason}")
    } else {
        reason
    };
    Decision {
        action,
        reason,
        dry_run: policy.dry_run,
        approval_timeout_seconds: (action == Action::Approve)
            .then_some(policy.approval_timeout_seconds),
        classification: Some(classification),
    }
}

fn decide_action(
    incident: &Incident,
    classification: &Classification,
    policy: &Policy,
) -> (Action, String) {
    let kind = &incident.finding_type;
    if incident.source == FindingSource::Manual {
        let who = incident
            .requested_by
            .as_deref()
            .unwrap_or("an unnamed responder");
        let why = incident.reason.as_deref().unwrap_or("no reason given");
        return (Action::Respond, format!("manual request by {who}: {why}"));
    }
    if incident.record_state.as_deref() == Some("ARCHIVED") {
        return (
            Action::Ignore,
            "the finding record is archived: it is no longer active".into(),
        );
    }
    if let Some(status @ ("RESOLVED" | "SUPPRESSED")) = incident.workflow_status.as_deref() {
        return (
            Action::Ignore,
            format!("the finding's workflow status is {status}: someone already closed it"),
        );
    }
    if incident.sample && policy.ignore_samples {
        return (
            Action::Ignore,
            "sample finding (generated for testing)".into(),
        );
    }
    if let Some(pattern) = policy.ignore_types.iter().find(|p| glob_match(p, kind)) {
        return (
            Action::Ignore,
            format!("finding type {kind} is ignored by policy ({pattern})"),
        );
    }
    if !policy.respond_to.is_empty() && !policy.respond_to.iter().any(|p| glob_match(p, kind)) {
        return (
            Action::Ignore,
            format!("finding type {kind} is not among the types the policy responds to"),
        );
    }
    if incident.source == FindingSource::ApprovedImagePolicy {
        return decide_unapproved_launch(incident, policy);
    }
    let admitted = match admit(incident, classification, policy) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    if incident.instance_state.as_deref() == Some("terminated") {
        return (
            Action::Observe,
            "the instance is terminated: nothing is left to contain".into(),
        );
    }
    // Only the tags the finding carried at detection time can exempt: whoever
    // holds stolen credentials with ec2:CreateTags could set a live one.
    if let Some(tag) = policy
        .exempt_tags
        .iter()
        .find_map(|r| r.matches(&incident.tags))
    {
        return (
            Action::Observe,
            format!("instance exempt by tag {tag} (carried by the finding at detection time)"),
        );
    }
    let minimum = policy.min_severity_for(incident.source);
    if incident.severity < minimum {
        return (
            Action::Observe,
            format!(
                "severity {:.1} is below the policy minimum {minimum:.1}",
                incident.severity
            ),
        );
    }
    let count = incident.instance_ids.len();
    if count > policy.max_instances {
        return (
            Action::Approve,
            format!(
                "{count} instances exceed the policy's maxInstances {}: a person approves first",
                policy.max_instances
            ),
        );
    }
    if let Some(tag) = policy.approval_tags.iter().find_map(|r| {
        r.matches(&incident.tags)
            .or_else(|| r.matches(&incident.live_tags))
    }) {
        return (
            Action::Approve,
            format!("instance tagged {tag}: a person approves first"),
        );
    }
    if let Some(alarm) = synced_mining_alarm(incident) {
        if policy.mining_alarms.on_alarm == OnMiningAlarm::Notify {
            return (
                Action::Approve,
                format!(
                    "{alarm} is a heuristic signal of sync-alarms; \
                     miningAlarms.onAlarm is notify: a person decides whether to contain"
                ),
            );
        }
    }
    (
        Action::Respond,
        format!(
            "{kind} at severity {:.1} (policy minimum {minimum:.1}); {admitted}",
            incident.severity
        ),
    )
}

/// The name of the `sync-alarms` alarm that raised `incident`, if one did.
fn synced_mining_alarm(incident: &Incident) -> Option<&str> {
    if incident.source != FindingSource::CloudWatchAlarm {
        return None;
    }
    incident
        .finding_type
        .split_once('/')
        .map(|(_, name)| name)
        .filter(|name| name.starts_with(SYNC_PREFIX))
}

/// A launch from an unapproved image: the policy's
/// `approvedImages.onUnapproved` decides. The launch's own tags never exempt
/// (whoever launched set them); live approval tags and `maxInstances` still
/// send a containment to a person first.
fn decide_unapproved_launch(incident: &Incident, policy: &Policy) -> (Action, String) {
    use crate::case::policy::OnUnapproved;
    let what = "launched from an image the policy's approvedImages does not approve";
    match policy.approved_images.on_unapproved {
        OnUnapproved::Observe => (
            Action::Observe,
            format!("{what}; approvedImages.onUnapproved is observe: recorded, nothing changed"),
        ),
        OnUnapproved::Notify => (
            Action::Approve,
            format!("{what}; approvedImages.onUnapproved is notify: a person decides whether to contain"),
        ),
        OnUnapproved::Contain => {
            if incident.instance_state.as_deref() == Some("terminated") {
                return (
                    Action::Observe,
                    "the instance is terminated: nothing is left to contain".into(),
                );
            }
            let count = incident.instance_ids.len();
            if count > policy.max_instances {
                return (
                    Action::Approve,
                    format!(
                        "{what}; {count} instances exceed the policy's maxInstances {}: a person approves first",
                        policy.max_instances
                    ),
                );
            }
            if let Some(tag) = policy
                .approval_tags
                .iter()
                .find_map(|r| r.matches(&incident.live_tags))
            {
                return (
                    Action::Approve,
                    format!("{what}; instance tagged {tag}: a person approves first"),
                );
            }
            (
                Action::Respond,
                format!("{what}; approvedImages.onUnapproved is contain"),
            )
        }
    }
}

/// The gate that comes before any severity test: only an indicator of
/// compromise goes on, unless a person chose the finding or the policy names
/// its type or product. `Ok` says why it goes on; `Err` is the decision.
fn admit(
    incident: &Incident,
    classification: &Classification,
    policy: &Policy,
) -> Result<String, (Action, String)> {
    let Classification {
        indication,
        decided_by,
    } = classification;
    let what = match indication {
        Indication::Compromised => return Ok(format!("an indicator of compromise ({decided_by})")),
        Indication::Exposed => "the instance is only the target of outside activity",
        Indication::Weakness => "a weakness, not an indicator of compromise",
        Indication::Unclassified => "nothing says the instance is compromised",
    };
    let kind = &incident.finding_type;
    if let Some(pattern) = policy
        .opt_in_types
        .iter()
        .find(|p| glob_match(p, kind) || incident.asff_types.iter().any(|t| glob_match(p, t)))
    {
        return Ok(format!(
            "{what} ({decided_by}), opted in by policy type {pattern}"
        ));
    }
    if let Some(pattern) = incident.product_arn.as_deref().and_then(|product| {
        policy
            .opt_in_products
            .iter()
            .find(|p| glob_match(p, product))
    }) {
        return Ok(format!(
            "{what} ({decided_by}), opted in by policy product {pattern}"
        ));
    }
    if incident.chosen_by_person {
        let who = incident.requested_by.as_deref().unwrap_or("a person");
        return Ok(format!(
            "{what} ({decided_by}), but a person chose this finding: {who}"
        ));
    }
    let action = match indication {
        Indication::Weakness => Action::Ignore,
        _ => Action::Observe,
    };
    let outside = outside_activity_text(incident);
    Err((
        action,
        format!(
            "{kind}: {what} ({decided_by}){outside}; the policy may opt it in \
             (optInTypes, optInProducts)"
        ),
    ))
}

/// The ports and sources a finding reported, for the decision and the notification.
pub fn outside_activity_text(incident: &Incident) -> String {
    let activity = &incident.outside_activity;
    if activity.is_empty() {
        return String::new();
    }
    let ports: Vec<String> = activity.local_ports.iter().map(u16::to_string).collect();
    let list = |items: &[String]| {
        if items.is_empty() {
            "not reported".to_owned()
        } else {
            items.join(", ")
        }
    };
    format!(
        "; reported port(s) {} from {}",
        list(&ports),
        list(&activity.remote_addresses)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(kind: &str, severity: f64) -> Incident {
        crate::case::example_incident(FindingSource::GuardDuty, kind, severity)
    }

    #[test]
    fn glob_matches_prefix_suffix_and_middle() {
        assert!(glob_match(
            "CryptoCurrency:EC2/*",
            "CryptoCurrency:EC2/BitcoinTool.B!DNS"
        ));
        assert!(glob_match("*!DNS", "Backdoor:EC2/C&CActivity.B!DNS"));
        assert!(glob_match("Backdoor:*/C&C*", "Backdoor:EC2/C&CActivity.B"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn high_severity_finding_is_responded_to() {
        let d = decide(
            &incident("Backdoor:EC2/C&CActivity.B!DNS", 8.0),
            &Policy::default(),
        );
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        assert!(!d.dry_run);
    }

    #[test]
    fn low_severity_is_observed_with_the_threshold_in_the_reason() {
        let d = decide(&incident("Backdoor:EC2/Spambot", 2.0), &Policy::default());
        assert_eq!(d.action, Action::Observe);
        assert!(
            d.reason.contains("below the policy minimum 4.0"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn per_source_minimum_overrides_the_global_one() {
        let mut policy = Policy::default();
        policy
            .min_severity_by_source
            .insert(FindingSource::GuardDuty, 7.0);
        let d = decide(&incident("Backdoor:EC2/Spambot", 5.0), &policy);
        assert_eq!(d.action, Action::Observe);
    }

    #[test]
    fn ssh_brute_force_target_is_the_victim_and_only_observed() {
        let mut victim = incident("UnauthorizedAccess:EC2/SSHBruteForce", 5.0);
        victim.resource_role = Some("TARGET".into());
        let d = decide(&victim, &Policy::default());
        assert_eq!(d.action, Action::Observe);
        assert!(
            d.reason.contains("target of outside activity"),
            "{}",
            d.reason
        );
        assert_eq!(
            d.classification.map(|c| c.indication),
            Some(Indication::Exposed)
        );

        let mut attacker = victim.clone();
        attacker.resource_role = Some("ACTOR".into());
        assert_eq!(
            decide(&attacker, &Policy::default()).action,
            Action::Respond
        );
    }

    #[test]
    fn dns_crypto_mining_target_is_the_miner() {
        let mut miner = incident("CryptoCurrency:EC2/BitcoinTool.B!DNS", 8.0);
        miner.resource_role = Some("TARGET".into());
        assert_eq!(decide(&miner, &Policy::default()).action, Action::Respond);
    }

    #[test]
    fn sample_findings_are_ignored_unless_the_policy_keeps_them() {
        let mut sample = incident("Backdoor:EC2/Spambot", 8.0);
        sample.sample = true;
        let d = decide(&sample, &Policy::default());
        assert_eq!(d.action, Action::Ignore);
        assert!(d.reason.contains("sample"));
        let policy = Policy {
            ignore_samples: false,
            ..Policy::default()
        };
        assert_eq!(decide(&sample, &policy).action, Action::Respond);
    }

    #[test]
    fn ignored_and_unlisted_types_are_ignored() {
        let policy = Policy {
            ignore_types: vec!["Recon:*".into()],
            ..Policy::default()
        };
        assert_eq!(
            decide(&incident("Recon:EC2/Portscan", 9.0), &policy).action,
            Action::Ignore
        );
        let policy = Policy {
            respond_to: vec!["CryptoCurrency:*".into()],
            ..Policy::default()
        };
        assert_eq!(
            decide(&incident("Backdoor:EC2/Spambot", 9.0), &policy).action,
            Action::Ignore
        );
        assert_eq!(
            decide(&incident("CryptoCurrency:EC2/BitcoinTool.B", 9.0), &policy).action,
            Action::Respond
        );
    }

    #[test]
    fn exempt_tag_observes_and_production_tag_needs_approval() {
        let mut exempt = incident("Backdoor:EC2/Spambot", 8.0);
        exempt
            .tags
            .insert("ec2-forensics:exempt".into(), "true".into());
        let d = decide(&exempt, &Policy::default());
        assert_eq!(d.action, Action::Observe);
        assert!(d.reason.contains("ec2-forensics:exempt=true"));

        let mut production = incident("Backdoor:EC2/Spambot", 8.0);
        production
            .tags
            .insert("Environment".into(), "production".into());
        assert_eq!(
            decide(&production, &Policy::default()).action,
            Action::Approve
        );
        production
            .tags
            .insert("Environment".into(), "staging".into());
        assert_eq!(
            decide(&production, &Policy::default()).action,
            Action::Respond
        );
    }

    #[test]
    fn a_launch_from_an_unapproved_image_does_what_the_policy_says() {
        use crate::case::policy::{ApprovedImages, OnUnapproved};
        let mut launch = incident("UnapprovedImage/RunInstances", 5.0);
        launch.source = FindingSource::ApprovedImagePolicy;
        launch.detected_by = FindingSource::ApprovedImagePolicy;
        // The launcher tagged its instance exempt: never counts.
        launch
            .tags
            .insert("ec2-forensics:exempt".into(), "true".into());
        let with = |on_unapproved| Policy {
            approved_images: ApprovedImages {
                owners: vec!["amazon".into()],
                on_unapproved,
                ..ApprovedImages::default()
            },
            ..Policy::default()
        };
        let d = decide(&launch, &Policy::default());
        assert_eq!(d.action, Action::Approve, "notify by default: {}", d.reason);
        assert_eq!(
            decide(&launch, &with(OnUnapproved::Observe)).action,
            Action::Observe
        );
        let d = decide(&launch, &with(OnUnapproved::Contain));
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        assert!(d.reason.contains("onUnapproved is contain"), "{}", d.reason);
        // Severity minimums are for findings; a launch is not a finding.
        let strict = Policy {
            min_severity: 9.0,
            ..with(OnUnapproved::Contain)
        };
        assert_eq!(decide(&launch, &strict).action, Action::Respond);
        // A live approval tag still sends containment to a person first.
        launch
            .live_tags
            .insert("Environment".into(), "production".into());
        assert_eq!(
            decide(&launch, &with(OnUnapproved::Contain)).action,
            Action::Approve
        );
        launch.instance_state = Some("terminated".into());
        assert_eq!(
            decide(&launch, &with(OnUnapproved::Contain)).action,
            Action::Observe
        );
        // The policy may still ignore the type altogether.
        let ignoring = Policy {
            ignore_types: vec!["UnapprovedImage/*".into()],
            ..with(OnUnapproved::Contain)
        };
        assert_eq!(decide(&launch, &ignoring).action, Action::Ignore);
    }

    #[test]
    fn a_live_tag_can_demand_approval_but_never_exempt() {
        let mut retagged = incident("Backdoor:EC2/Spambot", 8.0);
        retagged
            .live_tags
            .insert("ec2-forensics:exempt".into(), "true".into());
        let d = decide(&retagged, &Policy::default());
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        retagged
            .live_tags
            .insert("Environment".into(), "production".into());
        assert_eq!(
            decide(&retagged, &Policy::default()).action,
            Action::Approve
        );
    }

    #[test]
    fn archived_resolved_and_suppressed_findings_are_ignored_with_the_reason() {
        let mut archived = incident("Backdoor:EC2/Spambot", 8.0);
        archived.record_state = Some("ARCHIVED".into());
        let d = decide(&archived, &Policy::default());
        assert_eq!(d.action, Action::Ignore);
        assert!(d.reason.contains("archived"), "{}", d.reason);
        for status in ["RESOLVED", "SUPPRESSED"] {
            let mut closed = incident("Backdoor:EC2/Spambot", 8.0);
            closed.workflow_status = Some(status.into());
            let d = decide(&closed, &Policy::default());
            assert_eq!(d.action, Action::Ignore);
            assert!(d.reason.contains(status), "{}", d.reason);
        }
        let mut notified = incident("Backdoor:EC2/Spambot", 8.0);
        notified.workflow_status = Some("NOTIFIED".into());
        assert_eq!(
            decide(&notified, &Policy::default()).action,
            Action::Respond
        );
    }

    #[test]
    fn too_many_instances_need_approval() {
        let mut wide = incident("Backdoor:EC2/Spambot", 8.0);
        wide.instance_ids = (0..3).map(|n| format!("i-{n:017}")).collect();
        let policy = Policy {
            max_instances: 2,
            ..Policy::default()
        };
        assert_eq!(decide(&wide, &policy).action, Action::Approve);
    }

    #[test]
    fn terminated_instance_is_observed() {
        let mut gone = incident("Backdoor:EC2/Spambot", 8.0);
        gone.instance_state = Some("terminated".into());
        assert_eq!(decide(&gone, &Policy::default()).action, Action::Observe);
    }

    #[test]
    fn manual_request_is_responded_to_with_who_and_why() {
        let mut manual = incident("Manual", 0.0);
        manual.source = FindingSource::Manual;
        manual.requested_by = Some("alice".into());
        manual.reason = Some("odd outbound traffic".into());
        let d = decide(&manual, &Policy::default());
        assert_eq!(d.action, Action::Respond);
        assert_eq!(d.reason, "manual request by alice: odd outbound traffic");
    }

    #[test]
    fn dry_run_keeps_the_action_and_says_so() {
        let policy = Policy {
            dry_run: true,
            ..Policy::default()
        };
        let d = decide(&incident("Backdoor:EC2/Spambot", 8.0), &policy);
        assert_eq!(d.action, Action::Respond);
        assert!(d.dry_run);
        assert!(d.reason.starts_with("dry run"));
    }

    #[test]
    fn policy_file_names_only_what_it_changes_and_typos_are_errors() {
        let policy = Policy::from_json(r#"{"minSeverity": 7, "dryRun": true}"#).unwrap();
        assert_eq!(policy.min_severity, 7.0);
        assert!(policy.dry_run);
        assert_eq!(policy.opt_in_types, Policy::default().opt_in_types);
        let older = Policy::from_json(
            r#"{"resourceRoles": [{"findingType": "UnauthorizedAccess:EC2/SSHBruteForce", "respondWhen": ["ACTOR"]}]}"#,
        )
        .expect("an older policy still parses");
        assert_eq!(older.opt_in_types, Policy::default().opt_in_types);
        let err = Policy::from_json(r#"{"minSeverty": 7}"#).unwrap_err();
        assert_eq!(err.error_type(), "InvalidPolicy");
        let err = Policy::from_json(r#"{"minSeverity": 70}"#).unwrap_err();
        assert!(err.to_string().contains("outside 0-10"));
    }

    #[test]
    fn an_approved_image_list_the_functions_cannot_read_is_refused_at_load() {
        for name in [
            "/golden/approved-amis",
            "/ec2-forensics/",
            "ec2-forensics/approved",
        ] {
            let text = format!(r#"{{"approvedImages": {{"parameter": "{name}"}}}}"#);
            let err = Policy::from_json(&text).unwrap_err();
            assert_eq!(err.error_type(), "InvalidPolicy", "{name}");
            assert!(err.to_string().contains("/ec2-forensics/"), "{err}");
        }
        let ok = Policy::from_json(
            r#"{"approvedImages": {"parameter": "/ec2-forensics/approved-amis"}}"#,
        )
        .expect("under the project's path");
        assert_eq!(
            ok.approved_images.parameter.as_deref(),
            Some("/ec2-forensics/approved-amis")
        );
    }

    fn posture(kind: &str, severity: f64) -> Incident {
        let mut finding = incident(kind, severity);
        finding.source = FindingSource::SecurityHub;
        finding.detected_by = FindingSource::SecurityHub;
        finding.product_arn = Some("arn:aws:securityhub:us-east-1::product/aws/inspector".into());
        finding.asff_types = vec![kind.to_owned()];
        finding
    }

    #[test]
    fn a_weakness_is_ignored_whatever_its_severity_or_tags() {
        let cve = "Software and Configuration Checks/Vulnerabilities/CVE";
        let mut finding = posture(cve, 10.0);
        finding
            .tags
            .insert("Environment".into(), "production".into());
        let d = decide(&finding, &Policy::default());
        assert_eq!(d.action, Action::Ignore, "{}", d.reason);
        assert!(d.reason.contains("a weakness"), "{}", d.reason);
        assert!(d.reason.contains("optInTypes"), "{}", d.reason);
        let policy = Policy {
            min_severity: 0.0,
            ..Policy::default()
        };
        assert_eq!(decide(&finding, &policy).action, Action::Ignore);
    }

    #[test]
    fn the_policy_opts_a_type_or_a_product_in_explicitly() {
        let cve = "Software and Configuration Checks/Vulnerabilities/CVE";
        let by_type = Policy {
            opt_in_types: vec!["Software and Configuration Checks/Vulnerabilities/*".into()],
            ..Policy::default()
        };
        let d = decide(&posture(cve, 9.0), &by_type);
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        assert!(d.reason.contains("opted in by policy type"), "{}", d.reason);
        // Opted in, the severity test still applies.
        assert_eq!(decide(&posture(cve, 1.0), &by_type).action, Action::Observe);
        let by_product = Policy {
            opt_in_products: vec!["arn:aws:securityhub:*::product/aws/inspector".into()],
            ..Policy::default()
        };
        let d = decide(&posture(cve, 9.0), &by_product);
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        assert!(
            d.reason.contains("opted in by policy product"),
            "{}",
            d.reason
        );

        let mut probe = incident("Recon:EC2/PortProbeEMRUnprotectedPort", 8.0);
        probe.resource_role = Some("TARGET".into());
        assert_eq!(decide(&probe, &Policy::default()).action, Action::Observe);
        let exposed_in = Policy {
            opt_in_types: vec!["Recon:EC2/PortProbeEMRUnprotectedPort".into()],
            ..Policy::default()
        };
        assert_eq!(decide(&probe, &exposed_in).action, Action::Respond);
    }

    #[test]
    fn an_exposed_instance_is_observed_with_the_port_and_source() {
        let mut probe = incident("Recon:EC2/PortProbeEMRUnprotectedPort", 8.0);
        probe.resource_role = Some("TARGET".into());
        probe.outside_activity = crate::case::OutsideActivity {
            local_ports: vec![8088],
            remote_addresses: vec!["203.0.113.45".into()],
        };
        let d = decide(&probe, &Policy::default());
        assert_eq!(d.action, Action::Observe);
        assert!(
            d.reason.contains("port(s) 8088 from 203.0.113.45"),
            "{}",
            d.reason
        );
        let classification = d.classification.expect("classified");
        assert_eq!(classification.indication, Indication::Exposed);
        assert_eq!(
            classification.decided_by,
            "GuardDuty table: Recon:EC2/PortProbeEMRUnprotectedPort as TARGET"
        );
    }

    #[test]
    fn an_unclassified_finding_is_observed() {
        let mut alarm = incident("CloudWatchAlarm:ALARM/disk-full", 5.0);
        alarm.source = FindingSource::CloudWatchAlarm;
        alarm.detected_by = FindingSource::CloudWatchAlarm;
        let d = decide(&alarm, &Policy::default());
        assert_eq!(d.action, Action::Observe);
        assert!(d.reason.contains("nothing says"), "{}", d.reason);
    }

    fn alarm(name: &str) -> Incident {
        let mut alarm = incident(&format!("CloudWatchAlarm:ALARM/{name}"), 8.0);
        alarm.source = FindingSource::CloudWatchAlarm;
        alarm.detected_by = FindingSource::CloudWatchAlarm;
        alarm
    }

    #[test]
    fn a_sync_alarm_asks_a_person_first_unless_the_policy_says_contain() {
        let synced = alarm("ec2-forensics-crypto-mining-sync-pool-ports-i-0123456789abcdef0");
        let d = decide(&synced, &Policy::default());
        assert_eq!(d.action, Action::Approve, "{}", d.reason);
        assert!(
            d.reason.contains("miningAlarms.onAlarm is notify"),
            "{}",
            d.reason
        );

        let mut contain = Policy::default();
        contain.mining_alarms.on_alarm = OnMiningAlarm::Contain;
        assert_eq!(decide(&synced, &contain).action, Action::Respond);

        // An alarm a person set up under the convention is their decision.
        let made = alarm("ec2-forensics-crypto-mining-build-farm");
        let d = decide(&made, &Policy::default());
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
    }

    #[test]
    fn a_person_choosing_a_weakness_is_their_decision_and_says_so() {
        let mut chosen = posture("Software and Configuration Checks/Vulnerabilities/CVE", 9.0);
        chosen.chosen_by_person = true;
        chosen.requested_by = Some("Security Hub custom action Start EC2 forensics".into());
        let d = decide(&chosen, &Policy::default());
        assert_eq!(d.action, Action::Respond, "{}", d.reason);
        assert!(
            d.reason.contains("a person chose this finding"),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("custom action"), "{}", d.reason);
    }
}
