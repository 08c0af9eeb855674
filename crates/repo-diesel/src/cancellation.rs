//! Whether the caller of a unit of work is still waiting for it: the async facade
//! (`AsyncStore`, feature `tokio`) marks the blocking thread that runs a call, and a unit of work
//! whose caller dropped its future rolls back instead of committing. Plain synchronous calls are
//! never marked.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use repo::RepoError;

thread_local! {
    /// Set on a blocking thread while it runs a facade call: whether that call's caller dropped
    /// its future.
    static CALLER_GONE: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Whether the facade call running on this thread lost its caller: units of work then roll back
/// instead of committing. Always false outside the facade.
pub(crate) fn caller_gone() -> bool {
    CALLER_GONE.with(|gone| gone.borrow().as_ref().is_some_and(|gone| gone.load(Ordering::Acquire)))
}

/// The error a unit of work ends with when its caller dropped the future before the COMMIT.
pub(crate) fn caller_gone_error() -> RepoError {
    RepoError::Timeout("the caller stopped waiting before the commit: the unit of work was rolled back".into())
}

/// Marks the blocking thread as running a facade call until dropped (also on a panic).
#[cfg(feature = "tokio")]
pub(crate) struct WatchedThread;

#[cfg(feature = "tokio")]
impl WatchedThread {
    pub(crate) fn enter(flag: Arc<AtomicBool>) -> Self {
        CALLER_GONE.with(|gone| *gone.borrow_mut() = Some(flag));
        Self
    }
}

#[cfg(feature = "tokio")]
impl Drop for WatchedThread {
    fn drop(&mut self) {
        CALLER_GONE.with(|gone| gone.borrow_mut().take());
    }
}
