//! protect-instance Lambda: termination protection, stop on shutdown, volumes kept, out of Auto Scaling and load balancers.
use playbook::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        let case = playbook::Case::from_input(input)?;
        playbook::protect::protect_instances(&responder.clients, &responder.identity.actor, case)
            .await
    })
    .await
}
