//! launch-forensic-instance Lambda: the forensic workstation from the golden AMI, in the forensic subnet of each zone that holds evidence.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        playbook::steps::workstation::launch_forensic_instance(&responder, case).await
    })
    .await
}
