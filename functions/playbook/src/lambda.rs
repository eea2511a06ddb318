//! The one Lambda adapter every function binary uses: set up logging, build the
//! responder once, serve the step.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::responder::{init_tracing, Responder};

/// Serves `step` as a Lambda: `step` gets the responder (built once, at cold
/// start) and the event; its error becomes the Lambda error with a stable
/// `errorType`, which the state machine's Retry and Catch match.
pub async fn serve<F, Fut, R>(step: F) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Arc<Responder>, Value) -> Fut,
    Fut: Future<Output = Result<R>>,
    R: Serialize,
{
    init_tracing();
    let responder = Arc::new(Responder::from_env().await?);
    tracing::info!(actor = %responder.identity.actor, region = %responder.region, "responder ready");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        step(Arc::clone(&responder), event.payload)
    }))
    .await
}
