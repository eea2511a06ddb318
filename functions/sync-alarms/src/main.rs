//! sync-alarms Lambda: the crypto-mining alarms kept in step with the instances (scheduled).
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, _event| async move { playbook::steps::mining_alarms::sync(&responder).await })
        .await
}
