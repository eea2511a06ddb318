//! What the aws-smithy-mocks tests share.

use playbook::case::{Action, Case, Decision, Incident, Policy};

/// A case the policy decided to respond to, opened by triage for `incident`
/// (the normalised finding, as JSON).
pub fn responding_case(
    case_id: impl FnOnce(&Incident) -> String,
    incident: serde_json::Value,
) -> Case {
    let incident: Incident = serde_json::from_value(incident).expect("an incident");
    let opened = playbook::case::custody::entry(
        "triage",
        "arn:aws:iam::123456789012:user/tests",
        "opened",
        &[],
        serde_json::Value::Null,
        serde_json::Value::Null,
        None,
    );
    Case::open(
        case_id(&incident),
        incident,
        Decision {
            action: Action::Respond,
            reason: "test".into(),
            dry_run: false,
            approval_timeout_seconds: None,
        },
        Policy::default(),
        opened,
    )
}
