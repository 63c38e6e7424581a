//! The destination: a lazily created client, indexes once per collection, and one unordered
//! `update` (and `delete`) command per collection per batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use async_trait::async_trait;
use manifold_core::destination::{Delivery, Destination, Outcome};
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database, IndexModel};
use tokio::sync::{Mutex, OnceCell};

use crate::classify::{Failure, Hint, classify, classify_code};
use crate::plan::{Delete, Item, Op, Plan, Upsert, parse};
use crate::{MAX_BATCH, Settings, USER_EVENTS};

/// MongoDB's largest document.
const MAX_DOC_BYTES: usize = 16 * 1024 * 1024;
/// Keep one command well under the 48 MB message limit.
const MAX_COMMAND_BYTES: usize = 12 * 1024 * 1024;
/// Statements per command.
const MAX_STATEMENTS: usize = 1000;
/// `_id` of the document `check()` writes and deletes again.
const PROBE_ID: &str = "manifold-check-probe";

/// Writes Terra payloads as MongoDB documents (see the crate docs for the layout).
pub struct MongoDestination {
    name: String,
    settings: Settings,
    hint: Hint,
    /// Created on first use: parsing a `mongodb+srv` URI resolves DNS, and `build` must do no I/O.
    client: OnceCell<Client>,
    /// Collections whose indexes exist.
    indexed: Mutex<HashSet<String>>,
}

impl fmt::Debug for MongoDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoDestination")
            .field("name", &self.name)
            .field("database", &self.settings.database)
            .field("collection_prefix", &self.settings.collection_prefix)
            .finish_non_exhaustive()
    }
}

/// Per-item result being built up: the worst failure wins (permanent over retry).
struct Results(Vec<Option<Failure>>);

impl Results {
    fn fail(&mut self, owners: &[usize], f: &Failure) {
        for &i in owners {
            let slot = &mut self.0[i];
            let keep = matches!(slot, Some(Failure::Permanent(_) | Failure::Access(_)));
            if !keep {
                *slot = Some(f.clone());
            }
        }
    }
}

/// One write error from a command reply.
struct WriteError {
    index: usize,
    code: i32,
    message: String,
}

fn write_errors(reply: &Document) -> Vec<WriteError> {
    reply
        .get_array("writeErrors")
        .map(|errs| {
            errs.iter()
                .filter_map(Bson::as_document)
                .map(|e| WriteError {
                    index: match e.get("index") {
                        Some(Bson::Int32(i)) => *i as usize,
                        Some(Bson::Int64(i)) => *i as usize,
                        Some(Bson::Double(i)) => *i as usize,
                        _ => usize::MAX,
                    },
                    code: match e.get("code") {
                        Some(Bson::Int32(c)) => *c,
                        Some(Bson::Int64(c)) => *c as i32,
                        Some(Bson::Double(c)) => *c as i32,
                        _ => 0,
                    },
                    message: e.get_str("errmsg").unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_concern_error(reply: &Document) -> Option<Failure> {
    let wce = reply.get_document("writeConcernError").ok()?;
    Some(Failure::Retry(format!(
        "MongoDB write concern failed: {}",
        wce.get_str("errmsg").unwrap_or("no message")
    )))
}

fn version_of(doc: &Document) -> Option<i64> {
    match doc.get_document("_meta").ok()?.get("version")? {
        Bson::Int32(v) => Some(*v as i64),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

impl MongoDestination {
    /// Build without I/O.
    pub fn new(name: &str, settings: Settings) -> MongoDestination {
        MongoDestination {
            name: name.to_string(),
            hint: Hint {
                database: settings.database.clone(),
            },
            settings,
            client: OnceCell::new(),
            indexed: Mutex::new(HashSet::new()),
        }
    }

    /// The full collection name (with the prefix).
    pub fn collection_name(&self, collection: &str) -> String {
        format!("{}{collection}", self.settings.collection_prefix)
    }

    async fn db(&self) -> Result<Database, Failure> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let mut opts = ClientOptions::parse(self.settings.uri.expose())
                    .await
                    .map_err(|e| match classify(&e, &self.hint) {
                        Failure::Permanent(r) => {
                            Failure::Access(format!("the MongoDB `uri` cannot be used: {r}"))
                        }
                        other => other,
                    })?;
                opts.server_selection_timeout = Some(self.settings.connect_timeout);
                opts.connect_timeout = Some(self.settings.connect_timeout);
                if opts.app_name.is_none() {
                    opts.app_name = Some("manifold".into());
                }
                Client::with_options(opts).map_err(|e| classify(&e, &self.hint))
            })
            .await?;
        Ok(client.database(&self.settings.database))
    }

    /// Create the indexes of one collection (once per process; `createIndexes` is idempotent).
    async fn ensure_indexes(&self, db: &Database, collection: &str) -> Result<(), Failure> {
        let full = self.collection_name(collection);
        if self.indexed.lock().await.contains(&full) {
            return Ok(());
        }
        let keys = [
            doc! {"user.user_id": 1},
            doc! {"user.reference_id": 1},
            doc! {"data.metadata.start_time": -1},
            doc! {"data.metadata.end_time": -1},
        ];
        let models = keys
            .into_iter()
            .map(|k| IndexModel::builder().keys(k).build());
        db.collection::<Document>(&full)
            .create_indexes(models)
            .await
            .map_err(|e| classify(&e, &self.hint))?;
        tracing::debug!(destination = %self.name, collection = %full, "created indexes");
        self.indexed.lock().await.insert(full);
        Ok(())
    }

    /// The stored document for an upsert: the payload plus `_id` and `_meta`.
    fn document(&self, u: &Upsert) -> Result<Document, Failure> {
        let mut d = bson::to_document(&u.doc).map_err(|e| {
            Failure::Permanent(format!(
                "the payload cannot be stored as a MongoDB document: {e}"
            ))
        })?;
        d.remove("_id");
        d.remove("_meta");
        let mut out = doc! {"_id": &u.id};
        out.extend(d);
        out.insert(
            "_meta",
            doc! {
                "trace_id": &u.trace_id,
                "version": u.version,
                "updated_at": bson::DateTime::now(),
            },
        );
        Ok(out)
    }

    async fn run_deletes(
        &self,
        db: &Database,
        collection: &str,
        ops: &[&Op<Delete>],
        results: &mut Results,
    ) -> Result<(), Failure> {
        let mut statements = Vec::with_capacity(ops.len() * 2);
        let mut owner_of = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            let d = &op.op;
            statements.push(Bson::Document(doc! {"q": {"_id": &d.id}, "limit": 0}));
            statements.push(Bson::Document(doc! {
                "q": {"user.user_id": &d.user_id, "data.metadata.summary_id": &d.key},
                "limit": 0,
            }));
            owner_of.extend([i, i]);
        }
        let cmd = doc! {
            "delete": self.collection_name(collection),
            "deletes": statements,
            "ordered": false,
        };
        let reply = db
            .run_command(cmd)
            .await
            .map_err(|e| classify(&e, &self.hint))?;
        if let Some(f) = write_concern_error(&reply) {
            return Err(f);
        }
        for e in write_errors(&reply) {
            let f = classify_code(e.code, &e.message, &self.hint);
            match owner_of.get(e.index) {
                Some(&i) => results.fail(&ops[i].owners, &f),
                None => return Err(f),
            }
        }
        Ok(())
    }

    async fn run_upserts(
        &self,
        db: &Database,
        collection: &str,
        ops: &[(&Op<Upsert>, Document)],
        results: &mut Results,
    ) -> Result<(), Failure> {
        let statements: Vec<Bson> = ops
            .iter()
            .map(|(op, d)| {
                Bson::Document(doc! {
                    "q": {"_id": &op.op.id, "_meta.version": {"$lte": op.op.version}},
                    "u": d.clone(),
                    "upsert": true,
                    "multi": false,
                })
            })
            .collect();
        let full = self.collection_name(collection);
        let cmd = doc! {"update": &full, "updates": statements, "ordered": false};
        let reply = db
            .run_command(cmd)
            .await
            .map_err(|e| classify(&e, &self.hint))?;
        if let Some(f) = write_concern_error(&reply) {
            return Err(f);
        }
        // A duplicate `_id` on the upsert path: the filter did not match because the stored
        // version is newer (or a concurrent writer inserted it first). Check which.
        let mut collided: Vec<usize> = Vec::new();
        for e in write_errors(&reply) {
            let Some((op, _)) = ops.get(e.index) else {
                return Err(classify_code(e.code, &e.message, &self.hint));
            };
            if e.code == 11000 && e.message.contains("_id") {
                collided.push(e.index);
            } else {
                results.fail(&op.owners, &classify_code(e.code, &e.message, &self.hint));
            }
        }
        if !collided.is_empty() {
            let ids: Vec<&str> = collided.iter().map(|&i| ops[i].0.op.id.as_str()).collect();
            let stored: HashMap<String, i64> = self.stored_versions(db, &full, &ids).await?;
            for i in collided {
                let op = ops[i].0;
                match stored.get(&op.op.id) {
                    Some(&v) if v >= op.op.version => {}
                    _ => results.fail(
                        &op.owners,
                        &Failure::Retry(format!(
                            "a concurrent write to `{}` in `{full}` won the race; writing again",
                            op.op.id
                        )),
                    ),
                }
            }
        }
        Ok(())
    }

    async fn stored_versions(
        &self,
        db: &Database,
        collection: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, i64>, Failure> {
        use futures::TryStreamExt;
        let cursor = db
            .collection::<Document>(collection)
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"_meta": 1})
            .await
            .map_err(|e| classify(&e, &self.hint))?;
        let docs: Vec<Document> = cursor
            .try_collect()
            .await
            .map_err(|e| classify(&e, &self.hint))?;
        Ok(docs
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_string(), version_of(d)?)))
            .collect())
    }

    async fn write(&self, plan: &Plan, results: &mut Results) -> Result<(), Failure> {
        let db = self.db().await?;
        let mut collections: Vec<&str> = plan
            .upserts
            .iter()
            .map(|u| u.op.collection.as_str())
            .collect();
        collections.sort_unstable();
        collections.dedup();
        for c in collections {
            match self.ensure_indexes(&db, c).await {
                Ok(()) => {}
                // Indexes only speed up reads: a conflicting index the user made themselves (or
                // any other refusal that is not about access) must not stop deliveries.
                Err(Failure::Permanent(reason)) => {
                    tracing::warn!(destination = %self.name, collection = %self.collection_name(c), %reason, "could not create indexes; delivering without them");
                    self.indexed.lock().await.insert(self.collection_name(c));
                }
                Err(f) => return Err(f),
            }
        }

        let mut deletes: BTreeMap<&str, Vec<&Op<Delete>>> = BTreeMap::new();
        for d in &plan.deletes {
            deletes.entry(&d.op.collection).or_default().push(d);
        }
        for (collection, ops) in deletes {
            for chunk in ops.chunks(MAX_STATEMENTS / 2) {
                self.run_deletes(&db, collection, chunk, results).await?;
            }
        }

        let mut upserts: BTreeMap<&str, Vec<(&Op<Upsert>, Document)>> = BTreeMap::new();
        for u in &plan.upserts {
            match self.document(&u.op) {
                Err(f) => results.fail(&u.owners, &f),
                Ok(d) => {
                    upserts.entry(&u.op.collection).or_default().push((u, d));
                }
            }
        }
        for (collection, ops) in upserts {
            let mut chunk: Vec<(&Op<Upsert>, Document)> = Vec::new();
            let mut bytes = 0;
            for (op, d) in ops {
                let size = bson::to_vec(&d).map(|v| v.len()).unwrap_or(usize::MAX);
                if size > MAX_DOC_BYTES {
                    results.fail(
                        &op.owners,
                        &Failure::Permanent(format!(
                            "the document for `{}` is {size} bytes, over MongoDB's 16 MiB limit; it cannot be stored as one document",
                            op.op.id
                        )),
                    );
                    continue;
                }
                if !chunk.is_empty()
                    && (chunk.len() >= MAX_STATEMENTS || bytes + size > MAX_COMMAND_BYTES)
                {
                    self.run_upserts(&db, collection, &chunk, results).await?;
                    chunk.clear();
                    bytes = 0;
                }
                bytes += size;
                chunk.push((op, d));
            }
            if !chunk.is_empty() {
                self.run_upserts(&db, collection, &chunk, results).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Destination for MongoDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let parsed: Vec<Result<Item, String>> = batch.iter().map(parse).collect();
        let mut results = Results(
            parsed
                .iter()
                .map(|p| p.as_ref().err().map(|e| Failure::Permanent(e.clone())))
                .collect(),
        );
        let ok: Vec<(usize, &Item)> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().ok().map(|it| (i, it)))
            .collect();
        if !ok.is_empty() {
            let owners: Vec<usize> = ok.iter().map(|(i, _)| *i).collect();
            let plan = Plan::merge(ok);
            if let Err(f) = self.write(&plan, &mut results).await {
                // The batch stopped here; everything not yet failed is retried or refused as a
                // whole (re-running the finished commands is harmless: they are idempotent).
                tracing::debug!(destination = %self.name, reason = f.reason(), "mongo batch failed");
                results.fail(&owners, &f);
            }
        }
        results
            .0
            .into_iter()
            .map(|r| match r {
                None => Outcome::delivered(),
                Some(f) => f.outcome(),
            })
            .collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn check(&self) -> Result<(), String> {
        let what = format!("mongo destination `{}`", self.name);
        let db = self
            .db()
            .await
            .map_err(|f| format!("{what}: {}", f.reason()))?;
        db.run_command(doc! {"ping": 1})
            .await
            .map_err(|e| format!("{what}: {}", classify(&e, &self.hint).reason()))?;
        // Prove the write privileges with a probe document that is removed again.
        let coll = self.collection_name(USER_EVENTS);
        let probe = doc! {
            "update": &coll,
            "updates": [{"q": {"_id": PROBE_ID}, "u": {"_id": PROBE_ID, "type": "healthcheck"}, "upsert": true}],
        };
        let remove = doc! {"delete": &coll, "deletes": [{"q": {"_id": PROBE_ID}, "limit": 0}]};
        for cmd in [probe, remove] {
            let reply = db.run_command(cmd).await.map_err(|e| {
                format!(
                    "{what}: cannot write: {}",
                    classify(&e, &self.hint).reason()
                )
            })?;
            if let Some(e) = write_errors(&reply).into_iter().next() {
                return Err(format!(
                    "{what}: cannot write: {}",
                    classify_code(e.code, &e.message, &self.hint).reason()
                ));
            }
        }
        Ok(())
    }
}
