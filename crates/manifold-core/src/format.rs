//! Per-destination payload formats: `json` (the Terra event as committed), `fhir` (an R4 Bundle
//! of Observations) and `fit` (a Garmin FIT activity file, activities only — as Terra does).
//!
//! Events a format cannot express (informational events, tombstones, athlete for FHIR; every
//! non-activity event for FIT) are delivered as their JSON, so nothing is dropped.

use bytes::Bytes;
use manifold_model::event::{DataPayload, Event};

use crate::config::Format;
use crate::destination::Delivery;

pub const JSON: &str = "application/json";
pub const FHIR_JSON: &str = "application/fhir+json";
pub const FIT: &str = "application/vnd.ant.fit";

/// Re-encode a delivery's body for `format`. An error is permanent: the stored event cannot be
/// expressed in that format (the reason says why).
pub fn encode(format: Format, d: &Delivery) -> Result<Delivery, String> {
    if format == Format::Json {
        return Ok(d.clone());
    }
    let event: Event = serde_json::from_slice(&d.body).map_err(|e| {
        format!(
            "the stored event does not parse as a Terra event ({e}); cannot encode it as {format:?}"
        )
    })?;
    match format {
        Format::Json => Ok(d.clone()),
        Format::Fhir => match manifold_model::fhir::bundle(&event) {
            Ok(bundle) => Ok(with_body(d, bundle.to_string().into_bytes(), FHIR_JSON)),
            Err(manifold_model::fhir::FhirError::NotApplicable(_)) => Ok(d.clone()),
            #[allow(unreachable_patterns)]
            Err(e) => Err(format!("cannot encode as FHIR: {e}")),
        },
        Format::Fit => match &event {
            Event::Data(data) => match &data.data {
                DataPayload::Activity(items) if items.len() == 1 => {
                    manifold_model::fit::encode_activity(&items[0])
                        .map(|bytes| with_body(d, bytes, FIT))
                        .map_err(|e| format!("cannot encode the activity as FIT: {e}"))
                }
                _ => Ok(d.clone()),
            },
            _ => Ok(d.clone()),
        },
    }
}

fn with_body(d: &Delivery, body: Vec<u8>, content_type: &'static str) -> Delivery {
    Delivery {
        body: Bytes::from(body),
        content_type,
        ..d.clone()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn delivery(v: serde_json::Value) -> Delivery {
        Delivery {
            id: "d".into(),
            payload_id: "p".into(),
            event_type: v["type"].as_str().unwrap().into(),
            user_id: Some("u".into()),
            reference_id: None,
            natural_key: "k".into(),
            version: 1,
            terra_reference: None,
            attempt: 1,
            created_at: Utc::now(),
            body: Bytes::from(v.to_string()),
            content_type: JSON,
        }
    }

    fn activity() -> serde_json::Value {
        json!({"type":"activity","version":"2022-03-16","user":{"user_id":"u","provider":"OURA"},
            "data":[{"metadata":{"summary_id":"w1","start_time":"2026-07-01T17:00:00.000000+01:00",
            "end_time":"2026-07-01T17:45:00.000000+01:00","type":8,"upload_type":1},
            "heart_rate_data":{"summary":{"avg_hr_bpm":140.0,"max_hr_bpm":170.0}}}]})
    }

    #[test]
    fn fhir_turns_data_events_into_bundles() {
        let out = encode(Format::Fhir, &delivery(activity())).unwrap();
        assert_eq!(out.content_type, FHIR_JSON);
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["resourceType"], "Bundle");
        assert_eq!(out.id, "d");
    }

    #[test]
    fn fit_encodes_activities_and_passes_other_events_as_json() {
        let out = encode(Format::Fit, &delivery(activity())).unwrap();
        assert_eq!(out.content_type, FIT);
        assert_eq!(&out.body[8..12], b".FIT");
        let auth = json!({"type":"auth","user":{"user_id":"u","provider":"OURA"},"status":"success","reference_id":"r","widget_session_id":"w","version":"2022-03-16","message":"User has successfully authenticated"});
        let out = encode(Format::Fit, &delivery(auth.clone())).unwrap();
        assert_eq!(out.content_type, JSON);
        let out = encode(Format::Fhir, &delivery(auth)).unwrap();
        assert_eq!(out.content_type, JSON);
    }

    #[test]
    fn unparsable_events_are_a_permanent_error() {
        let mut d = delivery(activity());
        d.body = Bytes::from_static(b"{\"type\":\"activity\",\"data\":[{\"metadata\":{}}]}");
        let err = encode(Format::Fhir, &d).unwrap_err();
        assert!(err.contains("does not parse as a Terra event"), "{err}");
    }
}
