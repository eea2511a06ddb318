//! `ec2-forensics hold`: a legal hold on a sealed case, and its release.
//!
//! A hold puts an S3 Object Lock legal hold on every object version the
//! latest signed manifest lists, and an EBS snapshot lock (governance mode,
//! the longest duration EC2 takes) on every forensic copy it lists, records
//! both in custody and in the Case's `holds`, and seals the case again; the
//! seal's own new objects are then held too. A legal hold has no end date:
//! the objects stay until it is lifted, whatever their retention says.
//!
//! Only another person releases a hold: an identity AWS authenticated (the
//! function URL's caller, or the CLI's own credentials), never one who
//! placed any hold on the case still in force, and never a federated user
//! (`GetFederationToken` lets any IAM user choose its own name). Two
//! sessions of one role with different session names are two identities:
//! where people share a role, its trust policy should pin the session name
//! to the person (`sts:RoleSessionName`), as for the approval gate. IAM is
//! the gate against anyone who calls S3 and EC2 directly:
//! `s3:PutObjectLegalHold` and `ec2:UnlockSnapshot` belong to the people who
//! decide holds and to the cleanup-case function only, whose URL IAM gates
//! (and `lambda:InvokeFunction` on it only through the URL: a direct
//! invocation could write the caller's name).

use aws_sdk_ec2::types::LockMode;
use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
use serde::Serialize;
use serde_json::json;

use super::{one_at_a_time, seal_again, sealed_case};
use crate::aws::Responder;
use crate::case::approval::{chooses_own_name, same_identity};
use crate::case::custody::{entry, now_utc};
use crate::case::{HeldObject, HoldRelease, LegalHold, LockedCopy};
use crate::error::{PlaybookError, Result};
use crate::steps::evidence::store::EvidenceStore;

/// The step name of a hold in custody entries.
pub const STEP: &str = "hold";
/// The step name of a release.
pub const RELEASE_STEP: &str = "hold-release";
/// The longest lock EC2 takes, in days (`LockSnapshot`'s `LockDuration`):
/// the copy stays locked until the hold is released.
pub const LOCK_DAYS: i32 = 36_500;
/// The longest reason kept.
const REASON_LIMIT: usize = 500;

/// What a hold or its release did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldOutcome {
    /// The case.
    pub case_id: String,
    /// The hold as recorded (with its release, when released).
    pub hold: LegalHold,
    /// The manifest version the seal after it wrote.
    pub sealed_manifest_version: String,
    /// The objects that seal wrote, each held as well (a hold only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sealed_objects: Vec<HeldObject>,
    /// Every object and copy changed as asked.
    pub complete: bool,
}

/// The reason as one printable line, or an error when there is none.
fn reason_of(reason: &str) -> Result<String> {
    let line = crate::steps::printable_line(reason.trim(), REASON_LIMIT);
    if line.trim().is_empty() {
        return Err(PlaybookError::InvalidRequest(
            "a hold and its release need a reason".into(),
        ));
    }
    Ok(line)
}

/// Sets (or lifts) the legal hold of each object version.
pub(crate) async fn legal_holds(
    store: &EvidenceStore,
    objects: impl IntoIterator<Item = (String, String)>,
    status: ObjectLockLegalHoldStatus,
) -> Vec<HeldObject> {
    let mut out = Vec::new();
    for (key, version_id) in objects {
        let done = store
            .s3()
            .put_object_legal_hold()
            .bucket(store.bucket())
            .key(&key)
            .version_id(&version_id)
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(status.clone())
                    .build(),
            )
            .send()
            .await;
        let error = done
            .err()
            .map(|e| PlaybookError::from_sdk("PutObjectLegalHold", None, &e).to_string());
        out.push(HeldObject {
            key,
            version_id,
            error,
        });
    }
    out
}

/// Locks each copy in governance mode for [`LOCK_DAYS`].
async fn lock_copies(ec2: &aws_sdk_ec2::Client, copies: &[String]) -> Vec<LockedCopy> {
    let mut out = Vec::new();
    for snapshot_id in copies {
        let done = ec2
            .lock_snapshot()
            .snapshot_id(snapshot_id)
            .lock_mode(LockMode::Governance)
            .lock_duration(LOCK_DAYS)
            .send()
            .await;
        out.push(match done {
            Ok(locked) => LockedCopy {
                snapshot_id: snapshot_id.clone(),
                lock_expires_on: locked
                    .lock_expires_on()
                    .map(|t| crate::case::custody::rfc3339(*t)),
                error: None,
            },
            Err(e) => LockedCopy {
                snapshot_id: snapshot_id.clone(),
                lock_expires_on: None,
                error: Some(PlaybookError::from_sdk("LockSnapshot", None, &e).to_string()),
            },
        });
    }
    out
}

/// Unlocks each copy.
async fn unlock_copies(ec2: &aws_sdk_ec2::Client, copies: &[String]) -> Vec<LockedCopy> {
    let mut out = Vec::new();
    for snapshot_id in copies {
        let done = ec2.unlock_snapshot().snapshot_id(snapshot_id).send().await;
        out.push(LockedCopy {
            snapshot_id: snapshot_id.clone(),
            lock_expires_on: None,
            error: done
                .err()
                .map(|e| PlaybookError::from_sdk("UnlockSnapshot", None, &e).to_string()),
        });
    }
    out
}

/// Every object version the latest signed manifest lists, and the manifest
/// version itself.
fn listed_objects(sealed: &super::SealedCase, case_id: &str) -> Vec<(String, String)> {
    sealed
        .manifest
        .artifacts
        .iter()
        .map(|a| (a.key.clone(), a.version_id.clone()))
        .chain(std::iter::once((
            crate::steps::evidence::store::case_key(
                case_id,
                crate::steps::evidence::seal::MANIFEST,
            ),
            sealed.manifest_version_id.clone(),
        )))
        .collect()
}

fn failures(objects: &[HeldObject], copies: &[LockedCopy]) -> usize {
    objects.iter().filter(|o| o.error.is_some()).count()
        + copies.iter().filter(|c| c.error.is_some()).count()
}

/// Places a legal hold on the sealed case `case_id` for `actor` (an
/// identity AWS authenticated) (module docs). A case already held is held
/// again (a new record): the objects a later seal listed are held too.
pub async fn hold(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    reason: &str,
) -> Result<HoldOutcome> {
    let reason = reason_of(reason)?;
    one_at_a_time(responder, case_id, actor, || {
        place(responder, actor, case_id, reason)
    })
    .await
}

async fn place(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    reason: String,
) -> Result<HoldOutcome> {
    let store = EvidenceStore::required(responder)?;
    let sealed = sealed_case(responder, case_id).await?;
    let mut case = sealed.case.clone();
    let listed = listed_objects(&sealed, case_id);
    let copies: Vec<String> = sealed
        .manifest
        .snapshots
        .iter()
        .filter(|s| s.copy_state.as_deref() != Some(super::cleanup::DELETED))
        .filter_map(|s| s.copy_id.clone())
        .collect();
    let objects = legal_holds(&store, listed, ObjectLockLegalHoldStatus::On).await;
    let copies = lock_copies(&responder.clients.ec2, &copies).await;
    let failed = failures(&objects, &copies);
    let actor = actor.to_owned();
    let record = LegalHold {
        reason: reason.clone(),
        placed_by: actor.clone(),
        placed_at: now_utc(),
        objects,
        copies,
        released: None,
    };
    case.record(entry(
        STEP,
        &actor,
        format!(
            "legal hold placed: {} object version(s) held, {} forensic cop(ies) locked (governance, {LOCK_DAYS} days){}; reason: {reason}",
            record.objects.iter().filter(|o| o.error.is_none()).count(),
            record.copies.iter().filter(|c| c.error.is_none()).count(),
            if failed > 0 {
                format!(", {failed} NOT changed (see holds)")
            } else {
                String::new()
            }
        ),
        &["PutObjectLegalHold", "LockSnapshot"],
        json!({ "reason": reason, "manifestVersion": sealed.manifest_version_id }),
        json!({ "objects": record.objects, "copies": record.copies }),
        None,
    ));
    case.holds.push(record.clone());
    let (_, sealed_manifest_version, sealed_objects) =
        seal_again(responder, case, &sealed.manifest_version_id).await?;
    let complete = failed == 0 && failures(&sealed_objects, &[]) == 0;
    Ok(HoldOutcome {
        case_id: case_id.to_owned(),
        hold: record,
        sealed_manifest_version,
        sealed_objects,
        complete,
    })
}

/// Releases the holds on `case_id` for `actor`: only someone who placed
/// none of the holds still in force (module docs). Lifts the legal hold of
/// every object those holds held and of every object the latest signed
/// manifest lists, and unlocks every copy they locked.
pub async fn release(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    reason: &str,
) -> Result<HoldOutcome> {
    let reason = reason_of(reason)?;
    if chooses_own_name(actor) {
        return Err(PlaybookError::NotAuthenticated(format!(
            "{actor} is a federated user (GetFederationToken), which chooses its own name: a hold is released by an IAM user or role session"
        )));
    }
    one_at_a_time(responder, case_id, actor, || {
        lift(responder, actor, case_id, reason)
    })
    .await
}

async fn lift(
    responder: &Responder,
    actor: &str,
    case_id: &str,
    reason: String,
) -> Result<HoldOutcome> {
    let store = EvidenceStore::required(responder)?;
    let sealed = sealed_case(responder, case_id).await?;
    let mut case = sealed.case.clone();
    let in_force: Vec<usize> = (0..case.holds.len())
        .filter(|&i| case.holds[i].released.is_none())
        .collect();
    let Some(&current) = in_force.last() else {
        return Err(PlaybookError::InvalidRequest(format!(
            "case {case_id} is not under a legal hold"
        )));
    };
    if let Some(own) = in_force
        .iter()
        .map(|&i| &case.holds[i])
        .find(|h| same_identity(actor, &h.placed_by))
    {
        return Err(PlaybookError::SelfApproval {
            run_id: format!("the legal hold on {case_id} (placed at {})", own.placed_at),
            who: actor.to_owned(),
        });
    }
    let mut objects: Vec<(String, String)> = Vec::new();
    let mut locked: Vec<String> = Vec::new();
    for &i in &in_force {
        for o in &case.holds[i].objects {
            let held = (o.key.clone(), o.version_id.clone());
            if !objects.contains(&held) {
                objects.push(held);
            }
        }
        for c in case.holds[i].copies.iter().filter(|c| c.error.is_none()) {
            if !locked.contains(&c.snapshot_id) {
                locked.push(c.snapshot_id.clone());
            }
        }
    }
    for listed in listed_objects(&sealed, case_id) {
        if !objects.contains(&listed) {
            objects.push(listed);
        }
    }
    let objects = legal_holds(&store, objects, ObjectLockLegalHoldStatus::Off).await;
    let copies = unlock_copies(&responder.clients.ec2, &locked).await;
    let failed = failures(&objects, &copies);
    let released = HoldRelease {
        by: actor.to_owned(),
        at: now_utc(),
        reason: reason.clone(),
        objects,
        copies,
    };
    let placed: Vec<String> = in_force
        .iter()
        .map(|&i| format!("{} at {}", case.holds[i].placed_by, case.holds[i].placed_at))
        .collect();
    case.record(entry(
        RELEASE_STEP,
        actor,
        format!(
            "legal hold released (placed by {}): {} object version(s) no longer held, {} cop(ies) unlocked{}; reason: {reason}",
            placed.join("; "),
            released.objects.iter().filter(|o| o.error.is_none()).count(),
            released.copies.iter().filter(|c| c.error.is_none()).count(),
            if failed > 0 {
                format!(", {failed} NOT changed (see holds)")
            } else {
                String::new()
            }
        ),
        &["PutObjectLegalHold", "UnlockSnapshot"],
        json!({ "reason": reason, "placedBy": placed, "manifestVersion": sealed.manifest_version_id }),
        json!({ "objects": released.objects, "copies": released.copies }),
        None,
    ));
    for &i in &in_force {
        case.holds[i].released = Some(released.clone());
    }
    let record = case.holds[current].clone();
    let (_, sealed_manifest_version, _) =
        seal_again(responder, case, &sealed.manifest_version_id).await?;
    Ok(HoldOutcome {
        case_id: case_id.to_owned(),
        hold: record,
        sealed_manifest_version,
        sealed_objects: Vec::new(),
        complete: failed == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_printable_line_and_never_empty() {
        assert!(reason_of("  \n\t ").is_err());
        assert_eq!(
            reason_of("matter 2026-17\n- approved: yes").unwrap(),
            "matter 2026-17?- approved: yes"
        );
        assert_eq!(reason_of(&"x".repeat(900)).unwrap().len(), REASON_LIMIT);
    }
}
