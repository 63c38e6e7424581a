//! The conformance suite every destination must pass (feature `testkit`).
//!
//! A destination's `tests/conformance.rs` starts its real service (or a local stand-in speaking
//! the real protocol), implements [`Harness`] for it, and calls [`conformance`]. The suite only
//! talks through [`Destination`] and the harness, so it knows nothing about any one destination.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let h = MyHarness::start().await;
//!     manifold_core::testkit::conformance(&h).await;
//! }
//! ```

mod fault_proxy;
pub use fault_proxy::FaultProxy;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use crate::destination::{Delivery, Destination, Outcome};

/// How long one `deliver` or `check` call may take before the suite fails.
const CALL_LIMIT: Duration = Duration::from_secs(60);
/// How long a restarted server gets to come back.
const RECOVERY: Duration = Duration::from_secs(10);

/// What the suite needs from a destination's test setup.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A destination pointed at the healthy real server.
    async fn destination(&self) -> Arc<dyn Destination>;
    /// What the server holds for this delivery (read back from the real server), as JSON;
    /// `None` if absent.
    async fn read_back(&self, d: &Delivery) -> Option<Value>;
    /// How many copies the server holds for this delivery's natural key (1 for upserting
    /// destinations; for webhooks, the copies received).
    async fn stored_count(&self, d: &Delivery) -> usize;
    /// For destinations that keep every copy: the deduplication id each copy carried (e.g. a
    /// message id or trace header), one entry per copy. `None` if the server cannot tell.
    async fn copy_ids(&self, _d: &Delivery) -> Option<Vec<String>> {
        None
    }
    /// A destination whose credentials are refused (`None` if the server has no auth to refuse).
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>>;
    /// A destination pointed at a port where nothing listens (connection refused).
    async fn unreachable_destination(&self) -> Arc<dyn Destination>;
    /// Make the server fail or be down for a moment and then come back (restart it, or flip a
    /// fault proxy). Return `false` if unsupported. May return before the server is back.
    async fn restart_server(&self) -> bool;
    /// Upserting destinations: redelivery leaves one copy.
    fn idempotent(&self) -> bool;
}

/// A realistic Terra-shaped delivery (`sleep`, `daily`, `activity`, `body`, `auth`, anything
/// else gets a generic data envelope) with a fresh unique `id` and `payload_id`. The same
/// `(event_type, user, n)` gives the same natural key and the same body.
pub fn sample_delivery(event_type: &str, user: &str, n: u32) -> Delivery {
    let day = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap() + chrono::Duration::days(n as i64);
    let date = day.format("%Y-%m-%d").to_string();
    let ts = |h: i64, m: i64| {
        (day + chrono::Duration::hours(h) + chrono::Duration::minutes(m))
            .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            .to_string()
    };
    let summary_id = format!("{user}-{event_type}-{n}");
    let user_obj = json!({
        "user_id": user,
        "provider": "OURA",
        "last_webhook_update": ts(9, 12),
        "scopes": "daily,heartrate,personal,session,spo2,workout",
        "reference_id": format!("ref-{user}"),
        "active": true
    });
    let n_f = n as f64;
    let data = match event_type {
        "sleep" => json!({
            "metadata": {"start_time": ts(-1, 12), "end_time": ts(7, 2), "summary_id": summary_id,
                         "is_nap": false, "upload_type": 1, "timestamp_localization": 0},
            "sleep_durations_data": {
                "asleep": {"duration_asleep_state_seconds": 25200 + n as i64,
                           "duration_light_sleep_state_seconds": 14400,
                           "duration_deep_sleep_state_seconds": 5400,
                           "duration_REM_sleep_state_seconds": 5400, "num_REM_events": 4},
                "awake": {"duration_awake_state_seconds": 1200, "num_wakeup_events": 3,
                          "sleep_latency_seconds": 900},
                "other": {"duration_in_bed_seconds": 28200},
                "sleep_efficiency": 89.4,
                "hypnogram_samples": [
                    {"timestamp": ts(-1, 12), "level": 1},
                    {"timestamp": ts(-1, 17), "level": 4},
                    {"timestamp": ts(0, 2), "level": 5}
                ]
            },
            "heart_rate_data": {
                "summary": {"avg_hr_bpm": 54.0, "min_hr_bpm": 47.0, "resting_hr_bpm": 48.0, "avg_hrv_rmssd": 62.0},
                "detailed": {"hr_samples": [{"timestamp": ts(-1, 15), "bpm": 58.0}],
                             "hrv_samples_rmssd": [{"timestamp": ts(-1, 15), "hrv_rmssd": 55.0}]}
            },
            "readiness_data": {"readiness": 78, "recovery_level": 4},
            "scores": {"sleep": 85},
            "device_data": {"name": "Oura Ring 4", "manufacturer": "Oura"}
        }),
        "daily" => json!({
            "metadata": {"start_time": ts(0, 0), "end_time": ts(24, 0), "upload_type": 0,
                         "summary_id": summary_id},
            "distance_data": {"steps": 11894 + n as i64, "distance_meters": 9412.7},
            "calories_data": {"total_burned_calories": 2450.8},
            "active_durations_data": {"activity_seconds": 5340},
            "scores": {"activity": 82, "recovery": 76, "sleep": 85}
        }),
        "activity" => json!({
            "metadata": {"name": "Morning Run", "summary_id": summary_id, "start_time": ts(7, 4),
                         "end_time": ts(7, 52), "type": 8, "upload_type": 1},
            "distance_data": {"summary": {"distance_meters": 8250.4 + n_f, "steps": 7902}},
            "calories_data": {"total_burned_calories": 512.5, "net_activity_calories": 431.2},
            "heart_rate_data": {"summary": {"avg_hr_bpm": 148.2, "max_hr_bpm": 181.0}}
        }),
        "body" => json!({
            "metadata": {"start_time": ts(0, 0), "end_time": ts(24, 0), "summary_id": summary_id},
            "temperature_data": {"body_temperature_samples": [{"timestamp": ts(3, 0), "temperature_celsius": 0.12}]},
            "heart_data": {"heart_rate_data": {"summary": {"resting_hr_bpm": 52.0 + n_f}}}
        }),
        _ => json!({
            "metadata": {"start_time": ts(0, 0), "end_time": ts(24, 0), "summary_id": summary_id}
        }),
    };
    let (body, natural_key) = if event_type == "auth" {
        (
            json!({"type": "auth", "status": "success", "user": user_obj,
                   "reference_id": format!("ref-{user}"), "widget_session_id": format!("ws-{n}"),
                   "message": "User has successfully authenticated"}),
            format!("{user}:auth:{n}"),
        )
    } else {
        let key = match event_type {
            "daily" | "body" => format!("{user}:{event_type}:{date}"),
            _ => format!("{user}:{event_type}:{summary_id}"),
        };
        (
            json!({"type": event_type, "version": "2022-03-16", "user": user_obj, "data": [data]}),
            key,
        )
    };
    let payload_id = uuid::Uuid::now_v7().to_string();
    Delivery {
        id: format!("{payload_id}:conformance"),
        payload_id,
        event_type: event_type.to_string(),
        user_id: Some(user.to_string()),
        reference_id: Some(format!("ref-{user}")),
        natural_key,
        version: 1,
        terra_reference: None,
        attempt: 1,
        created_at: Utc::now(),
        body: Bytes::from(serde_json::to_vec(&body).expect("sample bodies serialize")),
        content_type: "application/json",
    }
}

/// A unique user id so runs against a long-lived server never collide.
fn fresh_user(check: &str) -> String {
    format!("conformance-{check}-{}", uuid::Uuid::new_v4())
}

async fn deliver(dest: &dyn Destination, batch: &[Delivery], what: &str) -> Vec<Outcome> {
    let out = tokio::time::timeout(CALL_LIMIT, dest.deliver(batch))
        .await
        .unwrap_or_else(|_| {
            panic!("conformance [{what}]: deliver() did not return within {CALL_LIMIT:?}")
        });
    assert_eq!(
        out.len(),
        batch.len(),
        "conformance [{what}]: deliver() must return one outcome per item (got {} for {})",
        out.len(),
        batch.len()
    );
    out
}

async fn assert_stored(h: &dyn Harness, d: &Delivery, what: &str) {
    let sent = d.json().expect("sample bodies are JSON");
    match h.read_back(d).await {
        None => panic!(
            "conformance [{what}]: delivery {} ({}) was reported delivered but the server does not hold it",
            d.id, d.natural_key
        ),
        Some(got) => assert_eq!(
            got, sent,
            "conformance [{what}]: what the server holds for {} differs from the body sent",
            d.natural_key
        ),
    }
}

/// Run every check; panics with a message naming the failed check.
pub async fn conformance(h: &dyn Harness) {
    check_empty_batch(h).await;
    check_connectivity(h).await;
    check_single(h).await;
    check_batch(h).await;
    check_redelivery(h).await;
    check_unreachable(h).await;
    check_rejecting(h).await;
    check_recovery(h).await;
}

/// An empty batch returns no outcomes.
pub async fn check_empty_batch(h: &dyn Harness) {
    let dest = h.destination().await;
    let out = deliver(dest.as_ref(), &[], "empty batch").await;
    assert!(out.is_empty());
    assert!(
        dest.max_batch() >= 1,
        "conformance [max_batch]: max_batch() must be at least 1"
    );
}

/// `check()` passes against the healthy server and fails against the unreachable one.
pub async fn check_connectivity(h: &dyn Harness) {
    let ok = tokio::time::timeout(CALL_LIMIT, h.destination().await.check()).await;
    match ok {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("conformance [check]: check() failed against the healthy server: {e}"),
        Err(_) => panic!("conformance [check]: check() did not return within {CALL_LIMIT:?}"),
    }
    let bad = tokio::time::timeout(CALL_LIMIT, h.unreachable_destination().await.check()).await;
    match bad {
        Ok(Err(e)) => assert!(
            !e.trim().is_empty(),
            "conformance [check]: the error must say what failed"
        ),
        Ok(Ok(())) => panic!(
            "conformance [check]: check() succeeded against a port where nothing listens; it must prove connectivity"
        ),
        Err(_) => panic!(
            "conformance [check]: check() against an unreachable server did not return within {CALL_LIMIT:?}"
        ),
    }
}

/// One item: delivered, and the server holds exactly the body sent.
pub async fn check_single(h: &dyn Harness) {
    let dest = h.destination().await;
    let d = sample_delivery("sleep", &fresh_user("single"), 1);
    let out = deliver(dest.as_ref(), std::slice::from_ref(&d), "single").await;
    assert!(
        matches!(out[0], Outcome::Delivered { .. }),
        "conformance [single]: expected Delivered, got {:?}",
        out[0]
    );
    assert_stored(h, &d, "single").await;
    assert_eq!(
        h.stored_count(&d).await,
        1,
        "conformance [single]: the server must hold exactly one copy"
    );
}

/// A full batch: one Delivered per item, in order, each stored.
pub async fn check_batch(h: &dyn Harness) {
    let dest = h.destination().await;
    let n = dest.max_batch().clamp(1, 100);
    let user = fresh_user("batch");
    let kinds = ["sleep", "daily", "activity", "body", "auth"];
    let batch: Vec<Delivery> = (0..n)
        .map(|i| sample_delivery(kinds[i % kinds.len()], &user, i as u32 + 1))
        .collect();
    let out = deliver(dest.as_ref(), &batch, "batch").await;
    for (i, (o, d)) in out.iter().zip(&batch).enumerate() {
        assert!(
            matches!(o, Outcome::Delivered { .. }),
            "conformance [batch]: item {i} ({}) expected Delivered, got {o:?}",
            d.natural_key
        );
        assert_stored(h, d, "batch").await;
    }
}

/// Delivering the same delivery twice is harmless.
pub async fn check_redelivery(h: &dyn Harness) {
    let dest = h.destination().await;
    let mut d = sample_delivery("daily", &fresh_user("redelivery"), 1);
    for attempt in 1..=2 {
        d.attempt = attempt;
        let out = deliver(dest.as_ref(), std::slice::from_ref(&d), "redelivery").await;
        assert!(
            matches!(out[0], Outcome::Delivered { .. }),
            "conformance [redelivery]: attempt {attempt} expected Delivered, got {:?}",
            out[0]
        );
    }
    assert_stored(h, &d, "redelivery").await;
    let count = h.stored_count(&d).await;
    if h.idempotent() {
        assert_eq!(
            count, 1,
            "conformance [redelivery]: an idempotent destination must keep one copy after a redelivery, found {count}"
        );
    } else {
        assert_eq!(
            count, 2,
            "conformance [redelivery]: expected the two copies received, found {count}"
        );
        if let Some(ids) = h.copy_ids(&d).await {
            assert_eq!(
                ids.len(),
                count,
                "conformance [redelivery]: copy_ids must list one id per copy"
            );
            assert!(
                ids.iter().all(|i| i == &d.id || i == d.trace_id()),
                "conformance [redelivery]: every copy must carry the delivery's stable id ({} or {}), got {ids:?}",
                d.id,
                d.trace_id()
            );
        }
    }
}

/// Nothing listening: every outcome is Retry.
pub async fn check_unreachable(h: &dyn Harness) {
    let dest = h.unreachable_destination().await;
    let n = dest.max_batch().clamp(1, 3);
    let user = fresh_user("unreachable");
    let batch: Vec<Delivery> = (0..n)
        .map(|i| sample_delivery("sleep", &user, i as u32 + 1))
        .collect();
    for (i, o) in deliver(dest.as_ref(), &batch, "unreachable")
        .await
        .iter()
        .enumerate()
    {
        match o {
            Outcome::Retry { reason, .. } => assert!(
                !reason.is_empty(),
                "conformance [unreachable]: the reason must say what failed"
            ),
            other => panic!(
                "conformance [unreachable]: item {i} expected Retry when nothing listens, got {other:?}"
            ),
        }
    }
}

/// Refused credentials: Permanent, never Retry.
pub async fn check_rejecting(h: &dyn Harness) {
    let Some(dest) = h.rejecting_destination().await else {
        return;
    };
    let d = sample_delivery("activity", &fresh_user("rejecting"), 1);
    match &deliver(dest.as_ref(), std::slice::from_ref(&d), "rejecting").await[0] {
        Outcome::Permanent { reason, .. } => assert!(
            !reason.is_empty(),
            "conformance [rejecting]: the reason must say what failed"
        ),
        other => panic!(
            "conformance [rejecting]: refused credentials must be Permanent (retrying cannot help), got {other:?}"
        ),
    }
    assert!(
        h.read_back(&d).await.is_none(),
        "conformance [rejecting]: the server stored a delivery whose credentials it refused"
    );
}

/// After the server restarts, a new delivery succeeds within ~10 s; meanwhile failures are Retry.
pub async fn check_recovery(h: &dyn Harness) {
    if !h.restart_server().await {
        return;
    }
    let dest = h.destination().await;
    let d = sample_delivery("sleep", &fresh_user("recovery"), 1);
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut try_d = d.clone();
        try_d.attempt = attempt;
        let out = deliver(dest.as_ref(), std::slice::from_ref(&try_d), "recovery").await;
        match &out[0] {
            Outcome::Delivered { .. } => break,
            Outcome::Retry { .. } | Outcome::Internal { .. }
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Outcome::Retry { .. } | Outcome::Internal { .. } => panic!(
                "conformance [recovery]: the server did not accept a delivery within {RECOVERY:?} of restart_server(); last outcome {:?}",
                out[0]
            ),
            other => panic!(
                "conformance [recovery]: while the server restarts, failures must be Retry, got {other:?}"
            ),
        }
    }
    assert_stored(h, &d, "recovery").await;
}
