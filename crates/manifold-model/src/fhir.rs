//! FHIR R4 encoder: a data event becomes a `Bundle` (type `collection`) of `Observation`s.
//!
//! * Each observation has `status: final`, a `category` (`vital-signs` or `activity`), a
//!   LOINC `code` (see the table in the crate docs), a UCUM `valueQuantity`, the `subject`
//!   `Patient/<user_id>` (plus an `identifier` holding the Terra `reference_id` when known),
//!   the `device` (display: the payload's `device_data.name`, else `"Oura"`) and either an
//!   `effectivePeriod` (summary values: the item's `metadata.start_time`/`end_time`) or an
//!   `effectiveDateTime` (samples).
//! * Only values that exist (and are finite) become observations; a data event whose items
//!   carry no mappable value yields a bundle without `entry`.
//! * Ids are deterministic (a 128-bit FNV-1a hash of user, event type, item and metric,
//!   formatted as a UUID), so re-encoding the same event gives the same `fullUrl`s and
//!   consumers can upsert.
//! * Informational events, tombstones and the types without a FHIR mapping here (`athlete`,
//!   `menstruation`, `nutrition`) return [`FhirError::NotApplicable`].
//!
//! Timestamps keep the payload's UTC offset (`Z` for UTC) and are written with whole seconds
//! plus only the significant fractional digits.

use crate::enums::OxygenSaturationType;
use crate::{
    Activity, Body, Daily, DataEvent, DataPayload, DeviceData, Event, HeartRateData, OxygenData,
    Sleep, TerraUser, Timestamp,
};
use chrono::{SecondsFormat, Timelike};
use serde_json::{Map, Value, json};

/// LOINC code system.
pub const LOINC: &str = "http://loinc.org";
/// UCUM unit system.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// HL7 observation-category code system.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Manifold's own code system, for metrics LOINC has no code for (HRV RMSSD, temperature
/// deviation from baseline).
pub const MANIFOLD_CODES: &str = "urn:manifold:fhir:metric";
/// `identifier.system` of the subject's Terra `reference_id`.
pub const REFERENCE_ID_SYSTEM: &str = "urn:manifold:terra:reference-id";

/// Why an event cannot be encoded as FHIR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    /// Informational events, tombstones and event types without a FHIR mapping
    /// (`athlete`, `menstruation`, `nutrition`). Carries the event `type`.
    #[error("`{0}` events have no FHIR Observation representation")]
    NotApplicable(String),
}

/// Observation category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `vital-signs`
    VitalSigns,
    /// `activity`
    Activity,
}

impl Category {
    fn code(self) -> (&'static str, &'static str) {
        match self {
            Category::VitalSigns => ("vital-signs", "Vital Signs"),
            Category::Activity => ("activity", "Activity"),
        }
    }
}

/// One metric: codes (the first is the primary one), category and UCUM unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Short stable key (used in ids).
    pub key: &'static str,
    /// `(system, code, display)` codings; the first is the primary.
    pub codings: &'static [(&'static str, &'static str, &'static str)],
    /// `code.text`
    pub text: &'static str,
    /// Observation category.
    pub category: Category,
    /// UCUM code.
    pub unit: &'static str,
    /// Human-readable unit.
    pub unit_display: &'static str,
}

macro_rules! metric {
    ($name:ident, $key:literal, [$(($sys:expr, $code:literal, $disp:literal)),+], $text:literal, $cat:ident, $unit:literal, $ud:literal) => {
        #[doc = concat!("`", $key, "`: ", $text, " (", $unit, ").")]
        pub const $name: Metric = Metric {
            key: $key,
            codings: &[$(($sys, $code, $disp)),+],
            text: $text,
            category: Category::$cat,
            unit: $unit,
            unit_display: $ud,
        };
    };
}

metric!(
    HEART_RATE,
    "hr",
    [(LOINC, "8867-4", "Heart rate")],
    "Heart rate",
    VitalSigns,
    "/min",
    "beats/minute"
);
metric!(
    HEART_RATE_AVG,
    "hr-avg",
    [(LOINC, "8867-4", "Heart rate")],
    "Average heart rate",
    VitalSigns,
    "/min",
    "beats/minute"
);
metric!(
    HEART_RATE_RESTING,
    "hr-resting",
    [
        (LOINC, "40443-4", "Heart rate --resting"),
        (LOINC, "8867-4", "Heart rate")
    ],
    "Resting heart rate",
    VitalSigns,
    "/min",
    "beats/minute"
);
metric!(
    STEPS_DAY,
    "steps-day",
    [(LOINC, "41950-7", "Number of steps in 24 hour Measured")],
    "Steps",
    Activity,
    "{steps}",
    "steps"
);
metric!(
    STEPS,
    "steps",
    [(
        LOINC,
        "55423-8",
        "Number of steps in unspecified time Pedometer"
    )],
    "Steps",
    Activity,
    "{steps}",
    "steps"
);
metric!(
    SLEEP_DURATION,
    "sleep-duration",
    [(LOINC, "93832-4", "Sleep duration")],
    "Sleep duration",
    Activity,
    "s",
    "s"
);
metric!(
    RESPIRATORY_RATE,
    "rr",
    [(LOINC, "9279-1", "Respiratory rate")],
    "Respiratory rate",
    VitalSigns,
    "/min",
    "breaths/minute"
);
metric!(
    SPO2,
    "spo2",
    [
        (
            LOINC,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry"
        ),
        (LOINC, "2708-6", "Oxygen saturation in Arterial blood")
    ],
    "Oxygen saturation (SpO2)",
    VitalSigns,
    "%",
    "%"
);
metric!(
    BODY_TEMPERATURE,
    "temp",
    [(LOINC, "8310-5", "Body temperature")],
    "Body temperature",
    VitalSigns,
    "Cel",
    "C"
);
metric!(
    TEMPERATURE_DEVIATION,
    "temp-delta",
    [(
        MANIFOLD_CODES,
        "temperature-deviation",
        "Temperature deviation from personal baseline"
    )],
    "Temperature deviation from baseline",
    VitalSigns,
    "Cel",
    "C"
);
metric!(
    HRV_SDNN,
    "hrv-sdnn",
    [(
        LOINC,
        "80404-7",
        "R-R interval.standard deviation (Heart rate variability)"
    )],
    "Heart rate variability (SDNN)",
    VitalSigns,
    "ms",
    "ms"
);
metric!(
    HRV_RMSSD,
    "hrv-rmssd",
    [(
        MANIFOLD_CODES,
        "hrv-rmssd",
        "Heart rate variability (RMSSD)"
    )],
    "Heart rate variability (RMSSD)",
    VitalSigns,
    "ms",
    "ms"
);
metric!(
    BODY_WEIGHT,
    "weight",
    [(LOINC, "29463-7", "Body weight")],
    "Body weight",
    VitalSigns,
    "kg",
    "kg"
);
metric!(
    BODY_HEIGHT,
    "height",
    [(LOINC, "8302-2", "Body height")],
    "Body height",
    VitalSigns,
    "cm",
    "cm"
);
metric!(
    BMI,
    "bmi",
    [(LOINC, "39156-5", "Body mass index (BMI) [Ratio]")],
    "Body mass index",
    VitalSigns,
    "kg/m2",
    "kg/m2"
);
metric!(
    BODY_FAT,
    "bodyfat",
    [(LOINC, "41982-0", "Percentage of body fat Measured")],
    "Body fat",
    VitalSigns,
    "%",
    "%"
);
metric!(
    CALORIES,
    "kcal",
    [(LOINC, "41981-2", "Calories burned")],
    "Calories burned",
    Activity,
    "kcal",
    "kcal"
);
metric!(
    DISTANCE_DAY,
    "distance-day",
    [(LOINC, "41953-1", "Walking distance 24 hour Calculated")],
    "Distance",
    Activity,
    "m",
    "m"
);
metric!(
    DISTANCE,
    "distance",
    [(LOINC, "55412-1", "Exercise distance unspecified time")],
    "Exercise distance",
    Activity,
    "m",
    "m"
);

/// Builds the bundle for a data event, stamped with the current time.
pub fn bundle(event: &Event) -> Result<Value, FhirError> {
    bundle_at(event, Timestamp(chrono::Utc::now().fixed_offset()))
}

/// Builds the bundle for a data event with an explicit `Bundle.timestamp` (deterministic output).
pub fn bundle_at(event: &Event, timestamp: Timestamp) -> Result<Value, FhirError> {
    let data = data_event(event)?;
    let observations = observations(event)?;
    let mut ids = Hasher::new();
    ids.add(&data.user.user_id);
    ids.add(data.data.event_type());
    let entries: Vec<Value> = observations
        .into_iter()
        .map(|obs| {
            let id = obs["id"].as_str().unwrap_or_default().to_owned();
            ids.add(&id);
            json!({"fullUrl": format!("urn:uuid:{id}"), "resource": obs})
        })
        .collect();
    let mut b = Map::new();
    b.insert("resourceType".into(), json!("Bundle"));
    b.insert("id".into(), json!(ids.uuid()));
    b.insert("type".into(), json!("collection"));
    b.insert("timestamp".into(), json!(fhir_time(timestamp)));
    if !entries.is_empty() {
        b.insert("entry".into(), Value::Array(entries));
    }
    Ok(Value::Object(b))
}

/// The observations of a data event (the bundle's resources, in order).
pub fn observations(event: &Event) -> Result<Vec<Value>, FhirError> {
    let data = data_event(event)?;
    let mut out = Out {
        user: &data.user,
        event_type: data.data.event_type(),
        obs: Vec::new(),
    };
    match &data.data {
        DataPayload::Activity(items) => items.iter().for_each(|a| out.activity(a)),
        DataPayload::Sleep(items) => items.iter().for_each(|s| out.sleep(s)),
        DataPayload::Daily(items) => items.iter().for_each(|d| out.daily(d)),
        DataPayload::Body(items) => items.iter().for_each(|b| out.body(b)),
        DataPayload::Menstruation(_) | DataPayload::Nutrition(_) => {
            return Err(FhirError::NotApplicable(data.data.event_type().to_owned()));
        }
    }
    Ok(out.obs)
}

fn data_event(event: &Event) -> Result<&DataEvent, FhirError> {
    match event {
        Event::Data(d)
            if !matches!(
                d.data,
                DataPayload::Menstruation(_) | DataPayload::Nutrition(_)
            ) =>
        {
            Ok(d)
        }
        other => Err(FhirError::NotApplicable(other.event_type().to_owned())),
    }
}

/// FHIR `dateTime`/`instant`: whole seconds plus significant fraction digits, `Z` for UTC.
fn fhir_time(t: Timestamp) -> String {
    let nanos = t.0.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return t.0.to_rfc3339_opts(SecondsFormat::Secs, true);
    }
    let full = t.0.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // Split `...SS.fffffffff<offset>` and trim trailing zeros of the fraction.
    let dot = full.find('.').unwrap_or(full.len());
    let frac_end = dot + 10;
    let (head, tail) = full.split_at(frac_end.min(full.len()));
    format!("{}{}", head.trim_end_matches('0'), tail)
}

fn quantity(value: f64, metric: &Metric) -> Value {
    let v = if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    };
    json!({"value": v, "unit": metric.unit_display, "system": UCUM, "code": metric.unit})
}

/// 128-bit FNV-1a (two 64-bit lanes with different offsets), formatted as a UUIDv8.
struct Hasher([u64; 2]);

impl Hasher {
    fn new() -> Self {
        Hasher([0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142])
    }
    fn add(&mut self, s: &str) {
        for b in s.bytes().chain(std::iter::once(0xff)) {
            for lane in &mut self.0 {
                *lane ^= u64::from(b);
                *lane = lane.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    fn uuid(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.0[0].to_be_bytes());
        bytes[8..].copy_from_slice(&self.0[1].to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

enum When {
    Period(Timestamp, Timestamp),
    At(Timestamp),
}

struct Item<'a> {
    key: String,
    start: Timestamp,
    end: Timestamp,
    device: &'a str,
}

impl<'a> Item<'a> {
    fn new(key: String, start: Timestamp, end: Timestamp, device: &'a Option<DeviceData>) -> Self {
        let device = device
            .as_ref()
            .and_then(|d| d.name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("Oura");
        Item {
            key,
            start,
            end,
            device,
        }
    }
}

struct Out<'a> {
    user: &'a TerraUser,
    event_type: &'static str,
    obs: Vec<Value>,
}

impl Out<'_> {
    fn push(&mut self, item: &Item<'_>, metric: &Metric, value: Option<f64>, when: When, n: usize) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        let mut h = Hasher::new();
        for part in [
            self.user.user_id.as_str(),
            self.event_type,
            &item.key,
            metric.key,
            &n.to_string(),
        ] {
            h.add(part);
        }
        let (cat_code, cat_display) = metric.category.code();
        let codings: Vec<Value> = metric
            .codings
            .iter()
            .map(|(system, code, display)| json!({"system": system, "code": code, "display": display}))
            .collect();
        let mut subject = Map::new();
        subject.insert(
            "reference".into(),
            json!(format!("Patient/{}", self.user.user_id)),
        );
        if let Some(r) = self.user.reference_id.as_deref().filter(|r| !r.is_empty()) {
            subject.insert(
                "identifier".into(),
                json!({"system": REFERENCE_ID_SYSTEM, "value": r}),
            );
        }
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("Observation"));
        o.insert("id".into(), json!(h.uuid()));
        o.insert("status".into(), json!("final"));
        o.insert(
            "category".into(),
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": cat_code, "display": cat_display}]}]),
        );
        o.insert(
            "code".into(),
            json!({"coding": codings, "text": metric.text}),
        );
        o.insert("subject".into(), Value::Object(subject));
        match when {
            When::Period(s, e) => o.insert(
                "effectivePeriod".into(),
                json!({"start": fhir_time(s), "end": fhir_time(e)}),
            ),
            When::At(t) => o.insert("effectiveDateTime".into(), json!(fhir_time(t))),
        };
        o.insert("device".into(), json!({"display": item.device}));
        o.insert("valueQuantity".into(), quantity(value, metric));
        self.obs.push(Value::Object(o));
    }

    fn summary(&mut self, item: &Item<'_>, metric: &Metric, value: Option<f64>) {
        self.push(item, metric, value, When::Period(item.start, item.end), 0);
    }

    fn heart(&mut self, item: &Item<'_>, hr: &Option<HeartRateData>) {
        let Some(hr) = hr else { return };
        if let Some(s) = &hr.summary {
            self.summary(item, &HEART_RATE_AVG, s.avg_hr_bpm);
            self.summary(item, &HEART_RATE_RESTING, s.resting_hr_bpm);
            self.summary(item, &HRV_RMSSD, s.avg_hrv_rmssd);
            self.summary(item, &HRV_SDNN, s.avg_hrv_sdnn);
        }
        let Some(d) = &hr.detailed else { return };
        for (i, s) in d.hr_samples.iter().flatten().enumerate() {
            if let Some(t) = s.timestamp {
                self.push(item, &HEART_RATE, s.bpm, When::At(t), i);
            }
        }
        for (i, s) in d.hrv_samples_rmssd.iter().flatten().enumerate() {
            if let Some(t) = s.timestamp {
                self.push(item, &HRV_RMSSD, s.hrv_rmssd, When::At(t), i + 1);
            }
        }
        for (i, s) in d.hrv_samples_sdnn.iter().flatten().enumerate() {
            if let Some(t) = s.timestamp {
                self.push(item, &HRV_SDNN, s.hrv_sdnn, When::At(t), i + 1);
            }
        }
    }

    fn oxygen(&mut self, item: &Item<'_>, ox: &Option<OxygenData>) {
        let Some(ox) = ox else { return };
        self.summary(item, &SPO2, ox.avg_saturation_percentage);
        for (i, s) in ox.saturation_samples.iter().flatten().enumerate() {
            let blood = !matches!(s.saturation_type, Some(t) if t != OxygenSaturationType::Blood);
            if let (Some(t), true) = (s.timestamp, blood) {
                self.push(item, &SPO2, s.percentage, When::At(t), i + 1);
            }
        }
    }

    fn activity(&mut self, a: &Activity) {
        let m = &a.metadata;
        let item = Item::new(
            m.summary_id.clone(),
            m.start_time,
            m.end_time,
            &a.device_data,
        );
        self.heart(&item, &a.heart_rate_data);
        self.oxygen(&item, &a.oxygen_data);
        if let Some(s) = a.distance_data.as_ref().and_then(|d| d.summary.as_ref()) {
            self.summary(&item, &STEPS, s.steps.map(|v| v as f64));
            self.summary(&item, &DISTANCE, s.distance_meters);
        }
        let kcal = a
            .calories_data
            .as_ref()
            .and_then(|c| c.total_burned_calories);
        self.summary(&item, &CALORIES, kcal);
    }

    fn sleep(&mut self, s: &Sleep) {
        let m = &s.metadata;
        let key = m
            .summary_id
            .clone()
            .unwrap_or_else(|| m.start_time.to_terra_string());
        let item = Item::new(key, m.start_time, m.end_time, &s.device_data);
        let asleep = s
            .sleep_durations_data
            .as_ref()
            .and_then(|d| d.asleep.as_ref());
        let asleep = asleep.and_then(|a| a.duration_asleep_state_seconds);
        self.summary(&item, &SLEEP_DURATION, asleep);
        self.heart(&item, &s.heart_rate_data);
        if let Some(r) = &s.respiration_data {
            let rr = r.breaths_data.as_ref().and_then(|b| b.avg_breaths_per_min);
            self.summary(&item, &RESPIRATORY_RATE, rr);
            let spo2 = r.oxygen_saturation_data.as_ref();
            self.summary(&item, &SPO2, spo2.and_then(|o| o.avg_saturation_percentage));
        }
        let delta = s.temperature_data.as_ref().and_then(|t| t.delta);
        self.summary(&item, &TEMPERATURE_DEVIATION, delta);
    }

    fn daily(&mut self, d: &Daily) {
        let m = &d.metadata;
        let item = Item::new(d.natural_key(), m.start_time, m.end_time, &d.device_data);
        if let Some(dist) = &d.distance_data {
            self.summary(&item, &STEPS_DAY, dist.steps.map(|v| v as f64));
            self.summary(&item, &DISTANCE_DAY, dist.distance_meters);
        }
        let kcal = d
            .calories_data
            .as_ref()
            .and_then(|c| c.total_burned_calories);
        self.summary(&item, &CALORIES, kcal);
        self.heart(&item, &d.heart_rate_data);
        self.oxygen(&item, &d.oxygen_data);
    }

    fn body(&mut self, b: &Body) {
        let m = &b.metadata;
        let item = Item::new(b.natural_key(), m.start_time, m.end_time, &b.device_data);
        let hr = b
            .heart_data
            .as_ref()
            .and_then(|h| h.heart_rate_data.clone());
        self.heart(&item, &hr);
        self.oxygen(&item, &b.oxygen_data);
        let measurements = b
            .measurements_data
            .as_ref()
            .and_then(|md| md.measurements.as_ref());
        for (i, s) in measurements.into_iter().flatten().enumerate() {
            let when = || match s.measurement_time {
                Some(t) => When::At(t),
                None => When::Period(item.start, item.end),
            };
            self.push(&item, &BODY_WEIGHT, s.weight_kg, when(), i);
            self.push(&item, &BODY_HEIGHT, s.height_cm, when(), i);
            self.push(&item, &BMI, s.bmi, when(), i);
            self.push(&item, &BODY_FAT, s.bodyfat_percentage, when(), i);
        }
        // Terra's `temperature_data.body_temperature_samples` is not modelled; read it from
        // the kept-verbatim extra keys.
        let samples = b
            .extra
            .get("temperature_data")
            .and_then(|t| t.get("body_temperature_samples"))
            .and_then(Value::as_array);
        for (i, s) in samples.into_iter().flatten().enumerate() {
            let t = s.get("timestamp").and_then(Value::as_str);
            let t = t.and_then(|t| Timestamp::parse(t).ok());
            let v = s.get("temperature_celsius").and_then(Value::as_f64);
            if let Some(t) = t {
                self.push(&item, &BODY_TEMPERATURE, v, When::At(t), i);
            }
        }
    }
}
