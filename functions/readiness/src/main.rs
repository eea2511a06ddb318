//! readiness Lambda: the account's readiness for an incident, published to the approval topic (scheduled).
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |responder, _event| async move { playbook::steps::readiness::scheduled(&responder).await },
    )
    .await
}
