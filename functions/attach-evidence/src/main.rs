//! attach-evidence Lambda: evidence volumes from the forensic copies, attached to the workstation, followed until attached and its SSM agent is online.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::workstation::attach_evidence(&responder, case).await
    })
    .await
}
