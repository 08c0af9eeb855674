//! The async face of the store, for services on tokio (feature `tokio`): every call waits for a
//! pool slot on the async side, then runs its blocking diesel work on tokio's blocking threads.
//!
//! - **Acquire, then spawn.** A call first takes one of the pool's `max_size` slots (a
//!   semaphore, awaited without blocking a worker thread, for at most the pool's connection
//!   timeout), and only then spawns its blocking task, which takes the connection. A full pool
//!   makes callers wait as futures, not as blocked threads: at most `max_size` blocking tasks
//!   run for a store, whatever the number of callers. Code that uses the same pool synchronously
//!   beside the facade is not counted by the slots; its calls make the facade's wait in the pool
//!   instead, for at most the same timeout.
//! - **Errors.** The same `RepoError`s as the synchronous calls; no slot within the connection
//!   timeout is `Unavailable`, as an exhausted pool is. A panic in the work is resumed in the
//!   caller, as it would be in a synchronous call.
//! - **Cancellation.** Dropping the future (a request timeout, a client gone) never stops a
//!   statement half-way: tokio cannot stop a blocking task, and this facade does not try. What
//!   happens depends on how far the call got:
//!   - waiting for a slot: nothing ran, nothing is written;
//!   - spawned but not started: the work is skipped;
//!   - inside a unit of work (`DieselStore`'s `UnitOfWork`, and so every `service` operation):
//!     the work runs on, and its transaction is rolled back at its end instead of committed, so
//!     nothing of it is written; only a caller gone after the COMMIT began leaves it committed;
//!   - a single repository call outside a unit of work runs to its end, as one atomic step.
//!
//!   In every case the connection goes back to the pool only after its transaction ended
//!   (committed or rolled back), so no connection returns inside a transaction.
//!
//!   The guarantee is per unit of work, not per call: a `run` whose work runs two units of work
//!   one after the other, and whose caller leaves between them, keeps the first one committed.
//!   Work that must be all or nothing belongs in one unit of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use repo::{RepoError, Repositories, UnitOfWorkExt as _};
use tokio::sync::Semaphore;

use crate::cancellation::{WatchedThread, caller_gone_error};
use crate::repositories::DieselStore;
use database::Database;
use domain::AuditContext;

/// A value (a `DieselStore`, a service over one) called from async code: see the module's docs.
/// Clones share the slots.
pub struct AsyncStore<T> {
    inner: Arc<T>,
    slots: Arc<Semaphore>,
    slot_timeout: Duration,
}

impl<T> Clone for AsyncStore<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            slots: Arc::clone(&self.slots),
            slot_timeout: self.slot_timeout,
        }
    }
}

impl AsyncStore<DieselStore> {
    /// The facade over `store`, with as many slots as its pool has connections.
    #[must_use]
    pub fn new(store: DieselStore) -> Self {
        let (max_size, slot_timeout) = slot_settings(store.database());
        Self::with_slots(store, max_size, slot_timeout)
    }

    /// Runs `work` in one transaction on behalf of `context`, off the async runtime; its value
    /// once the transaction committed (`UnitOfWorkExt::transact`). A caller that drops the
    /// future before the COMMIT leaves nothing written.
    pub async fn transact<R, E>(
        &self,
        context: AuditContext,
        mut work: impl FnMut(&dyn Repositories) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        self.run(move |store| store.transact(&context, &mut work)).await
    }
}

impl<T: Send + Sync + 'static> AsyncStore<T> {
    /// The facade over `inner` (a service over a `DieselStore` on `database`, say), with as many
    /// slots as `database`'s pool has connections. Facades meant to share a pool should share
    /// slots: make one, and `map` it.
    #[must_use]
    pub fn over(inner: T, database: &Database) -> Self {
        let (max_size, slot_timeout) = slot_settings(database);
        Self::with_slots(inner, max_size, slot_timeout)
    }

    fn with_slots(inner: T, max_size: usize, slot_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            slots: Arc::new(Semaphore::new(max_size)),
            slot_timeout,
        }
    }

    /// A facade over `inner` that shares this one's slots: both together hold at most the
    /// pool's connections.
    #[must_use]
    pub fn map<U: Send + Sync + 'static>(&self, inner: U) -> AsyncStore<U> {
        AsyncStore {
            inner: Arc::new(inner),
            slots: Arc::clone(&self.slots),
            slot_timeout: self.slot_timeout,
        }
    }

    /// What the facade calls.
    #[must_use]
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Slots free now: connections the facade's callers could take at once.
    #[must_use]
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Runs the blocking `work` on `inner` on tokio's blocking threads, after taking a slot;
    /// see the module's docs for what a dropped future means.
    ///
    /// Needs a tokio runtime with the time driver (`enable_all`, as `#[tokio::main]` gives).
    pub async fn run<R, E>(&self, work: impl FnOnce(&T) -> Result<R, E> + Send + 'static) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        let slot = match tokio::time::timeout(self.slot_timeout, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(RepoError::Unavailable("the store's slots are closed".into()).into()),
            Err(_elapsed) => {
                return Err(RepoError::Unavailable(format!(
                    "every pooled connection stayed in use for {} ms",
                    self.slot_timeout.as_millis()
                ))
                .into());
            }
        };
        let gone = CallerWatch::default();
        let flag = Arc::clone(&gone.flag);
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            if flag.load(Ordering::Acquire) {
                return None;
            }
            let _watch = WatchedThread::enter(flag);
            Some(work(&inner))
        });
        let joined = task.await;
        gone.disarm();
        match joined {
            Ok(Some(result)) => result,
            // Only a dropped caller skips the work, and a dropped caller is not polled again.
            Ok(None) => Err(caller_gone_error().into()),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(RepoError::Unavailable(format!("the blocking task did not run: {error}")).into()),
        }
    }
}

/// The pool's size and connection timeout: the facade's slots and how long a call waits for one.
fn slot_settings(database: &Database) -> (usize, Duration) {
    let pool = &database.config().pool;
    (pool.max_size as usize, pool.connection_timeout)
}

/// Raises its flag when dropped before `disarm`: the caller's future was dropped.
struct CallerWatch {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Default for CallerWatch {
    fn default() -> Self {
        Self {
            flag: Arc::default(),
            armed: true,
        }
    }
}

impl CallerWatch {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CallerWatch {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Release);
        }
    }
}
