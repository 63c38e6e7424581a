//! `examples/gcs.toml` builds through the factory (its `${VAR}`s filled from its
//! `# example-env:` lines, or a placeholder), the way `manifold check` will once registered.

use manifold_core::destination::{BuildContext, DestinationFactory};
use manifold_gcs::GcsFactory;

/// The engine's own keys, stripped before the factory sees the table.
const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "data_types",
    "format",
    "retry",
    "concurrency",
    "rate_limit",
    "batch_size",
    "timeout",
    "enabled",
];

#[test]
fn the_example_config_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gcs.toml");
    let mut src = std::fs::read_to_string(path).unwrap();
    let given: Vec<(String, String)> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# example-env:"))
        .filter_map(|kv| {
            kv.trim()
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    while let Some(start) = src.find("${") {
        let end = start + src[start..].find('}').unwrap();
        let var = src[start + 2..end].to_string();
        let value = given
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "example-value".into());
        src.replace_range(start..=end, &value);
    }
    let doc: toml::Table = toml::from_str(&src).unwrap();
    let mut n = 0;
    for d in doc["destinations"].as_array().unwrap() {
        let mut t = d.as_table().unwrap().clone();
        if t["type"].as_str() != Some(GcsFactory.kind()) {
            continue;
        }
        for k in COMMON_KEYS {
            t.remove(*k);
        }
        GcsFactory
            .build("example", t, &BuildContext::default())
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        n += 1;
    }
    assert!(n >= 1, "{path} has no {} destination", GcsFactory.kind());
}
