//! copy-snapshots Lambda: copies every shared snapshot under the forensic account's own key, so the workload account cannot revoke the evidence.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::disk::copy::copy_snapshots(&responder, case).await
    })
    .await
}
