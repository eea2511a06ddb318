//! release-instance Lambda: restores what containment changed, from the Case alone (after a false positive).
use playbook::aws::lambda::serve_workload_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_workload_step(|workload, case| async move {
        playbook::steps::release::release_instances(&workload.clients, &workload.actor, case).await
    })
    .await
}
