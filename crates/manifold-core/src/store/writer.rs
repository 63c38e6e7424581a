//! SQLite group commit: one task gathers concurrent commits into one transaction, so one fsync
//! covers many payloads.

use tokio::sync::{mpsc, oneshot};

use super::{Committed, NewPayload, Result, Store, StoreError};

pub(super) struct Request {
    pub payload: NewPayload,
    pub respond: oneshot::Sender<Result<Committed>>,
}

const MAX_GROUP: usize = 512;

pub(super) fn spawn(store: Store) -> mpsc::Sender<Request> {
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            let (payloads, responders): (Vec<_>, Vec<_>) =
                group.drain(..).map(|r| (r.payload, r.respond)).unzip();
            match store.commit_batch(payloads.clone()).await {
                Ok(results) => {
                    for (r, res) in responders.into_iter().zip(results) {
                        let _ = r.send(res);
                    }
                }
                Err(e) if payloads.len() > 1 => {
                    // One bad payload must not fail the others: retry one by one.
                    tracing::warn!(error = %e, "group commit failed; committing one by one");
                    for (p, r) in payloads.into_iter().zip(responders) {
                        let res = match store.commit_batch(vec![p]).await {
                            Ok(mut v) => v
                                .pop()
                                .unwrap_or_else(|| Err(StoreError::Other("no result".into()))),
                            Err(e) => Err(e),
                        };
                        let _ = r.send(res);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for r in responders {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                }
            }
        }
    });
    tx
}
