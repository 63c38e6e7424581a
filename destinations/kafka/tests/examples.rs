//! examples/kafka.toml loads through the real config loader (what `manifold check` does before
//! connecting), with the s3 destination it uses as claim check.

use std::path::Path;

use manifold_core::{Config, Registry};

fn env(k: &str) -> Option<String> {
    Some(format!("value-of-{k}"))
}

#[test]
fn the_example_config_loads() {
    let file = "kafka.toml";
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let mut r = Registry::new();
    r.register(manifold_kafka::KafkaFactory);
    r.register(manifold_s3::S3Factory);
    let c = Config::from_str(&src, file, &r, &env).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    // The claim-check bucket is disabled as a delivery target but still offered to Kafka.
    assert_eq!(c.destinations.len(), 1);
    assert_eq!(c.destinations[0].common.name, "stream");
}
