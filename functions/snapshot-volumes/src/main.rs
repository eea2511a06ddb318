//! snapshot-volumes Lambda: starts one crash-consistent snapshot set per suspect instance, beside capture-metadata and protect-instance, before anything touches the host.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::disk::snapshot::snapshot_volumes(&responder, &workload, case).await
    })
    .await
}
