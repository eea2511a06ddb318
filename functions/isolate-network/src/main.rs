//! isolate-network Lambda: ends live connections and quarantines every ENI, denies the instance's addresses in network ACLs, removes Elastic IPs and role credentials, and reads it all back.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let actor = &responder.identity.actor;
        playbook::steps::isolate::isolate_instances(&responder.clients, actor, case).await
    })
    .await
}
