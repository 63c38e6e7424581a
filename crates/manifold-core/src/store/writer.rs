//! SQLite group commit: one task owns the write connection and gathers concurrent commits and
//! attempt records into one transaction, so one fsync covers many of them.
//!
//! The connection runs with `synchronous=FULL`: a publish is acknowledged only after its group's
//! commit reached the disk.

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use super::{AttemptRecord, Committed, NewOuraNotification, NewPayload, Result, Store, StoreError};
use crate::destination::Delivery;

pub(super) enum Request {
    Commit {
        payload: NewPayload,
        respond: oneshot::Sender<Result<Committed>>,
    },
    Record {
        token: String,
        node: String,
        records: Vec<AttemptRecord>,
        respond: oneshot::Sender<Result<()>>,
    },
    Notification {
        notification: NewOuraNotification,
        respond: oneshot::Sender<Result<bool>>,
    },
    Claim {
        destination: String,
        limit: usize,
        lease: std::time::Duration,
        respond: oneshot::Sender<Result<(String, Vec<Delivery>)>>,
    },
}

const MAX_GROUP: usize = 512;

pub(super) async fn spawn(store: Store) -> Result<mpsc::Sender<Request>> {
    let mut conn = store.pool().acquire().await?.detach();
    conn.execute("PRAGMA synchronous=FULL").await?;
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            let jobs: Vec<Request> = std::mem::take(&mut group);
            if let Err((e, jobs)) = run_group(&store, &mut conn, jobs).await {
                // One bad job must not fail the others: run them one by one.
                tracing::warn!(error = %e, "group commit failed; committing one by one");
                for job in jobs {
                    if let Err((e, mut back)) = run_group(&store, &mut conn, vec![job]).await
                        && let Some(job) = back.pop()
                    {
                        respond_err(job, &e.to_string());
                    }
                }
            }
        }
    });
    Ok(tx)
}

/// Run jobs in one transaction. On a database error nothing is answered and the jobs come back.
async fn run_group(
    store: &Store,
    conn: &mut AnyConnection,
    jobs: Vec<Request>,
) -> std::result::Result<(), (StoreError, Vec<Request>)> {
    let mut woken: Vec<String> = Vec::new();
    // Each job's own result, answered once the group commits.
    let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
    let result: Result<()> = async {
        let _gate = store.write_gate().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        // Commits first, all in one batched call; then outcomes (so released rows are claimable);
        // then claims. Results are answered in job order after the commit.
        let payloads: Vec<NewPayload> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Commit { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect();
        let mut committed = if payloads.is_empty() {
            Vec::new()
        } else {
            store.commit_in(&mut tx, payloads, &mut woken).await?
        }
        .into_iter();
        let records: Vec<(&str, &str, &[AttemptRecord])> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Record {
                    token,
                    node,
                    records,
                    ..
                } => Some((token.as_str(), node.as_str(), records.as_slice())),
                _ => None,
            })
            .collect();
        if !records.is_empty() {
            store.record_many(&mut tx, &records).await?;
        }
        let notifications: Vec<NewOuraNotification> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Notification { notification, .. } => Some(notification.clone()),
                _ => None,
            })
            .collect();
        let mut recorded = if notifications.is_empty() {
            Vec::new()
        } else {
            store
                .oura_record_notifications_in(&mut tx, &notifications)
                .await?
        }
        .into_iter();
        for job in &jobs {
            match job {
                Request::Commit { .. } => done.push(Done::Commit(
                    committed
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Other("no result".into()))),
                )),
                Request::Record { .. } => done.push(Done::Record),
                Request::Notification { .. } => {
                    done.push(Done::Notification(recorded.next().unwrap_or(false)))
                }
                Request::Claim {
                    destination,
                    limit,
                    lease,
                    ..
                } => {
                    let claimed = store.claim_in(&mut tx, destination, *limit, *lease).await?;
                    done.push(Done::Claim(claimed));
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        return Err((e, jobs));
    }
    // Committed: answer every job with its own result.
    for (job, d) in jobs.into_iter().zip(done) {
        match (job, d) {
            (Request::Commit { respond, .. }, Done::Commit(r)) => {
                let _ = respond.send(r);
            }
            (Request::Record { respond, .. }, _) => {
                let _ = respond.send(Ok(()));
            }
            (Request::Claim { respond, .. }, Done::Claim(c)) => {
                let _ = respond.send(Ok(c));
            }
            (Request::Notification { respond, .. }, Done::Notification(new)) => {
                let _ = respond.send(Ok(new));
            }
            (job, _) => respond_err(job, "internal: job and result out of step"),
        }
    }
    for d in &woken {
        store.wakers().wake(d);
    }
    Ok(())
}

/// A job's result inside a group, answered after the commit.
enum Done {
    Commit(Result<Committed>),
    Record,
    Notification(bool),
    Claim((String, Vec<Delivery>)),
}

fn respond_err(job: Request, msg: &str) {
    match job {
        Request::Claim { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
        Request::Commit { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
        Request::Record { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
        Request::Notification { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
    }
}
