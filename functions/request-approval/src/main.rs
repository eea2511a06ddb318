//! request-approval Lambda: asks a person over SNS and records the request in the Case; then acknowledges the gate's wait (the task token stays in the execution's history).
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::approval::request_or_await(&responder, input).await
    })
    .await
}
