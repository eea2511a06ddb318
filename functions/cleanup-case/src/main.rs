//! cleanup-case Lambda: recovery through the deployed stack. Behind a function URL (AWS_IAM) a person holds, releases or cleans up a sealed case; a daily schedule cleans up cases older than the policy's cleanupAfterDays; every change is recorded and the case sealed again.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, event| async move {
        playbook::steps::recovery::function::handle(&responder, event).await
    })
    .await
}
