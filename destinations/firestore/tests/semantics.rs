//! What lands in Firestore, read back with Google's Python client and a raw gRPC reader: the
//! layout and value types, versions and redelivery, moved start times, tombstones, the 1 MiB
//! limit, outages mid-batch, unreachable servers and unusable credentials.

mod common;

use std::time::Duration;

use common::{COLLECTIONS, Project, build, dead_port, delivery_with, location, rebuild};
use manifold_core::destination::{Delivery, Outcome};
use manifold_core::testkit::{FaultProxy, sample_delivery};
use serde_json::{Value, json};

fn user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

fn assert_delivered(out: &[Outcome]) {
    for (i, o) in out.iter().enumerate() {
        assert!(
            matches!(o, Outcome::Delivered { .. }),
            "item {i}: expected Delivered, got {o:?}"
        );
    }
}

/// The documents Google's client reads, rebuilt into events, by `<collection>/<id>`.
async fn python_events(p: &Project) -> serde_json::Map<String, Value> {
    p.python_read(COLLECTIONS)
        .await
        .into_iter()
        .map(|(k, v)| {
            let Value::Object(o) = v else {
                panic!("{k}: not a map")
            };
            (k, rebuild(o))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_and_values_as_googles_python_client_reads_them() {
    let p = Project::new().await;
    let dest = p.dest();
    let u = user();
    let sleep = sample_delivery("sleep", &u, 1);
    let activity = sample_delivery("activity", &u, 1);
    let body = sample_delivery("body", &u, 1);
    let auth = sample_delivery("auth", &u, 1);
    // A daily event with two days, numbers of every kind and an array inside an array. (The
    // emulator keeps integers as JavaScript numbers and refuses any beyond 2^53 - 1.)
    let mut daily_body = sample_delivery("daily", &u, 1).json().unwrap();
    daily_body["data"][0]["odd"] = json!({"nested": [[1, 2], [], [[3.5]]], "big": 9007199254740991i64,
        "neg": -12, "float": 0.1, "whole_float": 54.0, "exp": 1e300, "null": null, "flag": false});
    let mut day2 = daily_body["data"][0].clone();
    day2["metadata"]["start_time"] = json!("2026-07-09T00:00:00.000000+02:00");
    day2["metadata"]["end_time"] = json!("2026-07-10T00:00:00.000000+02:00");
    daily_body["data"].as_array_mut().unwrap().push(day2);
    let daily = delivery_with("daily", &u, 1, daily_body.clone());
    let athlete = delivery_with(
        "athlete",
        &u,
        1,
        json!({"type": "athlete", "user": {"user_id": u}, "athlete": {"age": 34, "sex": "female"}, "version": "2022-03-16"}),
    );
    let batch = vec![
        sleep.clone(),
        activity.clone(),
        body.clone(),
        auth.clone(),
        daily.clone(),
        athlete.clone(),
    ];
    assert_delivered(&dest.deliver(&batch).await);

    let raw = p.python_read(COLLECTIONS).await;
    let events = python_events(&p).await;
    let mut want: Vec<(String, Value)> = Vec::new();
    for d in [&sleep, &activity, &body, &auth] {
        let (c, id) = location(d);
        want.push((format!("{c}/{id}"), d.json().unwrap()));
    }
    for i in 0..2 {
        let mut one = daily_body.clone();
        one["data"] = json!([daily_body["data"][i]]);
        let start = daily_body["data"][i]["metadata"]["start_time"]
            .as_str()
            .unwrap();
        want.push((format!("daily/{u}-{start}.json"), one));
    }
    want.push((format!("athlete/{u}.json"), athlete.json().unwrap()));
    for (path, event) in &want {
        assert_eq!(
            events.get(path),
            Some(event),
            "{path}: what Google's client reads differs from the delivered event"
        );
    }
    assert_eq!(
        events.len(),
        want.len(),
        "no other documents: {:?}",
        events.keys()
    );

    // Normal Firestore fields, not a JSON string: the item's fields beside `user`.
    let s = &raw[&want[0].0];
    assert_eq!(s["user"]["user_id"], json!(u));
    assert_eq!(
        s["metadata"]["summary_id"],
        sleep.json().unwrap()["data"][0]["metadata"]["summary_id"]
    );
    assert!(
        s["metadata"]["start_time"].is_string(),
        "timestamps stay strings: {s}"
    );
    assert!(
        s.get("data").is_none(),
        "the item is not nested under data: {s}"
    );
    assert_eq!(s["_manifold_key"], json!(sleep.natural_key));
    assert_eq!(s["_manifold_version"], json!(1));
    assert_eq!(s["_manifold_trace_id"], json!(sleep.payload_id));
    // A Firestore timestamp (the Python client gives a datetime, printed with an offset).
    let updated = s["_manifold_updated_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(updated).is_ok(),
        "{updated}"
    );
    // Integers stay integers and floats stay floats, as Python sees them.
    let odd = &raw[&want[4].0]["odd"];
    assert!(odd["big"].is_i64() && odd["neg"].is_i64(), "{odd}");
    assert!(
        odd["whole_float"].is_f64() && odd["float"].is_f64() && odd["exp"].is_f64(),
        "{odd}"
    );
    assert_eq!(odd["nested"][0], json!({"_manifold_array": [1, 2]}));
    assert_eq!(
        raw[&want[1].0]["heart_rate_data"]["summary"]["avg_hr_bpm"],
        json!(148.2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_version_wins_and_redelivery_changes_no_count() {
    let p = Project::new().await;
    let dest = p.dest();
    let u = user();
    let v1 = sample_delivery("sleep", &u, 1);
    let (c, id) = location(&v1);
    let mut body2 = v1.json().unwrap();
    body2["data"][0]["scores"]["sleep"] = json!(91);
    body2["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("device_data");
    let v2 = delivery_with("sleep", &u, 2, body2.clone());

    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(p.event(&c, &id).await, Some(v1.json().unwrap()));
    assert_eq!(p.query(&c, "_manifold_key", &v1.natural_key).await.len(), 1);

    assert_delivered(&dest.deliver(std::slice::from_ref(&v2)).await);
    let raw = p.raw(&c, &id).await.unwrap();
    assert!(
        raw.get("device_data").is_none(),
        "a removed field disappears"
    );
    assert_eq!(rebuild(raw.clone()), body2);
    assert_eq!(raw["_manifold_version"], json!(2));

    // The old version arrives late: accepted, changes nothing.
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(p.event(&c, &id).await, Some(body2.clone()));
    // Both versions in one batch, the old one last: the newest stays.
    assert_delivered(&dest.deliver(&[v2.clone(), v1.clone()]).await);
    assert_eq!(p.event(&c, &id).await, Some(body2.clone()));

    // Version 3 moved the start time: the document under the old name goes, one remains.
    let mut body3 = body2.clone();
    body3["data"][0]["metadata"]["start_time"] = json!("2026-07-01T23:30:00.000000+00:00");
    let v3 = delivery_with("sleep", &u, 3, body3.clone());
    assert_delivered(&dest.deliver(std::slice::from_ref(&v3)).await);
    let (_, id3) = location(&v3);
    assert_ne!(id3, id);
    assert_eq!(p.raw(&c, &id).await, None, "the old name is gone");
    assert_eq!(p.event(&c, &id3).await, Some(body3.clone()));
    let all = python_events(&p).await;
    assert_eq!(all.len(), 1, "{:?}", all.keys());
    // A late version 2 under the old name changes nothing either.
    assert_delivered(&dest.deliver(std::slice::from_ref(&v2)).await);
    assert_eq!(p.raw(&c, &id).await, None);
    assert_eq!(python_events(&p).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_delete_the_records_documents() {
    let p = Project::new().await;
    let dest = p.dest();
    let u = user();
    let sleep = sample_delivery("sleep", &u, 1);
    let keep = sample_delivery("sleep", &u, 2);
    let daily = sample_delivery("daily", &u, 1);
    assert_delivered(
        &dest
            .deliver(&[sleep.clone(), keep.clone(), daily.clone()])
            .await,
    );
    assert_eq!(python_events(&p).await.len(), 3);

    let summary = sleep.json().unwrap()["data"][0]["metadata"]["summary_id"].clone();
    let day = &daily.natural_key.rsplit(':').next().unwrap().to_string();
    let t1 = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u}, "deleted": [{"summary_id": summary}]}),
    );
    let t2 = delivery_with(
        "daily",
        &u,
        1,
        json!({"type": "daily", "user": {"user_id": u}, "deleted": [{"date": day}]}),
    );
    assert_delivered(&dest.deliver(&[t1.clone(), t2]).await);
    let left = python_events(&p).await;
    let (c, id) = location(&keep);
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{c}/{id}")],
        "only the record without a tombstone is left"
    );
    // A tombstone again (redelivery) is harmless; an upsert after a tombstone in one batch wins.
    assert_delivered(&dest.deliver(&[t1, sleep.clone()]).await);
    let (c, id) = location(&sleep);
    assert_eq!(p.event(&c, &id).await, Some(sleep.json().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_document_is_permanent_for_that_item_only() {
    let p = Project::new().await;
    let dest = p.dest();
    let u = user();
    let ok1 = sample_delivery("sleep", &u, 1);
    let ok2 = sample_delivery("daily", &u, 1);
    let mut huge_body = sample_delivery("activity", &u, 1).json().unwrap();
    huge_body["data"][0]["notes"] = json!("x".repeat(1_100_000));
    let huge = delivery_with("activity", &u, 1, huge_body);
    let mut fit = sample_delivery("activity", &u, 2);
    fit.content_type = "application/vnd.ant.fit";
    let out = dest
        .deliver(&[ok1.clone(), huge.clone(), ok2.clone(), fit])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{:?}", out[0]);
    assert!(matches!(out[2], Outcome::Delivered { .. }), "{:?}", out[2]);
    match &out[1] {
        Outcome::Permanent { reason, .. } => assert!(reason.contains("1 MiB"), "{reason}"),
        other => panic!("an oversized document must be Permanent, got {other:?}"),
    }
    match &out[3] {
        Outcome::Permanent { reason, .. } => assert!(reason.contains("format"), "{reason}"),
        other => panic!("a FIT file must be Permanent, got {other:?}"),
    }
    let stored = python_events(&p).await;
    assert_eq!(stored.len(), 2, "{:?}", stored.keys());
    let (c, id) = location(&huge);
    assert_eq!(p.raw(&c, &id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_batch_is_retry_and_nothing_is_missing_afterwards() {
    let p = Project::new().await;
    let proxy = FaultProxy::start(&p.host).await;
    let dest = build(&proxy.addr().to_string(), &p.id, "");
    let u = user();
    let kinds = ["sleep", "daily", "activity", "body", "auth"];
    let batches: Vec<Vec<Delivery>> = (0..6)
        .map(|b| {
            (0..100)
                .map(|i| sample_delivery(kinds[i % kinds.len()], &u, (b * 100 + i) as u32 + 1))
                .collect()
        })
        .collect();
    // The proxy goes down while the second batch is being delivered (every connection reset at
    // once) and stays down for the rest.
    let (first_done, mut first_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (down_done, mut down_rx) = tokio::sync::mpsc::channel::<()>(1);
    let d2 = dest.clone();
    let all = batches.clone();
    let sender = tokio::spawn(async move {
        let mut outcomes = vec![d2.deliver(&all[0]).await];
        first_done.send(()).await.unwrap();
        let second = d2.deliver(&all[1]);
        outcomes.push(second.await);
        down_rx.recv().await.unwrap();
        for b in &all[2..] {
            outcomes.push(d2.deliver(b).await);
        }
        outcomes
    });
    first_rx.recv().await.unwrap();
    proxy.down().await;
    down_done.send(()).await.unwrap();
    let outcomes = sender.await.unwrap();
    assert_delivered(&outcomes[0]);
    let mut retry = 0;
    for o in outcomes.iter().flatten() {
        match o {
            Outcome::Delivered { .. } => {}
            Outcome::Retry { reason, .. } => {
                retry += 1;
                assert!(!reason.is_empty());
            }
            other => panic!("while the server is down, failures must be Retry: {other:?}"),
        }
    }
    assert!(retry > 0, "the outage must have failed some deliveries");
    proxy.up().await;
    // The engine would retry what failed; here everything is sent again.
    for b in &batches {
        let mut left = b.clone();
        for attempt in 0.. {
            let out = dest.deliver(&left).await;
            left = left
                .into_iter()
                .zip(out)
                .filter(|(_, o)| !matches!(o, Outcome::Delivered { .. }))
                .map(|(d, _)| d)
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(attempt < 20, "still failing after the proxy came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let stored = python_events(&p).await;
    assert_eq!(stored.len(), 600, "one document per delivery");
    for d in batches.iter().flatten() {
        let (c, id) = location(d);
        assert_eq!(
            stored.get(&format!("{c}/{id}")),
            Some(&d.json().unwrap()),
            "{c}/{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_unusable_credentials() {
    let port = dead_port().await;
    let dest = build(&format!("127.0.0.1:{port}"), "p", "");
    let out = dest.deliver(&[sample_delivery("sleep", &user(), 1)]).await;
    assert!(matches!(out[0], Outcome::Retry { .. }), "{out:?}");
    let e = dest.check().await.unwrap_err();
    assert!(e.contains("firestore destination"), "{e}");

    // A key file that is not there / not a service-account key: permanent, naming the file.
    let dir = std::env::temp_dir().join(format!("fs-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("key.json");
    std::fs::write(&bad, r#"{"type": "authorized_user"}"#).unwrap();
    for (path, want) in [
        (dir.join("missing.json"), "cannot read"),
        (bad.clone(), "not a service-account key"),
    ] {
        let table: toml::Table = toml::from_str(&format!(
            "project_id = \"p\"\ncredentials_file = \"{}\"",
            path.display()
        ))
        .unwrap();
        use manifold_core::destination::{BuildContext, DestinationFactory};
        let d = manifold_firestore::FirestoreFactory
            .build("f", table, &BuildContext::default())
            .unwrap();
        match &d.deliver(&[sample_delivery("sleep", &user(), 1)]).await[0] {
            Outcome::Permanent { reason, .. } => assert!(reason.contains(want), "{reason}"),
            other => panic!("unusable credentials must be Permanent, got {other:?}"),
        }
        let e = d.check().await.unwrap_err();
        assert!(e.contains(want) && e.contains("credentials_file"), "{e}");
    }
    // A well-formed key whose private key is garbage: refused when the token is minted.
    std::fs::write(
        &bad,
        json!({"type": "service_account", "project_id": "p", "private_key_id": "k",
               "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
               "client_email": "x@p.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": format!("http://127.0.0.1:{port}/token")})
        .to_string(),
    )
    .unwrap();
    let table: toml::Table = toml::from_str(&format!(
        "project_id = \"p\"\ncredentials_file = \"{}\"",
        bad.display()
    ))
    .unwrap();
    use manifold_core::destination::{BuildContext, DestinationFactory};
    let d = manifold_firestore::FirestoreFactory
        .build("f", table, &BuildContext::default())
        .unwrap();
    match &d.deliver(&[sample_delivery("sleep", &user(), 1)]).await[0] {
        Outcome::Permanent { reason, .. } => assert!(reason.contains("key"), "{reason}"),
        other => panic!("a key that cannot sign must be Permanent, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
