//! Recovery (issue 18 §1): legal holds on a sealed case, and clean-up.
//!
//! Both start from the case as its latest signed manifest lists it (the
//! head of the chain of manifests, every signature checked by KMS under the
//! custody key, the Case's bytes checked against the SHA-256 the manifest
//! signs), never from a newer object a writer of the bucket stored. Both
//! record what they did in the Case's custody chain and seal it again, so
//! `verify` holds afterwards.
//!
//! One at a time: a hold, a release or a clean-up of a case takes the
//! case's recovery lease (`recovery:<caseId>` in the lease table, a
//! conditional write) and refuses while the case's execution runs, so two
//! seals never race to follow the same manifest (the second would be a
//! rollback in the chain). A seal that comes later anyway (another attempt
//! of the case) carries the holds and clean-ups forward
//! (`evidence::seal`).

pub mod cleanup;
pub mod function;
pub mod hold;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::Responder;
use crate::case::custody::verify_chain;
use crate::case::evidence::{upsert_artifact, Manifest, MANIFEST_KIND};
use crate::case::{Artifact, Case};
use crate::error::{PlaybookError, Result};
use crate::steps::evidence::seal::MANIFEST;
use crate::steps::evidence::store::case_key;
use crate::steps::evidence::verify::read_signed;

/// The Case's name in its prefix.
pub const CASE_OBJECT: &str = "case.json";

/// A sealed case as its latest signed manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedCase {
    /// The Case, its own record of the manifest set to that manifest, so
    /// the next seal follows it.
    pub case: Case,
    /// The latest signed manifest.
    pub manifest: Manifest,
    /// Its version.
    pub manifest_version_id: String,
    /// How many checks of the chain of manifests fail (`verify` says which).
    pub chain_problems: usize,
}

/// Loads the case `case_id` from its latest signed manifest (module docs).
/// The Case must name the case and end its custody chain, intact, where
/// the manifest says.
pub async fn sealed_case(responder: &Responder, case_id: &str) -> Result<SealedCase> {
    if !crate::steps::approval::looks_like_case_id(case_id) {
        return Err(PlaybookError::InvalidRequest(format!(
            "{:?} is not a case id",
            crate::case::text::plain(case_id)
        )));
    }
    let signed = read_signed(responder, case_id, CASE_OBJECT).await?;
    let mut case: Case = serde_json::from_slice(&signed.bytes).map_err(|e| {
        PlaybookError::InvalidCase(format!(
            "{} version {} is not a Case: {e}",
            signed.key, signed.version_id
        ))
    })?;
    if case.case_id != case_id {
        return Err(PlaybookError::InvalidCase(format!(
            "{} names case {:?}",
            signed.key, case.case_id
        )));
    }
    let head = verify_chain(&case.custody).map_err(PlaybookError::InvalidCase)?;
    if head != signed.manifest.custody_head || case.custody.len() != signed.manifest.custody_entries
    {
        return Err(PlaybookError::InvalidCase(format!(
            "the Case the signed manifest lists ends its custody chain at {} after {} entries; the manifest signs {} after {}",
            head,
            case.custody.len(),
            signed.manifest.custody_head,
            signed.manifest.custody_entries
        )));
    }
    upsert_artifact(
        &mut case.artifacts,
        Artifact {
            key: case_key(case_id, MANIFEST),
            version_id: signed.manifest_version_id.clone(),
            size: signed.manifest_size,
            sha256: signed.manifest_sha256.clone(),
            kind: MANIFEST_KIND.to_owned(),
        },
    );
    Ok(SealedCase {
        case,
        manifest: signed.manifest,
        manifest_version_id: signed.manifest_version_id,
        chain_problems: signed.chain_problems,
    })
}

/// The manifest version a seal of `case` wrote: its own record of the manifest.
pub fn sealed_version(case: &Case) -> Option<&str> {
    crate::steps::evidence::seal::manifest_record(case).map(|a| a.version_id.as_str())
}

/// Refuses while an execution of the case runs: its own seal would race
/// this one.
pub async fn refuse_while_running(responder: &Responder, case_id: &str) -> Result<()> {
    let Some(state_machine) = responder.state_machine_arn.as_deref() else {
        return Ok(());
    };
    if let Some(execution) =
        crate::steps::status::latest_execution(responder, state_machine, case_id).await?
    {
        if execution.status == "RUNNING" {
            return Err(PlaybookError::NotReady(format!(
                "the case's execution {} is still running: hold, release and clean up once it has ended",
                execution.arn
            )));
        }
    }
    Ok(())
}

/// How long a recovery lease lasts: longer than the function's timeout, so
/// a run cut short frees the case by itself.
const LEASE_SECONDS: i64 = 1_200;

/// The case's recovery lease, while held.
pub struct RecoveryLease {
    table: String,
    key: String,
    holder: String,
}

/// Takes the recovery lease of `case_id` for `actor`, or refuses (another
/// hold, release or clean-up of the case runs). Without a lease table
/// (`LEASE_TABLE` unset: a local run) there is nothing to take.
pub async fn take_lease(
    responder: &Responder,
    case_id: &str,
    actor: &str,
) -> Result<Option<RecoveryLease>> {
    let Some(table) = responder.config.lease_table.clone() else {
        return Ok(None);
    };
    let now = crate::steps::lease::epoch_now();
    let key = format!("recovery:{case_id}");
    let holder = format!("{actor} {}", crate::case::custody::now_utc());
    let put = responder
        .clients
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("instance", AttributeValue::S(key.clone()))
        .item("caseId", AttributeValue::S(case_id.to_owned()))
        .item("holder", AttributeValue::S(holder.clone()))
        .item(
            "expiresAt",
            AttributeValue::N((now + LEASE_SECONDS).to_string()),
        )
        .condition_expression("attribute_not_exists(#instance) OR #expires < :now")
        .expression_attribute_names("#instance", "instance")
        .expression_attribute_names("#expires", "expiresAt")
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .send()
        .await;
    match put {
        Ok(_) => Ok(Some(RecoveryLease { table, key, holder })),
        Err(err) if crate::steps::lease::is_conditional(&err) => {
            Err(PlaybookError::NotReady(format!(
                "another hold, release or clean-up of case {case_id} is running: try again when it has ended"
            )))
        }
        Err(err) => Err(PlaybookError::from_sdk("PutItem", None, &err)),
    }
}

/// Frees the lease (best effort: it expires by itself).
pub async fn free_lease(responder: &Responder, lease: Option<RecoveryLease>) {
    let Some(lease) = lease else { return };
    let freed = responder
        .clients
        .dynamodb
        .delete_item()
        .table_name(&lease.table)
        .key("instance", AttributeValue::S(lease.key.clone()))
        .condition_expression("#holder = :holder")
        .expression_attribute_names("#holder", "holder")
        .expression_attribute_values(":holder", AttributeValue::S(lease.holder))
        .send()
        .await;
    if let Err(err) = freed {
        tracing::warn!(key = %lease.key, error = %err, "recovery lease not freed; it expires by itself");
    }
}

/// Runs `work` on `case_id` under its recovery lease, once no execution of
/// the case runs.
pub async fn one_at_a_time<T, F, Fut>(
    responder: &Responder,
    case_id: &str,
    actor: &str,
    work: F,
) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    refuse_while_running(responder, case_id).await?;
    let lease = take_lease(responder, case_id, actor).await?;
    let done = work().await;
    free_lease(responder, lease).await;
    done
}

/// Seals `case` again after a hold, a release or a clean-up: the new
/// manifest version, or an error when the seal wrote none (it recorded why
/// in the Case's errors). While the case is under a hold, the objects the
/// seal wrote are held too (answered).
pub async fn seal_again(
    responder: &Responder,
    case: Case,
    before: &str,
) -> Result<(Case, String, Vec<crate::case::HeldObject>)> {
    let written_before: Vec<(String, String)> = case
        .artifacts
        .iter()
        .map(|a| (a.key.clone(), a.version_id.clone()))
        .collect();
    let case = crate::steps::evidence::seal::seal_evidence(responder, case).await?;
    let version = match sealed_version(&case) {
        Some(version) if version != before => version.to_owned(),
        _ => {
            return Err(PlaybookError::InvalidCase(format!(
                "the case was not sealed again: {}",
                case.errors
                    .last()
                    .map(|e| e.message.clone())
                    .unwrap_or_else(|| "no new manifest version".into())
            )))
        }
    };
    let held = if case.hold().is_some() {
        let store = crate::steps::evidence::store::EvidenceStore::required(responder)?;
        let written = case
            .artifacts
            .iter()
            .map(|a| (a.key.clone(), a.version_id.clone()))
            .filter(|a| !written_before.contains(a));
        hold::legal_holds(
            &store,
            written,
            aws_sdk_s3::types::ObjectLockLegalHoldStatus::On,
        )
        .await
    } else {
        Vec::new()
    };
    Ok((case, version, held))
}
