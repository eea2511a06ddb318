//! snapshot-volumes Lambda: starts one crash-consistent snapshot set per suspect instance, beside capture-metadata and protect-instance, before anything touches the host.
use playbook::aws::lambda::serve_workload_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_workload_step(|workload, case| async move {
        playbook::steps::disk::snapshot::snapshot_volumes(&workload, case).await
    })
    .await
}
