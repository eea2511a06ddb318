//! The one Lambda adapter every function binary uses: set up logging, build the
//! responder once, serve the step.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use tokio::sync::OnceCell;

use super::clients::{connect, init_tracing, Clients, Config, Responder, Workload};
use crate::case::Case;
use crate::error::{PlaybookError, Result};

/// Serves `step` as a Lambda: `step` gets the responder and the event; its
/// error becomes the Lambda error with a stable `errorType`, which the state
/// machine's Retry and Catch match.
///
/// Cold start reads the configuration and builds the clients, and makes no
/// network call: who the responder is (STS) and its policy (SSM) are asked
/// once, by the first invocation, so the function reaches the Runtime API
/// in milliseconds and a failed lookup is that invocation's typed error.
pub async fn serve<F, Fut, R>(step: F) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Arc<Responder>, Value) -> Fut,
    Fut: Future<Output = Result<R>>,
    R: Serialize,
{
    init_tracing();
    let (clients, region) = connect(None).await?;
    let config = Config::from_env()?;
    let responder: OnceCell<Arc<Responder>> = OnceCell::new();
    let (responder, clients, region, config, step) =
        (&responder, &clients, &region, &config, &step);
    // Boxed: the steps' futures are deep, and the runtime's layers on top of
    // them would exceed the compiler's type-depth limit.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        Box::pin(async move {
            let responder = responder
                .get_or_try_init(|| ready(clients, region, config))
                .await?;
            step(Arc::clone(responder), event.payload).await
        })
    }))
    .await
}

/// Who the responder is and its policy: asked by the first invocation.
async fn ready(clients: &Clients, region: &str, config: &Config) -> Result<Arc<Responder>> {
    let responder = Responder::complete(clients.clone(), region.to_owned(), config.clone()).await?;
    tracing::info!(actor = %responder.identity.actor, region = %responder.region, "responder ready");
    Ok(Arc::new(responder))
}

/// The key under which a `Parallel` branch hands a step its Case. A step so
/// invoked returns only the sections it filled (a `BranchOutput`), so the
/// Parallel's output does not repeat the whole Case once per branch.
pub const BRANCH_INPUT: &str = "branchOf";

/// Serves a step that takes the Case and returns it with its section filled.
pub async fn serve_case_step<F, Fut>(step: F) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Arc<Responder>, Case) -> Fut,
    Fut: Future<Output = Result<Case>>,
{
    serve(|responder, input| {
        let step = &step;
        async move { run_case_step(input, |case| step(responder, case)).await }
    })
    .await
}

/// Runs `step` on the Case in `input`; in a Parallel branch, returns only what it added.
pub async fn run_case_step<F, Fut>(mut input: Value, step: F) -> Result<Value>
where
    F: FnOnce(Case) -> Fut,
    Fut: Future<Output = Result<Case>>,
{
    let branch = input.as_object_mut().and_then(|o| o.remove(BRANCH_INPUT));
    let in_branch = branch.is_some();
    let case = Case::from_input(branch.unwrap_or(input))?;
    let (custody, errors) = (case.custody.len(), case.errors.len());
    let case = step(case).await?;
    let output = if in_branch {
        serde_json::to_value(case.branch_output(custody, errors))
    } else {
        serde_json::to_value(case)
    };
    output.map_err(|e| PlaybookError::InvalidCase(format!("the Case does not serialise: {e}")))
}

/// Serves a step that acts in the case's workload account: the role there is
/// assumed for the case (or the responder's own clients, in single-account mode).
pub async fn serve_workload_step<F, Fut>(step: F) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Workload, Case) -> Fut,
    Fut: Future<Output = Result<Case>>,
{
    serve_case_step(|responder, case| {
        let step = &step;
        async move {
            let workload = responder.workload(&case).await?;
            step(workload, case).await
        }
    })
    .await
}
