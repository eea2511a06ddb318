//! The response policy: the playbook's "business decision on when to do EC2 forensics".
//!
//! A JSON document (a file locally, an SSM parameter in AWS) with defaults for
//! every field. [`decide`] is a pure function of the incident and the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::case::{Action, Decision, FindingSource, Incident};
use crate::error::{PlaybookError, Result};

/// Which comes first when the policy allows both: the memory image or containment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AcquisitionOrder {
    /// Capture memory, then isolate (memory is lost if the attacker notices and reboots).
    #[default]
    MemoryFirst,
    /// Isolate at once, keeping only HTTPS to the SSM endpoints so memory can still be captured.
    IsolateFirst,
}

/// For a finding type, which `resourceRole` makes the instance a suspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRoleRule {
    /// Finding type pattern (`*` matches any run of characters).
    pub finding_type: String,
    /// Roles for which the instance is the suspect (ACTOR, TARGET).
    pub respond_when: Vec<String>,
    /// Why, in words: shown in the decision when the role does not qualify.
    #[serde(default)]
    pub note: String,
}

/// A tag condition: the key, and optionally the values that count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagRule {
    /// Tag key (exact).
    pub key: String,
    /// Values that count (patterns); empty means any value.
    #[serde(default)]
    pub values: Vec<String>,
}

impl TagRule {
    fn matches(&self, tags: &BTreeMap<String, String>) -> Option<String> {
        let value = tags.get(&self.key)?;
        let counts = self.values.is_empty() || self.values.iter().any(|p| glob_match(p, value));
        counts.then(|| format!("{}={}", self.key, value))
    }
}

/// The response policy. Every field has a default; a policy file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Policy {
    /// Findings below this severity (0-10) are observed, not acted on.
    pub min_severity: f64,
    /// Per-source minimum severity, overriding `minSeverity`.
    pub min_severity_by_source: BTreeMap<FindingSource, f64>,
    /// Finding type patterns to respond to; empty means every type.
    pub respond_to: Vec<String>,
    /// Finding type patterns never to act on.
    pub ignore_types: Vec<String>,
    /// Per finding type, which resource roles make the instance a suspect.
    pub resource_roles: Vec<ResourceRoleRule>,
    /// Sample findings (generated for testing) are ignored.
    pub ignore_samples: bool,
    /// Instances with these tags are only observed.
    pub exempt_tags: Vec<TagRule>,
    /// Instances with these tags wait for a person's approval.
    pub approval_tags: Vec<TagRule>,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// Memory first or isolation first.
    pub acquisition_order: AcquisitionOrder,
    /// When detaching from an Auto Scaling group, let it launch a replacement
    /// (`ShouldDecrementDesiredCapacity` = false).
    pub asg_launch_replacement: bool,
    /// Disassociate the instance profile during isolation, so the host has no role credentials.
    pub detach_instance_profile: bool,
    /// Deny the instance role's sessions issued before isolation (`aws:TokenIssueTime`).
    pub revoke_role_sessions: bool,
    /// Keep snapshots and evidence after the case is closed.
    pub legal_hold: bool,
    /// More instances than this in one finding need a person's approval.
    pub max_instances: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_severity: 4.0,
            min_severity_by_source: BTreeMap::new(),
            respond_to: Vec::new(),
            ignore_types: Vec::new(),
            resource_roles: vec![
                ResourceRoleRule {
                    finding_type: "UnauthorizedAccess:EC2/SSHBruteForce".into(),
                    respond_when: vec!["ACTOR".into()],
                    note:
                        "as TARGET the instance is the victim of the brute force, not the attacker"
                            .into(),
                },
                ResourceRoleRule {
                    finding_type: "UnauthorizedAccess:EC2/RDPBruteForce".into(),
                    respond_when: vec!["ACTOR".into()],
                    note:
                        "as TARGET the instance is the victim of the brute force, not the attacker"
                            .into(),
                },
                ResourceRoleRule {
                    finding_type: "CryptoCurrency:EC2/*".into(),
                    respond_when: vec!["ACTOR".into(), "TARGET".into()],
                    note: "GuardDuty labels the mining instance TARGET in DNS-based findings"
                        .into(),
                },
            ],
            ignore_samples: true,
            exempt_tags: vec![TagRule {
                key: "ec2-forensics:exempt".into(),
                values: vec!["true".into()],
            }],
            approval_tags: vec![TagRule {
                key: "Environment".into(),
                values: vec!["production".into(), "prod".into()],
            }],
            dry_run: false,
            acquisition_order: AcquisitionOrder::MemoryFirst,
            asg_launch_replacement: true,
            detach_instance_profile: true,
            revoke_role_sessions: true,
            legal_hold: false,
            max_instances: 10,
        }
    }
}

impl Policy {
    /// Parses a policy document; unknown fields are an error, so a typo does not
    /// silently fall back to a default.
    pub fn from_json(text: &str) -> Result<Policy> {
        let policy: Policy =
            serde_json::from_str(text).map_err(|e| PlaybookError::InvalidPolicy(e.to_string()))?;
        if !(0.0..=10.0).contains(&policy.min_severity) {
            return Err(PlaybookError::InvalidPolicy(format!(
                "minSeverity {} is outside 0-10",
                policy.min_severity
            )));
        }
        Ok(policy)
    }

    fn min_severity_for(&self, source: FindingSource) -> f64 {
        self.min_severity_by_source
            .get(&source)
            .copied()
            .unwrap_or(self.min_severity)
    }
}

/// Decides what to do about `incident` under `policy`, with the reason.
pub fn decide(incident: &Incident, policy: &Policy) -> Decision {
    let (action, reason) = decide_action(incident, policy);
    let reason = if policy.dry_run && matches!(action, Action::Respond | Action::Approve) {
        format!("dry run, nothing will be changed: {reason}")
    } else {
        reason
    };
    Decision {
        action,
        reason,
        dry_run: policy.dry_run,
    }
}

fn decide_action(incident: &Incident, policy: &Policy) -> (Action, String) {
    let kind = &incident.finding_type;
    if incident.source == FindingSource::Manual {
        let who = incident
            .requested_by
            .as_deref()
            .unwrap_or("an unnamed responder");
        let why = incident.reason.as_deref().unwrap_or("no reason given");
        return (Action::Respond, format!("manual request by {who}: {why}"));
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
    if incident.instance_state.as_deref() == Some("terminated") {
        return (
            Action::Observe,
            "the instance is terminated: nothing is left to contain".into(),
        );
    }
    if let Some(tag) = policy
        .exempt_tags
        .iter()
        .find_map(|r| r.matches(&incident.tags))
    {
        return (Action::Observe, format!("instance exempt by tag {tag}"));
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
    if let Some(rule) = policy
        .resource_roles
        .iter()
        .find(|r| glob_match(&r.finding_type, kind))
    {
        if let Some(role) = &incident.resource_role {
            if !rule
                .respond_when
                .iter()
                .any(|r| r.eq_ignore_ascii_case(role))
            {
                return (
                    Action::Observe,
                    format!("{kind} with resource role {role}: {}", rule.note),
                );
            }
        }
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
    if let Some(tag) = policy
        .approval_tags
        .iter()
        .find_map(|r| r.matches(&incident.tags))
    {
        return (
            Action::Approve,
            format!("instance tagged {tag}: a person approves first"),
        );
    }
    (
        Action::Respond,
        format!(
            "{kind} at severity {:.1} (policy minimum {minimum:.1})",
            incident.severity
        ),
    )
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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
        let d = decide(&incident("Recon:EC2/Portscan", 2.0), &Policy::default());
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
        assert!(d.reason.contains("victim"), "{}", d.reason);

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
        assert_eq!(policy.resource_roles, Policy::default().resource_roles);
        let err = Policy::from_json(r#"{"minSeverty": 7}"#).unwrap_err();
        assert_eq!(err.error_type(), "InvalidPolicy");
        let err = Policy::from_json(r#"{"minSeverity": 70}"#).unwrap_err();
        assert!(err.to_string().contains("outside 0-10"));
    }
}
