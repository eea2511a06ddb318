//! What a finding indicates about the instance it names, decided before any
//! severity test: only an indicator of compromise can start a response.
//!
//! GuardDuty findings are classified by the table in `guardduty_types`
//! (type and resource role); ASFF findings of other products by their
//! `Types` taxonomy and `Compliance` block.

use super::guardduty_types::{GUARDDUTY_FAMILIES, GUARDDUTY_TYPES};
use crate::case::{Classification, FindingSource, Incident, Indication};

/// Which GuardDuty resource role a table entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleMatch {
    /// Whatever the role (or none given).
    AnyRole,
    /// The instance initiated the activity.
    Actor,
    /// The instance was the object of the activity.
    Target,
}

/// One GuardDuty finding type under one resource role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardDutyType {
    /// The full type, `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`.
    pub finding_type: &'static str,
    /// The resource role this entry is for.
    pub role: RoleMatch,
    /// What the type says of the instance under that role.
    pub indication: Indication,
}

impl GuardDutyType {
    /// A table entry.
    pub const fn new(finding_type: &'static str, role: RoleMatch, indication: Indication) -> Self {
        Self {
            finding_type,
            role,
            indication,
        }
    }
}

/// A family of GuardDuty types (`ThreatPurpose:ResourceTypeAffected`), for
/// types GuardDuty adds after the table was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardDutyFamily {
    /// The family prefix, e.g. `Backdoor:EC2` (matched before the `/`).
    pub prefix: &'static str,
    /// The resource role this entry is for.
    pub role: RoleMatch,
    /// What a new type of the family says of the instance under that role.
    pub indication: Indication,
}

impl GuardDutyFamily {
    /// A family entry.
    pub const fn new(prefix: &'static str, role: RoleMatch, indication: Indication) -> Self {
        Self {
            prefix,
            role,
            indication,
        }
    }
}

/// ASFF `Types` namespaces of threat detection: tactics, techniques and
/// procedures, effects, and unusual behaviour.
pub const THREAT_TYPE_PREFIXES: [&str; 3] = ["TTPs/", "Effects/", "Unusual Behaviors/"];

/// ASFF `Types` namespaces of posture: control and rule evaluations,
/// vulnerabilities, patch state. Patch Manager spells it with `&`.
pub const WEAKNESS_TYPE_PREFIXES: [&str; 2] = [
    "Software and Configuration Checks",
    "Software & Configuration Checks",
];

/// The alarm-name prefix of the deployment's crypto-mining alarms (README):
/// an alarm so named was set up to say that an instance mines.
pub const CRYPTO_MINING_ALARM_PREFIX: &str = "ec2-forensics-crypto-mining-";

/// What `incident` indicates about its instances, and what decided it.
pub fn classify(incident: &Incident) -> Classification {
    let guardduty =
        || classify_guardduty(&incident.finding_type, incident.resource_role.as_deref());
    match incident.source {
        FindingSource::Manual => classified(
            Indication::Unclassified,
            "a manual request names no finding: the person's decision stands",
        ),
        FindingSource::GuardDuty => guardduty(),
        // GuardDuty's own finding imported into Security Hub: GuardDuty's type decides.
        FindingSource::SecurityHub if incident.detected_by == FindingSource::GuardDuty => {
            guardduty()
        }
        FindingSource::SecurityHub => classify_asff(incident),
        FindingSource::CloudWatchAlarm => classify_alarm(&incident.finding_type),
        FindingSource::Ec2StateChange => classified(
            Indication::Unclassified,
            "an instance state change says nothing of compromise by itself",
        ),
        FindingSource::ApprovedImagePolicy => classified(
            Indication::Unclassified,
            "a launch from an unapproved image breaks the policy and says nothing of compromise by itself: approvedImages.onUnapproved decides",
        ),
    }
}

fn classified(indication: Indication, decided_by: impl Into<String>) -> Classification {
    Classification {
        indication,
        decided_by: decided_by.into(),
    }
}

/// A GuardDuty type under a resource role: the table's entry for the type,
/// else its family's, else unclassified.
pub fn classify_guardduty(finding_type: &str, resource_role: Option<&str>) -> Classification {
    let role = match resource_role.map(str::to_ascii_uppercase).as_deref() {
        Some("ACTOR") => Some(RoleMatch::Actor),
        Some("TARGET") => Some(RoleMatch::Target),
        _ => None,
    };
    let role_text = resource_role.map_or_else(
        || "with no resource role".to_owned(),
        |r| format!("as {}", r.to_ascii_uppercase()),
    );
    let types = GUARDDUTY_TYPES
        .iter()
        .filter(|e| e.finding_type == finding_type);
    if let Some(found) = for_role(types.map(|e| (e.role, e.indication)), role) {
        return match found {
            Ok(indication) => classified(
                indication,
                format!("GuardDuty table: {finding_type} {role_text}"),
            ),
            Err(()) => classified(
                Indication::Unclassified,
                format!(
                    "GuardDuty table: {finding_type} means one thing as ACTOR and another as \
                     TARGET, and the finding gives no resource role"
                ),
            ),
        };
    }
    let family = finding_type.split('/').next().unwrap_or_default();
    let families = GUARDDUTY_FAMILIES.iter().filter(|f| f.prefix == family);
    match for_role(families.map(|f| (f.role, f.indication)), role) {
        Some(Ok(indication)) => classified(
            indication,
            format!("GuardDuty family {family} {role_text} ({finding_type} is not in the table)"),
        ),
        Some(Err(())) => classified(
            Indication::Unclassified,
            format!(
                "GuardDuty family {family} depends on the resource role, and the finding gives none"
            ),
        ),
        None => classified(
            Indication::Unclassified,
            format!("GuardDuty type {finding_type} is in no family the table knows"),
        ),
    }
}

/// The indication of the entry that applies to `role`: `None` when no entry
/// is there at all, `Err` when the entries are per role and no role is given.
fn for_role(
    entries: impl Iterator<Item = (RoleMatch, Indication)>,
    role: Option<RoleMatch>,
) -> Option<std::result::Result<Indication, ()>> {
    let entries: Vec<(RoleMatch, Indication)> = entries.collect();
    if entries.is_empty() {
        return None;
    }
    if let Some((_, indication)) = entries.iter().find(|(r, _)| *r == RoleMatch::AnyRole) {
        return Some(Ok(*indication));
    }
    match role {
        Some(role) => entries
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, indication)| Ok(*indication))
            .or(Some(Err(()))),
        None => Some(Err(())),
    }
}

/// An ASFF finding of a product other than GuardDuty: a `Compliance` block or
/// a posture type is a weakness; a threat type is an indicator of compromise.
fn classify_asff(incident: &Incident) -> Classification {
    if let Some(status) = &incident.compliance {
        return classified(
            Indication::Weakness,
            format!("ASFF Compliance block (status {status}): a control or rule evaluation"),
        );
    }
    let types: Vec<&str> = if incident.asff_types.is_empty() {
        vec![incident.finding_type.as_str()]
    } else {
        incident.asff_types.iter().map(String::as_str).collect()
    };
    let threats: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| THREAT_TYPE_PREFIXES.iter().any(|p| t.starts_with(p)))
        .collect();
    if let Some(threat) = threats.first() {
        // Activity coming in (Network.Direction IN) says the instance was
        // attacked; only a tactic that shows the instance acting says more.
        let inbound = !incident.outside_activity.is_empty();
        let acting = threats.iter().find(|t| shows_the_instance_acting(t));
        return match (inbound, acting) {
            (true, None) => classified(
                Indication::Exposed,
                format!(
                    "ASFF type {threat} on an inbound connection: the instance is the target, \
                     and no tactic says it acted"
                ),
            ),
            (_, acting) => classified(
                Indication::Compromised,
                format!("ASFF type {}: threat detection", acting.unwrap_or(threat)),
            ),
        };
    }
    if let Some(posture) = types
        .iter()
        .find(|t| WEAKNESS_TYPE_PREFIXES.iter().any(|p| t.starts_with(p)))
    {
        return classified(
            Indication::Weakness,
            format!("ASFF type {posture}: a posture check"),
        );
    }
    classified(
        Indication::Unclassified,
        format!(
            "ASFF types {} are neither threat detection (TTPs/, Effects/, Unusual Behaviors/) \
             nor posture (Software and Configuration Checks)",
            types.join(", ")
        ),
    )
}

/// Whether an ASFF threat type says the instance itself acted: every effect
/// and unusual behaviour, and the tactics that happen on or from a host
/// (everything but the approach: reconnaissance, discovery, initial access).
fn shows_the_instance_acting(asff_type: &str) -> bool {
    if !asff_type.starts_with("TTPs/") {
        return true;
    }
    let tactic = asff_type.split('/').nth(1).unwrap_or_default();
    !matches!(
        tactic,
        "" | "Initial Access" | "Discovery" | "Reconnaissance"
    )
}

/// A CloudWatch alarm: only the deployment's crypto-mining alarms in ALARM
/// say anything (`CloudWatchAlarm:<state>/<name>`).
fn classify_alarm(finding_type: &str) -> Classification {
    let (state, name) = finding_type
        .strip_prefix("CloudWatchAlarm:")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", finding_type));
    match (state, name.starts_with(CRYPTO_MINING_ALARM_PREFIX)) {
        ("ALARM", true) => classified(
            Indication::Compromised,
            format!(
                "crypto-mining alarm by the deployment's convention \
                 ({CRYPTO_MINING_ALARM_PREFIX}*) in ALARM"
            ),
        ),
        (_, true) => classified(
            Indication::Unclassified,
            format!("crypto-mining alarm {name} is {state}, not in ALARM"),
        ),
        (_, false) => classified(
            Indication::Unclassified,
            format!(
                "alarm {name} is not one of the crypto-mining alarms \
                 ({CRYPTO_MINING_ALARM_PREFIX}*)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::findings::{parse_one, ParseContext};

    fn guardduty_event(finding_type: &str, role: Option<&str>) -> serde_json::Value {
        let mut service = json!({"archived": false});
        if let Some(role) = role {
            service["resourceRole"] = json!(role);
        }
        json!({
            "detail-type": "GuardDuty Finding", "id": "evt", "region": "us-east-1",
            "account": "123456789012",
            "detail": {
                "id": "f1", "type": finding_type, "severity": 8, "region": "us-east-1",
                "resource": {"resourceType": "Instance",
                             "instanceDetails": {"instanceId": "i-0123456789abcdef0"}},
                "service": service
            }
        })
    }

    fn asff_of_guardduty(asff_type: &str, role: &str) -> serde_json::Value {
        json!({
            "Id": "arn:aws:guardduty:us-east-1:123456789012:detector/d/finding/f1",
            "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "Region": "us-east-1", "Types": [asff_type],
            "ProductFields": {"aws/guardduty/service/resourceRole": role},
            "Resources": [{"Type": "AwsEc2Instance",
                           "Id": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}]
        })
    }

    fn role_name(role: RoleMatch) -> Option<&'static str> {
        match role {
            RoleMatch::AnyRole => None,
            RoleMatch::Actor => Some("ACTOR"),
            RoleMatch::Target => Some("TARGET"),
        }
    }

    #[test]
    fn the_table_is_well_formed() {
        let mut pairs = BTreeSet::new();
        for entry in GUARDDUTY_TYPES {
            let (family, name) = entry
                .finding_type
                .split_once('/')
                .unwrap_or_else(|| panic!("{} has no '/'", entry.finding_type));
            assert!(
                family.split(':').count() == 2 && !name.is_empty(),
                "{} is not Purpose:Resource/Name",
                entry.finding_type
            );
            assert!(
                pairs.insert((entry.finding_type, format!("{:?}", entry.role))),
                "{} {:?} twice",
                entry.finding_type,
                entry.role
            );
            let roles: Vec<RoleMatch> = GUARDDUTY_TYPES
                .iter()
                .filter(|e| e.finding_type == entry.finding_type)
                .map(|e| e.role)
                .collect();
            if roles.len() > 1 {
                assert!(
                    roles.contains(&RoleMatch::Actor)
                        && roles.contains(&RoleMatch::Target)
                        && !roles.contains(&RoleMatch::AnyRole),
                    "{} splits by role: ACTOR and TARGET, nothing else",
                    entry.finding_type
                );
            }
            assert!(
                GUARDDUTY_FAMILIES.iter().any(|f| f.prefix == family),
                "{} has no family entry",
                entry.finding_type
            );
        }
    }

    /// Every type of the table arrives as GuardDuty writes it (directly and
    /// through Security Hub, where `/` becomes `-`) and is classified by its
    /// own entry, under every role the entry covers.
    #[test]
    fn every_type_in_the_table_parses_and_is_classified_by_its_entry() {
        let ctx = ParseContext::default();
        for entry in GUARDDUTY_TYPES {
            let roles: Vec<Option<&str>> = match entry.role {
                RoleMatch::AnyRole => vec![Some("ACTOR"), Some("TARGET"), None],
                role => vec![role_name(role)],
            };
            for role in roles {
                let direct = parse_one(&guardduty_event(entry.finding_type, role), &ctx)
                    .unwrap_or_else(|e| panic!("{}: {e}", entry.finding_type))
                    .incident;
                assert_eq!(direct.finding_type, entry.finding_type);
                let class = classify(&direct);
                assert_eq!(
                    class.indication, entry.indication,
                    "{} {role:?}: {}",
                    entry.finding_type, class.decided_by
                );
                assert!(
                    class.decided_by.starts_with("GuardDuty table: ")
                        && class.decided_by.contains(entry.finding_type),
                    "{}",
                    class.decided_by
                );
            }
            let asff_type = format!("TTPs/Example/{}", entry.finding_type.replacen('/', "-", 1));
            let role = role_name(entry.role).unwrap_or("TARGET");
            let via_hub = parse_one(&asff_of_guardduty(&asff_type, role), &ctx)
                .unwrap_or_else(|e| panic!("{asff_type}: {e}"))
                .incident;
            assert_eq!(via_hub.finding_type, entry.finding_type, "{asff_type}");
            assert_eq!(
                classify(&via_hub).indication,
                entry.indication,
                "{asff_type}"
            );
        }
    }

    #[test]
    fn a_new_type_of_a_known_family_is_classified_by_its_family() {
        let class = classify_guardduty("Backdoor:EC2/SomethingNew.B", Some("TARGET"));
        assert_eq!(class.indication, Indication::Compromised);
        assert!(
            class.decided_by.contains("family Backdoor:EC2"),
            "{}",
            class.decided_by
        );
        let probe = classify_guardduty("Recon:EC2/PortProbeNewService", Some("TARGET"));
        assert_eq!(
            probe.indication,
            Indication::Exposed,
            "{}",
            probe.decided_by
        );
        let scan = classify_guardduty("Recon:EC2/PortsweepNew", Some("ACTOR"));
        assert_eq!(
            scan.indication,
            Indication::Compromised,
            "{}",
            scan.decided_by
        );
    }

    #[test]
    fn a_type_of_no_known_family_is_unclassified() {
        for unknown in [
            "Ransom:EC2/Encryptor",
            "Backdoor:Lambda/C&CActivity.B",
            "NotAGuardDutyType",
        ] {
            let class = classify_guardduty(unknown, Some("ACTOR"));
            assert_eq!(class.indication, Indication::Unclassified, "{unknown}");
            assert!(
                class.decided_by.contains("no family"),
                "{}",
                class.decided_by
            );
        }
    }

    #[test]
    fn a_role_split_type_without_a_role_is_not_guessed() {
        let class = classify_guardduty("UnauthorizedAccess:EC2/SSHBruteForce", None);
        assert_eq!(class.indication, Indication::Unclassified);
        assert!(
            class.decided_by.contains("no resource role"),
            "{}",
            class.decided_by
        );
    }

    fn asff(product: &str, types: &[&str], compliance: Option<&str>) -> Incident {
        let mut finding = json!({
            "Id": "f-1", "ProductArn": product, "Region": "us-east-1", "Types": types,
            "Resources": [{"Type": "AwsEc2Instance",
                           "Id": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}]
        });
        if let Some(status) = compliance {
            finding["Compliance"] = json!({"Status": status});
        }
        parse_one(&finding, &ParseContext::default())
            .expect("an ASFF finding")
            .incident
    }

    #[test]
    fn asff_threat_types_indicate_compromise_and_posture_is_a_weakness() {
        let edr = "arn:aws:securityhub:us-east-1::product/example-edr/endpoint-sensor";
        for threat in [
            "TTPs/Execution",
            "Effects/Data Exfiltration",
            "Unusual Behaviors/Process",
        ] {
            assert_eq!(
                classify(&asff(edr, &[threat], None)).indication,
                Indication::Compromised,
                "{threat}"
            );
        }
        let hub = "arn:aws:securityhub:us-east-1::product/aws/securityhub";
        for posture in [
            "Software and Configuration Checks/Vulnerabilities/CVE",
            "Software & Configuration Checks/Patch Management/Compliance",
        ] {
            assert_eq!(
                classify(&asff(hub, &[posture], None)).indication,
                Indication::Weakness,
                "{posture}"
            );
        }
        // A Compliance block makes it a control result whatever the types say.
        let control = classify(&asff(hub, &["TTPs/Initial Access"], Some("FAILED")));
        assert_eq!(control.indication, Indication::Weakness);
        assert!(
            control.decided_by.contains("FAILED"),
            "{}",
            control.decided_by
        );
        // A threat type anywhere in the list counts, as the rule's array match does.
        let mixed = asff(
            edr,
            &[
                "Software and Configuration Checks/Industry and Regulatory Standards",
                "TTPs/Execution",
            ],
            None,
        );
        assert_eq!(classify(&mixed).indication, Indication::Compromised);
        let other = classify(&asff(edr, &["Sensitive Data Identifications/PII"], None));
        assert_eq!(other.indication, Indication::Unclassified);
    }

    #[test]
    fn an_inbound_attack_reported_by_any_product_is_exposure_not_compromise() {
        let ids = "arn:aws:securityhub:us-east-1::product/example-ids/network-sensor";
        let inbound = |types: &[&str]| {
            let mut incident = asff(ids, types, None);
            incident.outside_activity = crate::case::OutsideActivity {
                local_ports: vec![22],
                remote_addresses: vec!["203.0.113.7".into()],
            };
            classify(&incident)
        };
        for approach in [
            "TTPs/Initial Access/Brute Force",
            "TTPs/Discovery",
            "TTPs/Reconnaissance",
        ] {
            let class = inbound(&[approach]);
            assert_eq!(
                class.indication,
                Indication::Exposed,
                "{approach}: {}",
                class.decided_by
            );
        }
        for acting in [
            "TTPs/Execution",
            "TTPs/Command and Control",
            "Effects/Data Exfiltration",
        ] {
            assert_eq!(
                inbound(&[acting]).indication,
                Indication::Compromised,
                "{acting}"
            );
        }
        let both = inbound(&["TTPs/Initial Access", "TTPs/Persistence"]);
        assert_eq!(both.indication, Indication::Compromised);
        assert!(
            both.decided_by.contains("Persistence"),
            "{}",
            both.decided_by
        );
    }

    #[test]
    fn a_product_calling_itself_guardduty_is_not_guardduty() {
        let custom = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";
        let mut finding = json!({
            "Id": "f-2", "ProductArn": custom, "ProductName": "GuardDuty", "Region": "us-east-1",
            "Types": ["Software and Configuration Checks/Backdoor:EC2-C&CActivity.B"],
            "Resources": [{"Type": "AwsEc2Instance", "Id": "i-0123456789abcdef0"}]
        });
        let incident = parse_one(&finding, &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(incident.detected_by, FindingSource::SecurityHub);
        assert_eq!(classify(&incident).indication, Indication::Weakness);
        finding["ProductArn"] = json!("arn:aws:securityhub:us-east-1::product/aws/guardduty");
        let incident = parse_one(&finding, &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(incident.detected_by, FindingSource::GuardDuty);
        assert_eq!(classify(&incident).indication, Indication::Compromised);
    }

    #[test]
    fn only_crypto_mining_alarms_in_alarm_indicate_compromise() {
        let class = classify_alarm("CloudWatchAlarm:ALARM/ec2-forensics-crypto-mining-web-cpu");
        assert_eq!(class.indication, Indication::Compromised);
        for other in [
            "CloudWatchAlarm:OK/ec2-forensics-crypto-mining-web-cpu",
            "CloudWatchAlarm:ALARM/web-disk-full",
            "CloudWatchAlarm:ALARM/x-ec2-forensics-crypto-mining-web",
        ] {
            assert_eq!(
                classify_alarm(other).indication,
                Indication::Unclassified,
                "{other}"
            );
        }
    }
}
