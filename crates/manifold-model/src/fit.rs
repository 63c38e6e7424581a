//! Garmin FIT encoder: one [`Activity`] becomes a FIT *activity* file, written by hand.
//!
//! Layout: 14-byte header (protocol 2.0, data size, `.FIT`, header CRC), then
//! `file_id` (type activity, manufacturer development), `device_info` (creator),
//! `event` timer start, one `record` per heart-rate sample (timestamp + heart_rate),
//! `event` timer stop, `lap`, `session`, `activity`, and the file CRC (FIT CRC-16 over
//! header and data). Definition messages are written before the first data message of each
//! shape; only fields with a value are defined.
//!
//! Units follow the FIT profile: timestamps are seconds since 1989-12-31T00:00:00Z,
//! times ×1000 (ms), distances ×100 (cm), calories in kcal, heart rate in bpm.
//! `local_timestamp` is the start time in the payload's own UTC offset.
//!
//! Records also carry `distance` (cumulative, ×100) where Terra's
//! `distance_data.detailed.distance_samples[]` (`timestamp`, `distance_meters`; not a typed
//! field of the model, read from the kept-verbatim `extra`) has a sample; records are merged
//! by timestamp.

use crate::enums::ActivityType;
use crate::{Activity, Timestamp};

/// Unix time of the FIT epoch, 1989-12-31T00:00:00Z.
pub const FIT_EPOCH_UNIX: i64 = 631_065_600;
/// FIT manufacturer `development`.
pub const MANUFACTURER_DEVELOPMENT: u16 = 255;
/// FIT profile version written in the header (21.32).
pub const PROFILE_VERSION: u16 = 2132;

/// Why an activity cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// A timestamp is before the FIT epoch or beyond the 32-bit FIT range.
    #[error("{field} `{value}` is outside the FIT time range (1989-12-31 .. 2126)")]
    TimeOutOfRange {
        /// Which timestamp.
        field: &'static str,
        /// The rejected value.
        value: String,
    },
    /// `metadata.end_time` is before `metadata.start_time`.
    #[error("activity ends ({end}) before it starts ({start})")]
    EndBeforeStart {
        /// `metadata.start_time`
        start: String,
        /// `metadata.end_time`
        end: String,
    },
    /// The file would exceed the FIT 32-bit data size.
    #[error("activity too large for a FIT file")]
    TooLarge,
}

/// FIT CRC-16 of `bytes`, continuing from `crc` (start with 0).
pub fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    const TABLE: [u16; 16] = [
        0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401, 0xA001, 0x6C00, 0x7800,
        0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
    ];
    for &b in bytes {
        let tmp = TABLE[usize::from(crc & 0xF)];
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ TABLE[usize::from(b & 0xF)];
        let tmp = TABLE[usize::from(crc & 0xF)];
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ TABLE[usize::from(b >> 4)];
    }
    crc
}

/// FIT timestamp (seconds since the FIT epoch) of `t`.
pub fn fit_time(t: Timestamp) -> Option<u32> {
    let secs = t.0.timestamp() - FIT_EPOCH_UNIX;
    // 0xFFFFFFFF is the invalid marker; values below 0x10000000 are still absolute times
    // when written in date_time fields of an activity file.
    u32::try_from(secs).ok().filter(|&s| s != u32::MAX)
}

fn fit_time_field(field: &'static str, t: Timestamp) -> Result<u32, FitError> {
    fit_time(t).ok_or_else(|| FitError::TimeOutOfRange {
        field,
        value: t.to_terra_string(),
    })
}

/// FIT `sport` and `sub_sport` for a Terra activity type (generic when there is no
/// reasonable match).
pub fn sport(t: ActivityType) -> (u8, u8) {
    use ActivityType as A;
    match t {
        A::Running | A::Jogging | A::RunningOnSand => (1, 0),
        A::TreadmillRunning | A::Treadmill => (1, 1),
        A::Biking | A::UtilityBiking | A::Handbiking => (2, 0),
        A::RoadBiking => (2, 7),
        A::MountainBiking => (2, 8),
        A::Spinning => (2, 5),
        A::StationaryBiking => (2, 6),
        A::Elliptical => (4, 15),
        A::StairClimbingMachine => (4, 16),
        A::Swimming => (5, 0),
        A::SwimmingSwimmingPool => (5, 17),
        A::SwimmingOpenWater => (5, 18),
        A::Basketball => (6, 0),
        A::EnglishFootball => (7, 0),
        A::Tennis => (8, 0),
        A::AmericanFootball => (9, 0),
        A::StrengthTraining
        | A::Weightlifting
        | A::Calisthenics
        | A::CircuitTraining
        | A::KettlebellTraining
        | A::Crossfit
        | A::Hiit
        | A::IntervalTraining
        | A::CardioTraining => (10, 0),
        A::Walking | A::WalkingFitness | A::NordicWalking | A::WalkingStroller => (11, 0),
        A::WalkingTreadmill => (11, 1),
        A::CrossCountrySkiing | A::BackCountrySkiing => (12, 0),
        A::DownhillSkiing | A::Skiing => (13, 0),
        A::Snowboarding => (14, 0),
        A::Rowing => (15, 0),
        A::RowingMachine => (15, 14),
        A::Hiking => (17, 0),
        A::Triathlon => (18, 0),
        A::Golf => (25, 0),
        A::HorsebackRiding => (27, 0),
        A::RockClimbing => (31, 0),
        A::Sailing => (32, 0),
        A::IceSkating => (33, 0),
        A::Snowshoeing => (35, 0),
        A::StandUpPaddleboarding => (37, 0),
        A::Surfing => (38, 0),
        A::Wakeboarding => (39, 0),
        A::Kayaking => (41, 0),
        A::Windsurfing => (43, 0),
        A::Kitesurfing => (44, 0),
        A::Boxing => (47, 0),
        _ => (0, 0),
    }
}

// Base types.
const ENUM: u8 = 0x00;
const UINT8: u8 = 0x02;
const STRING: u8 = 0x07;
const UINT16: u8 = 0x84;
const UINT32: u8 = 0x86;

/// One field of a data message: number, base type and little-endian bytes.
struct Field {
    num: u8,
    base: u8,
    bytes: Vec<u8>,
}

fn u8f(num: u8, v: u8) -> Field {
    Field {
        num,
        base: UINT8,
        bytes: vec![v],
    }
}
fn enumf(num: u8, v: u8) -> Field {
    Field {
        num,
        base: ENUM,
        bytes: vec![v],
    }
}
fn u16f(num: u8, v: u16) -> Field {
    Field {
        num,
        base: UINT16,
        bytes: v.to_le_bytes().to_vec(),
    }
}
fn u32f(num: u8, v: u32) -> Field {
    Field {
        num,
        base: UINT32,
        bytes: v.to_le_bytes().to_vec(),
    }
}
fn stringf(num: u8, s: &str, size: usize) -> Field {
    let mut bytes: Vec<u8> = s.bytes().take(size - 1).collect();
    bytes.resize(size, 0);
    Field {
        num,
        base: STRING,
        bytes,
    }
}

/// A definition: global message number and `(field number, size, base type)` per field.
type Definition = (u16, Vec<(u8, u8, u8)>);

#[derive(Default)]
struct Writer {
    data: Vec<u8>,
    /// Last definition written per local message type: (global, [(num, size, base)]).
    defs: Vec<Option<Definition>>,
}

impl Writer {
    fn message(&mut self, local: u8, global: u16, fields: &[Field]) {
        let shape: Vec<(u8, u8, u8)> = fields
            .iter()
            .map(|f| (f.num, f.bytes.len() as u8, f.base))
            .collect();
        let slot = usize::from(local);
        if self.defs.len() <= slot {
            self.defs.resize(slot + 1, None);
        }
        let def = Some((global, shape));
        if self.defs[slot] != def {
            self.data.push(0x40 | local);
            self.data.push(0); // reserved
            self.data.push(0); // little endian
            self.data.extend_from_slice(&global.to_le_bytes());
            self.data.push(fields.len() as u8);
            for f in fields {
                self.data
                    .extend_from_slice(&[f.num, f.bytes.len() as u8, f.base]);
            }
            self.defs[slot] = def;
        }
        self.data.push(local);
        for f in fields {
            self.data.extend_from_slice(&f.bytes);
        }
    }

    fn finish(self) -> Result<Vec<u8>, FitError> {
        let size = u32::try_from(self.data.len()).map_err(|_| FitError::TooLarge)?;
        let mut out = Vec::with_capacity(self.data.len() + 16);
        out.push(14);
        out.push(0x20); // protocol 2.0
        out.extend_from_slice(&PROFILE_VERSION.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(b".FIT");
        let hcrc = crc16(0, &out);
        out.extend_from_slice(&hcrc.to_le_bytes());
        out.extend_from_slice(&self.data);
        let crc = crc16(0, &out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}

// Global message numbers.
const FILE_ID: u16 = 0;
const SESSION: u16 = 18;
const LAP: u16 = 19;
const RECORD: u16 = 20;
const EVENT: u16 = 21;
const DEVICE_INFO: u16 = 23;
const ACTIVITY: u16 = 34;

// Common field numbers.
const TIMESTAMP: u8 = 253;
const MESSAGE_INDEX: u8 = 254;

fn scaled_u32(v: Option<f64>, scale: f64) -> Option<u32> {
    let v = (v? * scale).round();
    (v.is_finite() && v >= 0.0 && v < f64::from(u32::MAX)).then_some(v as u32)
}

fn bpm(v: Option<f64>) -> Option<u8> {
    let v = v?.round();
    (v.is_finite() && (0.0..255.0).contains(&v)).then_some(v as u8)
}

/// `(FIT time, distance ×100)` of the untyped `distance_data.detailed.distance_samples`.
fn distance_samples(activity: &Activity) -> Result<Vec<(u32, u32)>, FitError> {
    let samples = activity
        .distance_data
        .as_ref()
        .and_then(|d| d.extra.get("detailed"))
        .and_then(|d| d.get("distance_samples"))
        .and_then(serde_json::Value::as_array);
    let mut out = Vec::new();
    for s in samples.into_iter().flatten() {
        let t = s.get("timestamp").and_then(serde_json::Value::as_str);
        let t = t.and_then(|t| Timestamp::parse(t).ok());
        let d = scaled_u32(
            s.get("distance_meters").and_then(serde_json::Value::as_f64),
            100.0,
        );
        if let (Some(t), Some(d)) = (t, d) {
            out.push((fit_time_field("distance_samples[].timestamp", t)?, d));
        }
    }
    Ok(out)
}

/// Encodes `activity` as a FIT activity file.
///
/// Errors (never panics) when the start or end time, or a heart-rate sample's time, is
/// outside the FIT time range, or when the activity ends before it starts. Heart-rate
/// samples without a timestamp or with an out-of-range bpm are skipped; the rest are
/// written in time order.
pub fn encode_activity(activity: &Activity) -> Result<Vec<u8>, FitError> {
    let m = &activity.metadata;
    let start = fit_time_field("metadata.start_time", m.start_time)?;
    let end = fit_time_field("metadata.end_time", m.end_time)?;
    if end < start {
        return Err(FitError::EndBeforeStart {
            start: m.start_time.to_terra_string(),
            end: m.end_time.to_terra_string(),
        });
    }
    let offset = i64::from(m.start_time.offset().local_minus_utc());
    let local_start = u32::try_from(i64::from(start) + offset).ok();

    let hr = activity.heart_rate_data.as_ref();
    let mut samples: Vec<(u32, u8)> = Vec::new();
    for s in hr
        .and_then(|h| h.detailed.as_ref())
        .and_then(|d| d.hr_samples.as_ref())
        .into_iter()
        .flatten()
    {
        let (Some(t), Some(b)) = (s.timestamp, bpm(s.bpm)) else {
            continue;
        };
        samples.push((fit_time_field("hr_samples[].timestamp", t)?, b));
    }
    samples.sort_by_key(|&(t, _)| t);

    let summary = hr.and_then(|h| h.summary.as_ref());
    let avg_hr = bpm(summary.and_then(|s| s.avg_hr_bpm)).or_else(|| {
        let n = samples.len() as u64;
        let sum: u64 = samples.iter().map(|&(_, b)| u64::from(b)).sum();
        (n > 0).then(|| ((sum + n / 2) / n) as u8)
    });
    let max_hr =
        bpm(summary.and_then(|s| s.max_hr_bpm)).or_else(|| samples.iter().map(|&(_, b)| b).max());

    let elapsed_ms = (end - start).saturating_mul(1000);
    let active = activity
        .active_durations_data
        .as_ref()
        .and_then(|a| a.activity_seconds);
    let timer_ms = scaled_u32(active, 1000.0)
        .filter(|&t| t <= elapsed_ms)
        .unwrap_or(elapsed_ms);
    let distance_cm = scaled_u32(
        activity
            .distance_data
            .as_ref()
            .and_then(|d| d.summary.as_ref())
            .and_then(|s| s.distance_meters),
        100.0,
    );
    let kcal = activity
        .calories_data
        .as_ref()
        .and_then(|c| c.total_burned_calories)
        .map(|c| c.round())
        .filter(|c| (0.0..65535.0).contains(c))
        .map(|c| c as u16);
    let (sport, sub_sport) = sport(m.activity_type);
    let device_name = activity
        .device_data
        .as_ref()
        .and_then(|d| d.name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("Oura");

    let mut w = Writer::default();
    w.message(
        0,
        FILE_ID,
        &[
            enumf(0, 4), // type: activity
            u16f(1, MANUFACTURER_DEVELOPMENT),
            u16f(2, 0), // product
            u32f(4, start),
        ],
    );
    w.message(
        1,
        DEVICE_INFO,
        &[
            u32f(TIMESTAMP, start),
            u8f(0, 0), // device_index: creator
            u16f(2, MANUFACTURER_DEVELOPMENT),
            stringf(27, device_name, 20), // product_name
        ],
    );
    let timer_event = |t: u32, event_type: u8| {
        [
            u32f(TIMESTAMP, t),
            enumf(0, 0), // event: timer
            enumf(1, event_type),
        ]
    };
    w.message(2, EVENT, &timer_event(start, 0)); // start
    let mut records: std::collections::BTreeMap<u32, (Option<u8>, Option<u32>)> =
        samples.iter().map(|&(t, b)| (t, (Some(b), None))).collect();
    for (t, d) in distance_samples(activity)? {
        records.entry(t).or_default().1 = Some(d);
    }
    for (&t, &(b, d)) in &records {
        let mut f = vec![u32f(TIMESTAMP, t)];
        f.extend(b.map(|b| u8f(3, b)));
        f.extend(d.map(|d| u32f(5, d)));
        w.message(3, RECORD, &f);
    }
    w.message(2, EVENT, &timer_event(end, 4)); // stop_all

    // Fields shared by lap and session, after their own field numbers.
    let totals = |hr_avg: u8, hr_max: u8| {
        let mut f = vec![
            u32f(TIMESTAMP, end),
            u32f(2, start),
            u32f(7, elapsed_ms),
            u32f(8, timer_ms),
        ];
        if let Some(d) = distance_cm {
            f.push(u32f(9, d));
        }
        if let Some(k) = kcal {
            f.push(u16f(11, k));
        }
        if let Some(a) = avg_hr {
            f.push(u8f(hr_avg, a));
        }
        if let Some(x) = max_hr {
            f.push(u8f(hr_max, x));
        }
        f
    };
    let mut lap = totals(15, 16);
    lap.extend([
        enumf(0, 9), // event: lap
        enumf(1, 1), // event_type: stop
        u16f(MESSAGE_INDEX, 0),
        enumf(25, sport),
    ]);
    w.message(4, LAP, &lap);
    let mut session = totals(16, 17);
    session.extend([
        enumf(0, 8), // event: session
        enumf(1, 1), // event_type: stop
        u16f(MESSAGE_INDEX, 0),
        enumf(5, sport),
        enumf(6, sub_sport),
        u16f(25, 0), // first_lap_index
        u16f(26, 1), // num_laps
    ]);
    w.message(5, SESSION, &session);
    let mut act = vec![
        u32f(TIMESTAMP, end),
        u32f(0, timer_ms),
        u16f(1, 1),   // num_sessions
        enumf(2, 0),  // type: manual
        enumf(3, 26), // event: activity
        enumf(4, 1),  // event_type: stop
    ];
    if let Some(l) = local_start.and_then(|l| l.checked_add(end - start)) {
        act.push(u32f(5, l));
    }
    w.message(6, ACTIVITY, &act);
    w.finish()
}
