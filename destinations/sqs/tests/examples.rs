//! examples/s3.toml and examples/sqs.toml load through the real config loader with both
//! factories registered (what `manifold check` does before connecting).

use std::path::Path;

use manifold_core::{Config, Registry};

fn env(k: &str) -> Option<String> {
    Some(format!("value-of-{k}"))
}

fn load(file: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let mut r = Registry::new();
    r.register(manifold_s3::S3Factory);
    r.register(manifold_sqs::SqsFactory);
    Config::from_str(&src, file, &r, &env).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

#[test]
fn the_example_configs_load() {
    let c = load("s3.toml");
    assert_eq!(c.destinations.len(), 1);
    let c = load("sqs.toml");
    // The claim-check bucket is disabled as a delivery target but still offered to the queue.
    assert_eq!(c.destinations.len(), 1);
    assert_eq!(c.destinations[0].common.name, "queue");
}
