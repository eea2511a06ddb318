//! check-snapshots Lambda: records the state and progress of every snapshot and copy not yet settled, for the state machine's bounded wait loops.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::disk::check::check_snapshots(&responder.clients, &workload, case).await
    })
    .await
}
