//! release-instance Lambda: restores what containment changed, from the Case alone (after a false positive).
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let actor = &responder.identity.actor;
        playbook::steps::release::release_instances(&responder.clients, actor, case).await
    })
    .await
}
