//! Delivery workers: per destination its own loop, concurrency limit, rate limit and batch size,
//! so a slow or dead destination never delays the others.
//!
//! Each loop claims due rows under a lease, calls `Destination::deliver`, and records the
//! outcome: delivered, a retry at a time the policy picks (honouring `Retry-After`), a dead
//! letter with the reason, or — on HTTP 410 — disables the destination until re-enabled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::DestinationConfig;
use crate::destination::{Delivery, Outcome};
use crate::retry::Next;
use crate::store::{AttemptRecord, Disposition, Store, now_ms, now_us};

/// How often a worker re-reads whether its destination is disabled.
const DISABLED_CHECK: Duration = Duration::from_millis(250);

/// Settings shared by every worker loop of a node.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Id of this node in the attempt log.
    pub node: String,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// A token bucket: `rate` deliveries per second, no burst beyond one.
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }
    async fn wait(&self, n: usize) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval * n as u32;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// Run one destination's loop until `shutdown` flips to true; then let in-flight attempts finish.
pub async fn run_destination(
    store: Store,
    dest: DestinationConfig,
    settings: DispatchSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = dest.common.name.clone();
    let concurrency = dest.common.concurrency.max(1);
    let batch = dest
        .common
        .batch_size
        .unwrap_or(usize::MAX)
        .min(dest.destination.max_batch())
        .max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let limiter = dest
        .common
        .rate_limit
        .map(|r| Arc::new(RateLimiter::new(r)));
    let waker = store.wakers().get(&name);
    let mut tasks = JoinSet::new();
    let mut disabled_logged = false;
    let mut disabled: Option<String> = None;
    let mut last_check = Instant::now() - DISABLED_CHECK;
    // Set by an attempt that got 410, so the loop stops claiming at once.
    let gone_seen = Arc::new(AtomicBool::new(false));
    // Ordered destinations: one sequential lane per concurrency slot; a user always maps to the
    // same lane, so that user's deliveries go out one batch at a time, in claim (commit) order.
    let lanes: Vec<mpsc::UnboundedSender<LaneJob>> = if dest.destination.ordered_by_user() {
        (0..concurrency)
            .map(|_| {
                let (tx, mut rx) = mpsc::unbounded_channel::<LaneJob>();
                let (store, dest, node) = (store.clone(), dest.clone(), settings.node.clone());
                let (limiter, gone_seen) = (limiter.clone(), gone_seen.clone());
                tasks.spawn(async move {
                    while let Some(job) = rx.recv().await {
                        if let Some(l) = &limiter {
                            l.wait(job.chunk.len()).await;
                        }
                        if attempt(&store, &dest, &node, &job.token, job.chunk).await {
                            gone_seen.store(true, Ordering::SeqCst);
                        }
                        drop(job.permit);
                    }
                });
                tx
            })
            .collect()
    } else {
        Vec::new()
    };
    tracing::info!(destination = %name, concurrency, batch, "delivery worker started");

    loop {
        if *shutdown.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}

        // The disabled state is shared by all nodes through the store; re-read it at most every
        // DISABLED_CHECK so a busy loop does not add a query per claim.
        if gone_seen.swap(false, Ordering::SeqCst) || last_check.elapsed() >= DISABLED_CHECK {
            last_check = Instant::now();
            disabled = match store.disabled(&name).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(destination = %name, error = %e, "store unavailable; retrying");
                    wait(&waker, settings.poll_interval, &mut shutdown).await;
                    continue;
                }
            };
        }
        match &disabled {
            Some(reason) => {
                if !disabled_logged {
                    tracing::error!(destination = %name, %reason, "destination is disabled; deliveries wait until it is re-enabled (POST /admin/destinations/{name}/enable)");
                    metrics::gauge!("manifold_destination_disabled", "destination" => name.clone())
                        .set(1.0);
                    disabled_logged = true;
                }
                wait(
                    &waker,
                    settings.poll_interval.min(DISABLED_CHECK * 2),
                    &mut shutdown,
                )
                .await;
                continue;
            }
            None => {
                if disabled_logged {
                    tracing::info!(destination = %name, "destination re-enabled");
                    metrics::gauge!("manifold_destination_disabled", "destination" => name.clone())
                        .set(0.0);
                    disabled_logged = false;
                }
            }
        }

        // Wait for at least one free slot before claiming, so claimed rows start at once.
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => continue,
        };
        // Claim enough for every slot, not just the free ones: rows beyond the free slots wait
        // here for a permit (well within the lease), so a busy destination needs fewer claims.
        let mut want = concurrency * batch;
        if let Some(rate) = dest.common.rate_limit {
            // Never claim more than the rate lets us start within a quarter of the lease.
            let cap = (rate * settings.lease.as_secs_f64() / 4.0).floor().max(1.0) as usize;
            want = want.min(cap);
        }
        let (token, rows) = match store.claim(&name, want, settings.lease).await {
            Ok(r) => r,
            Err(e) => {
                drop(first);
                tracing::warn!(destination = %name, error = %e, "claim failed; retrying");
                wait(&waker, settings.poll_interval, &mut shutdown).await;
                continue;
            }
        };
        if rows.is_empty() {
            drop(first);
            wait(&waker, settings.poll_interval, &mut shutdown).await;
            continue;
        }
        let token = Arc::new(token);
        let mut first = Some(first);
        let chunks: Vec<Vec<Delivery>> = if lanes.is_empty() {
            rows.chunks(batch).map(<[Delivery]>::to_vec).collect()
        } else {
            user_chunks(rows, lanes.len(), batch)
        };
        for chunk in chunks {
            let permit = match first.take() {
                Some(p) => p,
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            if !lanes.is_empty() {
                let lane = lane_of(&chunk[0], lanes.len());
                let job = LaneJob {
                    chunk,
                    token: token.clone(),
                    permit,
                };
                if lanes[lane].send(job).is_err() {
                    break;
                }
                continue;
            }
            let store = store.clone();
            let dest = dest.clone();
            let node = settings.node.clone();
            let token = token.clone();
            let limiter = limiter.clone();
            let gone_seen = gone_seen.clone();
            tasks.spawn(async move {
                if let Some(l) = &limiter {
                    l.wait(chunk.len()).await;
                }
                if attempt(&store, &dest, &node, &token, chunk).await {
                    gone_seen.store(true, Ordering::SeqCst);
                }
                drop(permit);
            });
        }
    }
    // Graceful shutdown: in-flight attempts (and chunks queued on a lane) finish and are
    // recorded.
    drop(lanes);
    while tasks.join_next().await.is_some() {}
    tracing::info!(destination = %name, "delivery worker stopped");
}

/// A chunk queued on an ordered destination's lane, with the slot it holds.
struct LaneJob {
    chunk: Vec<Delivery>,
    token: Arc<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The lane of a delivery's user (deliveries without a user share lane 0).
fn lane_of(d: &Delivery, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.user_id.as_deref().unwrap_or("").hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// Split claimed rows into batches that each hold one lane's rows, keeping claim order within
/// a lane.
fn user_chunks(rows: Vec<Delivery>, lanes: usize, batch: usize) -> Vec<Vec<Delivery>> {
    let mut by_lane: Vec<Vec<Delivery>> = (0..lanes).map(|_| Vec::new()).collect();
    for d in rows {
        let lane = lane_of(&d, lanes);
        by_lane[lane].push(d);
    }
    by_lane
        .into_iter()
        .flat_map(|rows| {
            rows.chunks(batch)
                .map(<[Delivery]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn wait(waker: &tokio::sync::Notify, poll: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = waker.notified() => {},
        _ = tokio::time::sleep(poll) => {},
        _ = shutdown.changed() => {},
    }
}

/// One `deliver` call and the recording of its outcomes. Returns true if the destination
/// answered 410 Gone.
async fn attempt(
    store: &Store,
    dest: &DestinationConfig,
    node: &str,
    token: &str,
    chunk: Vec<Delivery>,
) -> bool {
    let name = &dest.common.name;
    let started_us = now_us();
    let started = Instant::now();
    // Re-encode for the destination's format; an event that cannot be encoded is a dead letter.
    let mut encoded = Vec::with_capacity(chunk.len());
    let mut refused: Vec<Option<String>> = Vec::with_capacity(chunk.len());
    for d in &chunk {
        match crate::format::encode(dest.common.format, d) {
            Ok(e) => {
                encoded.push(e);
                refused.push(None);
            }
            Err(reason) => refused.push(Some(reason)),
        }
    }
    let sent = if encoded.is_empty() {
        Vec::new()
    } else {
        match tokio::time::timeout(dest.common.timeout, dest.destination.deliver(&encoded)).await {
            Ok(o) if o.len() == encoded.len() => o,
            Ok(o) => {
                let msg = format!(
                    "destination returned {} outcomes for {} deliveries",
                    o.len(),
                    encoded.len()
                );
                encoded
                    .iter()
                    .map(|_| Outcome::internal(msg.clone()))
                    .collect()
            }
            Err(_) => encoded
                .iter()
                .map(|_| {
                    Outcome::retry(format!(
                        "timed out after {}",
                        humantime::format_duration(dest.common.timeout)
                    ))
                })
                .collect(),
        }
    };
    let mut sent = sent.into_iter();
    let outcomes: Vec<Outcome> = refused
        .into_iter()
        .map(|r| match r {
            Some(reason) => Outcome::permanent(reason),
            None => sent
                .next()
                .unwrap_or_else(|| Outcome::internal("missing outcome")),
        })
        .collect();
    let elapsed = started.elapsed();
    let finished_us = now_us();
    metrics::histogram!("manifold_attempt_duration_seconds", "destination" => name.clone())
        .record(elapsed.as_secs_f64());

    let mut records = Vec::with_capacity(chunk.len());
    let gone = outcomes.iter().any(|o| matches!(o, Outcome::Gone { .. }));
    for (d, outcome) in chunk.iter().zip(outcomes) {
        let disposition = dispose(store, dest, d, &outcome).await;
        metrics::counter!("manifold_deliveries_total", "destination" => name.clone(), "outcome" => outcome.class())
            .increment(1);
        match &disposition {
            Disposition::Delivered => {
                tracing::debug!(destination = %name, delivery = %d.id, attempt = d.attempt, "delivered")
            }
            Disposition::RetryAt { at_ms, error } => tracing::info!(
                destination = %name, delivery = %d.id, attempt = d.attempt,
                retry_in_ms = at_ms - now_ms(), %error, "attempt failed; will retry"
            ),
            Disposition::Dead { reason } => {
                metrics::counter!("manifold_dead_letters_total", "destination" => name.clone())
                    .increment(1);
                tracing::warn!(destination = %name, delivery = %d.id, attempt = d.attempt, %reason, "dead letter")
            }
            Disposition::Release { error } => {
                tracing::warn!(destination = %name, delivery = %d.id, %error, "released")
            }
        }
        let response = outcome.response().cloned().unwrap_or_default();
        records.push(AttemptRecord {
            delivery_id: d.id.clone(),
            destination: name.clone(),
            attempt: d.attempt,
            started_at_us: started_us,
            finished_at_us: finished_us,
            status_code: response.status,
            class: outcome.class(),
            error: outcome.reason().map(str::to_string),
            response: response.body,
            disposition,
        });
    }
    // The outcome must be recorded; retry the write a few times before leaving it to the lease.
    for i in 0..5u32 {
        match store.record(token, node, &records).await {
            Ok(()) => return gone,
            Err(e) => {
                tracing::warn!(destination = %name, error = %e, try_ = i, "cannot record outcomes; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(i + 1))).await;
            }
        }
    }
    tracing::error!(destination = %name, "outcomes not recorded; the rows will be re-delivered when their lease expires");
    gone
}

async fn dispose(
    store: &Store,
    dest: &DestinationConfig,
    d: &Delivery,
    outcome: &Outcome,
) -> Disposition {
    let policy = &dest.common.retry;
    let retry = |after: Option<Duration>, reason: &str| match policy.next(
        d.attempt,
        after,
        rand::random::<f64>(),
    ) {
        Next::RetryIn(delay) => Disposition::RetryAt {
            at_ms: now_ms() + delay.as_millis() as i64,
            error: reason.to_string(),
        },
        Next::GiveUp => Disposition::Dead {
            reason: format!("gave up after {} attempts; last error: {reason}", d.attempt),
        },
    };
    match outcome {
        Outcome::Delivered { .. } => Disposition::Delivered,
        Outcome::Retry { after, reason, .. } => retry(*after, reason),
        Outcome::Internal { reason } => retry(None, &format!("internal error: {reason}")),
        Outcome::Permanent { reason, .. } => Disposition::Dead {
            reason: reason.clone(),
        },
        Outcome::Gone { reason, .. } => {
            let name = &dest.common.name;
            if let Err(e) = store.set_disabled(name, true, Some(reason)).await {
                tracing::error!(destination = %name, error = %e, "cannot persist the disabled state");
            }
            tracing::error!(destination = %name, %reason, "destination answered 410 Gone: disabled");
            metrics::counter!("manifold_destination_disabled_total", "destination" => name.clone())
                .increment(1);
            Disposition::Release {
                error: reason.clone(),
            }
        }
    }
}
