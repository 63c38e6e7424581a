//! Map config key paths (`destinations[1].retry.max_backoff`) to line numbers and back.

use std::ops::Range;

use toml_edit::{Document, Item, Value};

/// Every key of a TOML document with its dotted path, the span of the key and of its value.
#[derive(Debug, Default)]
pub struct SpanIndex {
    entries: Vec<(String, Range<usize>, Range<usize>)>,
    line_starts: Vec<usize>,
}

impl SpanIndex {
    pub fn new(src: &str) -> Self {
        let mut index = SpanIndex {
            entries: Vec::new(),
            line_starts: std::iter::once(0)
                .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        if let Ok(doc) = Document::parse(src) {
            walk_item(doc.as_item(), "", &mut index.entries);
        }
        index
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Line where `path` is written (its key), or the nearest written ancestor.
    pub fn line_of_path(&self, path: &str) -> Option<usize> {
        let mut p = path.to_string();
        loop {
            if let Some((_, key, _)) = self.entries.iter().find(|(k, _, _)| *k == p) {
                return Some(self.line_of(key.start));
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
            if p.is_empty() {
                return None;
            }
        }
    }

    /// The deepest key whose key or value span contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, k, v)| k.contains(&offset) || v.contains(&offset) || v.end == offset)
            .max_by_key(|(p, _, _)| p.len())
            .map(|(p, _, _)| p.as_str())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_item(item: &Item, path: &str, out: &mut Vec<(String, Range<usize>, Range<usize>)>) {
    match item {
        Item::Table(t) => {
            for (k, _) in t.iter() {
                if let Some((key, child)) = t.get_key_value(k) {
                    let p = join(path, k);
                    let ks = key.span().unwrap_or(0..0);
                    let vs = child.span().unwrap_or(ks.clone());
                    out.push((p.clone(), ks, vs));
                    walk_item(child, &p, out);
                }
            }
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let span = t.span().unwrap_or(0..0);
                out.push((p.clone(), span.clone(), span));
                walk_item(&Item::Table(t.clone()), &p, out);
            }
        }
        Item::Value(v) => walk_value(v, path, out),
        Item::None => {}
    }
}

fn walk_value(v: &Value, path: &str, out: &mut Vec<(String, Range<usize>, Range<usize>)>) {
    match v {
        Value::InlineTable(t) => {
            for (k, _) in t.iter() {
                if let Some((key, child)) = t.get_key_value(k) {
                    let p = join(path, k);
                    let ks = key.span().unwrap_or(0..0);
                    let vs = child.span().unwrap_or(ks.clone());
                    out.push((p.clone(), ks, vs));
                    walk_item(child, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let span = child.span().unwrap_or(0..0);
                out.push((p.clone(), span.clone(), span));
                walk_value(child, &p, out);
            }
        }
        _ => {}
    }
}
