//! record-approval Lambda: records the gate's answer (approved, denied, no answer) with the approver in the chain of custody.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::approval::record_approval(&responder, input).await
    })
    .await
}
