//! isolate-network Lambda: ends live connections and quarantines every ENI, denies the instance's addresses in network ACLs, removes Elastic IPs and role credentials, and reads it all back.
use playbook::aws::lambda::serve_workload_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_workload_step(|workload, case| async move {
        playbook::steps::isolate::isolate_instances(&workload.clients, &workload.actor, case).await
    })
    .await
}
