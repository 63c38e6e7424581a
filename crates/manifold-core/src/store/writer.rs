//! SQLite group commit: one task owns the write connection and gathers concurrent commits and
//! attempt records into one transaction, so one fsync covers many of them.
//!
//! The connection runs with `synchronous=FULL`: a publish is acknowledged only after its group's
//! commit reached the disk.

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use super::{AttemptRecord, Committed, NewPayload, Result, Store, StoreError};
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
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for job in &jobs {
            match job {
                Request::Commit { payload, .. } => {
                    let mut r = store
                        .commit_in(&mut tx, vec![payload.clone()], &mut woken)
                        .await?;
                    let one = r
                        .pop()
                        .unwrap_or_else(|| Err(StoreError::Other("no result".into())));
                    done.push(Done::Commit(one));
                }
                Request::Record {
                    token,
                    node,
                    records,
                    ..
                } => {
                    store.record_in(&mut tx, token, node, records).await?;
                    done.push(Done::Record);
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
    }
}
