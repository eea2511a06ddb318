//! What isolate-network records: the original network configuration of every
//! ENI, each change, and the read-back that makes an instance `complete`.

use serde::{Deserialize, Serialize};

use super::actions::ActionRecord;
use super::PerInstance;

/// The security groups the responder keeps in each VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupPurpose {
    /// No ingress, no egress.
    Isolation,
    /// All traffic from and to anywhere: makes existing flows untracked.
    Untracking,
    /// Only HTTPS to the SSM endpoints: memory can still be captured.
    Acquisition,
}

impl GroupPurpose {
    /// Every purpose, in the order groups are prepared.
    pub const ALL: [GroupPurpose; 3] = [Self::Untracking, Self::Isolation, Self::Acquisition];

    /// The group's name (unique per VPC) and `ec2-forensics:role` tag.
    pub fn name(self) -> &'static str {
        match self {
            Self::Isolation => "ec2-forensics-isolation",
            Self::Untracking => "ec2-forensics-untracking",
            Self::Acquisition => "ec2-forensics-acquisition",
        }
    }

    /// The group's description.
    pub fn description(self) -> &'static str {
        match self {
            Self::Isolation => "ec2-forensics: isolated instance, no traffic in or out",
            Self::Untracking => "ec2-forensics: transient, all traffic, ends connection tracking",
            Self::Acquisition => "ec2-forensics: isolated instance, HTTPS to SSM endpoints only",
        }
    }
}

/// Whether the instance is fully isolated or only down to the SSM endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IsolationStage {
    /// Only HTTPS to the SSM endpoints (isolate-first, until memory is captured).
    Acquisition,
    /// No traffic at all.
    Full,
}

/// One ENI before isolation, and what was read back after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniIsolation {
    /// ENI id.
    pub network_interface_id: String,
    /// Its VPC: an instance's ENIs can live in different VPCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Its subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Its groups before isolation.
    pub original_group_ids: Vec<String>,
    /// Its groups as read back after the last change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids_read_back: Vec<String>,
}

/// The responder's groups in one VPC, each verified rule by rule before use.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcGroups {
    /// The VPC.
    pub vpc_id: String,
    /// No rule at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_group_id: Option<String>,
    /// All traffic in and out, IPv4 and IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untracking_group_id: Option<String>,
    /// HTTPS out to the SSM endpoints' groups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquisition_group_id: Option<String>,
}

impl VpcGroups {
    /// The group of `purpose`, when it is ready.
    pub fn get(&self, purpose: GroupPurpose) -> Option<&str> {
        match purpose {
            GroupPurpose::Isolation => self.isolation_group_id.as_deref(),
            GroupPurpose::Untracking => self.untracking_group_id.as_deref(),
            GroupPurpose::Acquisition => self.acquisition_group_id.as_deref(),
        }
    }

    /// Records the group of `purpose`.
    pub fn set(&mut self, purpose: GroupPurpose, group_id: String) {
        let slot = match purpose {
            GroupPurpose::Isolation => &mut self.isolation_group_id,
            GroupPurpose::Untracking => &mut self.untracking_group_id,
            GroupPurpose::Acquisition => &mut self.acquisition_group_id,
        };
        *slot = Some(group_id);
    }

    /// Whether `group_id` is one of the responder's groups.
    pub fn contains(&self, group_id: &str) -> bool {
        GroupPurpose::ALL
            .iter()
            .any(|p| self.get(*p) == Some(group_id))
    }
}

/// A network ACL DENY entry the responder added for one of the instance's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclEntryRecord {
    /// The network ACL.
    pub network_acl_id: String,
    /// The rule number it holds.
    pub rule_number: i32,
    /// Outbound (true) or inbound.
    pub egress: bool,
    /// The instance's address it denies (`/32` or `/128`).
    pub cidr: String,
}

/// A Route 53 Resolver DNS Firewall block of the finding's domain for one VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsFirewallBlock {
    /// The VPC whose queries are filtered.
    pub vpc_id: String,
    /// The blocked domains (the finding's and its subdomains).
    pub domains: Vec<String>,
    /// The domain list.
    pub domain_list_id: Option<String>,
    /// The rule group holding the BLOCK rule.
    pub rule_group_id: Option<String>,
    /// The rule group's association with the VPC: release removes it.
    pub association_id: Option<String>,
    /// The association's priority among the VPC's rule groups.
    pub priority: Option<i32>,
    /// The association's status when made (ASSOCIATING, COMPLETE...).
    pub status: Option<String>,
}

/// An Elastic IP that was associated with the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElasticIpRecord {
    /// Allocation id.
    pub allocation_id: String,
    /// The association that was removed.
    pub association_id: Option<String>,
    /// The public address.
    pub public_ip: Option<String>,
    /// The ENI it was on.
    pub network_interface_id: Option<String>,
    /// The private address it mapped to.
    pub private_ip: Option<String>,
    /// The instance it was associated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// The instance profile that was associated with the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileRecord {
    /// The association that was removed.
    pub association_id: String,
    /// Instance profile ARN.
    pub arn: String,
    /// The role inside the profile.
    pub role_name: Option<String>,
}

/// The inline policy that denies the suspect instance's own role sessions
/// issued before isolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevocation {
    /// The role.
    pub role_name: String,
    /// The inline policy's name (one per instance: a second revocation replaces it).
    pub policy_name: String,
    /// The instance whose sessions are denied (`ec2:SourceInstanceARN`).
    pub instance_arn: String,
    /// Sessions issued before this UTC time are denied (`aws:TokenIssueTime`).
    pub issued_before: String,
}

/// What no security group or network ACL can block, said once in the case's
/// containment summary.
pub const NOT_BLOCKED: [&str; 4] = [
    "DNS queries to the VPC resolver (169.254.169.253 and the VPC base address plus two) are not filtered by security groups or network ACLs: DNS tunnelling stays possible unless Route 53 Resolver DNS Firewall blocks it",
    "the instance metadata service (169.254.169.254) stays reachable: role credentials are cut only by detaching the instance profile and revoking its sessions",
    "Amazon Time Sync (169.254.169.123) stays reachable",
    "traffic between the instance and a NAT gateway, load balancer or endpoint in its own subnet never crosses a network ACL: only the security group swap cuts it",
];

/// What isolate-network did to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIsolation {
    /// Instance id.
    pub instance_id: String,
    /// The VPC of the primary ENI.
    pub vpc_id: Option<String>,
    /// Fully isolated, or down to the SSM endpoints.
    pub stage: IsolationStage,
    /// The responder's groups in each VPC of the instance's ENIs.
    #[serde(default)]
    pub groups: Vec<VpcGroups>,
    /// Every ENI with its original groups.
    pub interfaces: Vec<EniIsolation>,
    /// Network ACL DENY entries added for the instance's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_acl_entries: Vec<AclEntryRecord>,
    /// Elastic IPs that were disassociated.
    pub elastic_ips: Vec<ElasticIpRecord>,
    /// The instance profile that was removed.
    pub instance_profile: Option<InstanceProfileRecord>,
    /// The role-session revocation, if one was made.
    pub session_revocation: Option<SessionRevocation>,
    /// DNS Firewall blocks of the finding's domain, when the policy asks for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_firewall: Vec<DnsFirewallBlock>,
    /// What a responder should know.
    pub warnings: Vec<String>,
    /// Every change.
    pub actions: Vec<ActionRecord>,
    /// Every change is made and every ENI was read back in its final group.
    pub complete: bool,
    /// When the final state was read back and found right (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// UTC time.
    pub isolated_at: String,
    /// When the activity was detected, as the finding reports it (its
    /// source's clock; Security Hub's can be set by any importer), else when
    /// the case opened (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
    /// Seconds from `detectedAt` to the first isolation that was read back
    /// complete (at any stage: both cut the network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_isolation: Option<i64>,
    /// Seconds from the case's opening (triage) to that isolation: the
    /// responder's own time, whatever the finding's clock says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_from_case_opened: Option<i64>,
}

/// What `acquisitionOrder: auto` chose: the acquisition stage at once where
/// every VPC has the endpoints, memory first elsewhere; either way, until a
/// deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquisitionPlan {
    /// `memoryFirst` when an instance is left as it is until the deadline,
    /// `isolateFirst` when all went to the acquisition stage at once.
    pub order: crate::case::policy::AcquisitionOrder,
    /// The instances left as they are until the deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<String>,
    /// Why.
    pub reason: String,
    /// When it was chosen (UTC), after isolation was prepared (groups made
    /// exact, ACL rule numbers chosen), so the move at the deadline is one
    /// wave.
    pub planned_at: String,
    /// When isolation goes on whatever the capture's state (UTC).
    pub deadline: String,
    /// The DENY entries chosen for the instances left as they are, with the
    /// rule numbers the preparing read allowed. The move at the deadline
    /// keeps each number where its own fresh read still allows it (free, and
    /// before the first entry that would match the address), and chooses
    /// anew where not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared_acl_entries: Vec<AclEntryRecord>,
}

impl PerInstance for InstanceIsolation {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

impl InstanceIsolation {
    /// A re-run sees the isolated state; the originals are those the first run saw.
    pub fn keep_earlier(&mut self, earlier: &InstanceIsolation) {
        for eni in &mut self.interfaces {
            if let Some(first) = earlier
                .interfaces
                .iter()
                .find(|e| e.network_interface_id == eni.network_interface_id)
            {
                eni.original_group_ids = first.original_group_ids.clone();
            }
        }
        for eip in &earlier.elastic_ips {
            if !self
                .elastic_ips
                .iter()
                .any(|e| e.allocation_id == eip.allocation_id)
            {
                self.elastic_ips.push(eip.clone());
            }
        }
        for entry in &earlier.network_acl_entries {
            if !self.network_acl_entries.contains(entry) {
                self.network_acl_entries.push(entry.clone());
            }
        }
        if earlier.instance_profile.is_some() {
            self.instance_profile = earlier.instance_profile.clone();
        }
        if self.session_revocation.is_none() {
            self.session_revocation = earlier.session_revocation.clone();
        }
        for block in &earlier.dns_firewall {
            if !self.dns_firewall.iter().any(|b| b.vpc_id == block.vpc_id) {
                self.dns_firewall.push(block.clone());
            }
        }
        self.warnings
            .retain(|w| !w.starts_with(ALREADY_ISOLATED_WARNING));
        if earlier.seconds_to_isolation.is_some() || earlier.seconds_from_case_opened.is_some() {
            self.seconds_to_isolation = earlier.seconds_to_isolation;
            self.seconds_from_case_opened = earlier.seconds_from_case_opened;
        }
    }
}

/// The start of the warning given when a first run finds the instance already
/// in the responder's groups.
pub const ALREADY_ISOLATED_WARNING: &str = "the instance was already isolated before this run";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_keeps_the_original_groups_addresses_and_acl_entries() {
        let first = InstanceIsolation {
            instance_id: "i-1".into(),
            vpc_id: Some("vpc-1".into()),
            stage: IsolationStage::Full,
            groups: Vec::new(),
            interfaces: vec![EniIsolation {
                network_interface_id: "eni-1".into(),
                vpc_id: Some("vpc-1".into()),
                subnet_id: None,
                original_group_ids: vec!["sg-web".into()],
                group_ids_read_back: vec!["sg-iso".into()],
            }],
            network_acl_entries: vec![AclEntryRecord {
                network_acl_id: "acl-1".into(),
                rule_number: 1,
                egress: false,
                cidr: "10.0.0.5/32".into(),
            }],
            elastic_ips: vec![ElasticIpRecord {
                allocation_id: "eipalloc-1".into(),
                association_id: Some("eipassoc-1".into()),
                public_ip: Some("203.0.113.10".into()),
                network_interface_id: Some("eni-1".into()),
                private_ip: Some("10.0.0.5".into()),
                instance_id: None,
            }],
            instance_profile: None,
            session_revocation: None,
            dns_firewall: Vec::new(),
            warnings: Vec::new(),
            actions: Vec::new(),
            complete: true,
            verified_at: Some("t".into()),
            isolated_at: "t".into(),
            detected_at: None,
            seconds_to_isolation: Some(3),
            seconds_from_case_opened: Some(2),
        };
        let mut second = InstanceIsolation {
            interfaces: vec![EniIsolation {
                original_group_ids: vec!["sg-iso".into()],
                ..first.interfaces[0].clone()
            }],
            elastic_ips: Vec::new(),
            network_acl_entries: Vec::new(),
            warnings: vec![format!("{ALREADY_ISOLATED_WARNING}: x")],
            seconds_to_isolation: None,
            seconds_from_case_opened: None,
            ..first.clone()
        };
        second.keep_earlier(&first);
        assert_eq!(
            (second.seconds_to_isolation, second.seconds_from_case_opened),
            (Some(3), Some(2)),
            "the time to the first isolation stays"
        );
        assert_eq!(second.interfaces, first.interfaces);
        assert_eq!(second.elastic_ips, first.elastic_ips);
        assert_eq!(second.network_acl_entries, first.network_acl_entries);
        assert!(second.warnings.is_empty());
    }
}
