//! isolate-network Lambda: ends live connections and quarantines every ENI, removes Elastic IPs and role credentials.
use playbook::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        let case = playbook::Case::from_input(input)?;
        playbook::isolate::isolate_instances(&responder.clients, &responder.identity.actor, case)
            .await
    })
    .await
}
