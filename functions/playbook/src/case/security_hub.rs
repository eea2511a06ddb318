//! What the responder told Security Hub about the finding behind a case.

use serde::{Deserialize, Serialize};

/// When the responder tells Security Hub about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FindingMoment {
    /// The case opened: the finding's workflow becomes `NOTIFIED`, and the
    /// note says what the policy decided.
    Opened,
    /// Containment ended, contained or not.
    ContainmentEnded,
    /// A release run put the instances back as they were.
    Released,
}

/// A finding as Security Hub identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingRef {
    /// The ASFF `Id` (a GuardDuty finding's ARN).
    pub id: String,
    /// The ASFF `ProductArn`.
    pub product_arn: String,
}

/// A finding Security Hub did not update, with what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingNotUpdated {
    /// The finding.
    pub finding: FindingRef,
    /// Security Hub's `ErrorCode` (`FindingNotFound`, `ConcurrentUpdateError`, ...).
    pub error_code: String,
    /// Security Hub's `ErrorMessage`.
    pub error_message: String,
}

/// One update of the case's findings in Security Hub (`BatchUpdateFindings`).
/// A failure is recorded here and never stops the case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingUpdate {
    /// Which moment of the case.
    pub moment: FindingMoment,
    /// When (UTC).
    pub at: String,
    /// The findings the update is about.
    pub findings: Vec<FindingRef>,
    /// The workflow status set (`NOTIFIED` when the case opens; never
    /// `RESOLVED` or `SUPPRESSED`: that is the analyst's decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_status: Option<String>,
    /// The note's text.
    pub note: String,
    /// The findings Security Hub reported updated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updated: Vec<FindingRef>,
    /// The findings Security Hub reported not updated, after the retries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_updated: Vec<FindingNotUpdated>,
    /// The call failed as a whole (`errorType: message`), after the retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `BatchUpdateFindings` requests made (0 in a dry run).
    pub requests: u32,
    /// A dry run: what would have been sent, nothing sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl FindingUpdate {
    /// Whether Security Hub took the update for every finding.
    pub fn complete(&self) -> bool {
        !self.dry_run
            && self.error.is_none()
            && self.not_updated.is_empty()
            && self.updated.len() == self.findings.len()
    }
}
