//! check-command Lambda: reads how each host script ended; completes and verifies the memory images that did.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::memory::check_memory(&responder, &workload, case).await
    })
    .await
}
