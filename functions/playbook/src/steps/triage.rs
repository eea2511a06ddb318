//! Triage: a finding in, a Case with the policy's decision out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::aws::{Responder, Workload};
use crate::case::custody::{entry, sha256_json};
use crate::case::{text, Action, Case, Decision, Incident, Indication, StepError};
use crate::error::{AwsCall, Result};
use crate::findings::{parse_one, ParseContext, ParsedFinding};
use crate::policy::{decide, Policy};
use crate::steps::{printable_line, Described};

/// The step name in custody entries and errors.
pub const STEP: &str = "triage";

/// What `ec2-forensics triage` prints: the incident, its case id and the decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriageReport {
    /// Stable case id.
    pub case_id: String,
    /// The normalised finding, flattened.
    #[serde(flatten)]
    pub incident: Incident,
    /// What the policy decided.
    pub decision: Decision,
}

/// Offline triage: parse and decide, no AWS call. Used by the CLI.
pub fn triage_offline(event: &Value, ctx: &ParseContext, policy: &Policy) -> Result<TriageReport> {
    let ParsedFinding {
        case_id, incident, ..
    } = parse_one(event, ctx)?;
    let decision = decide(&incident, policy);
    Ok(TriageReport {
        case_id,
        incident,
        decision,
    })
}

/// What EC2 says of the instances now: their tags and states.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFacts {
    /// Tags, united over the instances.
    pub tags: BTreeMap<String, String>,
    /// State of each instance found.
    pub states: BTreeMap<String, String>,
}

impl InstanceFacts {
    /// The facts of instances already described; an unknown instance is an error.
    pub fn from_described(described: &[Described]) -> Result<InstanceFacts> {
        let mut facts = InstanceFacts::default();
        for (_, result) in described {
            let (_, instance) = result.as_ref().map_err(Clone::clone)?;
            facts.add(instance);
        }
        Ok(facts)
    }

    fn add(&mut self, instance: &aws_sdk_ec2::types::Instance) {
        for tag in instance.tags() {
            if let (Some(k), Some(v)) = (tag.key(), tag.value()) {
                self.tags.insert(k.to_owned(), v.to_owned());
            }
        }
        if let (Some(id), Some(state)) = (
            instance.instance_id(),
            instance.state().and_then(|s| s.name()),
        ) {
            self.states.insert(id.to_owned(), state.as_str().to_owned());
        }
    }
}

/// Brings the incident up to date with EC2's view: current tags (kept apart
/// from the finding's own: live tags can demand approval, never exempt) and
/// state. A terminated instance anywhere in the finding is reported as such.
pub fn apply_instance_facts(incident: &mut Incident, facts: InstanceFacts) {
    incident.live_tags = facts.tags;
    let live = facts.states.values().find(|s| s.as_str() != "terminated");
    incident.instance_state = match live {
        Some(state) => Some(state.clone()),
        None => facts
            .states
            .values()
            .next()
            .cloned()
            .or(incident.instance_state.take()),
    };
}

/// Triage in the state machine: parse, check scope, refresh the instance facts
/// from EC2, decide, and open the Case with its first custody entry.
/// In the state machine the Task's input is `{"event": <the event>,
/// "execution": $$.Execution.Id}`, so the case's lease names its execution;
/// invoked with the event alone (cargo-lambda, a test), there is none.
pub async fn triage(responder: &Responder, event: Value) -> Result<Case> {
    let (event, execution) = match event {
        Value::Object(mut fields)
            if fields.len() == 2
                && fields.contains_key("event")
                && fields
                    .get("execution")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.starts_with("arn:") && e.contains(":execution:")) =>
        {
            let execution = fields
                .remove("execution")
                .and_then(|e| e.as_str().map(str::to_owned));
            (fields.remove("event").unwrap_or_default(), execution)
        }
        event => (event, None),
    };
    Ok(triage_in_workload(responder, &event, execution.as_deref())
        .await?
        .0)
}

/// [`triage`], also handing back the workload account's clients it used, for
/// the steps that follow in the same process (`investigate`). An ignored
/// finding (a sample, an ignored type) touches nothing, not even a Describe
/// call: sample findings name instances that do not exist.
pub async fn triage_in_workload(
    responder: &Responder,
    event: &Value,
    execution: Option<&str>,
) -> Result<(Case, Option<Workload>)> {
    let case = open_case(responder, event, None)?;
    if case.decision.action == Action::Ignore {
        return Ok((case, None));
    }
    let workload = responder.workload(&case).await?;
    let facts = describe_instance_facts(&workload.clients.ec2, &case.incident.instance_ids).await?;
    let mut case = open_case(responder, event, Some(facts))?;
    // A case that waits for a person takes its leases once it may proceed
    // (record-approval); one that responds at once takes them now.
    if case.decision.action == Action::Respond {
        let live = crate::steps::lease::Liveness {
            execution,
            ec2: Some(&workload.clients.ec2),
        };
        crate::steps::lease::take_or_record(responder, &mut case, live).await;
    }
    tell_of_exposure(responder, &mut case).await;
    Ok((case, Some(workload)))
}

/// When the instance was only the target of outside activity and the policy
/// names a topic, a person is told (ports and sources as the finding reported
/// them). A failed notification is recorded; it never stops the case.
pub async fn tell_of_exposure(responder: &Responder, case: &mut Case) {
    let exposed = case
        .decision
        .classification
        .as_ref()
        .is_some_and(|c| c.indication == Indication::Exposed);
    let Some(topic) = case.policy.notification_topic_arn.clone() else {
        return;
    };
    if case.decision.action != Action::Observe || !exposed {
        return;
    }
    let (subject, message) = exposure_notice(case);
    let published = responder
        .clients
        .sns
        .publish()
        .topic_arn(&topic)
        .subject(subject)
        .message(message)
        .send()
        .await
        .aws("Publish", None);
    match published {
        Ok(out) => case.record(entry(
            STEP,
            &responder.identity.actor,
            "told a person: the instance is the target of outside activity, not contained",
            &["Publish"],
            json!({ "topicArn": topic }),
            json!({ "messageId": out.message_id() }),
            None,
        )),
        Err(err) => {
            tracing::warn!(case_id = %case.case_id, error = %err, "exposure notice not sent");
            case.errors.push(StepError::new(
                STEP,
                &err,
                Some("no one was told that the instance is exposed".to_owned()),
            ));
        }
    }
}

/// The exposure notice: what reached the instance, as the finding reported it.
/// Finding text is shown as reported, on lines of its own, printable only.
pub fn exposure_notice(case: &Case) -> (String, String) {
    let incident = &case.incident;
    let subject = printable_line(
        &format!(
            "EC2 forensics: {} exposed to outside activity (observed, not contained)",
            incident.instance_ids.join(", ")
        ),
        100,
    );
    let activity = &incident.outside_activity;
    let ports: Vec<String> = activity.local_ports.iter().map(u16::to_string).collect();
    let or_unknown = |items: Vec<String>| {
        if items.is_empty() {
            "(not reported)".to_owned()
        } else {
            items.join(", ")
        }
    };
    let decided_by = case
        .decision
        .classification
        .as_ref()
        .map(|c| c.decided_by.as_str())
        .unwrap_or_default();
    let body =
        format!(
        "Case {case_id}: the instance was the target of activity from outside. Nothing says it\n\
         was compromised, so nothing was changed: no isolation, no snapshot.\n\
         \n\
         As reported by {source:?} (not verified):\n\
         - finding type: {kind}\n\
         - title: {title}\n\
         - instance port(s): {ports}\n\
         - source address(es): {sources}\n\
         - severity {severity:.1}; instances {instances}; account {account}, region {region}\n\
         \n\
         Classified by: {decided_by}\n\
         \n\
         Check whether the port should be reachable at all. To respond anyway:\n\
         ec2-forensics start --instance {first} --reason \"...\"\n",
        case_id = case.case_id,
        source = incident.source,
        kind = text::plain(&incident.finding_type),
        title = text::as_reported(&format!("{:?}", incident.source), &incident.title),
        ports = or_unknown(ports),
        sources = text::plain(&or_unknown(activity.remote_addresses.clone())),
        severity = incident.severity,
        instances = incident.instance_ids.join(", "),
        account = incident.account.as_deref().unwrap_or("(the responder's own)"),
        region = incident.region,
        decided_by = text::plain(decided_by),
        first = incident.instance_ids.first().map(String::as_str).unwrap_or_default(),
    );
    (subject, body)
}

/// Parses, checks scope, applies the facts EC2 gave (when it was asked) and
/// decides: no AWS call.
pub fn open_case(
    responder: &Responder,
    event: &Value,
    facts: Option<InstanceFacts>,
) -> Result<Case> {
    let ctx = ParseContext {
        default_region: Some(responder.region.clone()),
        default_account: Some(responder.identity.account.clone()),
    };
    let ParsedFinding {
        case_id,
        mut incident,
        ..
    } = parse_one(event, &ctx)?;
    responder.check_scope(incident.account.as_deref(), &incident.region)?;
    let calls: &[&str] = if facts.is_some() {
        &["DescribeInstances"]
    } else {
        &[]
    };
    if let Some(facts) = facts {
        apply_instance_facts(&mut incident, facts);
    }
    let decision = decide(&incident, &responder.policy);
    tracing::info!(case_id = %case_id, action = ?decision.action, reason = %decision.reason, "triaged");
    let custody = entry(
        STEP,
        &responder.identity.actor,
        format!(
            "opened case; decision {:?}: {}",
            decision.action, decision.reason
        ),
        calls,
        json!({ "rawReference": incident.raw_reference, "eventSha256": sha256_json(event) }),
        json!({ "decision": decision }),
        Some(sha256_json(&incident)),
    );
    Ok(Case::open(
        case_id,
        incident,
        decision,
        responder.policy.clone(),
        custody,
    ))
}

/// Current tags and states of the instances; unknown instances are an error.
pub async fn describe_instance_facts(
    ec2: &aws_sdk_ec2::Client,
    instance_ids: &[String],
) -> Result<InstanceFacts> {
    let first = instance_ids.first().map(String::as_str);
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(instance_ids.to_vec()))
        .send()
        .await
        .aws("DescribeInstances", first)?;
    let mut facts = InstanceFacts::default();
    for instance in out.reservations().iter().flat_map(|r| r.instances()) {
        facts.add(instance);
    }
    if let Some(missing) = instance_ids
        .iter()
        .find(|id| !facts.states.contains_key(*id))
    {
        return Err(crate::error::PlaybookError::InstanceNotFound {
            instance_id: missing.clone(),
            message: "DescribeInstances returned no such instance".into(),
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::FindingSource;

    fn incident() -> Incident {
        Incident {
            instance_ids: vec!["i-1".into(), "i-2".into()],
            tags: BTreeMap::from([("Stale".into(), "old".into())]),
            instance_state: None,
            ..crate::case::example_incident(
                FindingSource::CloudWatchAlarm,
                "CloudWatchAlarm:ALARM/cpu",
                5.0,
            )
        }
    }

    #[test]
    fn current_tags_are_added_and_a_live_state_wins() {
        let mut incident = incident();
        apply_instance_facts(
            &mut incident,
            InstanceFacts {
                tags: BTreeMap::from([("Environment".into(), "production".into())]),
                states: BTreeMap::from([
                    ("i-1".into(), "terminated".into()),
                    ("i-2".into(), "running".into()),
                ]),
            },
        );
        assert_eq!(
            incident.live_tags.get("Environment").map(String::as_str),
            Some("production")
        );
        assert!(
            !incident.tags.contains_key("Environment"),
            "live tags never become the finding's own"
        );
        assert_eq!(incident.tags.get("Stale").map(String::as_str), Some("old"));
        assert_eq!(incident.instance_state.as_deref(), Some("running"));
    }

    #[test]
    fn all_terminated_is_terminated() {
        let mut incident = incident();
        apply_instance_facts(
            &mut incident,
            InstanceFacts {
                tags: BTreeMap::new(),
                states: BTreeMap::from([("i-1".into(), "terminated".into())]),
            },
        );
        assert_eq!(incident.instance_state.as_deref(), Some("terminated"));
    }
}
