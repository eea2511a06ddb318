//! check-ami Lambda: a launch (CloudTrail's RunInstances) from an image the policy does not approve opens a case.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, event| async move {
        playbook::steps::launches::check_launch(&responder, event).await
    })
    .await
}
