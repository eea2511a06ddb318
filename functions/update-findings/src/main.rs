//! update-findings Lambda: tells Security Hub about a case opened from a GuardDuty or Security Hub finding (workflow NOTIFIED, a note, the case id), and records what it answered; a failure is recorded, never raised.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::security_hub::from_input(&responder, input).await
    })
    .await
}
