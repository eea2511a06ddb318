//! Recovery: legal holds on a case's evidence, and what clean-up removed.

use serde::{Deserialize, Serialize};

/// A legal hold on a case: its evidence objects and forensic copies kept,
/// whatever their retention says, until a person releases it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegalHold {
    /// Why (a matter, a request from counsel), as the person gave it.
    pub reason: String,
    /// Who placed it: the identity AWS authenticated.
    pub placed_by: String,
    /// When (UTC).
    pub placed_at: String,
    /// Each object of the signed manifest, at its listed version.
    pub objects: Vec<HeldObject>,
    /// Each forensic copy.
    pub copies: Vec<LockedCopy>,
    /// When a person released it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<HoldRelease>,
}

impl LegalHold {
    /// Whether every object is held and every copy locked.
    pub fn complete(&self) -> bool {
        self.objects.iter().all(|o| o.error.is_none())
            && self.copies.iter().all(|c| c.error.is_none())
    }
}

/// One object version under an S3 Object Lock legal hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldObject {
    /// The key.
    pub key: String,
    /// The version held.
    pub version_id: String,
    /// Why the hold was not set (or, on release, not lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One forensic copy under an EBS snapshot lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedCopy {
    /// The copy.
    pub snapshot_id: String,
    /// When EC2 says the lock ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_expires_on: Option<String>,
    /// Why it was not locked (or, on release, not unlocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The release of a hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldRelease {
    /// Who released it: an identity AWS authenticated, never the one who placed it.
    pub by: String,
    /// When (UTC).
    pub at: String,
    /// Why.
    pub reason: String,
    /// Each object whose hold was lifted, or why not.
    pub objects: Vec<HeldObject>,
    /// Each copy unlocked, or why not.
    pub copies: Vec<LockedCopy>,
}

/// What clean-up removes, in the order it removes them (the derived order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// A forensic workstation (termination protection off, then terminated).
    Workstation,
    /// A volume made from a forensic copy for a workstation.
    EvidenceVolume,
    /// The forensic account's create-volume permission on a shared snapshot.
    SnapshotPermission,
    /// The workload account's copy of a snapshot under the sharing key.
    SharingCopy,
    /// The snapshot of the suspect's volume, in the workload account.
    WorkloadSnapshot,
    /// The grant that let the forensic account use a workload key.
    KeyGrant,
    /// A DNS Firewall rule group that blocked the finding's domain.
    DnsRuleGroup,
    /// Its domain list.
    DnsDomainList,
    /// A forensic copy, past its retention date.
    ForensicCopy,
}

/// One resource of a case clean-up looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its id (for a grant, the grant id).
    pub id: String,
    /// The account it lives in.
    pub account: String,
    /// A grant's key; a snapshot permission's grantee account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

/// A resource clean-up leaves, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptResource {
    /// The resource.
    pub resource: CaseResource,
    /// Why it stays.
    pub why: String,
}

/// A removal, done or tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// The resource.
    pub resource: CaseResource,
    /// It is gone (removed now, or found gone already).
    pub removed: bool,
    /// What was done or found.
    pub detail: String,
    /// When (UTC).
    pub at: String,
}

/// One clean-up of a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseCleanup {
    /// Who ran it (an identity AWS authenticated, or the scheduled function's role).
    pub by: String,
    /// When it started (UTC).
    pub at: String,
    /// Every removal tried, in order.
    pub removals: Vec<Removal>,
    /// Everything left, and why.
    pub kept: Vec<KeptResource>,
}
