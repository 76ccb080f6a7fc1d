//! CPU-bound work of a run (loading a dataset, probing compute, evaluating the model) on tokio's
//! blocking threads. On the runtime's own threads it would hold up everything else the process
//! does meanwhile: the operator's other jobs, its probes, and the renewal of its leader Lease,
//! which a leader that misses it for a lease duration loses.

use tracing::Span;

/// Runs `work` on a blocking thread, in the caller's span. A panic there is the caller's panic,
/// as it was when the work ran inline.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let span = Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task; nothing waits for it then.
            Err(error) => panic!("blocking work was cancelled: {error}"),
        },
    }
}
