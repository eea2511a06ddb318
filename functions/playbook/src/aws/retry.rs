//! How every AWS call is retried: throttling and transient errors get jittered
//! exponential backoff that starts at tens of milliseconds, within a deadline.
//!
//! The SDK's standard retry mode classifies the throttling codes AWS sends
//! (`RequestLimitExceeded`, `Throttling`, `ThrottlingException`, ...) and
//! transient server errors, and backs off with full jitter: attempt `n` waits a
//! random time up to `initial * 2^n`, capped at the maximum. Containment is a
//! race with the attacker, so the first retries come quickly; the attempt and
//! operation timeouts bound how long one call can hold a step.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// Attempts per call, the first included. At a 30 % throttling rate the chance
/// that all of them are throttled is 0.3^20, about 3 in 10^11. A bulk run
/// holds calls at EC2's refill rate (5 a second for most mutating actions)
/// for seconds at a time (`make bench`): twenty attempts, the later ones up
/// to `MAX_BACKOFF` apart, wait up to about half a minute in all, within
/// `OPERATION_DEADLINE`.
pub const MAX_ATTEMPTS: u32 = 20;
/// The first backoff's upper bound.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// No single backoff waits longer than this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// One call, all its retries included, gives up after this.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(30);
/// One attempt gives up after this.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The retry policy every client of the responder uses.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// The deadlines every client of the responder uses.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_DEADLINE)
        .build()
}

/// How often a call on a resource created a moment ago is tried before its
/// "not found" is believed: EC2 is eventually consistent, and a new security
/// group may be invisible to the next call for a short while.
pub const VISIBILITY_ATTEMPTS: u32 = 6;

/// Runs `call`, retrying with backoff (50 ms, doubling) while it fails because
/// a just-created security group is not visible yet.
pub async fn until_visible<T, F, Fut>(call: F) -> crate::error::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<T>>,
{
    let mut wait = Duration::from_millis(50);
    for _ in 1..VISIBILITY_ATTEMPTS {
        match call().await {
            Err(err) if err.is_not_yet_visible() => {
                tracing::info!(error = %err, wait_ms = wait.as_millis() as u64, "not visible yet; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    call().await
}
