//! seal-evidence Lambda: stores the Case and writes the signed manifest of every artifact, snapshot and copy, with the custody chain's head.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::evidence::seal::seal_evidence(&responder, case).await
    })
    .await
}
