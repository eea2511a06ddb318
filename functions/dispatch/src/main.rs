//! dispatch Lambda: starts one state machine execution per EC2 finding of an EventBridge event, named by case id.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, event| async move {
        playbook::steps::dispatch::dispatch(&responder, event).await
    })
    .await
}
