//! triage Lambda: normalises a finding (or a manual request) into a Case and records the policy decision.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(
        |responder, event| async move { playbook::steps::triage::triage(&responder, event).await },
    )
    .await
}
