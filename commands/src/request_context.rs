//! The id of the request a command runs for, carried with the task instead of through every
//! service method, so each event appended on its behalf names it in its metadata and an
//! operator can follow one checkout from the access log to its events.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` with `request_id` as the current request's id.
pub async fn scope<F: Future>(request_id: String, work: F) -> F::Output {
    REQUEST_ID.scope(request_id, work).await
}

/// The current request's id; `None` outside a request (the reconciler, the relay).
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
