//! capture-metadata Lambda: records everything EC2 knows about the suspect instances, read-only.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::capture_metadata::capture_metadata(&responder, case).await
    })
    .await
}
