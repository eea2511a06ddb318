//! check-command Lambda: reads how each host script ended; completes and verifies the memory images and the analysis results of those that did.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let case = playbook::steps::memory::check_memory_for(&responder, case).await?;
        playbook::steps::analysis::check_analysis(&responder, case).await
    })
    .await
}
