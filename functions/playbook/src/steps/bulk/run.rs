//! The `bulk` state machine's steps, served by the `bulk` Lambda: plan,
//! ask a person, record the answer, prepare each VPC once, cut (or release)
//! one subnet per item, and sum up the map run.
//!
//! The plan and the items list are written to the evidence bucket (locked),
//! and the Distributed Map reads the items list *at the version the plan
//! step wrote* (`VersionId` in its ItemReader): a later version written by
//! anyone who can write the bucket is never read. Nothing else is read back
//! from the bucket but that pinned version, checked against its SHA-256.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cases::{case_containment, case_record, holding_case};
use super::resolve::plan_bulk;
use super::subnets::{
    cut_subnet, instances_in_subnet, prepare_quarantine_acl, release_subnet, SubnetHolds,
};
use super::terminate::{terminate_instance, CaseEvidence, TerminateItem, Termination};
use crate::aws::{Config, Responder};
use crate::case::approval::{same_identity, ApprovalAnswer, ApprovalOutcome};
use crate::case::bulk::{
    BulkAction, BulkPlan, BulkRequest, CaseItem, PlannedSubnet, QuarantineAcl, SubnetCut,
    SubnetItem, SubnetRelease,
};
use crate::case::custody::now_utc;
use crate::case::Case;
use crate::error::{AwsCall, PlaybookError, Result};
use crate::findings::{parse_one, ParseContext};
use crate::steps::approval::{checked_approval, publish};
use crate::steps::evidence::store::EvidenceStore;
use crate::steps::printable_line;

/// One call of the `bulk` Lambda, named by its `step`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    tag = "step",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum BulkStep {
    /// Resolve the request, write the plan and the items list.
    Plan {
        /// The execution's input, as the start function wrote it.
        started: StartedInput,
        /// `$$.Execution.Id`: it must be named by the request's bulk id.
        execution: String,
    },
    /// Ask a person, with the plan.
    RequestApproval {
        /// The plan step's output.
        plan: PlanOutput,
    },
    /// Record the gate's answer; only a verified approval proceeds.
    RecordApproval {
        /// The plan step's output.
        plan: PlanOutput,
        /// The wait's output or caught error.
        answer: Value,
        /// `$$.Execution.Id`: the approval's MAC names it.
        execution: String,
    },
    /// Find or make one VPC's deny-all ACL.
    PrepareVpc {
        /// The run.
        bulk_id: String,
        /// The VPC.
        vpc_id: String,
        /// The account.
        account: String,
    },
    /// Make one VPC's isolation groups exact before its cases run, so that
    /// cases started at once find them instead of each creating them.
    PrepareGroups {
        /// The run.
        bulk_id: String,
        /// The VPC.
        vpc_id: String,
        /// The account.
        account: String,
    },
    /// Cut one subnet.
    CutSubnet {
        /// The item, as the items list holds it.
        item: SubnetItem,
        /// Every VPC's prepared ACL.
        acls: Vec<QuarantineAcl>,
    },
    /// Terminate one instance, evidence first.
    TerminateInstance {
        /// The item, as the items list holds it.
        item: TerminateItem,
    },
    /// Whether a case a `contain` item started (or joined) is contained.
    CaseContainment {
        /// The case.
        case_id: String,
    },
    /// Release one subnet of an earlier cut.
    ReleaseSubnet {
        /// The item: the earlier run's id and the subnet.
        item: SubnetItem,
    },
    /// A `release-cases` item's first step: the case's Case from its
    /// execution, the release's request and approval in its custody record.
    LoadCase {
        /// The item, as the items list holds it.
        item: CaseItem,
        /// Who approved the run (the recorded approval's `by`).
        #[serde(default)]
        approved_by: Option<String>,
    },
    /// A `release-cases` item's last step: whether every instance was read
    /// back released; the release recorded for `status`.
    CaseReleased {
        /// The item, as the items list holds it.
        item: CaseItem,
        /// Who approved the run.
        #[serde(default)]
        approved_by: Option<String>,
        /// The Case release-instance and seal-evidence handed on.
        case: Value,
    },
    /// Sum up the map run.
    Summarise {
        /// The plan step's output.
        plan: PlanOutput,
        /// The Distributed Map's output (`MapRunArn`, `ResultWriterDetails`).
        map_run: Value,
    },
}

/// A bulk execution's input: the request, and the start function's MAC
/// over its bulk id (the requester is one AWS authenticated).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedInput {
    /// What was asked.
    pub request: BulkRequest,
    /// The start function's MAC, base64.
    #[serde(default)]
    pub request_mac: Option<String>,
}

/// An object the run wrote, at the version it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObjectRef {
    /// The evidence bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The version the run wrote (the ItemReader reads exactly this one).
    pub version_id: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

/// What the plan step hands the rest of the run: small, so that a plan of
/// thousands of instances stays within Step Functions' state size; the
/// whole plan is in `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutput {
    /// The run.
    pub bulk_id: String,
    /// What it does.
    pub action: BulkAction,
    /// The account it acts in (resolved: never empty).
    pub account: String,
    /// The Region.
    pub region: String,
    /// Whether it may go on (something to do, no refusal).
    pub ready: bool,
    /// Why not.
    #[serde(default)]
    pub refusals: Vec<String>,
    /// Items the map runs.
    pub item_count: usize,
    /// Instances selected and actionable.
    pub instance_count: usize,
    /// VPCs prepared before the map.
    #[serde(default)]
    pub vpcs: Vec<String>,
    /// Items at once.
    pub max_concurrency: u32,
    /// The whole plan.
    pub plan: StoredObjectRef,
    /// The items list the map reads (when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<StoredObjectRef>,
    /// Where the map writes its results.
    pub results_prefix: String,
    /// How long the approval gate waits.
    pub approval_timeout_seconds: u64,
    /// `terminate` without a completed snapshot of every volume, if the
    /// approver accepts it (the request asked).
    #[serde(default)]
    pub without_snapshots: bool,
    /// Who asked, as AWS authenticated them (verified before the plan): the
    /// one person who may not approve the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// The key of a run's object.
pub fn bulk_key(bulk_id: &str, name: &str) -> String {
    format!("bulk/{bulk_id}/{name}")
}

/// The `bulk` Lambda: one step.
pub async fn bulk_step(responder: &Responder, input: Value) -> Result<Value> {
    let step: BulkStep = serde_json::from_value(input)
        .map_err(|e| PlaybookError::InvalidRequest(format!("not a bulk step: {e}")))?;
    let output = match step {
        BulkStep::Plan { started, execution } => {
            let StartedInput {
                request,
                request_mac,
            } = started;
            super::start::check_requester(responder, &request, request_mac.as_deref()).await?;
            json!(plan_step(responder, request, &execution).await?)
        }
        BulkStep::RequestApproval { plan } => request_approval(responder, &plan).await?,
        BulkStep::RecordApproval {
            plan,
            answer,
            execution,
        } => record_approval(responder, &plan, &answer, &execution).await?,
        BulkStep::PrepareVpc {
            bulk_id,
            vpc_id,
            account,
        } => {
            let workload = responder.workload_for(Some(&account), &bulk_id).await?;
            let acl =
                prepare_quarantine_acl(&workload.clients.ec2, &vpc_id, &bulk_id, false).await?;
            if !acl.verified {
                return Err(PlaybookError::NotReady(format!(
                    "the deny-all network ACL of {vpc_id} is not ready: {}",
                    acl.action
                        .detail
                        .as_deref()
                        .unwrap_or("not read back as deny-all")
                )));
            }
            json!(acl)
        }
        BulkStep::PrepareGroups {
            bulk_id,
            vpc_id,
            account,
        } => {
            let workload = responder.workload_for(Some(&account), &bulk_id).await?;
            json!(prepare_vpc_groups(&workload.clients.ec2, &vpc_id).await?)
        }
        BulkStep::CutSubnet { item, acls } => json!(cut_step(responder, &item, &acls).await?),
        BulkStep::ReleaseSubnet { item } => json!(release_step(responder, &item).await?),
        BulkStep::TerminateInstance { item } => json!(terminate_step(responder, &item).await?),
        BulkStep::CaseContainment { case_id } => case_containment(responder, &case_id).await?,
        BulkStep::LoadCase { item, approved_by } => {
            json!(super::release_cases::load_case(responder, &item, approved_by.as_deref()).await?)
        }
        BulkStep::CaseReleased {
            item,
            approved_by,
            case,
        } => {
            let case = Case::from_input(case)?;
            super::release_cases::case_released(responder, &item, approved_by.as_deref(), case)
                .await?
        }
        BulkStep::Summarise { plan, map_run } => summarise(responder, &plan, &map_run).await?,
    };
    Ok(output)
}

async fn plan_step(
    responder: &Responder,
    request: BulkRequest,
    execution: &str,
) -> Result<PlanOutput> {
    let bulk_id = request.bulk_id();
    if execution.rsplit(':').next() != Some(bulk_id.as_str()) {
        return Err(PlaybookError::InvalidRequest(format!(
            "the execution {execution} is not named by its request's bulk id {bulk_id}: start runs with `ec2-forensics bulk`"
        )));
    }
    let store = EvidenceStore::required(responder)?;
    let (plan, account) = plan_request(responder, request).await?;
    let items = items_of(&plan, &account);
    let stored_plan = store
        .put(
            &bulk_key(&bulk_id, "plan.json"),
            serde_json::to_vec_pretty(&plan).unwrap_or_default(),
            "application/json",
            "bulk-plan",
        )
        .await?;
    let reference = |artifact: crate::case::Artifact| StoredObjectRef {
        bucket: store.bucket().to_owned(),
        key: artifact.key,
        version_id: artifact.version_id,
        sha256: artifact.sha256,
    };
    let ready = plan.ready();
    let items = if ready {
        let stored = store
            .put(
                &bulk_key(&bulk_id, "items.json"),
                serde_json::to_vec(&items).unwrap_or_default(),
                "application/json",
                "bulk-items",
            )
            .await?;
        Some(reference(stored))
    } else {
        None
    };
    tracing::info!(bulk_id = %bulk_id, ready, items = plan.item_count(), "bulk run planned");
    Ok(PlanOutput {
        bulk_id: bulk_id.clone(),
        action: plan.request.action,
        account,
        region: plan.request.region.clone(),
        ready,
        refusals: plan.refusals.clone(),
        item_count: plan.item_count(),
        instance_count: plan.instances.len(),
        vpcs: plan.vpcs.clone(),
        max_concurrency: plan.max_concurrency,
        plan: reference(stored_plan),
        items,
        results_prefix: bulk_key(&bulk_id, "results"),
        approval_timeout_seconds: responder.policy.approval_timeout_seconds,
        without_snapshots: plan.request.without_snapshots,
        requested_by: plan.request.requested_by.clone(),
    })
}

/// Plans a request in its account (the workload role there, for the bulk id):
/// what the plan step writes and what the command line's dry run shows.
/// Returns the plan and the account it was read in.
pub async fn plan_request(
    responder: &Responder,
    request: BulkRequest,
) -> Result<(BulkPlan, String)> {
    let bulk_id = request.bulk_id();
    responder.check_scope(request.account.as_deref(), &request.region)?;
    let workload = responder
        .workload_for(request.account.as_deref(), &bulk_id)
        .await?;
    let mut plan = match request.action {
        BulkAction::ReleaseSubnets => release_plan(responder, request, &workload.account).await?,
        BulkAction::ReleaseCases => {
            super::release_cases::plan_cases(responder, request, &workload.account).await?
        }
        _ => plan_bulk(&workload.clients, request).await?,
    };
    if plan.request.action == BulkAction::Contain {
        let unstartable: Vec<String> = plan
            .instances
            .iter()
            .filter_map(|i| contain_input(&plan, i, &workload.account).err())
            .map(|e| e.to_string())
            .collect();
        plan.refusals.extend(unstartable);
    }
    Ok((plan, workload.account))
}

/// The items list of a plan: one JSON object per item of the map.
pub fn items_of(plan: &BulkPlan, account: &str) -> Vec<Value> {
    let request = &plan.request;
    match request.action {
        BulkAction::QuarantineSubnets | BulkAction::ReleaseSubnets => plan
            .subnets
            .iter()
            .map(|subnet| {
                json!(SubnetItem {
                    bulk_id: request.release_of.clone().unwrap_or_else(|| plan.bulk_id.clone()),
                    subnet_id: subnet.subnet_id.clone(),
                    vpc_id: subnet.vpc_id.clone(),
                    account: Some(account.to_owned()),
                    whole_subnet: request.whole_subnet,
                    selected: subnet.selected.clone(),
                })
            })
            .collect(),
        BulkAction::Contain => plan
            .instances
            .iter()
            .filter_map(|instance| {
                let (case_id, input) = contain_input(plan, instance, account).ok()?;
                Some(json!({ "instanceId": instance.instance_id, "caseId": case_id, "input": input }))
            })
            .collect(),
        BulkAction::Terminate => plan
            .instances
            .iter()
            .map(|i| {
                json!(TerminateItem {
                    bulk_id: plan.bulk_id.clone(),
                    instance_id: i.instance_id.clone(),
                    account: Some(account.to_owned()),
                    without_snapshots: request.without_snapshots,
                })
            })
            .collect(),
        BulkAction::ReleaseCases => super::release_cases::case_items(plan, account)
            .iter()
            .map(|item| json!(item))
            .collect(),
    }
}

/// The input of the forensics execution a `contain` item starts, and its
/// case id: the finding that chose the instance (the same case as if it had
/// come alone), or a manual request naming this instance alone.
fn contain_input(
    plan: &BulkPlan,
    instance: &crate::case::bulk::PlannedInstance,
    account: &str,
) -> Result<(String, Value)> {
    let request = &plan.request;
    let input = instance.finding.clone().unwrap_or_else(|| {
        json!({
            "instanceId": instance.instance_id,
            "reason": format!("bulk {}: {}", plan.bulk_id, request.reason),
            "requestedBy": request.requested_by,
            "region": request.region,
            "account": account,
            "requestedAt": plan.planned_at,
        })
    });
    let ctx = ParseContext {
        default_region: Some(request.region.clone()),
        default_account: Some(account.to_owned()),
    };
    let parsed = parse_one(&input, &ctx)?;
    if parsed
        .incident
        .account
        .as_deref()
        .is_some_and(|a| a != account)
    {
        return Err(PlaybookError::InvalidRequest(format!(
            "the finding that chose {} is about account {}, not {account}",
            instance.instance_id,
            parsed.incident.account.unwrap_or_default()
        )));
    }
    Ok((parsed.case_id, input))
}

/// A `release-subnets` plan: the subnets the run it undoes holds now, or
/// relies on another run's cut of, from the responder's own hold table
/// (never from the bucket, nor from the execution history that Step
/// Functions keeps only 90 days after a run ends).
async fn release_plan(
    responder: &Responder,
    request: BulkRequest,
    account: &str,
) -> Result<BulkPlan> {
    let original = request.release_of.clone().ok_or_else(|| {
        PlaybookError::InvalidRequest("release-subnets needs releaseOf: the run to undo".into())
    })?;
    let mut plan = super::empty_plan(request);
    let holds = SubnetHolds::of(responder, account).ok_or_else(|| {
        PlaybookError::Configuration(
            "LEASE_TABLE is not set: the subnets a run holds are kept there".into(),
        )
    })?;
    let machine = responder.state_machine_of(&original)?;
    // Only an execution Step Functions says does not exist (never started,
    // or forgotten 90 days after it ended) counts as not running; any other
    // failure to read it refuses the release.
    let running = match responder
        .clients
        .sfn
        .describe_execution()
        .execution_arn(crate::steps::dispatch::execution_arn(machine, &original))
        .send()
        .await
    {
        Ok(out) => out.status().as_str() == "RUNNING",
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            false
        }
        Err(err) => return Err(PlaybookError::from_sdk("DescribeExecution", None, &err)),
    };
    if running {
        plan.refusals.push(format!(
            "{original} still runs: a cut it is making now would be missed; release it once it has ended"
        ));
        return Ok(plan);
    }
    plan.subnets = holds
        .of_run(&original)
        .await?
        .into_iter()
        .map(|(subnet_id, vpc_id)| PlannedSubnet {
            subnet_id,
            vpc_id,
            selected: Vec::new(),
            bystanders: Vec::new(),
        })
        .collect();
    if plan.subnets.is_empty() {
        plan.refusals.push(format!(
            "{original} holds no subnet cut and relies on none in account {account} and {}: nothing to release (never cut, already released, or asked in another account or Region)",
            plan.request.region
        ));
        return Ok(plan);
    }
    plan.max_concurrency = super::max_concurrency(BulkAction::ReleaseSubnets, plan.subnets.len());
    Ok(plan)
}

/// The plan state's name in `statemachine/bulk.asl.json`.
pub const PLAN_STATE: &str = "Plan";

async fn request_approval(responder: &Responder, plan: &PlanOutput) -> Result<Value> {
    let topic = Config::required(&responder.config.approval_topic_arn, "APPROVAL_TOPIC_ARN")?;
    let subject = printable_line(
        &format!(
            "EC2 forensics bulk approval needed: {} of {} item(s)",
            plan.action.as_str(),
            plan.item_count
        ),
        100,
    );
    let body = format!(
        "Bulk run {bulk_id} waits for your decision.\n\n\
         Action: {action}\nAccount: {account}, Region: {region}\n\
         Items: {items} ({instances} instance(s)); at most {concurrency} at once.\n\
         The whole plan (what each item touches, what is left alone and why, what the action cannot do):\n  \
         s3://{bucket}/{key} version {version}\n\n\
         Approve: ec2-forensics approve --case-id {bulk_id}\n\
         Deny:    ec2-forensics deny --case-id {bulk_id} --reason \"...\"\n\n\
         {warning}No answer within {timeout} s: nothing changes.\n",
        bulk_id = plan.bulk_id,
        action = plan.action.as_str(),
        account = plan.account,
        region = plan.region,
        items = plan.item_count,
        instances = plan.instance_count,
        concurrency = plan.max_concurrency,
        bucket = plan.plan.bucket,
        key = plan.plan.key,
        version = plan.plan.version_id,
        timeout = plan.approval_timeout_seconds,
        warning = if plan.without_snapshots {
            "APPROVING ALSO ACCEPTS TERMINATING INSTANCES WITHOUT A COMPLETED SNAPSHOT OF EVERY VOLUME.\n"
        } else {
            ""
        },
    );
    let message_id = publish(responder, topic, subject, body).await?;
    Ok(json!({
        "requestedAt": now_utc(),
        "topicArn": topic,
        "messageId": message_id,
        "timeoutSeconds": plan.approval_timeout_seconds,
    }))
}

/// A bulk run's approval as recorded: only a verified approval proceeds;
/// no answer never does (a bulk run has no "contain anyway").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkApproval {
    /// The answer, checked.
    pub answer: ApprovalAnswer,
    /// Whether the run goes on.
    pub proceed: bool,
    /// Where the record is kept.
    pub record: StoredObjectRef,
}

async fn record_approval(
    responder: &Responder,
    plan: &PlanOutput,
    answer: &Value,
    execution: &str,
) -> Result<Value> {
    let store = EvidenceStore::required(responder)?;
    let answer = ApprovalAnswer::from_task_result(answer, &now_utc());
    let answer = checked_approval(
        responder,
        responder.config.approval_mac_key.as_deref(),
        &plan.bulk_id,
        Some(execution),
        answer,
    )
    .await?;
    // The approval function refuses the requester's own approval; this is
    // the same rule where the answer is recorded.
    let answer = match (&plan.requested_by, answer.by.as_deref()) {
        (Some(requester), Some(by))
            if answer.outcome == ApprovalOutcome::Approved && same_identity(requester, by) =>
        {
            ApprovalAnswer {
                outcome: ApprovalOutcome::NotRequested,
                reason: Some(format!(
                    "{by} asked for {} and may not approve it: not an answer",
                    plan.bulk_id
                )),
                ..answer
            }
        }
        _ => answer,
    };
    let proceed = answer.outcome == ApprovalOutcome::Approved;
    let record = json!({
        "bulkId": plan.bulk_id,
        "execution": execution,
        "plan": plan.plan,
        "answer": answer,
        "proceed": proceed,
        "recordedBy": responder.identity.actor,
    });
    let stored = store
        .put(
            &bulk_key(&plan.bulk_id, "approval.json"),
            serde_json::to_vec_pretty(&record).unwrap_or_default(),
            "application/json",
            "bulk-approval",
        )
        .await?;
    tracing::info!(bulk_id = %plan.bulk_id, proceed, "bulk approval recorded");
    Ok(json!(BulkApproval {
        answer,
        proceed,
        record: StoredObjectRef {
            bucket: store.bucket().to_owned(),
            key: stored.key,
            version_id: stored.version_id,
            sha256: stored.sha256,
        },
    }))
}

/// The VPC's untracking and isolation groups (and its acquisition group
/// where the VPC has every SSM and S3 interface endpoint), found or made and
/// made exact, as a case's isolation prepares them.
async fn prepare_vpc_groups(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<Value> {
    use crate::case::isolation::GroupPurpose;
    use crate::steps::isolate::groups::{acquisition_endpoints, prepare_groups};
    let (endpoints, complete) = acquisition_endpoints(ec2, vpc_id).await?;
    let mut purposes = vec![GroupPurpose::Untracking, GroupPurpose::Isolation];
    let endpoints = if complete {
        purposes.push(GroupPurpose::Acquisition);
        endpoints
    } else {
        Vec::new()
    };
    let (groups, actions) = prepare_groups(ec2, vpc_id, &purposes, &endpoints, false).await?;
    Ok(json!({ "groups": groups, "actions": actions }))
}

async fn cut_step(
    responder: &Responder,
    item: &SubnetItem,
    acls: &[QuarantineAcl],
) -> Result<SubnetCut> {
    let acl = acls
        .iter()
        .find(|a| a.vpc_id == item.vpc_id && a.verified)
        .and_then(|a| a.network_acl_id.as_deref())
        .ok_or_else(|| {
            PlaybookError::InvalidRequest(format!(
                "no prepared deny-all ACL for {} ({}'s VPC)",
                item.vpc_id, item.subnet_id
            ))
        })?;
    let workload = responder
        .workload_for(item.account.as_deref(), &item.bulk_id)
        .await?;
    let holds = SubnetHolds::of(responder, &workload.account);
    cut_subnet(&workload.clients.ec2, holds.as_ref(), item, acl, false).await
}

/// One terminate item: the case that holds the instance and what its
/// execution recorded, from the responder's own records.
async fn terminate_step(responder: &Responder, item: &TerminateItem) -> Result<Termination> {
    let workload = responder
        .workload_for(item.account.as_deref(), &item.bulk_id)
        .await?;
    let case = match holding_case(responder, &workload.account, &item.instance_id).await? {
        Some(case_id) => {
            let record = case_record(responder, &case_id).await?;
            Some(CaseEvidence {
                running: record.as_ref().is_some_and(|r| r.status == "RUNNING"),
                volumes: record
                    .and_then(|r| r.case)
                    .map(|c| {
                        c.snapshots
                            .into_iter()
                            .filter(|v| v.instance_id == item.instance_id)
                            .collect()
                    })
                    .unwrap_or_default(),
                case_id,
            })
        }
        None => None,
    };
    terminate_instance(&workload.clients.ec2, item, case.as_ref()).await
}

async fn release_step(responder: &Responder, item: &SubnetItem) -> Result<SubnetRelease> {
    let workload = responder
        .workload_for(item.account.as_deref(), &item.bulk_id)
        .await?;
    let holds = SubnetHolds::of(responder, &workload.account).ok_or_else(|| {
        PlaybookError::Configuration(
            "LEASE_TABLE is not set: the ACL each subnet had before its cut is kept there".into(),
        )
    })?;
    // An instance a case holds in the subnet may count on the cut: its
    // isolation added no DENY where the ACL allowed nothing. Putting the
    // original ACL back would open its tracked flows again.
    let mut held = Vec::new();
    for instance in instances_in_subnet(&workload.clients.ec2, &item.subnet_id).await? {
        if let Some(case_id) = holding_case(responder, &workload.account, &instance).await? {
            held.push(format!("{instance} ({case_id})"));
        }
    }
    if !held.is_empty() {
        return Ok(SubnetRelease {
            subnet_id: item.subnet_id.clone(),
            restored_acl_id: None,
            restored: false,
            reliance_ended: false,
            actions: vec![crate::case::ActionRecord::failed(
                "put back the subnet's network ACL",
                &item.subnet_id,
                "CasesHoldInstances",
                format!(
                    "cases still hold {}: their isolation may count on the cut; release those cases first",
                    held.join(", ")
                ),
            )],
        });
    }
    release_subnet(
        &workload.clients.ec2,
        &holds,
        &item.bulk_id,
        &item.subnet_id,
        false,
    )
    .await
}

/// The map run's counts (DescribeMapRun), and whether every item succeeded.
async fn summarise(responder: &Responder, plan: &PlanOutput, map_run: &Value) -> Result<Value> {
    let arn = map_run
        .get("MapRunArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            PlaybookError::InvalidRequest("the map's output names no MapRunArn".into())
        })?;
    let out = responder
        .clients
        .sfn
        .describe_map_run()
        .map_run_arn(arn)
        .send()
        .await
        .aws("DescribeMapRun", None)?;
    let counts = out.item_counts();
    let (total, succeeded) = counts.map_or((0, 0), |c| (c.total(), c.succeeded()));
    let complete = total == plan.item_count as i64 && succeeded == total;
    Ok(json!({
        "mapRunArn": arn,
        "status": out.status().as_str(),
        "items": counts.map(|c| json!({
            "total": c.total(), "succeeded": c.succeeded(), "failed": c.failed(),
            "timedOut": c.timed_out(), "aborted": c.aborted(), "pending": c.pending(),
            "running": c.running(), "resultsWritten": c.results_written(),
        })),
        "results": map_run.get("ResultWriterDetails"),
        "complete": complete,
    }))
}
