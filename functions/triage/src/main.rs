//! triage Lambda: normalises a finding (or a manual request) into a Case and records the policy decision.
use playbook::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, event| async move { playbook::triage::triage(&responder, event).await }).await
}
