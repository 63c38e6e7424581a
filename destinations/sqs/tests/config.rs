//! Config validation: every problem reported with its fix; build does no I/O.

use manifold_core::destination::{BuildContext, DestinationFactory, SettingIssue};
use manifold_sqs::{Config, SqsFactory};

fn issues(src: &str) -> Vec<SettingIssue> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match SqsFactory.build("queue", table, &BuildContext::default()) {
        Ok(_) => vec![],
        Err(e) => e,
    }
}

fn settings(src: &str) -> manifold_sqs::Settings {
    let c: Config = toml::from_str(src).unwrap();
    c.validate().unwrap()
}

#[test]
fn region_and_endpoint_come_from_the_queue_url() {
    let s = settings("queue_url = \"https://sqs.eu-west-2.amazonaws.com/123456789012/events\"");
    assert_eq!(s.region, "eu-west-2");
    assert!(s.endpoint.is_none());
    assert!(!s.fifo);
    assert_eq!(s.max_message_size, 256 * 1024);
    assert_eq!(s.presign_expiry.as_secs(), 600);

    let s = settings(
        "queue_url = \"http://127.0.0.1:4566/123456789012/events.fifo\"\nregion = \"us-east-1\"\nmax_message_size = \"1MiB\"",
    );
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
    assert!(s.fifo);
    assert_eq!(s.max_message_size, 1024 * 1024);
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    assert_eq!(i[0].key, "queue_url");
    assert!(i[0].message.contains("https://sqs."));

    let i = issues("queue_url = \"events\"");
    assert_eq!(i[0].key, "queue_url");

    let i = issues("queue_url = \"http://127.0.0.1:4566/123456789012/events\"");
    assert_eq!(i[0].key, "region");

    let i = issues(
        "queue_url = \"https://sqs.eu-west-2.amazonaws.com/1/q\"\nmax_message_size = \"2MiB\"\npresign_expiry = \"0s\"\nclaim_check = \"\"",
    );
    let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["claim_check", "presign_expiry", "max_message_size"]);

    let i = issues("queue_url = \"https://sqs.eu-west-2.amazonaws.com/1/q\"\nqueue = 1");
    assert_eq!(i[0].key, "queue");
}

#[test]
fn claim_check_is_declared_to_the_registry() {
    let ctx = BuildContext::default();
    let table: toml::Table = toml::from_str(
        "queue_url = \"https://sqs.eu-west-2.amazonaws.com/1/q\"\nclaim_check = \"archive\"",
    )
    .unwrap();
    SqsFactory.build("queue", table, &ctx).unwrap();
    assert_eq!(
        ctx.blob_stores.missing(),
        vec![(
            "queue".to_string(),
            "claim_check".to_string(),
            "archive".to_string()
        )]
    );
}
