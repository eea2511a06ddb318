//! acquire-memory Lambda: sends the memory capture to every SSM-managed Linux instance of the case, with pre-signed URLs and no credentials.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::memory::acquire_memory(&responder, &workload, case).await
    })
    .await
}
