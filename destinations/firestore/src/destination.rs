//! The destination: find what is stored under each record's key, then commit replacements and
//! deletes in chunks of at most 500 writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use futures::StreamExt;
use gcloud_sdk::google::firestore::v1::{
    ArrayValue, BatchGetDocumentsRequest, CommitRequest, Document, DocumentMask, Precondition,
    RunQueryRequest, StructuredQuery, Value, Write, batch_get_documents_response,
    precondition::ConditionType, run_query_request, structured_query, value::ValueType,
    write::Operation,
};
use gcloud_sdk::prost_types::Timestamp;
use gcloud_sdk::tonic::Request;
use manifold_core::destination::{Delivery, Destination, Outcome};
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

use crate::client::{self, Conn, Failure, classify};
use crate::plan::{
    KEY_FIELD, Op, TRACE_FIELD, UPDATED_FIELD, USER_EVENTS, Upsert, VERSION_FIELD, parse,
};
use crate::value::{MAX_DOCUMENT_BYTES, document_size};
use crate::{MAX_BATCH, Settings};

/// Firestore's most writes in one commit.
const MAX_WRITES: usize = 500;
/// Keep one commit well under Firestore's 10 MiB request limit.
const MAX_COMMIT_BYTES: usize = 8 * 1024 * 1024;
/// Firestore's most values in one `IN` filter.
const MAX_IN: usize = 30;
/// Queries in flight at once.
const QUERY_CONCURRENCY: usize = 4;
/// Collection and id of the document `check()` writes and deletes again.
const PROBE_COLLECTION: &str = "_manifold_check";
const PROBE_ID: &str = "probe";

/// Writes Terra payloads as Firestore documents (see the crate docs for the layout).
pub struct FirestoreDestination {
    inner: Arc<Inner>,
}

/// Shared with the task that writes a batch: that task runs to the end of its commit (or the
/// RPC time limit) even when the engine stops waiting for `deliver`, so a request already on the
/// wire is never overtaken by a later batch while its locks are free.
struct Inner {
    name: String,
    settings: Settings,
    conn: OnceCell<Conn>,
    locks: KeyLocks,
}

/// One lock per record key and document name being written by this process, held from the
/// lookup to the commit, so concurrent batches never interleave on a record (the preconditions
/// guard against other processes on Google's Firestore; the emulator ignores `update_time`).
#[derive(Default)]
struct KeyLocks(SyncMutex<HashMap<String, Arc<Mutex<()>>>>);

impl KeyLocks {
    /// Lock every key, in sorted order (so two batches can never deadlock).
    async fn lock(&self, mut keys: Vec<String>) -> Vec<OwnedMutexGuard<()>> {
        keys.sort_unstable();
        keys.dedup();
        let mutexes: Vec<Arc<Mutex<()>>> = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            keys.into_iter()
                .map(|k| map.entry(k).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        guards
    }

    /// Forget the locks nobody holds or waits for.
    fn release(&self, guards: Vec<OwnedMutexGuard<()>>) {
        drop(guards);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, m| Arc::strong_count(m) > 1);
    }
}

impl fmt::Debug for FirestoreDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirestoreDestination")
            .field("name", &self.inner.name)
            .field("project_id", &self.inner.settings.project_id)
            .field("database", &self.inner.settings.database)
            .field("root", &self.inner.settings.root)
            .finish_non_exhaustive()
    }
}

/// Per-item result: the worst failure wins (permanent over retry).
struct Results(Vec<Option<Failure>>);

impl Results {
    fn fail(&mut self, owners: &[usize], f: &Failure) {
        for &i in owners {
            let slot = &mut self.0[i];
            if !matches!(slot, Some(Failure::Permanent(_))) {
                *slot = Some(f.clone());
            }
        }
    }
}

/// What one record (collection + natural key) comes to after the whole batch, in delivery order.
struct Record {
    collection: String,
    key: String,
    /// The newest upsert, or `None` when a tombstone came last.
    upsert: Option<Upsert>,
    owners: Vec<usize>,
}

/// A stored document of a record.
#[derive(Debug, Clone)]
struct Stored {
    name: String,
    version: i64,
    update_time: Option<Timestamp>,
}

/// The writes of one record: committed together.
struct Group {
    writes: Vec<Write>,
    bytes: usize,
    owners: Vec<usize>,
}

fn string(v: &str) -> Value {
    Value {
        value_type: Some(ValueType::StringValue(v.to_string())),
    }
}

fn now() -> Timestamp {
    let t = chrono::Utc::now();
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_micros() as i32 * 1000,
    }
}

/// A stored document's key (if it has one) and what the writer needs to know about it.
fn stored_of(doc: Document) -> (Option<String>, Stored) {
    let key = match doc
        .fields
        .get(KEY_FIELD)
        .and_then(|v| v.value_type.as_ref())
    {
        Some(ValueType::StringValue(k)) => Some(k.clone()),
        _ => None,
    };
    let version = match doc
        .fields
        .get(VERSION_FIELD)
        .and_then(|v| v.value_type.as_ref())
    {
        Some(ValueType::IntegerValue(v)) => *v,
        Some(ValueType::DoubleValue(v)) => *v as i64,
        _ => 0,
    };
    (
        key,
        Stored {
            name: doc.name,
            version,
            update_time: doc.update_time,
        },
    )
}

impl FirestoreDestination {
    /// Build without I/O.
    pub fn new(name: &str, settings: Settings) -> FirestoreDestination {
        FirestoreDestination {
            inner: Arc::new(Inner {
                name: name.to_string(),
                settings,
                conn: OnceCell::new(),
                locks: KeyLocks::default(),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
}

impl Inner {
    async fn conn(&self) -> Result<&Conn, Failure> {
        let conn = self
            .conn
            .get_or_try_init(|| client::connect(&self.settings))
            .await?;
        // Fetch (or reuse) the token here, where its errors can be classified precisely.
        conn.auth
            .headers()
            .await
            .map_err(|e| client::classify_auth(&e))?;
        Ok(conn)
    }

    /// Every stored document of the given keys of one collection.
    async fn stored(
        &self,
        conn: &Conn,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Stored)>, Failure> {
        let filter = structured_query::Filter {
            filter_type: Some(structured_query::filter::FilterType::FieldFilter(
                structured_query::FieldFilter {
                    field: Some(structured_query::FieldReference {
                        field_path: KEY_FIELD.into(),
                    }),
                    op: structured_query::field_filter::Operator::In as i32,
                    value: Some(Value {
                        value_type: Some(ValueType::ArrayValue(ArrayValue {
                            values: keys.iter().map(|k| string(k)).collect(),
                        })),
                    }),
                },
            )),
        };
        let query = StructuredQuery {
            from: vec![structured_query::CollectionSelector {
                collection_id: collection.to_string(),
                all_descendants: false,
            }],
            r#where: Some(filter),
            select: Some(structured_query::Projection {
                fields: [KEY_FIELD, VERSION_FIELD]
                    .iter()
                    .map(|f| structured_query::FieldReference {
                        field_path: f.to_string(),
                    })
                    .collect(),
            }),
            ..Default::default()
        };
        let req = RunQueryRequest {
            parent: self.settings.parent(),
            query_type: Some(run_query_request::QueryType::StructuredQuery(query)),
            ..Default::default()
        };
        let mut stream = conn
            .client
            .clone()
            .run_query(Request::new(req))
            .await
            .map_err(|s| classify("RunQuery", &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let resp = item.map_err(|s| classify("RunQuery", &s))?;
            if let Some(doc) = resp.document
                && let (Some(key), stored) = stored_of(doc)
            {
                out.push((key, stored));
            }
        }
        Ok(out)
    }

    /// The writes of one record, or why it cannot be written (or `None`: nothing to do).
    /// `stored`: the documents holding this record; `at_name`: whatever document (of any
    /// record) is at the name the upsert writes.
    fn group(
        &self,
        r: &Record,
        stored: &[Stored],
        at_name: Option<&Stored>,
    ) -> Result<Option<Group>, Failure> {
        let mut writes = Vec::new();
        let mut bytes = 0;
        let delete = |s: &Stored| Write {
            operation: Some(Operation::Delete(s.name.clone())),
            current_document: s.update_time.map(|t| Precondition {
                condition_type: Some(ConditionType::UpdateTime(t)),
            }),
            ..Default::default()
        };
        match &r.upsert {
            Some(u) => {
                if stored.iter().any(|s| s.version > u.version) {
                    // A newer version is stored: this one is delivered by being superseded.
                    return Ok(None);
                }
                let name = self.settings.document_name(&u.collection, &u.id);
                let mut fields = u.fields.clone();
                fields.insert(KEY_FIELD.into(), string(&u.key));
                fields.insert(
                    VERSION_FIELD.into(),
                    Value {
                        value_type: Some(ValueType::IntegerValue(u.version)),
                    },
                );
                fields.insert(TRACE_FIELD.into(), string(&u.trace_id));
                fields.insert(
                    UPDATED_FIELD.into(),
                    Value {
                        value_type: Some(ValueType::TimestampValue(now())),
                    },
                );
                let size =
                    document_size(&self.settings.relative_path(&u.collection, &u.id), &fields);
                if size > MAX_DOCUMENT_BYTES {
                    return Err(Failure::Permanent(format!(
                        "the document `{}/{}` would be {size} bytes, over Firestore's limit of {MAX_DOCUMENT_BYTES} bytes (1 MiB); it cannot be stored as one document",
                        u.collection, u.id
                    )));
                }
                bytes += size;
                // A document already at this name is replaced by a delete (carrying the update
                // time we read) and a write in the same atomic commit: the same as one write on
                // Google's Firestore, and the emulator otherwise keeps top-level fields the new
                // version no longer has. A new name must still be free when the commit lands.
                // Either precondition failing means a concurrent writer: the batch is retried.
                let precondition = match at_name.filter(|s| s.name == name) {
                    Some(s) => {
                        writes.push(delete(s));
                        None
                    }
                    None => Some(Precondition {
                        condition_type: Some(ConditionType::Exists(false)),
                    }),
                };
                writes.push(Write {
                    operation: Some(Operation::Update(Document {
                        name: name.clone(),
                        fields,
                        create_time: None,
                        update_time: None,
                    })),
                    current_document: precondition,
                    ..Default::default()
                });
                // The record under another name (its start time changed): removed.
                for s in stored.iter().filter(|s| s.name != name) {
                    bytes += s.name.len();
                    writes.push(delete(s));
                }
            }
            None => {
                for s in stored {
                    bytes += s.name.len();
                    writes.push(Write {
                        operation: Some(Operation::Delete(s.name.clone())),
                        ..Default::default()
                    });
                }
            }
        }
        if writes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Group {
            writes,
            bytes,
            owners: r.owners.clone(),
        }))
    }

    /// The documents at `names` that exist (their version if they hold one).
    async fn at_names(&self, conn: &Conn, names: Vec<String>) -> Result<Vec<Stored>, Failure> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let req = BatchGetDocumentsRequest {
            database: self.settings.database_path(),
            documents: names,
            mask: Some(DocumentMask {
                field_paths: vec![KEY_FIELD.into(), VERSION_FIELD.into()],
            }),
            ..Default::default()
        };
        let mut stream = conn
            .client
            .clone()
            .batch_get_documents(Request::new(req))
            .await
            .map_err(|s| classify("BatchGetDocuments", &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let resp = item.map_err(|s| classify("BatchGetDocuments", &s))?;
            if let Some(batch_get_documents_response::Result::Found(doc)) = resp.result {
                out.push(stored_of(doc).1);
            }
        }
        Ok(out)
    }

    async fn commit(&self, conn: &Conn, writes: Vec<Write>) -> Result<(), Failure> {
        let req = CommitRequest {
            database: self.settings.database_path(),
            writes,
            ..Default::default()
        };
        conn.client
            .clone()
            .commit(Request::new(req))
            .await
            .map_err(|s| classify("Commit", &s))?;
        Ok(())
    }

    /// Commit groups in chunks; a permanent refusal of a chunk of several records is retried
    /// record by record so it lands on the record at fault only.
    async fn commit_groups(&self, conn: &Conn, groups: Vec<Group>, results: &mut Results) {
        let mut chunks: Vec<Vec<Group>> = Vec::new();
        let (mut writes, mut bytes) = (0, 0);
        for g in groups {
            let fits = chunks.last().is_some_and(|_| {
                writes + g.writes.len() <= MAX_WRITES && bytes + g.bytes <= MAX_COMMIT_BYTES
            });
            if !fits {
                chunks.push(Vec::new());
                (writes, bytes) = (0, 0);
            }
            writes += g.writes.len();
            bytes += g.bytes;
            chunks.last_mut().expect("pushed above").push(g);
        }
        let mut rest = chunks.into_iter();
        while let Some(chunk) = rest.next() {
            let all: Vec<Write> = chunk.iter().flat_map(|g| g.writes.clone()).collect();
            match self.commit(conn, all).await {
                Ok(()) => {}
                Err(f @ Failure::Permanent(_)) if chunk.len() > 1 => {
                    tracing::debug!(destination = %self.name, reason = f.reason(), "commit refused; committing record by record");
                    for g in chunk {
                        if let Err(f) = self.commit(conn, g.writes).await {
                            results.fail(&g.owners, &f);
                        }
                    }
                }
                Err(f) => {
                    // Permanent for a lone record; otherwise the service is unwell: retry this
                    // chunk and everything after it later (the writes are idempotent).
                    results.fail(
                        &chunk
                            .iter()
                            .flat_map(|g| g.owners.clone())
                            .collect::<Vec<_>>(),
                        &f,
                    );
                    if !f.is_permanent() {
                        let later: Vec<usize> = rest.flatten().flat_map(|g| g.owners).collect();
                        results.fail(&later, &f);
                        return;
                    }
                }
            }
        }
    }

    async fn write(&self, records: Vec<Record>, results: &mut Results) -> Result<(), Failure> {
        let conn = self.conn().await?;
        let names: Vec<String> = records
            .iter()
            .filter_map(|r| r.upsert.as_ref())
            .map(|u| self.settings.document_name(&u.collection, &u.id))
            .collect();
        let guards = self
            .locks
            .lock(
                records
                    .iter()
                    .map(|r| format!("{}\n{}", r.collection, r.key))
                    .chain(names.iter().cloned())
                    .collect(),
            )
            .await;
        let out = self.write_locked(conn, records, names, results).await;
        self.locks.release(guards);
        out
    }

    async fn write_locked(
        &self,
        conn: &Conn,
        records: Vec<Record>,
        names: Vec<String>,
        results: &mut Results,
    ) -> Result<(), Failure> {
        // What is stored under every key (one query per collection and 30 keys), and what is at
        // every name about to be written (one BatchGetDocuments).
        let mut by_collection: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for r in &records {
            by_collection
                .entry(r.collection.as_str())
                .or_default()
                .push(r.key.clone());
        }
        let lookups: Vec<(String, Vec<String>)> = by_collection
            .into_iter()
            .flat_map(|(c, keys)| {
                keys.chunks(MAX_IN)
                    .map(|k| (c.to_string(), k.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let queries = lookups.into_iter().map(|(c, keys)| async move {
            let docs = self.stored(conn, &c, &keys).await?;
            Ok::<_, Failure>((c, docs))
        });
        let (found, at_names) = tokio::join!(
            futures::stream::iter(queries)
                .buffer_unordered(QUERY_CONCURRENCY)
                .collect::<Vec<Result<(String, Vec<(String, Stored)>), Failure>>>(),
            self.at_names(conn, names)
        );
        let mut stored: HashMap<(String, String), Vec<Stored>> = HashMap::new();
        for f in found {
            let (collection, docs) = f?;
            for (key, s) in docs {
                stored.entry((collection.clone(), key)).or_default().push(s);
            }
        }
        let at_names: HashMap<String, Stored> =
            at_names?.into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut groups = Vec::new();
        for r in &records {
            let s = stored
                .get(&(r.collection.clone(), r.key.clone()))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let at = r
                .upsert
                .as_ref()
                .and_then(|u| at_names.get(&self.settings.document_name(&u.collection, &u.id)));
            match self.group(r, s, at) {
                Ok(Some(g)) => groups.push(g),
                Ok(None) => {}
                Err(f) => results.fail(&r.owners, &f),
            }
        }
        self.commit_groups(conn, groups, results).await;
        Ok(())
    }
}

/// Merge the operations of a batch per record, in delivery order.
fn merge(ops: Vec<(usize, Vec<Op>)>) -> Vec<Record> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut records: HashMap<(String, String), Record> = HashMap::new();
    for (i, item) in ops {
        for op in item {
            let id = (op.collection().to_string(), op.key().to_string());
            let r = records.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                Record {
                    collection: id.0.clone(),
                    key: id.1.clone(),
                    upsert: None,
                    owners: Vec::new(),
                }
            });
            if !r.owners.contains(&i) {
                r.owners.push(i);
            }
            match op {
                Op::Upsert(u) => {
                    if r.upsert.as_ref().is_none_or(|cur| u.version >= cur.version) {
                        r.upsert = Some(u);
                    }
                }
                Op::Delete(_) => r.upsert = None,
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| records.remove(&id))
        .collect()
}

#[async_trait]
impl Destination for FirestoreDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let parsed: Vec<Result<Vec<Op>, String>> = batch.iter().map(parse).collect();
        let mut results = Results(
            parsed
                .iter()
                .map(|p| p.as_ref().err().map(|e| Failure::Permanent(e.clone())))
                .collect(),
        );
        let ok: Vec<(usize, Vec<Op>)> = parsed
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| p.ok().map(|ops| (i, ops)))
            .collect();
        if !ok.is_empty() {
            let owners: Vec<usize> = ok.iter().map(|(i, _)| *i).collect();
            let records = merge(ok);
            let inner = Arc::clone(&self.inner);
            let task = tokio::spawn(async move {
                let mut results = results;
                if let Err(f) = inner.write(records, &mut results).await {
                    tracing::debug!(destination = %inner.name, reason = f.reason(), "firestore batch failed");
                    results.fail(&owners, &f);
                }
                results
            });
            results = match task.await {
                Ok(r) => r,
                Err(e) => {
                    return batch
                        .iter()
                        .map(|_| Outcome::internal(format!("the firestore write task failed: {e}")))
                        .collect();
                }
            };
        }
        results
            .0
            .into_iter()
            .map(|r| match r {
                None => Outcome::delivered(),
                Some(Failure::Retry(r)) => Outcome::retry(r),
                Some(Failure::Permanent(r)) => Outcome::permanent(r),
            })
            .collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn check(&self) -> Result<(), String> {
        let inner = &self.inner;
        let what = format!(
            "firestore destination `{}` (project `{}`, database `{}`)",
            inner.name, inner.settings.project_id, inner.settings.database
        );
        let conn = inner
            .conn()
            .await
            .map_err(|f| format!("{what}: {}", f.reason()))?;
        // Reading: the key lookup every batch starts with.
        inner
            .stored(conn, USER_EVENTS, &["manifold-check".to_string()])
            .await
            .map_err(|f| format!("{what}: cannot query: {}", f.reason()))?;
        // Writing and deleting: a probe document that is removed again.
        let name = inner.settings.document_name(PROBE_COLLECTION, PROBE_ID);
        let probe = Write {
            operation: Some(Operation::Update(Document {
                name: name.clone(),
                fields: HashMap::from([
                    ("type".to_string(), string("healthcheck")),
                    (
                        UPDATED_FIELD.to_string(),
                        Value {
                            value_type: Some(ValueType::TimestampValue(now())),
                        },
                    ),
                ]),
                create_time: None,
                update_time: None,
            })),
            ..Default::default()
        };
        inner
            .commit(conn, vec![probe])
            .await
            .map_err(|f| format!("{what}: cannot write `{name}`: {}", f.reason()))?;
        let remove = Write {
            operation: Some(Operation::Delete(name.clone())),
            ..Default::default()
        };
        inner
            .commit(conn, vec![remove])
            .await
            .map_err(|f| format!("{what}: cannot delete `{name}`: {}", f.reason()))?;
        Ok(())
    }
}
