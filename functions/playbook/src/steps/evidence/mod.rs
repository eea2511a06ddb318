//! The evidence store and the chain of custody an investigator can verify:
//! [`store`] writes locked, checksummed objects and reads them as streams
//! ([`digest`]); [`seal`] writes the signed manifest, the next link of the
//! case's chain of manifests ([`chain`]); [`upload`] takes what a host
//! uploads over pre-signed URLs; [`verify`] checks a case end to end;
//! [`offline`] downloads a case and checks it with no AWS access.

pub mod chain;
pub mod digest;
pub mod offline;
pub mod seal;
pub mod store;
pub mod upload;
pub mod verify;

use crate::case::{Case, StepError};
use store::EvidenceStore;

/// Stores the Case as it is now, at the end of a step that added evidence
/// (capture-metadata, snapshot-volumes, share-snapshots, copy-snapshots), when
/// there is an evidence store; a failure is recorded in the Case (the step's
/// own work stands). seal-evidence stores it last, with the manifest.
pub async fn keep_case(store: Option<&EvidenceStore>, case: &mut Case, step: &str) {
    if let Some(store) = store {
        if let Err(err) = store.put_case(case).await {
            case.errors.push(StepError::new(
                step,
                &err,
                "the Case was not stored in the evidence store".to_owned(),
            ));
        }
    }
}
