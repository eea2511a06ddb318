//! release-instance Lambda: restores what containment changed, from the Case alone (after a false positive).
use playbook::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        let case = playbook::Case::from_input(input)?;
        playbook::release::release_instances(&responder.clients, &responder.identity.actor, case)
            .await
    })
    .await
}
