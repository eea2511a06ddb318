//! run-forensics Lambda: sends run-forensics.sh to each ready workstation with pre-signed URLs for its tools and results.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::analysis::run_forensics(&responder, case).await
    })
    .await
}
