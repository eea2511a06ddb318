//! protect-instance Lambda: termination protection, stop on shutdown, volumes kept, out of Auto Scaling and load balancers.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let actor = &responder.identity.actor;
        playbook::steps::protect::protect_instances(&responder.clients, actor, case).await
    })
    .await
}
