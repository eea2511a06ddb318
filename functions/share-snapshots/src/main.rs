//! share-snapshots Lambda: makes every completed snapshot usable by the forensic account as its encryption allows, and reads the permissions back.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::disk::share::share_snapshots(&responder, &workload, case).await
    })
    .await
}
