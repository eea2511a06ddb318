//! protect-instance Lambda: termination protection, stop on shutdown, volumes kept, out of Auto Scaling and load balancers.
use playbook::aws::lambda::serve_workload_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_workload_step(|workload, case| async move {
        playbook::steps::protect::protect_instances(&workload.clients, &workload.actor, case).await
    })
    .await
}
