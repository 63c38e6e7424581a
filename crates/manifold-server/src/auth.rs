//! `x-api-key` check in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::Problem;

pub fn require_key(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    if state.api_keys.is_empty() {
        return Err(Problem::unauthorized(
            "no API keys are configured: add server.api_keys = [\"${MANIFOLD_API_KEY}\"] to the config",
        ));
    }
    let Some(given) = headers.get("x-api-key").map(|v| v.as_bytes()) else {
        return Err(Problem::unauthorized(
            "missing x-api-key header: send one of server.api_keys",
        ));
    };
    let ok = state.api_keys.iter().fold(0u8, |acc, k| {
        acc | u8::from(bool::from(k.expose().as_bytes().ct_eq(given)))
    });
    if ok == 1 {
        Ok(())
    } else {
        Err(Problem::unauthorized(
            "x-api-key is not one of server.api_keys",
        ))
    }
}
