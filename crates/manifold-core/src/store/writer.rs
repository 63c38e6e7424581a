//! SQLite group commit: one task owns the write connection and gathers concurrent commits and
//! attempt records into one transaction, so one fsync covers many of them.
//!
//! The connection runs with `synchronous=FULL`: a publish is acknowledged only after its group's
//! commit reached the disk.

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use super::{AttemptRecord, Committed, NewPayload, Result, Store, StoreError};

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
    // Each commit job's own result (a record job has none), answered once the group commits.
    let mut done: Vec<Option<Result<Committed>>> = Vec::with_capacity(jobs.len());
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
                    done.push(Some(one));
                }
                Request::Record {
                    token,
                    node,
                    records,
                    ..
                } => {
                    store.record_in(&mut tx, token, node, records).await?;
                    done.push(None);
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
        match job {
            Request::Commit { respond, .. } => {
                let _ =
                    respond.send(d.unwrap_or_else(|| Err(StoreError::Other("no result".into()))));
            }
            Request::Record { respond, .. } => {
                let _ = respond.send(Ok(()));
            }
        }
    }
    for d in &woken {
        store.wakers().wake(d);
    }
    Ok(())
}

fn respond_err(job: Request, msg: &str) {
    match job {
        Request::Commit { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
        Request::Record { respond, .. } => {
            let _ = respond.send(Err(StoreError::Other(msg.to_string())));
        }
    }
}
