//! `[oura]` validation: every problem names the key and the fix.

use manifold_core::{Config, Registry};

const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn parse(oura: &str, public_url: bool) -> Result<Config, String> {
    let server = if public_url {
        "[server]\npublic_url = \"https://health.example.com\"\n"
    } else {
        ""
    };
    let text = format!("{server}[oura]\n{oura}");
    Config::from_str(&text, "m.toml", &Registry::new(), &|k| {
        (k == "KEY").then(|| KEY.to_string())
    })
    .map_err(|e| e.to_string())
}

#[test]
fn valid_with_defaults() {
    let c = parse(
        "client_id = \"id\"\nclient_secret = \"s\"\ntoken_keys = [\"${KEY}\"]\n",
        true,
    )
    .unwrap();
    let o = c.oura.unwrap();
    assert_eq!(o.api_base(), "https://api.ouraring.com");
    assert_eq!(o.token_url(), "https://api.ouraring.com/oauth/token");
    assert_eq!(o.auth_base(), "https://cloud.ouraring.com");
    assert_eq!(
        o.redirect_uri(c.server.public_url.as_ref()).unwrap(),
        "https://health.example.com/oura/callback"
    );
    assert_eq!(o.signature_tolerance.as_secs(), 300);
    assert_eq!(o.decoded_token_keys().unwrap().len(), 1);
    assert!(o.scopes.iter().any(|s| s == "extapi:daily"));
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let e = parse("client_id = \"id\"\nclient_secret = \"s\"\n", true).unwrap_err();
    assert!(
        e.contains("oura.token_keys") && e.contains("openssl rand -base64 32"),
        "{e}"
    );

    let e = parse(
        "client_id = \"id\"\nclient_secret = \"s\"\ntoken_keys = [\"c2hvcnQ=\"]\n",
        true,
    )
    .unwrap_err();
    assert!(
        e.contains("oura.token_keys[0]") && e.contains("5 bytes, not 32"),
        "{e}"
    );

    let e = parse(
        "client_id = \"id\"\nclient_secret = \"s\"\ntoken_keys = [\"${KEY}\"]\n",
        false,
    )
    .unwrap_err();
    assert!(e.contains("server.public_url"), "{e}");

    let e = parse(
        "client_id = \"id\"\nclient_secret = \"\"\ntoken_keys = [\"${KEY}\"]\nsignature_tolerance = \"0s\"\nfetch_concurrency = 0\n",
        true,
    )
    .unwrap_err();
    for k in [
        "oura.client_secret",
        "oura.signature_tolerance",
        "oura.fetch_concurrency",
    ] {
        assert!(e.contains(k), "{k} missing in: {e}");
    }

    let e = parse(
        "client_id = \"id\"\nclient_secret = \"s\"\ntoken_keys = [\"${KEY}\"]\nclient_sekret = 1\n",
        true,
    )
    .unwrap_err();
    assert!(e.contains("client_sekret"), "{e}");
}
