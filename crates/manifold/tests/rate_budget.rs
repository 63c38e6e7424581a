//! The shared Oura rate budget on both store backends, through two independent store handles
//! (two pools, as two processes would have): the burst and the live reserve, atomic grants
//! under concurrency, a 429 pause seen by every handle, one bucket per application.

use std::time::Duration;

use manifold_core::Store;
use manifold_core::store::rate_budget::{Acquired, Grant, Priority, RateBudget, RateLimits};
use tokio::task::JoinSet;

/// One token per 400 s: nothing refills while a test runs.
fn slow() -> RateLimits {
    RateLimits {
        requests: 100,
        window: Duration::from_secs(36_000),
        reserve: 0.2,
    }
}

fn app() -> String {
    format!("app-{:016x}", rand::random::<u64>())
}

fn granted(g: &Grant) -> bool {
    matches!(g, Grant::Granted { .. })
}

async fn check(url: &str) {
    let a = Store::open(url, 4).await.unwrap();
    let b = Store::open(url, 4).await.unwrap();
    let app = app();
    let (ba, bb) = (
        RateBudget::new(a.clone(), &app, slow()),
        RateBudget::new(b.clone(), &app, slow()),
    );
    assert_eq!(slow().burst(), 10.0);

    // Background work, alternating between the two handles: 8 of the 10 tokens (2 are the
    // live reserve), then a long wait.
    let mut n = 0;
    loop {
        let h = if n % 2 == 0 { &ba } else { &bb };
        match h.try_acquire(Priority::Background).await.unwrap() {
            Grant::Granted { .. } => n += 1,
            Grant::Wait(d) => {
                assert!(d > Duration::from_secs(60), "waits for a refill: {d:?}");
                break;
            }
            g => panic!("unexpected {g:?}"),
        }
        assert!(n <= 10, "background went past the reserve");
    }
    assert_eq!(n, 8, "background stops at the reserve");
    // Live fetches take the reserve, from either handle, then wait too.
    assert!(granted(&bb.try_acquire(Priority::Live).await.unwrap()));
    assert!(granted(&ba.try_acquire(Priority::Live).await.unwrap()));
    assert!(matches!(
        ba.try_acquire(Priority::Live).await.unwrap(),
        Grant::Wait(_)
    ));
    assert!(matches!(
        bb.acquire(Priority::Background, Some(Duration::from_secs(5)))
            .await
            .unwrap(),
        Acquired::TooLong(_)
    ));
    let st = bb.state().await.unwrap();
    assert!(st.tokens < 1.0, "{st:?}");

    // Another application has a bucket of its own.
    let other = RateBudget::new(b.clone(), app.clone() + "-other", slow());
    assert!(granted(
        &other.try_acquire(Priority::Background).await.unwrap()
    ));

    // Concurrent grants on a fresh bucket, 40 tasks over both handles: exactly the 10 tokens.
    let fresh = app + "-race";
    let mut set = JoinSet::new();
    for i in 0..40 {
        let h = RateBudget::new(
            if i % 2 == 0 { a.clone() } else { b.clone() },
            &fresh,
            slow(),
        );
        set.spawn(async move { granted(&h.try_acquire(Priority::Live).await.unwrap()) });
    }
    let mut grants = 0;
    while let Some(g) = set.join_next().await {
        grants += usize::from(g.unwrap());
    }
    assert_eq!(grants, 10, "no token was granted twice");

    // A 429 recorded through one handle pauses everyone, live fetches too.
    let pa = RateBudget::new(a.clone(), app_of(&other) + "-pause", slow());
    let pb = RateBudget::new(b.clone(), app_of(&other) + "-pause", slow());
    assert!(granted(&pb.try_acquire(Priority::Live).await.unwrap()));
    pa.pause(Duration::from_secs(30), "Oura answered 429")
        .await
        .unwrap();
    match pb.try_acquire(Priority::Live).await.unwrap() {
        Grant::Paused {
            retry_after,
            reason,
        } => {
            assert!(
                retry_after > Duration::from_secs(20) && retry_after <= Duration::from_secs(30),
                "{retry_after:?}"
            );
            assert_eq!(reason.as_deref(), Some("Oura answered 429"));
        }
        g => panic!("expected the pause, got {g:?}"),
    }
    match pb.acquire(Priority::Background, None).await.unwrap() {
        Acquired::Paused(d) => assert!(d > Duration::from_secs(20)),
        g => panic!("expected the pause, got {g:?}"),
    }
    assert!(pb.state().await.unwrap().paused_for_ms > 20_000);

    // What a grant costs (one statement): printed, not asserted.
    let fast = RateBudget::new(
        a.clone(),
        app_of(&other) + "-fast",
        RateLimits {
            requests: 10_000_000,
            window: Duration::from_secs(60),
            reserve: 0.2,
        },
    );
    let started = std::time::Instant::now();
    for _ in 0..300 {
        assert!(granted(&fast.try_acquire(Priority::Live).await.unwrap()));
    }
    eprintln!(
        "{}: 300 sequential grants in {:?} ({:.0}/s)",
        url.split(':').next().unwrap_or(""),
        started.elapsed(),
        300.0 / started.elapsed().as_secs_f64()
    );
    a.close().await;
    b.close().await;
}

fn app_of(b: &RateBudget) -> String {
    b.app().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_budget_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check(&format!(
        "sqlite://{}",
        dir.path().join("budget.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_budget_on_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    check(&db.url).await;
}
