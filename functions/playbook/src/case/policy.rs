//! The response policy document: the playbook's "business decision on when to
//! do EC2 forensics", as data. A JSON document (a file locally, an SSM parameter
//! in AWS) with defaults for every field; the Case keeps the one in force.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::incident::FindingSource;
use crate::error::{PlaybookError, Result};

/// Which comes first when the policy allows both: the memory image or containment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AcquisitionOrder {
    /// Isolate first where every VPC of the instance has the SSM interface
    /// endpoints (memory is then captured through them); elsewhere memory
    /// first, for at most `memoryDeadlineSeconds`, then isolation whatever
    /// the capture's state.
    #[default]
    Auto,
    /// Capture memory, then isolate (memory is lost if the attacker notices
    /// and reboots), waiting for the capture as long as it runs.
    MemoryFirst,
    /// Isolate at once, keeping only HTTPS to the SSM endpoints so memory can still be captured.
    IsolateFirst,
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
    /// The `key=value` that matched, if the tags satisfy the rule.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> Option<String> {
        let value = tags.get(&self.key)?;
        let counts = self.values.is_empty() || self.values.iter().any(|p| glob_match(p, value));
        counts.then(|| format!("{}={}", self.key, value))
    }
}

/// The policy's approved images: an image is approved when its id is
/// listed (`imageIds`, or the SSM parameter `parameter`: a comma-separated
/// list), or when its owner is (`owners`: account ids, or an alias EC2 gives
/// such as `amazon`) and it meets `namePatterns` and `tag`. A name or a tag
/// alone never approves: anyone can name an image and share it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ApprovedImages {
    /// Image ids approved whoever owns them.
    pub image_ids: Vec<String>,
    /// An SSM parameter listing approved image ids.
    pub parameter: Option<String>,
    /// Owners whose images are approved when they meet the criteria below.
    pub owners: Vec<String>,
    /// With `owners`: the image name matches one of these (`*` any run).
    pub name_patterns: Vec<String>,
    /// With `owners`: the image carries this tag (an account sees only its
    /// own images' tags).
    pub tag: Option<TagRule>,
    /// What a launch from an unapproved image opens (`check-ami`).
    pub on_unapproved: OnUnapproved,
}

/// Where `approvedImages.parameter` must live: the functions' roles may
/// read parameters under this path only (infra/aws/template.yaml).
pub const APPROVED_IMAGES_PARAMETER_PREFIX: &str = "/ec2-forensics/";

/// What a case about a launch from an unapproved image does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnUnapproved {
    /// Recorded, nothing changed.
    Observe,
    /// A person is asked (the approval gate) and decides whether to contain.
    #[default]
    Notify,
    /// Contained at once, as a compromise (approval tags and `maxInstances`
    /// still send it to a person first).
    Contain,
}

impl ApprovedImages {
    /// No criterion at all.
    pub fn is_empty(&self) -> bool {
        self == &ApprovedImages::default()
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
    /// Finding types (patterns, `*` for any run of characters, matched against
    /// the finding type and every ASFF type) that may lead to a response even
    /// though they do not indicate compromise: a weakness, an instance only
    /// exposed to outside activity, or an unclassified finding. Explicit by
    /// design: no severity opts a finding in.
    pub opt_in_types: Vec<String>,
    /// Products (ASFF `ProductArn` patterns) whose findings may lead to a
    /// response whatever they indicate.
    pub opt_in_products: Vec<String>,
    /// An SNS topic where triage tells a person about findings it only observes
    /// because the instance was the target of outside activity (with the
    /// ports and sources the finding reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_topic_arn: Option<String>,
    /// Retired: which resource role makes an instance a suspect is the
    /// GuardDuty table's now (`findings/guardduty_types.rs`). Accepted so an
    /// older policy document still parses (a typo elsewhere is still an
    /// error); it changes nothing.
    #[serde(skip_serializing)]
    pub resource_roles: Option<serde_json::Value>,
    /// Sample findings (generated for testing) are ignored.
    pub ignore_samples: bool,
    /// Instances with these tags are only observed.
    pub exempt_tags: Vec<TagRule>,
    /// Instances with these tags wait for a person's approval.
    pub approval_tags: Vec<TagRule>,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// Memory first, isolation first, or `auto` (see [`AcquisitionOrder`]).
    pub acquisition_order: AcquisitionOrder,
    /// With `auto` and no SSM endpoints: how long the memory capture may
    /// delay isolation (seconds). At the deadline the capture is cancelled,
    /// recorded, and isolation goes on.
    pub memory_deadline_seconds: u64,
    /// When detaching from an Auto Scaling group, let it launch a replacement
    /// (`ShouldDecrementDesiredCapacity` = false).
    pub asg_launch_replacement: bool,
    /// Disassociate the instance profile during isolation, so the host has no role credentials.
    pub detach_instance_profile: bool,
    /// Deny the instance role's sessions issued before isolation (`aws:TokenIssueTime`).
    pub revoke_role_sessions: bool,
    /// Keep snapshots and evidence after the case is closed.
    pub legal_hold: bool,
    /// A release after a false positive leaves termination protection on
    /// (kept on purpose, said in the Case) instead of putting back the
    /// original setting: the instance the evidence came from is not
    /// terminated by accident before someone decides so.
    pub release_keeps_termination_protection: bool,
    /// More instances than this in one finding need a person's approval.
    pub max_instances: usize,
    /// Add network ACL DENY entries for the instance's addresses, cutting the
    /// flows that stay tracked whatever the security groups say (ICMP, NAT
    /// gateways, load balancers, transit gateways, Network Firewall).
    pub network_acl_deny: bool,
    /// Rules per direction a network ACL may hold (the VPC quota; 20 unless raised).
    pub network_acl_rule_limit: usize,
    /// For a finding that names a domain (GuardDuty's `!DNS` types), block the
    /// domain with Route 53 Resolver DNS Firewall for the instance's VPCs. Off
    /// by default: the block applies to every instance of those VPCs.
    pub block_finding_domain: bool,
    /// How long a case that needs approval waits for a person (seconds).
    pub approval_timeout_seconds: u64,
    /// What happens when no one answers in time: `stop` (the instance is
    /// left as it is) or `contain` (the playbook runs as if approved).
    pub on_approval_timeout: ApprovalTimeout,
    /// Only approved AMIs: the images instances may run from
    /// (`ec2-forensics check-amis`). Empty: nothing is checked.
    #[serde(skip_serializing_if = "ApprovedImages::is_empty")]
    pub approved_images: ApprovedImages,
    /// The crypto-mining alarms `sync-alarms` keeps in step with the
    /// running instances. No signal: none kept (and its old ones deleted).
    #[serde(skip_serializing_if = "MiningAlarms::is_off")]
    pub mining_alarms: MiningAlarms,
    /// `readiness`: the golden AMI (the workstations' image) older than this
    /// many days is reported (its tools and rules are out of date).
    pub golden_ami_max_age_days: u32,
    /// The scheduled clean-up removes what a sealed case no longer needs
    /// once its last piece of work is this many days old (unset: only by
    /// hand, `ec2-forensics cleanup`). A hold or `legalHold` still keeps
    /// the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_after_days: Option<u32>,
}

/// A crypto-mining signal `sync-alarms` keeps an alarm of per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MiningSignal {
    /// Sustained high CPU (`AWS/EC2` `CPUUtilization`).
    Cpu,
    /// Connections to mining-pool ports, from VPC flow logs through the
    /// template's metric filter (`EC2Forensics` `MiningPoolConnections`).
    PoolPorts,
    /// DNS queries for known pool domains, from Route 53 Resolver query
    /// logs through the template's metric filter (`MiningPoolDnsQueries`).
    PoolDns,
}

/// Which instances get which crypto-mining alarms (`sync-alarms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MiningAlarms {
    /// The signals alarmed on; none: no alarm is kept.
    pub signals: Vec<MiningSignal>,
    /// Only instances with this tag (as EC2 reports it now). Whoever can
    /// tag an instance can take it out of the watch: leave it unset to
    /// watch every running instance.
    pub tag: Option<TagRule>,
    /// `cpu`: the average CPU, in percent, that counts as high.
    pub cpu_percent: f64,
    /// `cpu`: for how long, in minutes (a multiple of 5).
    pub cpu_minutes: u32,
    /// At most this many alarms (each costs money): instances beyond it are
    /// reported, not alarmed.
    pub max_alarms: usize,
    /// What a case opened by one of these alarms does.
    pub on_alarm: OnMiningAlarm,
}

/// What a case opened by a `sync-alarms` alarm does. The signals are
/// heuristics (a busy build server runs hot; a pool address can be
/// reused), so a person decides first unless the policy says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnMiningAlarm {
    /// A person is asked (the approval gate) and decides whether to contain.
    #[default]
    Notify,
    /// Contained at once, like any other indicator of compromise.
    Contain,
}

impl Default for MiningAlarms {
    fn default() -> Self {
        Self {
            signals: Vec::new(),
            tag: None,
            cpu_percent: 90.0,
            cpu_minutes: 30,
            max_alarms: 500,
            on_alarm: OnMiningAlarm::Notify,
        }
    }
}

impl MiningAlarms {
    /// No signal: `sync-alarms` keeps no alarm.
    pub fn is_off(&self) -> bool {
        self == &MiningAlarms::default()
    }
}

/// What a case that waited for approval in vain does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalTimeout {
    /// Leave the instance as it is; the case ends not approved.
    #[default]
    Stop,
    /// Run the playbook as if approved: no answer is taken as consent.
    Contain,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_severity: 4.0,
            min_severity_by_source: BTreeMap::new(),
            respond_to: Vec::new(),
            ignore_types: Vec::new(),
            opt_in_types: Vec::new(),
            opt_in_products: Vec::new(),
            notification_topic_arn: None,
            resource_roles: None,
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
            acquisition_order: AcquisitionOrder::Auto,
            memory_deadline_seconds: 120,
            asg_launch_replacement: true,
            detach_instance_profile: true,
            revoke_role_sessions: true,
            legal_hold: false,
            release_keeps_termination_protection: false,
            max_instances: 10,
            network_acl_deny: true,
            network_acl_rule_limit: 20,
            block_finding_domain: false,
            approval_timeout_seconds: 4 * 3600,
            on_approval_timeout: ApprovalTimeout::Stop,
            approved_images: ApprovedImages::default(),
            mining_alarms: MiningAlarms::default(),
            golden_ami_max_age_days: 90,
            cleanup_after_days: None,
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
        // The capture needs a moment to start; an hour is what memoryFirst allows.
        if !(20..=3600).contains(&policy.memory_deadline_seconds) {
            return Err(PlaybookError::InvalidPolicy(format!(
                "memoryDeadlineSeconds {} is outside 20 s to one hour",
                policy.memory_deadline_seconds
            )));
        }
        // Step Functions' task timeout is at most a year; a zero would end the wait at once.
        if !(60..=365 * 24 * 3600).contains(&policy.approval_timeout_seconds) {
            return Err(PlaybookError::InvalidPolicy(format!(
                "approvalTimeoutSeconds {} is outside 60 s to one year",
                policy.approval_timeout_seconds
            )));
        }
        let mining = &policy.mining_alarms;
        if !(mining.cpu_percent > 0.0 && mining.cpu_percent <= 100.0) {
            return Err(PlaybookError::InvalidPolicy(format!(
                "miningAlarms.cpuPercent {} is not a percentage above 0",
                mining.cpu_percent
            )));
        }
        // CloudWatch evaluates at most one day of 5-minute periods.
        if !mining.cpu_minutes.is_multiple_of(5) || !(5..=1440).contains(&mining.cpu_minutes) {
            return Err(PlaybookError::InvalidPolicy(format!(
                "miningAlarms.cpuMinutes {} is not a multiple of 5 from 5 to 1440",
                mining.cpu_minutes
            )));
        }
        // The functions may read only the project's parameters: a list kept
        // elsewhere would fail every check with AccessDenied, found late.
        if let Some(name) = &policy.approved_images.parameter {
            if !name.starts_with(APPROVED_IMAGES_PARAMETER_PREFIX)
                || name.len() == APPROVED_IMAGES_PARAMETER_PREFIX.len()
            {
                return Err(PlaybookError::InvalidPolicy(format!(
                    "approvedImages.parameter {name} is not under \
                     {APPROVED_IMAGES_PARAMETER_PREFIX}, the only parameters the functions may read"
                )));
            }
        }
        Ok(policy)
    }

    /// The minimum severity for findings from `source`.
    pub fn min_severity_for(&self, source: FindingSource) -> f64 {
        self.min_severity_by_source
            .get(&source)
            .copied()
            .unwrap_or(self.min_severity)
    }
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
