//! isolate-network Lambda: ends live connections and quarantines every ENI, denies the instance's addresses in network ACLs, removes Elastic IPs and role credentials, and reads it all back; the instances' leases then hold until this case releases them.
use playbook::aws::lambda::serve_case_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_case_step(|responder, case| async move {
        let workload = responder.workload(&case).await?;
        let own = playbook::steps::lease::own_acl_entries(&responder, &case).await;
        let mut case = playbook::steps::isolate::isolate_instances_knowing(
            &workload.clients,
            &workload.actor,
            case,
            own,
        )
        .await?;
        playbook::steps::lease::quarantine_for(&responder, &mut case).await;
        Ok(case)
    })
    .await
}
