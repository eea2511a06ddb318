//! isolate-network Lambda: ends live connections and quarantines every ENI, denies the instance's addresses in network ACLs, removes Elastic IPs and role credentials, and reads it all back; the instances' leases then hold until this case releases them.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::lease::isolate_holding(
            &responder,
            &workload.clients,
            &workload.actor,
            case,
        )
        .await
    })
    .await
}
