//! contain: protect-instance and isolate-network in one pass, for break-glass
//! containment from the command line.
//!
//! The state machine runs the two steps as separate Lambdas; here their reads
//! go out in one wave and their changes in the next, so a responder with only
//! a terminal reaches verified containment in as few sequential round trips as
//! the dependencies allow: who am I / describe the instance; every read (and
//! the groups found or created); the dependent reads (and the groups made
//! exact); the changes with the first ENI move; the second ENI move; the read-back.

use serde_json::json;

use crate::aws::clients::connect;
use crate::aws::{identify, Clients, PolicySource, Responder};
use crate::case::{Action, Case, Policy};
use crate::error::Result;
use crate::steps::{all_failed_transiently, describe_all, isolate, protect, triage, Described};

/// Protects and isolates every instance of the case, with the instances already described.
pub async fn contain(
    clients: &Clients,
    actor: &str,
    mut case: Case,
    described: Vec<Described>,
) -> Result<Case> {
    case.ensure_containment_allowed()?;
    // Break-glass takes no memory: no acquisition stage to keep, nothing to
    // wait for. Whatever order the policy gives, isolation is full at once;
    // the Case keeps the policy as configured.
    let configured = case.policy.acquisition_order;
    case.policy.acquisition_order = crate::case::policy::AcquisitionOrder::MemoryFirst;
    let (protection, isolation) = tokio::join!(
        protect::prepare(clients, &case, &described),
        isolate::prepare(clients, &case, &described),
    );
    if let Some(err) = all_failed_transiently(&protection) {
        return Err(err);
    }
    let isolation = isolation?;
    if let Some(err) = all_failed_transiently(&isolation.instances) {
        return Err(err);
    }
    let (custody, errors) = (case.custody.len(), case.errors.len());
    let (protected, mut case) = tokio::join!(
        protect::protect(clients, actor, case.clone(), protection),
        isolate::isolate(clients, actor, case, described, isolation),
    );
    case.merge_branch(protected.branch_output(custody, errors));
    case.summarise_containment();
    case.policy.acquisition_order = configured;
    Ok(case)
}

/// A responder's request to contain one instance by hand.
#[derive(Debug, Clone)]
pub struct ByHand {
    /// The region, when not the configured one.
    pub region: Option<String>,
    /// The instance.
    pub instance_id: String,
    /// Why.
    pub reason: String,
    /// Report, change nothing.
    pub dry_run: bool,
    /// A policy document instead of the configured one.
    pub policy: Option<Policy>,
}

/// Triage and containment of one instance with the caller's own credentials:
/// identity, policy and the instance's description are read together.
pub async fn contain_by_hand(request: ByHand) -> Result<Case> {
    let (clients, region) = connect(request.region.clone()).await?;
    contain_by_hand_with(clients, region, request).await
}

/// [`contain_by_hand`] with clients already built (the benchmark's measured ones).
pub async fn contain_by_hand_with(
    clients: Clients,
    region: String,
    request: ByHand,
) -> Result<Case> {
    let ids = [request.instance_id.clone()];
    let policy = async {
        match request.policy {
            Some(policy) => Ok(policy),
            None => PolicySource::from_env().load(&clients.ssm).await,
        }
    };
    let (identity, policy, described) = tokio::join!(
        identify(&clients.sts),
        policy,
        describe_all(&clients.ec2, &ids)
    );
    let mut responder = Responder::assemble(clients, region, identity?, policy?)?;
    responder.policy.dry_run |= request.dry_run;
    let event = json!({
        "instanceId": request.instance_id,
        "reason": request.reason,
        "requestedBy": responder.identity.actor,
    });
    let facts = triage::InstanceFacts::from_described(&described)?;
    let case = triage::open_case(&responder, &event, Some(facts))?;
    if !matches!(case.decision.action, Action::Respond | Action::Approve) {
        return Ok(case);
    }
    contain(
        &responder.clients,
        &responder.identity.actor,
        case,
        described,
    )
    .await
}
