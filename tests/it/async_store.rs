//! The async facade (`repo_diesel::AsyncStore`) on both backends: what a dropped future leaves
//! behind at each point of a call, and that a full pool makes callers wait for a slot, then
//! fail `Unavailable`, without tying up blocking threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use database::Database;
use domain::{AuditContext, Email, UserId};
use migrator::Migrate as _;
use repo::{RepoError, Repositories as _, Scope};
use repo_diesel::AsyncStore;
use repo_diesel::repositories::DieselStore;
use test_fixtures::TestDb;

use crate::support::{conformance, new_user};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A pool of one connection, so that a connection left in a transaction would be the next
/// caller's.
fn one_connection(database: &TestDb, slot_timeout: Duration) -> Arc<Database> {
    let mut config = database.config();
    config.pool.max_size = 1;
    config.pool.connection_timeout = slot_timeout;
    let pool = Database::connect(config).expect("a pool");
    pool.migrate().expect("migrate");
    Arc::new(pool)
}

fn wait_until_idle(pool: &Database, store: &AsyncStore<DieselStore>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.metrics().pool.in_use > 0 || store.free_slots() < 1 {
        assert!(Instant::now() < deadline, "the dropped call never ended");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Holds blocking work at a point: the work calls `pass`, which tells the test it got there and
/// waits until the test calls `open`.
struct Gate {
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

/// The test's side of a [`Gate`].
struct GateKeeper {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn new_gate() -> (Gate, GateKeeper) {
    let (entered, entered_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    (
        Gate {
            entered,
            release: release_rx,
        },
        GateKeeper {
            entered: entered_rx,
            release,
        },
    )
}

impl Gate {
    fn pass(&self) {
        let _ = self.entered.send(());
        let _ = self.release.recv();
    }
}

impl GateKeeper {
    /// Waits, without blocking the runtime, until the work reached the gate.
    async fn reached(self) -> Self {
        tokio::task::spawn_blocking(move || {
            self.entered.recv().expect("the work reaches the gate");
            self
        })
        .await
        .expect("joined")
    }

    fn open(&self) {
        self.release.send(()).expect("the work waits at the gate");
    }
}

/// Polls `call` until its work reaches the gate, then drops it there.
async fn drop_at_the_gate<R: std::fmt::Debug>(call: impl Future<Output = R>, keeper: GateKeeper) -> GateKeeper {
    tokio::pin!(call);
    let reached = keeper.reached();
    tokio::pin!(reached);
    tokio::select! {
        result = &mut call => panic!("the call ended before the gate opened: {result:?}"),
        keeper = &mut reached => keeper,
    }
}

/// A call that holds the store's one slot, and the pool's one connection, until its gate opens.
fn slot_holder(store: &AsyncStore<DieselStore>, gate: Gate) -> impl Future<Output = Result<(), RepoError>> + 'static {
    let store = store.clone();
    async move {
        store
            .run(move |store| {
                let _connection = store.database().get().expect("the pool's one connection");
                gate.pass();
                Ok(())
            })
            .await
    }
}

conformance!(a_dropped_caller_leaves_nothing_half_done, dropped_caller);

fn dropped_caller(database: &TestDb) {
    let pool = one_connection(database, Duration::from_secs(5));
    let store = AsyncStore::new(DieselStore::new(Arc::clone(&pool)));
    let runtime = runtime();
    let context = AuditContext::unattributed();

    // 1. Dropped inside a unit of work, after a write: the work runs on, and rolls back.
    let (gate, keeper) = new_gate();
    let call = store.transact(context.clone(), move |repositories| {
        let user = repositories.users().create(new_user("ann@example.com", "Test User"))?;
        gate.pass();
        Ok::<UserId, RepoError>(user.id)
    });
    // The call is dropped with its work held after its write.
    let keeper = runtime.block_on(drop_at_the_gate(call, keeper));
    keeper.open();
    wait_until_idle(&pool, &store);
    let email = Email::parse("ann@example.com").expect("valid");
    assert!(
        matches!(
            store.inner().users().get_by_email(&email, Scope::WithDeleted),
            Err(RepoError::NotFound { .. })
        ),
        "the write of a unit of work whose caller dropped it was committed"
    );

    // The one connection came back out of its transaction: the next unit of work commits, as
    // another pool sees.
    let bob = runtime
        .block_on(store.transact(context.clone(), |repositories| {
            Ok::<_, RepoError>(
                repositories
                    .users()
                    .create(new_user("bob@example.com", "Test User"))?
                    .id,
            )
        }))
        .expect("the next unit of work");
    let other = DieselStore::new(Arc::new(database.database()));
    assert_eq!(other.users().get(bob, Scope::Live).expect("committed").id, bob);

    // 2. Dropped while waiting for a slot: its work never runs.
    let (gate, keeper) = new_gate();
    let holder = slot_holder(&store, gate);
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let waiter = store.run(move |store| {
        flag.store(true, Ordering::Release);
        store
            .users()
            .create(new_user("carol@example.com", "Test User"))
            .map(|_| ())
    });
    runtime.block_on(async {
        let holder = tokio::spawn(holder);
        let keeper = keeper.reached().await;
        // The waiter has no slot: it gives up its wait when dropped.
        let gave_up = tokio::time::timeout(Duration::from_millis(200), waiter).await;
        assert!(gave_up.is_err(), "the waiter got a slot the holder has");
        keeper.open();
        holder.await.expect("joined").expect("the holder");
    });
    wait_until_idle(&pool, &store);
    assert!(
        !ran.load(Ordering::Acquire),
        "a call dropped while it waited for a slot ran"
    );

    // 3. A single repository call outside a unit of work runs to its end once started.
    let (gate, keeper) = new_gate();
    let call = store.run(move |store| {
        gate.pass();
        store
            .users()
            .create(new_user("dave@example.com", "Test User"))
            .map(|user| user.id)
    });
    let keeper = runtime.block_on(drop_at_the_gate(call, keeper));
    keeper.open();
    wait_until_idle(&pool, &store);
    let email = Email::parse("dave@example.com").expect("valid");
    assert!(
        store.inner().users().get_by_email(&email, Scope::Live).is_ok(),
        "a single call outside a unit of work is one atomic step, run to its end"
    );
}

conformance!(a_full_pool_makes_callers_wait_then_fail_unavailable, full_pool);

fn full_pool(database: &TestDb) {
    let pool = one_connection(database, Duration::from_millis(300));
    let store = AsyncStore::new(DieselStore::new(Arc::clone(&pool)));
    let runtime = runtime();
    let (gate, keeper) = new_gate();
    let holder = slot_holder(&store, gate);
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcomes = runtime.block_on(async {
        let holder = tokio::spawn(holder);
        let keeper = keeper.reached().await;
        // 50 callers on a full pool: they wait as futures, not as blocking tasks (a spawned
        // task would start its work, and wait in the pool there).
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (store, started) = (store.clone(), Arc::clone(&started));
                tokio::spawn(async move {
                    store
                        .run(move |store| {
                            started.fetch_add(1, Ordering::AcqRel);
                            store.users().get(UserId::new(), Scope::Live)
                        })
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for caller in callers {
            outcomes.push(caller.await.expect("joined"));
        }
        keeper.open();
        holder.await.expect("joined").expect("the holder");
        outcomes
    });
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Err(RepoError::Unavailable(_)))),
        "callers of a full pool: {outcomes:?}"
    );
    assert_eq!(
        started.load(Ordering::Acquire),
        0,
        "callers waiting for a slot were spawned"
    );
    // With the slot back, calls run again.
    let found = runtime.block_on(store.run(|store| store.users().get(UserId::new(), Scope::Live)));
    assert!(matches!(found, Err(RepoError::NotFound { .. })), "{found:?}");
}

conformance!(
    a_panic_in_the_work_reaches_the_caller_and_frees_the_slot,
    panicking_work
);

fn panicking_work(database: &TestDb) {
    let pool = one_connection(database, Duration::from_secs(5));
    let store = AsyncStore::new(DieselStore::new(Arc::clone(&pool)));
    let runtime = runtime();
    let caught = runtime.block_on({
        let store = store.clone();
        async move {
            tokio::spawn(async move {
                store
                    .run(|store| -> Result<(), RepoError> {
                        let _connection = store.database().get().expect("the pool's one connection");
                        panic!("the work fails")
                    })
                    .await
            })
            .await
        }
    });
    let panic = caught.expect_err("the panic reaches the caller's task");
    assert!(panic.is_panic(), "{panic}");
    wait_until_idle(&pool, &store);
    // The slot and the connection came back, and the thread's mark was cleared: a unit of work
    // commits.
    let committed = runtime
        .block_on(store.transact(AuditContext::unattributed(), |repositories| {
            Ok::<_, RepoError>(
                repositories
                    .users()
                    .create(new_user("erin@example.com", "Test User"))?
                    .id,
            )
        }))
        .expect("the next unit of work");
    assert!(store.inner().users().get(committed, Scope::Live).is_ok());
}

conformance!(
    a_call_dropped_before_its_blocking_task_started_is_skipped,
    dropped_before_start
);

fn dropped_before_start(database: &TestDb) {
    let mut config = database.config();
    config.pool.max_size = 2;
    let pool = Database::connect(config).expect("a pool");
    pool.migrate().expect("migrate");
    let store = AsyncStore::new(DieselStore::new(Arc::new(pool)));
    // One blocking thread, held at a gate: the facade's next task waits in tokio's queue.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (gate, keeper) = new_gate();
    let occupant = runtime.spawn_blocking(move || gate.pass());
    keeper.entered.recv().expect("the blocking thread reaches the gate");

    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let call = store.run(move |store| {
        flag.store(true, Ordering::Release);
        store
            .users()
            .create(new_user("fran@example.com", "Test User"))
            .map(|user| user.id)
    });
    let waited = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(200), call).await });
    assert!(waited.is_err(), "the call ran while the only blocking thread was held");
    // The call took a slot and queued its task, then was dropped; the task now gets the thread.
    keeper.open();
    runtime.block_on(occupant).expect("the occupant ends");
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.free_slots() < 2 {
        assert!(Instant::now() < deadline, "the queued task never ended");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !ran.load(Ordering::Acquire),
        "the work of a call dropped before it started ran"
    );
    let email = Email::parse("fran@example.com").expect("valid");
    assert!(matches!(
        store.inner().users().get_by_email(&email, Scope::WithDeleted),
        Err(RepoError::NotFound { .. })
    ));
}
