//! OAuth2 code flow, single-use refresh tokens, revocation, expiry.

mod common;

use base64::Engine;
use common::*;
use oura_sim::FaultUpdate;
use serde_json::{Value, json};

async fn authorize(sim: &oura_sim::RunningSim, scope: &str) -> reqwest::Response {
    let url = with_query(
        &sim.url("/oauth/authorize"),
        &[
            ("client_id", "sim-client-id"),
            ("redirect_uri", "http://localhost:9999/cb"),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "xyz123"),
        ],
    );
    client().get(url).send().await.unwrap()
}

fn location_params(r: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("http://localhost:9999/cb?"), "{loc}");
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn exchange(sim: &oura_sim::RunningSim, code: &str) -> reqwest::Response {
    post_form(
        &client(),
        &sim.url("/oauth/token"),
        form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
            ("redirect_uri", "http://localhost:9999/cb"),
        ]),
    )
    .await
}

async fn refresh(sim: &oura_sim::RunningSim, rt: &str) -> reqwest::Response {
    post_form(
        &client(),
        &sim.url("/oauth/token"),
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
        ]),
    )
    .await
}

#[tokio::test]
async fn code_token_refresh_revoke() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let r = authorize(&sim, "daily heartrate personal email").await;
    assert_eq!(r.status(), 302);
    let p = location_params(&r);
    assert_eq!(p["state"], "xyz123");
    let code = p["code"].clone();

    let r = exchange(&sim, &code).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 86400);
    let scope = t["scope"].as_str().unwrap();
    assert!(scope.contains("extapi:daily") && scope.contains("extapi:heartrate"));
    let access = t["access_token"].as_str().unwrap().to_string();
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();

    // Codes are single use.
    let r = exchange(&sim, &code).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let (st, me) = get_json(&c, &sim.url("/v2/usercollection/personal_info"), &access).await;
    assert_eq!(st, 200);
    assert_eq!(me["id"], sim.sim.users()[0].id);
    assert!(me["email"].is_string() && me["age"].is_number());

    // Refresh rotates; the old refresh token is single-use.
    let r = refresh(&sim, &rt1).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let access2 = t2["access_token"].as_str().unwrap().to_string();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    let r = refresh(&sim, &rt1).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // HTTP Basic client auth works too.
    let basic = base64::engine::general_purpose::STANDARD.encode("sim-client-id:sim-client-secret");
    let r = c
        .post(sim.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t3: Value = r.json().await.unwrap();
    let access3 = t3["access_token"].as_str().unwrap().to_string();

    // Wrong secret → invalid_client; unsupported grant.
    let r = post_form(
        &c,
        &sim.url("/oauth/token"),
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "sim-client-id"),
            ("client_secret", "nope"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post_form(
        &c,
        &sim.url("/oauth/token"),
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    // Revoke → 401 on data routes; revoking again → 401.
    let (st, _) = get_json(&c, &sim.url("/v2/usercollection/daily_sleep"), &access3).await;
    assert_eq!(st, 200);
    let r = c
        .post(with_query(
            &sim.url("/oauth/revoke"),
            &[("access_token", &access3)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, body) = get_json(&c, &sim.url("/v2/usercollection/daily_sleep"), &access3).await;
    assert_eq!(st, 401, "{body}");
    assert!(body["detail"].is_string());
    let r = c
        .get(with_query(
            &sim.url("/oauth/revoke"),
            &[("access_token", &access3)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The refresh token of the revoked grant is refused as well.
    let rt3 = t3["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&sim, rt3).await.status(), 400);
    // Older tokens of the same grant died with it.
    let (st, _) = get_json(&c, &sim.url("/v2/usercollection/daily_sleep"), &access2).await;
    assert_eq!(st, 401);
    let (st, _) = get_json(&c, &sim.url("/v2/usercollection/daily_sleep"), &access).await;
    assert_eq!(st, 401);
    // No / malformed token.
    let r = c
        .get(sim.url("/v2/usercollection/daily_sleep"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn deny_mode_and_bad_requests() {
    let sim = oura_sim::start(config()).await;
    sim.sim
        .update_faults(FaultUpdate {
            deny_authorize: Some(true),
            ..Default::default()
        })
        .unwrap();
    let r = authorize(&sim, "daily").await;
    assert_eq!(r.status(), 302);
    let p = location_params(&r);
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "xyz123");
    assert!(!p.contains_key("code"));

    sim.sim
        .update_faults(FaultUpdate {
            clear: true,
            ..Default::default()
        })
        .unwrap();
    let r = authorize(&sim, "daily not_a_scope").await;
    assert_eq!(location_params(&r)["error"], "invalid_scope");
    // Unknown client: no redirect.
    let r = client()
        .get(with_query(
            &sim.url("/oauth/authorize"),
            &[
                ("client_id", "other"),
                ("redirect_uri", "http://localhost:9999/cb"),
                ("response_type", "code"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // redirect_uri mismatch at the token endpoint.
    let r = authorize(&sim, "daily").await;
    let code = location_params(&r)["code"].clone();
    let r = post_form(
        &client(),
        &sim.url("/oauth/token"),
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
            ("redirect_uri", "http://evil/cb"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn expiry_and_user_revocation_faults() {
    let mut cfg = config();
    cfg.access_token_ttl = std::time::Duration::from_secs(3600);
    let sim = oura_sim::start(cfg).await;
    let c = client();
    let t = sim.sim.issue_token(1, &["daily"]).unwrap();
    assert_eq!(t.expires_in, 3600);
    let url = sim.url("/v2/usercollection/daily_readiness");
    assert_eq!(get_json(&c, &url, &t.access_token).await.0, 200);
    let r = c
        .post(sim.url("/_sim/faults"))
        .json(&json!({"expire_access_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_json(&c, &url, &t.access_token).await.0, 401);
    // Refresh still works after expiry…
    let r = refresh(&sim, &t.refresh_token).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let a2 = t2["access_token"].as_str().unwrap();
    assert_eq!(get_json(&c, &url, a2).await.0, 200);
    // …until the user is revoked.
    let uid = sim.sim.users()[1].id.clone();
    let r = c
        .post(sim.url("/_sim/faults"))
        .json(&json!({"revoke_user": uid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_json(&c, &url, a2).await.0, 401);
    let r = refresh(&sim, t2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    sim.shutdown().await;
}
