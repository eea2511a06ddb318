//! One open case per instance: a lease in DynamoDB (`LEASE_TABLE`), taken
//! with a conditional write before anything touches the instance.
//!
//! A worm or a campaign sends many findings about one instance at once, and
//! GuardDuty repeats a finding while the activity goes on. Without the lease,
//! two cases would contain the same instance side by side, and releasing one
//! would un-isolate an instance the other still holds. So:
//!
//! - triage takes the lease for every instance of a case it responds to at
//!   once (`respond`); a case that waits for a person takes it at
//!   record-approval, once it may proceed. The write succeeds only where no
//!   other case holds the instance (or its hold ran out while it was only
//!   responding);
//! - a finding about an instance another case holds is recorded on that
//!   lease (`laterFindings`) and the new case only observes: it does not start
//!   a competing containment;
//! - isolation turns the lease to `quarantined`, which does not run out: the
//!   release of that case frees it;
//! - release never un-isolates an instance that another case holds.
//!
//! A lease must not outlive what it stands for, or a finding about an
//! instance no one contains would only be observed. A later case takes over
//! (a conditional write on the exact lease it read, recorded in its custody):
//! - a `quarantined` lease whose instance is no longer in the holder's
//!   isolation or acquisition groups, read by group id (restored by hand,
//!   left in the all-open untracking group by a failed isolation, or
//!   terminated);
//! - a `responding` lease whose holder's execution (kept on the lease) has
//!   ended without isolating;
//! - a `responding` lease after [`RESPONDING_SECONDS`] in any case.
//!
//! What cannot be read counts as a live holder: a takeover only ever leads to
//! more containment, never less. The table is the responder's own (only
//! responder roles write it); every write is conditional, so two writers never
//! both win.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use serde_json::json;

use crate::aws::Responder;
use crate::case::custody::{entry, now_utc};
use crate::case::{Action, Case, StepError};
use crate::error::{PlaybookError, Result};

/// How long a lease holds while its case is only responding (not yet
/// isolated): two days, beyond the state machine's bounded waits (approval,
/// memory, snapshots, copies, analysis) added up. A holder whose execution
/// ended is taken over before that; this bounds a holder whose execution is
/// unknown (a case run by the CLI).
pub const RESPONDING_SECONDS: i64 = 2 * 24 * 3600;

/// At most this many later findings are kept on one lease.
pub const MAX_LATER_FINDINGS: usize = 50;

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// The case is running, nothing is isolated yet.
    Responding,
    /// The case isolated the instance: held until that case releases it.
    Quarantined,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Responding => "responding",
            Self::Quarantined => "quarantined",
        }
    }
}

/// Who holds an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The case that holds it.
    pub case_id: String,
    /// Since when (UTC).
    pub since: String,
    /// Responding or quarantined.
    pub phase: Phase,
    /// Findings about the instance that arrived while it was held, as
    /// (finding, when) pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_findings: Vec<(String, String)>,
    /// The holder's execution, when it runs in Step Functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Once quarantined: the isolation groups the holder moved the
    /// instance's ENIs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation_groups: Vec<String>,
    /// Once quarantined: the stage it isolated them to (`acquisition`, `full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_stage: Option<String>,
}

/// What a case taking a lease knows, to tell a stale holder from a live one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness<'a> {
    /// This case's execution (`$$.Execution.Id`), kept on the lease it takes.
    pub execution: Option<&'a str>,
    /// The workload account's EC2, to read whether a quarantined instance is
    /// still in its holder's groups.
    pub ec2: Option<&'a aws_sdk_ec2::Client>,
}

/// What taking a lease found.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// This case holds it: taken now (`fresh`), or held already.
    Ours {
        /// Taken by this write.
        fresh: bool,
    },
    /// Another case holds it.
    HeldBy(Lease),
}

/// The lease table of the responder.
pub struct Leases<'a> {
    db: &'a aws_sdk_dynamodb::Client,
    table: &'a str,
}

/// The table's key of one instance: an instance id is unique only within its
/// account and Region.
pub fn lease_key(account: &str, region: &str, instance_id: &str) -> String {
    format!("{account}/{region}/{instance_id}")
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn text<'m>(item: &'m HashMap<String, AttributeValue>, name: &str) -> Option<&'m str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn failed<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    operation: &str,
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> PlaybookError {
    PlaybookError::from_sdk(operation, None, err)
}

pub(crate) fn is_conditional<E: ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// How a conditional write ended: made (`true`), its condition false
/// (`false`), or an error.
/// A conditional write's answer: `false` when its condition did not hold.
pub(crate) fn conditional<T, E>(
    operation: &str,
    out: std::result::Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
) -> Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match out {
        Ok(_) => Ok(true),
        Err(err) if is_conditional(&err) => Ok(false),
        Err(err) => Err(failed(operation, &err)),
    }
}

impl<'a> Leases<'a> {
    /// The responder's lease table, if `LEASE_TABLE` names one.
    pub fn of(responder: &'a Responder) -> Option<Leases<'a>> {
        let table = responder.config.lease_table.as_deref()?;
        Some(Leases {
            db: &responder.clients.dynamodb,
            table,
        })
    }

    /// A fresh lease item: `case_id` responding on `key` since now.
    fn new_item(
        key: &str,
        case_id: &str,
        execution: Option<&str>,
        now: i64,
    ) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("instance".to_owned(), s(key)),
            ("caseId".to_owned(), s(case_id)),
            ("since".to_owned(), s(&now_utc())),
            ("phase".to_owned(), s(Phase::Responding.as_str())),
            (
                "expiresAt".to_owned(),
                AttributeValue::N((now + RESPONDING_SECONDS).to_string()),
            ),
        ]);
        if let Some(execution) = execution {
            item.insert("execution".to_owned(), s(execution));
        }
        item
    }

    /// Takes the lease of `key` for `case_id` (run by `execution`, if
    /// known), or says who holds it. `now` is the time in seconds since the
    /// epoch.
    pub async fn take(
        &self,
        key: &str,
        case_id: &str,
        execution: Option<&str>,
        now: i64,
    ) -> Result<Taken> {
        for _ in 0..3 {
            let put = self
                .db
                .put_item()
                .table_name(self.table)
                .set_item(Some(Self::new_item(key, case_id, execution, now)))
                .condition_expression(
                    "attribute_not_exists(#instance) OR (#phase = :responding AND #expires < :now)",
                )
                .expression_attribute_names("#instance", "instance")
                .expression_attribute_names("#phase", "phase")
                .expression_attribute_names("#expires", "expiresAt")
                .expression_attribute_values(":responding", s(Phase::Responding.as_str()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(Taken::Ours { fresh: true }),
                Err(err) if is_conditional(&err) => match self.holder(key).await? {
                    Some(lease) if lease.case_id == case_id => {
                        return Ok(Taken::Ours { fresh: false })
                    }
                    Some(lease) => return Ok(Taken::HeldBy(lease)),
                    // Freed between the write and the read: try again.
                    None => continue,
                },
                Err(err) => return Err(failed("PutItem", &err)),
            }
        }
        Err(PlaybookError::AwsService {
            operation: "PutItem".into(),
            code: "LeaseContended".into(),
            message: format!("the lease of {key} changed hands three times while it was taken"),
        })
    }

    /// Takes the lease `from` of `key` over for `case_id`, only if it is
    /// still exactly that lease (same holder, phase and start); false when it
    /// changed meanwhile (None). What the holder kept carries over: the ENIs'
    /// original groups, the DENY entries it made (now this case's to remove),
    /// the findings recorded on it. Answers the item taken over, for
    /// [`Leases::put_back`].
    pub async fn take_over(
        &self,
        key: &str,
        case_id: &str,
        execution: Option<&str>,
        from: &Lease,
        now: i64,
    ) -> Result<Option<HashMap<String, AttributeValue>>> {
        let mut item = Self::new_item(key, case_id, execution, now);
        let old = self.item(key).await?.unwrap_or_default();
        for kept in ["originalGroups", "aclEntries", "laterFindings"] {
            if let Some(value) = old.get(kept) {
                item.insert(kept.to_owned(), value.clone());
            }
        }
        let out = self
            .db
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .condition_expression("#case = :holder AND #phase = :phase AND #since = :since")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_names("#phase", "phase")
            .expression_attribute_names("#since", "since")
            .expression_attribute_values(":holder", s(&from.case_id))
            .expression_attribute_values(":phase", s(from.phase.as_str()))
            .expression_attribute_values(":since", s(&from.since))
            .send()
            .await;
        Ok(conditional("PutItem", out)?.then_some(old))
    }

    /// Gives a lease taken over back to the holder it was taken from (`old`,
    /// its item as read), while `case_id` still holds it.
    pub async fn put_back(
        &self,
        case_id: &str,
        old: HashMap<String, AttributeValue>,
    ) -> Result<bool> {
        let out = self
            .db
            .put_item()
            .table_name(self.table)
            .set_item(Some(old))
            .condition_expression("#case = :case")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_values(":case", s(case_id))
            .send()
            .await;
        conditional("PutItem", out)
    }

    /// The lease item of `key`, read consistently.
    async fn item(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .db
            .get_item()
            .table_name(self.table)
            .key("instance", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed("GetItem", &e))?;
        Ok(out.item().cloned())
    }

    /// Who holds `key`, read consistently.
    pub async fn holder(&self, key: &str) -> Result<Option<Lease>> {
        let Some(item) = self.item(key).await? else {
            return Ok(None);
        };
        let item = &item;
        let phase = match text(item, "phase") {
            Some("quarantined") => Phase::Quarantined,
            _ => Phase::Responding,
        };
        let later_findings = item
            .get("laterFindings")
            .and_then(|v| v.as_l().ok())
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_m().ok())
                    .map(|m| {
                        (
                            text(m, "finding").unwrap_or_default().to_owned(),
                            text(m, "at").unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Lease {
            case_id: text(item, "caseId").unwrap_or_default().to_owned(),
            since: text(item, "since").unwrap_or_default().to_owned(),
            phase,
            later_findings,
            execution: text(item, "execution").map(str::to_owned),
            isolation_groups: text(item, "isolationGroups")
                .and_then(|g| serde_json::from_str(g).ok())
                .unwrap_or_default(),
            isolation_stage: text(item, "isolationStage").map(str::to_owned),
        }))
    }

    /// Records a finding about `key` on the lease `holder` holds (at most
    /// [`MAX_LATER_FINDINGS`] are kept); false when the lease changed hands.
    pub async fn record_later(&self, key: &str, holder: &str, finding: &str) -> Result<bool> {
        let entry = AttributeValue::M(HashMap::from([
            ("finding".to_owned(), s(finding)),
            ("at".to_owned(), s(&now_utc())),
        ]));
        let out = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(key))
            .update_expression("SET #later = list_append(if_not_exists(#later, :none), :one)")
            .condition_expression(
                "#case = :holder AND (attribute_not_exists(#later) OR size(#later) < :max)",
            )
            .expression_attribute_names("#later", "laterFindings")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":one", AttributeValue::L(vec![entry]))
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":max", AttributeValue::N(MAX_LATER_FINDINGS.to_string()))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// The case isolated the instance: its lease no longer runs out, and it
    /// lists the DENY entries the case made (`entries`, JSON), so a retried
    /// isolation knows them as the case's own, and the groups it isolated the
    /// ENIs in (`groups`, JSON), so a later case can tell whether the instance
    /// is still isolated. False when `case_id` does not hold it.
    pub async fn quarantine(
        &self,
        key: &str,
        case_id: &str,
        entries: &str,
        groups: &str,
        stage: &str,
    ) -> Result<bool> {
        let out = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(key))
            .update_expression(
                "SET #phase = :quarantined, #entries = :entries, #groups = :groups, #stage = :stage REMOVE #expires",
            )
            .expression_attribute_names("#stage", "isolationStage")
            .expression_attribute_values(":stage", s(stage))
            .expression_attribute_names("#entries", "aclEntries")
            .expression_attribute_values(":entries", s(entries))
            .expression_attribute_names("#groups", "isolationGroups")
            .expression_attribute_values(":groups", s(groups))
            .condition_expression("#case = :case")
            .expression_attribute_names("#phase", "phase")
            .expression_attribute_names("#expires", "expiresAt")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_values(":quarantined", s(Phase::Quarantined.as_str()))
            .expression_attribute_values(":case", s(case_id))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// Keeps on the lease `case_id` holds the groups each ENI had before
    /// isolation moved it (`groups`, JSON of ENI id to group ids), unless an
    /// earlier attempt kept them already; answers what the lease keeps, or
    /// None when `case_id` does not hold it.
    pub async fn keep_original_groups(
        &self,
        key: &str,
        case_id: &str,
        groups: &str,
    ) -> Result<Option<String>> {
        let out = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(key))
            .update_expression("SET #originals = if_not_exists(#originals, :groups)")
            .condition_expression("#case = :case")
            .expression_attribute_names("#originals", "originalGroups")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_values(":groups", s(groups))
            .expression_attribute_values(":case", s(case_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(
                out.attributes()
                    .and_then(|a| text(a, "originalGroups"))
                    .unwrap_or(groups)
                    .to_owned(),
            )),
            Err(err) if is_conditional(&err) => Ok(None),
            Err(err) => Err(failed("UpdateItem", &err)),
        }
    }

    /// Frees the lease `case_id` holds; false when it holds none.
    pub async fn free(&self, key: &str, case_id: &str) -> Result<bool> {
        let out = self
            .db
            .delete_item()
            .table_name(self.table)
            .key("instance", s(key))
            .condition_expression("#case = :case")
            .expression_attribute_names("#case", "caseId")
            .expression_attribute_values(":case", s(case_id))
            .send()
            .await;
        conditional("DeleteItem", out)
    }
}

/// Seconds since the epoch, now.
pub(crate) fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The lease keys of a case's instances.
fn keys_of(responder: &Responder, case: &Case) -> Vec<(String, String)> {
    let account = case
        .incident
        .account
        .clone()
        .unwrap_or_else(|| responder.identity.account.clone());
    case.incident
        .instance_ids
        .iter()
        .map(|id| (id.clone(), lease_key(&account, &case.incident.region, id)))
        .collect()
}

/// The custody step name of lease records.
const STEP: &str = "lease";

/// Takes the lease of every instance a case is about to act on: at triage
/// for `respond`, at record-approval once an approval (or the timeout policy)
/// lets it proceed. A case waiting for a person holds nothing, so it never
/// turns a finding that needs no approval into an observation. When another
/// case holds an instance, this finding is recorded on that lease, the leases
/// this call took are given back, and the case only observes (its decision
/// says so): no competing containment; unless that lease is stale (see the
/// module), which this case then takes over. A dry run takes nothing.
pub async fn take_for(responder: &Responder, case: &mut Case, live: Liveness<'_>) -> Result<()> {
    if !matches!(case.decision.action, Action::Respond | Action::Approve) || case.decision.dry_run {
        return Ok(());
    }
    let Some(leases) = Leases::of(responder) else {
        return Ok(());
    };
    let now = epoch_now();
    let mut fresh = Vec::new();
    let mut held = Vec::new();
    for (id, key) in keys_of(responder, case) {
        match leases
            .take(&key, &case.case_id, live.execution, now)
            .await?
        {
            Taken::Ours { fresh: true } => fresh.push((id, key)),
            Taken::Ours { fresh: false } => {}
            Taken::HeldBy(lease) => held.push((id, key, lease)),
        }
    }
    // Stale leases are taken over only when every held instance's lease is
    // stale: one live holder makes this case an observation, and a lease
    // taken over then would be given back to no one.
    let mut reasons = Vec::new();
    for (id, _, lease) in &held {
        match stale(responder, live, id, lease).await {
            Some(why) => reasons.push(why),
            None => break,
        }
    }
    let mut taken_over = Vec::new();
    let mut summary = Vec::new();
    if !held.is_empty() && reasons.len() == held.len() {
        // All or none: one takeover lost to a race (or failing) gives the
        // others back to their holders, and the case observes.
        let mut taken = Vec::new();
        let mut lost = Vec::new();
        for ((id, key, lease), why) in held.into_iter().zip(reasons) {
            match leases
                .take_over(&key, &case.case_id, live.execution, &lease, now)
                .await
            {
                Ok(Some(old)) => taken.push((id, key, lease, why, old)),
                Ok(None) => lost.push((id, key, lease)),
                Err(err) => {
                    case.errors.push(StepError::new(
                        STEP,
                        &err,
                        format!("the stale lease of {id} was not taken over"),
                    ));
                    lost.push((id, key, lease));
                }
            }
        }
        if lost.is_empty() {
            for (id, key, lease, why, _) in taken {
                summary.push(format!("{id} from case {} ({why})", lease.case_id));
                taken_over.push(json!({ "instanceId": id, "from": lease, "why": why }));
                fresh.push((id, key));
            }
        } else {
            for (id, key, lease, _, old) in taken {
                if let Err(err) = leases.put_back(&case.case_id, old).await {
                    case.errors.push(StepError::new(
                        STEP,
                        &err,
                        format!(
                            "the lease of {id} taken over was not given back to {}",
                            lease.case_id
                        ),
                    ));
                }
                lost.push((id, key, lease));
            }
        }
        held = lost;
    }
    let actor = responder.identity.actor.clone();
    if !taken_over.is_empty() {
        case.record(entry(
            STEP,
            &actor,
            format!("took over stale leases: {}", summary.join("; ")),
            &["GetItem", "PutItem"],
            json!({ "table": leases.table }),
            json!({ "takenOver": taken_over }),
            None,
        ));
    }
    if held.is_empty() {
        case.record(entry(
            STEP,
            &actor,
            format!(
                "leased {}: no other open case holds them",
                case.incident.instance_ids.join(", ")
            ),
            &["PutItem"],
            json!({ "table": leases.table, "instances": case.incident.instance_ids }),
            json!({ "taken": fresh.iter().map(|(id, _)| id).collect::<Vec<_>>() }),
            None,
        ));
        return Ok(());
    }
    // Another case holds an instance: this case observes, whatever happens
    // to the writes below (a failure is recorded, never a second containment).
    let holders: Vec<String> = held
        .iter()
        .map(|(id, _, l)| {
            format!(
                "{id} is held by open case {} ({:?} since {})",
                l.case_id, l.phase, l.since
            )
        })
        .collect();
    case.decision.action = Action::Observe;
    case.decision.reason = format!(
        "{}: this finding is recorded on that case's lease, and no competing containment starts",
        holders.join("; ")
    );
    for (id, key) in &fresh {
        if let Err(err) = leases.free(key, &case.case_id).await {
            case.errors.push(StepError::new(
                STEP,
                &err,
                format!("the lease this case took on {id} stays until it runs out"),
            ));
        }
    }
    let finding = format!(
        "{:?} {} ({}), case {}",
        case.incident.source, case.incident.finding_id, case.incident.finding_type, case.case_id
    );
    let mut recorded = Vec::new();
    for (id, key, lease) in &held {
        let kept = match leases.record_later(key, &lease.case_id, &finding).await {
            Ok(kept) => kept,
            Err(err) => {
                case.errors.push(StepError::new(
                    STEP,
                    &err,
                    format!("this finding is not on {}'s lease of {id}", lease.case_id),
                ));
                false
            }
        };
        recorded.push(json!({ "instanceId": id, "heldBy": lease, "recordedOnLease": kept }));
    }
    case.record(entry(
        STEP,
        &actor,
        format!("not leased: {}", holders.join("; ")),
        &["PutItem", "GetItem", "UpdateItem", "DeleteItem"],
        json!({ "table": leases.table, "instances": case.incident.instance_ids }),
        json!({ "held": recorded, "givenBack": fresh.iter().map(|(id, _)| id).collect::<Vec<_>>() }),
        None,
    ));
    Ok(())
}

/// Why the lease another case holds on `instance_id` is stale, if it is (see
/// the module). Anything that cannot be read counts as live.
async fn stale(
    responder: &Responder,
    live: Liveness<'_>,
    instance_id: &str,
    lease: &Lease,
) -> Option<String> {
    // A holder whose execution still runs is at work while it responds or
    // is between the acquisition stage and full isolation; once it isolated
    // fully, an instance out of its isolation group is not contained,
    // whatever that execution is doing (hours of disk evidence).
    let at_work =
        lease.phase == Phase::Responding || lease.isolation_stage.as_deref() != Some("full");
    let ended = match lease.execution.as_deref() {
        Some(execution) if live.execution != Some(execution) && at_work => {
            let out = responder
                .clients
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .ok()?;
            if *out.status() == aws_sdk_sfn::types::ExecutionStatus::Running {
                return None;
            }
            Some(format!(
                "its execution {execution} ended {}",
                out.status().as_str()
            ))
        }
        _ => None,
    };
    match lease.phase {
        Phase::Quarantined => {
            let ec2 = live.ec2?;
            if lease.isolation_groups.is_empty() {
                return None;
            }
            let out = ec2
                .describe_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .ok()?;
            let instance = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()?;
            if crate::steps::is_terminated(instance) {
                return Some("the instance is terminated".into());
            }
            let outside: Vec<&str> = instance
                .network_interfaces()
                .iter()
                .filter(|eni| {
                    eni.groups().iter().any(|g| {
                        g.group_id()
                            .is_none_or(|id| !lease.isolation_groups.iter().any(|x| x == id))
                    })
                })
                .filter_map(|eni| eni.network_interface_id())
                .collect();
            (!outside.is_empty()).then(|| {
                format!(
                    "{} no longer only in the holder's isolation group: it is not contained{}",
                    outside.join(", "),
                    ended.map(|e| format!("; {e}")).unwrap_or_default()
                )
            })
        }
        Phase::Responding => ended.map(|e| format!("{e} before it isolated the instance")),
    }
}

/// [`take_for`], with a failure of the lease table recorded in the Case
/// instead of stopping it: containment does not wait on the table.
pub async fn take_or_record(responder: &Responder, case: &mut Case, live: Liveness<'_>) {
    if let Err(err) = take_for(responder, case, live).await {
        case.errors.push(StepError::new(
            STEP,
            &err,
            "no lease taken: another case may act on the same instance at the same time".to_owned(),
        ));
    }
}

/// Isolation changed the instances: their leases no longer run out. An
/// instance whose lease this case does not hold is recorded as an error.
pub async fn quarantine_for(responder: &Responder, case: &mut Case) {
    let Some(leases) = Leases::of(responder) else {
        return;
    };
    if case.decision.dry_run {
        return;
    }
    for (id, key) in keys_of(responder, case) {
        // Any isolation record of this case (a retry's may hold only
        // alreadyDone actions): the instance is this case's to release.
        if crate::case::record_of(&case.isolation, &id).is_none() {
            continue;
        }
        let record = crate::case::record_of(&case.isolation, &id);
        let entries = record
            .map(|i| serde_json::to_string(&i.network_acl_entries).unwrap_or_default())
            .unwrap_or_default();
        // Only the group that holds an ENI shut: not the all-open untracking
        // group, where a failed isolation may have left one, nor the
        // acquisition group, which still reaches the SSM and S3 endpoints.
        let groups: Vec<&str> = record
            .into_iter()
            .flat_map(|i| &i.groups)
            .filter_map(|g| g.isolation_group_id.as_deref())
            .collect();
        let groups = serde_json::to_string(&groups).unwrap_or_default();
        let stage = record
            .and_then(|i| serde_json::to_value(i.stage).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let problem = match leases
            .quarantine(&key, &case.case_id, &entries, &groups, &stage)
            .await
        {
            Ok(true) => continue,
            Ok(false) => PlaybookError::AwsService {
                operation: "UpdateItem".into(),
                code: "LeaseNotHeld".into(),
                message: format!(
                    "{id} was isolated by this case, but its lease is not this case's"
                ),
            },
            Err(err) => err,
        };
        case.errors.push(StepError::new(
            STEP,
            &problem,
            format!(
                "{id}'s lease does not mark it quarantined: a later finding may start another case"
            ),
        ));
    }
}

/// isolate-network under the case's leases: the DENY entries an earlier
/// attempt made are the case's own ([`own_acl_entries`]), the ENIs' original
/// groups are kept on the lease before any ENI moves
/// ([`keep_original_groups`]), and the leases of isolated instances turn
/// quarantined ([`quarantine_for`]).
pub async fn isolate_holding(
    responder: &Responder,
    clients: &crate::aws::Clients,
    actor: &str,
    case: Case,
) -> Result<Case> {
    use crate::steps::isolate;
    let own = own_acl_entries(responder, &case).await;
    let (described, mut prepared) = isolate::prepare_isolation(clients, &case, own).await?;
    let mut case = case;
    keep_original_groups(responder, &mut case, &mut prepared).await;
    let mut case = isolate::isolate(clients, actor, case, described, prepared).await;
    quarantine_for(responder, &mut case).await;
    Ok(case)
}

/// Before isolation moves any ENI, each instance's ENI groups as read are
/// kept on its lease; the first attempt's stay (a later write keeps them).
/// A retry whose first answer was lost after the ENIs moved so restores from
/// the lease, not from the ENIs, which by then are in the responder's groups.
/// Only responder roles write the lease table: an instance tag, which anyone
/// with `ec2:CreateTags` could write, is never trusted for this. A lease that
/// cannot be written is recorded; isolation goes on (containment first), with
/// the groups as read.
pub async fn keep_original_groups(
    responder: &Responder,
    case: &mut Case,
    prepared: &mut crate::steps::isolate::Prepared,
) {
    let Some(leases) = Leases::of(responder) else {
        return;
    };
    if case.decision.dry_run {
        return;
    }
    for (id, key) in keys_of(responder, case) {
        let Some(Ok(reads)) = prepared.instances.get_mut(&id) else {
            continue;
        };
        if reads.terminated() {
            continue;
        }
        let read: std::collections::BTreeMap<&str, &Vec<String>> = reads
            .interfaces
            .iter()
            .map(|e| (e.network_interface_id.as_str(), &e.original_group_ids))
            .collect();
        let groups = serde_json::to_string(&read).unwrap_or_default();
        let problem = match leases
            .keep_original_groups(&key, &case.case_id, &groups)
            .await
        {
            // A later stage (the acquisition stage's completion) has the
            // originals in the case's record already, and moves the ENIs from
            // the groups they are in now: a rollback or an "already done"
            // must see those, not the originals.
            Ok(Some(_)) if crate::case::record_of(&case.isolation, &id).is_some() => continue,
            Ok(Some(kept)) => {
                let kept: std::collections::BTreeMap<String, Vec<String>> =
                    serde_json::from_str(&kept).unwrap_or_default();
                for eni in &mut reads.interfaces {
                    if let Some(groups) = kept.get(&eni.network_interface_id) {
                        if *groups != eni.original_group_ids {
                            eni.original_group_ids = groups.clone();
                            reads.originals_kept.push(eni.network_interface_id.clone());
                        }
                    }
                }
                continue;
            }
            Ok(None) => PlaybookError::AwsService {
                operation: "UpdateItem".into(),
                code: "LeaseNotHeld".into(),
                message: format!("{id}'s lease is not this case's"),
            },
            Err(err) => err,
        };
        case.errors.push(StepError::new(
            crate::steps::isolate::STEP,
            &problem,
            format!(
                "{id}'s original groups are not kept on its lease: a retry of isolation would take the groups it then reads"
            ),
        ));
    }
}

/// A retried isolation: the DENY entries an earlier attempt of this case made,
/// as its lease lists them (written only by the responder). Anything that
/// cannot be read counts as none: a DENY already there is then someone
/// else's, and release leaves it.
pub async fn own_acl_entries(
    responder: &Responder,
    case: &Case,
) -> Vec<crate::case::isolation::AclEntryRecord> {
    let Some(leases) = Leases::of(responder) else {
        return Vec::new();
    };
    let mut own = Vec::new();
    for (_, key) in keys_of(responder, case) {
        let Ok(Some(item)) = leases.item(&key).await else {
            continue;
        };
        if text(&item, "caseId") != Some(case.case_id.as_str()) {
            continue;
        }
        if let Some(listed) = text(&item, "aclEntries") {
            own.extend(serde_json::from_str::<Vec<_>>(listed).unwrap_or_default());
        }
    }
    own
}

/// Release: the instances another case holds, with that case. Releasing
/// them would un-isolate an instance the other case still contains.
pub async fn held_elsewhere(
    responder: &Responder,
    case: &Case,
) -> Result<std::collections::BTreeMap<String, Lease>> {
    let mut held = std::collections::BTreeMap::new();
    let Some(leases) = Leases::of(responder) else {
        return Ok(held);
    };
    for (id, key) in keys_of(responder, case) {
        if let Some(lease) = leases.holder(&key).await? {
            if lease.case_id != case.case_id {
                held.insert(id, lease);
            }
        }
    }
    Ok(held)
}

/// After release (or a denied approval): frees this case's leases of the
/// instances `done` names.
pub async fn free_for(responder: &Responder, case: &mut Case, done: &[String]) {
    let Some(leases) = Leases::of(responder) else {
        return;
    };
    for (id, key) in keys_of(responder, case) {
        if !done.contains(&id) {
            continue;
        }
        match leases.free(&key, &case.case_id).await {
            Ok(freed) => case.record(entry(
                STEP,
                &responder.identity.actor,
                if freed {
                    format!("freed the lease of {id}")
                } else {
                    format!("{id}: this case held no lease to free")
                },
                &["DeleteItem"],
                json!({ "instanceId": id }),
                json!({ "freed": freed }),
                None,
            )),
            Err(err) => case.errors.push(StepError::new(
                STEP,
                &err,
                format!("the lease of {id} stays: a later finding about it is only observed until it runs out"),
            )),
        }
    }
}

/// Seal: the findings that arrived about the case's instances while it held
/// them go into its custody record, so the report names them.
pub async fn note_later_findings(responder: &Responder, case: &mut Case) {
    let Some(leases) = Leases::of(responder) else {
        return;
    };
    for (id, key) in keys_of(responder, case) {
        match leases.holder(&key).await {
            Ok(Some(lease)) if lease.case_id == case.case_id && !lease.later_findings.is_empty() => {
                case.record(entry(
                    STEP,
                    &responder.identity.actor,
                    format!(
                        "{} later finding(s) about {id} arrived while this case held it; none started another case",
                        lease.later_findings.len()
                    ),
                    &["GetItem"],
                    json!({ "instanceId": id }),
                    json!({ "laterFindings": lease.later_findings }),
                    None,
                ))
            }
            Ok(_) => {}
            Err(err) => case.errors.push(StepError::new(
                STEP,
                &err,
                format!("the findings that arrived about {id} while this case held it are not in its record"),
            )),
        }
    }
}
