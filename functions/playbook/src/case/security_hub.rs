//! What the responder told Security Hub about the finding behind a case.

use serde::{Deserialize, Serialize};

/// When the responder tells Security Hub about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FindingMoment {
    /// The case opened and waits for a person's approval (the finding is
    /// taken on: `NOTIFIED`), or the policy only observes it (a note; the
    /// finding stays in the queue).
    Opened,
    /// The approver refused, or no one answered and the policy stops.
    NotApproved,
    /// Containment ended, contained or not (the finding is taken on).
    ContainmentEnded,
    /// A release run put the instances back as they were.
    Released,
    /// A clean-up removed what the case no longer needed (recovery).
    CleanedUp,
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

/// One update of the case's findings in Security Hub (`GetFindings`, then
/// `BatchUpdateFindings`). A failure is recorded here and never stops the case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingUpdate {
    /// Which moment of the case.
    pub moment: FindingMoment,
    /// When (UTC).
    pub at: String,
    /// The findings the update is about.
    pub findings: Vec<FindingRef>,
    /// `ec2ForensicsState`: where the case stands, in one word.
    pub state: String,
    /// The note's text (written unless someone else's note is on the finding).
    pub note: String,
    /// The moment takes the finding on: `NOTIFIED`, from `NEW` only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_on: bool,
    /// The findings set `NOTIFIED` (they were `NEW`). Never `RESOLVED` or
    /// `SUPPRESSED`: that is the analyst's decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
    /// The findings whose note someone else wrote: kept, not overwritten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes_kept: Vec<String>,
    /// The findings Security Hub accepted the update for (its
    /// `ProcessedFindings`; it may take minutes to show).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<FindingRef>,
    /// The findings not updated, after the retries, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_updated: Vec<FindingNotUpdated>,
    /// The update failed as a whole (`errorType: message`), after the retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Requests made (`GetFindings` and `BatchUpdateFindings`; 0 in a dry run).
    pub requests: u32,
    /// A dry run: what would have been sent, nothing sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The case's last update, sent again before the seal to the findings
    /// Security Hub had not accepted it for (a GuardDuty finding reaches
    /// Security Hub up to minutes after the case opens).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
}

impl FindingUpdate {
    /// Whether Security Hub accepted the update for every finding.
    pub fn accepted(&self) -> bool {
        !self.dry_run
            && self.error.is_none()
            && self.not_updated.is_empty()
            && self.findings.iter().all(|f| self.accepted.contains(f))
    }
}
