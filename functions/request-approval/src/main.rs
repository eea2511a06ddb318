//! request-approval Lambda: the approval gate's `.waitForTaskToken` task; keeps the token with the case and asks a person over SNS.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::approval::request_approval(&responder, input).await
    })
    .await
}
