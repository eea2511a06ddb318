//! release-instance Lambda: restores what containment changed, from the Case alone (after a false positive), except on an instance another open case holds.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        playbook::steps::release::release_with_leases(
            &responder,
            &workload.clients,
            &workload.actor,
            case,
        )
        .await
    })
    .await
}
