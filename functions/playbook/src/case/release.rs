//! What release-instance records when it puts an instance back.

use serde::{Deserialize, Serialize};

use super::actions::ActionRecord;
use super::PerInstance;

/// What release-instance restored on one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRelease {
    /// Instance id.
    pub instance_id: String,
    /// Every restoration.
    pub actions: Vec<ActionRecord>,
    /// What a responder should know (an Auto Scaling group now one larger...).
    pub notes: Vec<String>,
    /// Every restoration is made or was already so.
    pub complete: bool,
    /// UTC time.
    pub released_at: String,
}

impl PerInstance for InstanceRelease {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}
