//! Deterministic, plausible document generation per `(seed, user, data type, day, index, revision)`.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::rng::{Rng, det_uuid};
use crate::types::DocType;

/// A simulated Oura account.
#[derive(Debug, Clone, Serialize)]
pub struct UserProfile {
    /// 0-based position in the simulator's user list.
    pub index: usize,
    /// The Oura user id (`personal_info.id`, webhook `user_id`).
    pub id: String,
    pub email: String,
    pub age: i64,
    pub weight: f64,
    pub height: f64,
    pub biological_sex: String,
    /// The user's UTC offset in seconds (local datetimes carry it).
    pub utc_offset_secs: i32,
    /// Resting heart rate (bpm), drives HR samples.
    pub resting_hr: i64,
    /// 0..1, drives activity volume.
    pub fitness: f64,
}

const OFFSETS: [i32; 8] = [
    -8 * 3600,
    -5 * 3600,
    0,
    3600,
    2 * 3600,
    3 * 3600 + 1800,
    9 * 3600,
    -3 * 3600,
];

pub fn make_user(seed: u64, index: usize) -> UserProfile {
    let mut r = Rng::from_key(&format!("{seed}/user/{index}"));
    let id = det_uuid(&format!("{seed}/user-id/{index}"));
    let female = r.chance(0.5);
    let height: f64 = if female {
        r.normal(1.66, 0.06)
    } else {
        r.normal(1.79, 0.07)
    };
    let bmi = r.rangef(20.0, 28.0);
    UserProfile {
        index,
        email: format!("sim.user{index}.{}@example.com", &id[..8]),
        id,
        age: r.range(21, 68),
        weight: round_to(bmi * height * height, 1),
        height: round_to(height, 2),
        biological_sex: if female { "female" } else { "male" }.to_string(),
        utc_offset_secs: *r.pick(&OFFSETS),
        resting_hr: r.range(46, 66),
        fitness: r.rangef(0.2, 0.95),
    }
}

impl UserProfile {
    pub fn tz(&self) -> FixedOffset {
        FixedOffset::east_opt(self.utc_offset_secs).expect("valid offset")
    }
    /// Local datetime `secs` seconds after local midnight of `day`.
    pub fn local(&self, day: NaiveDate, secs: i64) -> DateTime<FixedOffset> {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
        self.tz()
            .from_local_datetime(&midnight)
            .single()
            .expect("fixed offset is unambiguous")
            + Duration::seconds(secs)
    }
}

pub fn round_to(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

/// `2022-07-12T01:05:14-07:00` (UTC renders as `+00:00`).
pub fn fmt_dt(dt: DateTime<FixedOffset>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Sample timestamps: `2022-07-12T01:05:14.000-07:00`.
pub fn fmt_sample_ts(dt: DateTime<FixedOffset>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

pub fn fmt_utc(dt: DateTime<Utc>) -> String {
    fmt_dt(dt.fixed_offset())
}

/// A stored document's metadata; the body is regenerated on demand from these fields.
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: String,
    pub day: NaiveDate,
    pub index: u32,
    pub rev: u32,
}

pub fn doc_id(seed: u64, user: &UserProfile, t: DocType, day: NaiveDate, index: u32) -> String {
    det_uuid(&format!("{seed}/{}/{t:?}/{day}/{index}", user.id))
}

/// A time-series row (heartrate, ring_battery_level).
#[derive(Debug, Clone)]
pub struct Row {
    pub ts_ms: i64,
    pub body: Value,
}

/// How many documents of type `t` the user has on `day` initially.
pub fn initial_count(seed: u64, user: &UserProfile, t: DocType, day: NaiveDate) -> u32 {
    let mut r = Rng::from_key(&format!("{seed}/{}/{t:?}/{day}/count", user.id));
    match t {
        DocType::Sleep => 1 + u32::from(r.chance(0.25)),
        DocType::Workout => {
            if r.chance(0.35 + 0.4 * user.fitness) {
                1 + u32::from(r.chance(0.2))
            } else {
                0
            }
        }
        DocType::Session => u32::from(r.chance(0.3)),
        DocType::Tag => u32::from(r.chance(0.15)),
        DocType::EnhancedTag => r.range(0, 2).max(0) as u32 * u32::from(r.chance(0.5)),
        DocType::RestModePeriod => u32::from(r.chance(0.04)),
        DocType::Vo2Max => {
            u32::from(day.num_days_from_ce().rem_euclid(7) as usize == user.index % 7)
        }
        DocType::RingConfiguration => 0,
        _ => 1,
    }
}

/// Generate one document body. The `id` depends on `(seed, user, type, day, index)` only; the
/// values additionally on `rev` (so a simulated "update" keeps the id but changes values).
pub fn gen_body(seed: u64, user: &UserProfile, doc: &Doc, t: DocType) -> Value {
    let (day, index, rev) = (doc.day, doc.index, doc.rev);
    let id = doc.id.clone();
    let mut r = Rng::from_key(&format!("{seed}/{}/{t:?}/{day}/{index}/r{rev}", user.id));
    let (_sort, mut body) = match t {
        DocType::DailyActivity => gen_daily_activity(&mut r, user, day),
        DocType::DailyReadiness => {
            let ts = user.local(day, 0);
            let mut v = readiness(&mut r);
            v["timestamp"] = json!(fmt_dt(ts));
            (ts.timestamp(), v)
        }
        DocType::DailySleep => {
            let ts = user.local(day, 0);
            let c = |r: &mut Rng, lo, hi| json!(r.range(lo, hi));
            let contributors = json!({
                "deep_sleep": c(&mut r, 40, 100),
                "efficiency": c(&mut r, 60, 99),
                "latency": c(&mut r, 50, 99),
                "rem_sleep": c(&mut r, 40, 100),
                "restfulness": c(&mut r, 45, 95),
                "timing": c(&mut r, 30, 100),
                "total_sleep": c(&mut r, 50, 100),
            });
            let score = r.range(55, 92);
            (
                ts.timestamp(),
                json!({"contributors": contributors, "score": score, "timestamp": fmt_dt(ts)}),
            )
        }
        DocType::Sleep => gen_sleep(&mut r, user, day, index),
        DocType::SleepTime => {
            let status = *r.pick(&[
                "optimal_found",
                "optimal_found",
                "not_enough_nights",
                "not_enough_recent_nights",
                "bad_sleep_quality",
                "only_recommended_found",
            ]);
            let start = r.range(-7, 2) * 900;
            let rec = if status == "optimal_found" || status == "only_recommended_found" {
                json!(r.pick(&[
                    "improve_efficiency",
                    "earlier_bedtime",
                    "later_bedtime",
                    "earlier_wake_up_time",
                    "later_wake_up_time",
                    "follow_optimal_bedtime",
                ]))
            } else {
                Value::Null
            };
            let optimal = if status == "optimal_found" {
                json!({"day_tz": user.utc_offset_secs, "start_offset": start, "end_offset": start + 3600})
            } else {
                Value::Null
            };
            (
                user.local(day, 0).timestamp(),
                json!({"optimal_bedtime": optimal, "recommendation": rec, "status": status}),
            )
        }
        DocType::RestModePeriod => {
            let start = user.local(day, r.range(7 * 3600, 20 * 3600));
            let len_days = r.range(1, 3);
            let end = start + Duration::hours(len_days * 24 + r.range(-5, 5));
            let tags = [
                "tag_generic_cold",
                "tag_generic_flu",
                "tag_sleep_alcohol",
                "tag_generic_fever",
            ];
            let episodes: Vec<Value> = (0..r.range(1, 3))
                .map(|k| {
                    json!({"tags": [r.pick(&tags)], "timestamp": fmt_dt(start + Duration::hours(k * 20))})
                })
                .collect();
            (
                start.timestamp(),
                json!({
                    "start_day": day.to_string(),
                    "start_time": fmt_dt(start),
                    "end_day": end.date_naive().to_string(),
                    "end_time": fmt_dt(end),
                    "episodes": episodes,
                }),
            )
        }
        DocType::DailyStress => {
            let stress = r.range(0, 40) * 900;
            let rec = r.range(0, 30) * 900;
            let summary = if stress > rec + 9000 {
                "stressful"
            } else if rec > stress + 3600 {
                "restored"
            } else {
                "normal"
            };
            (
                user.local(day, 0).timestamp(),
                json!({"stress_high": stress, "recovery_high": rec, "day_summary": summary}),
            )
        }
        DocType::DailyResilience => {
            let sr = round_to(r.rangef(20.0, 95.0), 1);
            let dr = round_to(r.rangef(10.0, 80.0), 1);
            let st = round_to(r.rangef(15.0, 90.0), 1);
            let avg = (sr + dr + st) / 3.0;
            let level = match avg {
                a if a < 30.0 => "limited",
                a if a < 45.0 => "adequate",
                a if a < 60.0 => "solid",
                a if a < 75.0 => "strong",
                _ => "exceptional",
            };
            (
                user.local(day, 0).timestamp(),
                json!({"contributors": {"sleep_recovery": sr, "daytime_recovery": dr, "stress": st}, "level": level}),
            )
        }
        DocType::DailySpo2 => (
            user.local(day, 0).timestamp(),
            json!({
                "spo2_percentage": {"average": round_to(r.rangef(94.5, 99.2), 3)},
                "breathing_disturbance_index": r.range(0, 25),
            }),
        ),
        DocType::DailyCardiovascularAge => (
            user.local(day, 0).timestamp(),
            json!({
                "vascular_age": (user.age + r.range(-6, 6)).clamp(18, 100),
                "pulse_wave_velocity": round_to(r.rangef(5.8, 10.5), 2),
            }),
        ),
        DocType::Vo2Max => {
            let ts = user.local(day, 0);
            let base = 30.0 + 22.0 * user.fitness - (user.age as f64 - 20.0) * 0.2;
            (
                ts.timestamp(),
                json!({"timestamp": fmt_dt(ts), "vo2_max": (base + r.normal(0.0, 1.5)).round() as i64}),
            )
        }
        DocType::Workout => gen_workout(&mut r, user, day, index),
        DocType::Session => gen_session(&mut r, user, day),
        DocType::Tag => {
            let ts = user.local(day, r.range(7 * 3600, 22 * 3600));
            let (code, text) = *r.pick(&[
                ("tag_generic_nocaffeine", "No coffee today"),
                ("tag_generic_caffeine", "Need coffee"),
                ("tag_sleep_alcohol", "Wine with dinner"),
                ("tag_generic_sauna", "Sauna"),
            ]);
            (
                ts.timestamp(),
                json!({"text": text, "timestamp": fmt_dt(ts), "tags": [code]}),
            )
        }
        DocType::EnhancedTag => gen_enhanced_tag(&mut r, user, day),
        DocType::RingConfiguration => {
            let set_up = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
                + Duration::seconds(r.range(8 * 3600, 20 * 3600));
            let color = *r.pick(&[
                "brushed_silver",
                "glossy_black",
                "glossy_gold",
                "silver",
                "stealth_black",
                "titanium",
                "rose",
                "midnight",
            ]);
            let hw = if index == 0 {
                *r.pick(&["gen3", "gen3", "gen4"])
            } else {
                "gen4"
            };
            (
                set_up.timestamp(),
                json!({
                    "color": color,
                    "design": r.pick(&["heritage", "horizon", "balance"]),
                    "firmware_version": format!("2.{}.{}", r.range(8, 11), r.range(0, 40) + i64::from(rev)),
                    "hardware_type": hw,
                    "set_up_at": fmt_utc(set_up),
                    "size": r.range(6, 13),
                }),
            )
        }
    };
    let obj = body.as_object_mut().expect("object");
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(id));
    if !matches!(
        t,
        DocType::RestModePeriod | DocType::EnhancedTag | DocType::RingConfiguration
    ) {
        out.insert("day".into(), json!(day.to_string()));
    }
    out.append(obj);
    Value::Object(out)
}

fn readiness(r: &mut Rng) -> Value {
    let c = |r: &mut Rng, lo, hi| json!(r.range(lo, hi));
    let pda = if r.chance(0.15) {
        Value::Null
    } else {
        c(r, 40, 100)
    };
    let hrv = if r.chance(0.1) {
        Value::Null
    } else {
        c(r, 30, 100)
    };
    json!({
        "contributors": {
            "activity_balance": c(r, 40, 100),
            "body_temperature": c(r, 60, 100),
            "hrv_balance": hrv,
            "previous_day_activity": pda,
            "previous_night": c(r, 35, 100),
            "recovery_index": c(r, 30, 100),
            "resting_heart_rate": c(r, 40, 100),
            "sleep_balance": c(r, 45, 100),
            "sleep_regularity": c(r, 40, 100),
        },
        "score": r.range(55, 95),
        "temperature_deviation": round_to(r.normal(0.0, 0.25), 2),
        "temperature_trend_deviation": round_to(r.normal(0.0, 0.15), 2),
    })
}

fn gen_sleep(r: &mut Rng, user: &UserProfile, day: NaiveDate, index: u32) -> (i64, Value) {
    let nap = index > 0;
    // The shape of a period (its kind, whether the ring recorded heart rate) is fixed for its id:
    // an "update" changes values, it never turns a sleep into a rest period or drops a field.
    let mut shape = Rng::from_key(&format!("{}/{day}/{index}/sleep-shape", user.id));
    let kind = if nap {
        *shape.pick(&["sleep", "sleep", "rest"])
    } else {
        "long_sleep"
    };
    let no_heart_rate = nap && shape.chance(0.3);
    let (start, tib) = if nap {
        (
            user.local(day, 13 * 3600 + r.range(0, 3 * 3600)),
            r.range(20 * 60, 75 * 60),
        )
    } else {
        (
            user.local(day - Duration::days(1), 22 * 3600 + r.range(0, 150 * 60)),
            r.range(6 * 3600 + 1800, 9 * 3600),
        )
    };
    let end = start + Duration::seconds(tib);
    let n5 = ((tib + 299) / 300) as usize;
    // Hypnogram: 1 deep, 2 light, 3 REM, 4 awake.
    let mut phases: Vec<u8> = Vec::with_capacity(n5);
    let latency_slots = r.range(1, if nap { 2 } else { 5 }) as usize;
    phases.extend(std::iter::repeat_n(b'4', latency_slots.min(n5)));
    let mut cycle = 0i64;
    while phases.len() < n5.saturating_sub(1) {
        let light = r.range(4, 8);
        let deep = (r.range(4, 9) - cycle * 2).max(0);
        let light2 = r.range(2, 4);
        let rem = (r.range(1, 2) + cycle).min(5);
        let awake = if r.chance(0.5) { r.range(1, 3) } else { 0 };
        for (ch, n) in [
            (b'2', light),
            (b'1', deep),
            (b'2', light2),
            (b'3', rem),
            (b'4', awake),
        ] {
            for _ in 0..n {
                if phases.len() < n5 - 1 {
                    phases.push(ch);
                }
            }
        }
        cycle += 1;
    }
    phases.push(b'4');
    phases.truncate(n5);
    let count = |c: u8| phases.iter().filter(|&&p| p == c).count() as i64 * 300;
    let (deep, light, rem) = (count(b'1'), count(b'2'), count(b'3'));
    let total = deep + light + rem;
    let awake_time = tib - total;
    let latency = (latency_slots as i64 * 300 - r.range(0, 240)).max(60);
    let n30 = ((tib + 29) / 30) as usize;
    let phase_30: String = (0..n30)
        .map(|j| phases[(j / 10).min(n5 - 1)] as char)
        .collect();
    let movement: String = (0..n30)
        .map(|j| {
            let p = phases[(j / 10).min(n5 - 1)];
            let x = r.f64();
            if p == b'4' {
                if x < 0.4 {
                    '2'
                } else if x < 0.8 {
                    '3'
                } else {
                    '4'
                }
            } else if x < 0.86 {
                '1'
            } else if x < 0.97 {
                '2'
            } else {
                '3'
            }
        })
        .collect();
    let phase_5: String = phases.iter().map(|&c| c as char).collect();
    let n_samples = (tib / 300) as usize;
    let (heart_rate, hrv, avg_hr, low_hr, avg_hrv) = if no_heart_rate {
        (
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        )
    } else {
        let mut hr_items = Vec::with_capacity(n_samples);
        let mut hrv_items = Vec::with_capacity(n_samples);
        let (mut sum, mut cnt, mut min, mut hsum) = (0.0f64, 0.0f64, f64::MAX, 0.0f64);
        for k in 0..n_samples {
            if k == 0 || r.chance(0.03) {
                hr_items.push(Value::Null);
                hrv_items.push(Value::Null);
                continue;
            }
            let x = k as f64 / n_samples.max(1) as f64;
            let awake = phases[k.min(n5 - 1)] == b'4';
            let hr = (user.resting_hr as f64 + 30.0 * (x - 0.55).powi(2) + r.normal(0.0, 1.5)
                - 3.0
                + if awake { 7.0 } else { 0.0 })
            .round();
            let hv = (95.0 - (hr - user.resting_hr as f64) * 3.0 + r.normal(0.0, 8.0))
                .clamp(15.0, 160.0)
                .round();
            sum += hr;
            hsum += hv;
            cnt += 1.0;
            min = min.min(hr);
            hr_items.push(json!(hr));
            hrv_items.push(json!(hv));
        }
        let ts = fmt_sample_ts(start);
        (
            json!({"interval": 300.0, "items": hr_items, "timestamp": ts}),
            json!({"interval": 300.0, "items": hrv_items, "timestamp": ts}),
            json!((sum / cnt.max(1.0) * 8.0).round() / 8.0),
            json!(min as i64),
            json!((hsum / cnt.max(1.0)).round() as i64),
        )
    };
    let typ = kind;
    let efficiency = ((total * 100) as f64 / tib as f64)
        .round()
        .clamp(1.0, 100.0) as i64;
    let body = json!({
        "average_breath": round_to((r.normal(14.0, 1.0) * 8.0).round() / 8.0, 3),
        "average_heart_rate": avg_hr,
        "average_hrv": avg_hrv,
        "awake_time": awake_time,
        "bedtime_end": fmt_dt(end),
        "bedtime_start": fmt_dt(start),
        "deep_sleep_duration": deep,
        "efficiency": efficiency,
        "heart_rate": heart_rate,
        "hrv": hrv,
        "latency": latency,
        "light_sleep_duration": light,
        "low_battery_alert": false,
        "lowest_heart_rate": low_hr,
        "movement_30_sec": movement,
        "period": index,
        "readiness": readiness(r),
        "readiness_score_delta": if nap { r.range(0, 3) } else { 0 },
        "rem_sleep_duration": rem,
        "restless_periods": r.range(tib / 150, tib / 60),
        "sleep_phase_5_min": phase_5,
        "sleep_phase_30_sec": phase_30,
        "app_sleep_phase_5_min": phase_5,
        "sleep_score_delta": if nap { r.range(0, 4) } else { 0 },
        "sleep_algorithm_version": "v2",
        "sleep_analysis_reason": "foreground_sleep_analysis",
        "time_in_bed": tib,
        "total_sleep_duration": total,
        "type": typ,
        "ring_id": null,
    });
    (start.timestamp(), body)
}

fn gen_daily_activity(r: &mut Rng, user: &UserProfile, day: NaiveDate) -> (i64, Value) {
    let start = user.local(day, 4 * 3600);
    // Minute-level MET from 04:00 local for 24 h.
    let wake = r.range(150, 240) as usize; // 06:30–08:00
    let bed = r.range(1080, 1230) as usize; // 22:00–00:30
    let mut met = vec![0.0f64; 1440];
    let mut asleep = vec![false; 1440];
    let mut nonwear = vec![false; 1440];
    for (m, v) in met.iter_mut().enumerate() {
        if m < wake || m >= bed {
            *v = r.rangef(0.9, 1.0);
            asleep[m] = true;
        } else {
            *v = r.rangef(1.05, 1.45);
        }
    }
    let bout = |r: &mut Rng, met: &mut [f64], len: (i64, i64), lvl: (f64, f64)| {
        let l = r.range(len.0, len.1) as usize;
        let s = r.range(wake as i64, (bed - l - 1) as i64) as usize;
        for v in met.iter_mut().skip(s).take(l) {
            *v = r.rangef(lvl.0, lvl.1);
        }
    };
    for _ in 0..r.range(5, 12) {
        bout(r, &mut met, (5, 25), (1.8, 3.2));
    }
    for _ in 0..r.range(1, 4) {
        bout(r, &mut met, (5, 20), (3.0, 5.5));
    }
    if r.chance(0.3 + 0.5 * user.fitness) {
        bout(r, &mut met, (25, 70), (6.0, 10.5));
    }
    if r.chance(0.6) {
        let l = r.range(15, 45) as usize;
        let s = r.range(wake as i64, (bed - l - 1) as i64) as usize;
        for m in s..s + l {
            nonwear[m] = true;
            met[m] = 0.1;
        }
    }
    for v in met.iter_mut() {
        *v = round_to(*v, 1);
    }
    let mut class = String::with_capacity(288);
    let (mut t_hi, mut t_med, mut t_low, mut t_sed, mut t_rest, mut t_nw) = (0, 0, 0, 0, 0, 0);
    let (mut mm_hi, mut mm_med, mut mm_low, mut mm_sed) = (0.0, 0.0, 0.0, 0.0);
    let (mut steps, mut active_kcal, mut total_kcal) = (0.0, 0.0, 0.0);
    for slot in 0..288 {
        let mins = slot * 5..slot * 5 + 5;
        let nw = mins.clone().filter(|&m| nonwear[m]).count();
        let sl = mins.clone().filter(|&m| asleep[m]).count();
        let avg: f64 = mins.clone().map(|m| met[m]).sum::<f64>() / 5.0;
        let c = if nw >= 3 {
            t_nw += 300;
            '0'
        } else if sl >= 3 {
            t_rest += 300;
            '1'
        } else if avg < 1.5 {
            t_sed += 300;
            mm_sed += avg * 5.0;
            '2'
        } else if avg < 3.0 {
            t_low += 300;
            mm_low += avg * 5.0;
            '3'
        } else if avg < 6.0 {
            t_med += 300;
            mm_med += avg * 5.0;
            '4'
        } else {
            t_hi += 300;
            mm_hi += avg * 5.0;
            '5'
        };
        class.push(c);
        for m in mins {
            let v = met[m];
            total_kcal += v.max(0.95) * user.weight / 60.0;
            if v >= 1.5 {
                active_kcal += (v - 1.0) * user.weight / 60.0;
            }
            steps += match v {
                v if v >= 6.0 => 150.0,
                v if v >= 3.0 => 105.0,
                v if v >= 1.5 => 55.0,
                v if v > 0.95 => 2.0,
                _ => 0.0,
            } * r.rangef(0.85, 1.15);
        }
    }
    let steps = steps.round() as i64;
    let ewd = (steps as f64 * 0.78).round() as i64;
    let target_calories = r.range(6, 12) * 50;
    let target_meters = target_calories * 20;
    let avg_met = met.iter().sum::<f64>() / 1440.0;
    let mut inactivity_alerts = 0;
    let mut run = 0;
    for (m, v) in met.iter().enumerate() {
        if !asleep[m] && *v < 1.5 && !nonwear[m] {
            run += 1;
            if run == 60 {
                inactivity_alerts += 1;
            }
        } else {
            run = 0;
        }
    }
    let c = |r: &mut Rng, lo, hi| json!(r.range(lo, hi));
    let score = (55.0 + 40.0 * (steps as f64 / 12000.0).min(1.0) + r.normal(0.0, 3.0))
        .round()
        .clamp(1.0, 100.0) as i64;
    let body = json!({
        "class_5_min": class,
        "score": score,
        "active_calories": active_kcal.round() as i64,
        "average_met_minutes": round_to(avg_met, 5),
        "contributors": {
            "meet_daily_targets": c(r, 20, 100),
            "move_every_hour": c(r, 50, 100),
            "recovery_time": c(r, 60, 100),
            "stay_active": c(r, 40, 100),
            "training_frequency": c(r, 30, 100),
            "training_volume": c(r, 30, 100),
        },
        "equivalent_walking_distance": ewd,
        "high_activity_met_minutes": mm_hi.round() as i64,
        "high_activity_time": t_hi,
        "inactivity_alerts": inactivity_alerts,
        "low_activity_met_minutes": mm_low.round() as i64,
        "low_activity_time": t_low,
        "medium_activity_met_minutes": mm_med.round() as i64,
        "medium_activity_time": t_med,
        "met": {"interval": 60.0, "items": met, "timestamp": fmt_sample_ts(start)},
        "meters_to_target": ((target_meters - ewd) as f64 / 100.0).round() as i64 * 100,
        "non_wear_time": t_nw,
        "resting_time": t_rest,
        "sedentary_met_minutes": mm_sed.round() as i64,
        "sedentary_time": t_sed,
        "steps": steps,
        "target_calories": target_calories,
        "target_meters": target_meters,
        "total_calories": total_kcal.round() as i64,
        "timestamp": fmt_dt(start),
    });
    (start.timestamp(), body)
}

fn gen_workout(r: &mut Rng, user: &UserProfile, day: NaiveDate, index: u32) -> (i64, Value) {
    let (activity, speed) = *r.pick(&[
        ("walking", Some(1.4)),
        ("running", Some(3.0)),
        ("cycling", Some(6.5)),
        ("strength_training", None),
        ("yoga", None),
        ("hiking", Some(1.2)),
    ]);
    let base = if index == 0 { 7 * 3600 } else { 16 * 3600 };
    let start = user.local(day, base + r.range(0, 4 * 3600));
    let dur = r.range(20, 90) * 60;
    let end = start + Duration::seconds(dur);
    let intensity = *r.pick(&["easy", "moderate", "moderate", "hard"]);
    let mult = match intensity {
        "easy" => 4.0,
        "moderate" => 7.0,
        _ => 10.0,
    };
    let calories = round_to(mult * user.weight * dur as f64 / 3600.0, 1);
    let distance = match speed {
        Some(s) if activity != "walking" || r.chance(0.5) => {
            json!(round_to(s * dur as f64 * r.rangef(0.85, 1.15), 1))
        }
        _ => Value::Null,
    };
    let body = json!({
        "activity": activity,
        "calories": calories,
        "distance": distance,
        "end_datetime": fmt_dt(end),
        "intensity": intensity,
        "label": null,
        "source": r.pick(&["autodetected", "confirmed", "manual", "workout_heart_rate"]),
        "start_datetime": fmt_dt(start),
    });
    (start.timestamp(), body)
}

fn gen_session(r: &mut Rng, user: &UserProfile, day: NaiveDate) -> (i64, Value) {
    let start = user.local(day, r.range(8 * 3600, 21 * 3600));
    let dur = r.range(3, 20) * 60;
    let end = start + Duration::seconds(dur);
    let ts = fmt_sample_ts(start);
    let n = (dur / 5) as usize;
    let hr: Vec<Value> = (0..n)
        .map(|_| json!((user.resting_hr as f64 + 8.0 + r.normal(0.0, 2.0)).round()))
        .collect();
    let hrv: Vec<Value> = (0..n)
        .map(|_| json!((60.0 + r.normal(0.0, 10.0)).round().max(10.0)))
        .collect();
    let motion: Vec<Value> = (0..n)
        .map(|_| json!(if r.chance(0.9) { 0.0 } else { 1.0 }))
        .collect();
    let mood = if r.chance(0.5) {
        json!(r.pick(&["bad", "worse", "same", "good", "great"]))
    } else {
        Value::Null
    };
    let body = json!({
        "start_datetime": fmt_dt(start),
        "end_datetime": fmt_dt(end),
        "type": r.pick(&["breathing", "meditation", "nap", "relaxation", "rest", "body_status"]),
        "heart_rate": {"interval": 5.0, "items": hr, "timestamp": ts},
        "heart_rate_variability": {"interval": 5.0, "items": hrv, "timestamp": ts},
        "mood": mood,
        "motion_count": {"interval": 5.0, "items": motion, "timestamp": ts},
    });
    (start.timestamp(), body)
}

fn gen_enhanced_tag(r: &mut Rng, user: &UserProfile, day: NaiveDate) -> (i64, Value) {
    let start = user.local(day, r.range(6 * 3600, 22 * 3600));
    let mut codes: Vec<&str> = vec![
        "tag_generic_nocaffeine",
        "tag_generic_caffeine",
        "tag_generic_fasting",
        "tag_sleep_alcohol",
        "tag_generic_sauna",
        "custom",
    ];
    if user.biological_sex == "female" {
        codes.push("tag_generic_period");
    }
    let text_only = r.chance(0.1);
    let code = if text_only {
        None
    } else {
        Some(*r.pick(&codes))
    };
    let (end_time, end_day) = if r.chance(0.4) {
        let e = start + Duration::minutes(r.range(30, 600));
        (json!(fmt_dt(e)), json!(e.date_naive().to_string()))
    } else {
        (Value::Null, Value::Null)
    };
    let body = json!({
        "tag_type_code": code,
        "start_time": fmt_dt(start),
        "end_time": end_time,
        "start_day": start.date_naive().to_string(),
        "end_day": end_day,
        "comment": if text_only { "Felt tired" } else { "" },
        "custom_name": if code == Some("custom") { json!("Late screen time") } else { Value::Null },
    });
    (start.timestamp(), body)
}

/// Heart-rate rows for one local day (roughly every 5 minutes, UTC timestamps).
pub fn gen_heartrate(seed: u64, user: &UserProfile, day: NaiveDate) -> Vec<Row> {
    let mut r = Rng::from_key(&format!("{seed}/{}/heartrate/{day}", user.id));
    let base = user.local(day, 0);
    (0..288)
        .map(|k| {
            let t = base + Duration::seconds(k * 300 + r.range(0, 59));
            let hour = k / 12;
            let (bpm, source) = if !(7..23).contains(&hour) {
                (user.resting_hr + r.range(-3, 5), "sleep")
            } else if r.chance(0.04) {
                (user.resting_hr + r.range(50, 90), "workout")
            } else if r.chance(0.05) {
                (user.resting_hr + r.range(2, 10), "rest")
            } else {
                (user.resting_hr + r.range(12, 40), "awake")
            };
            let utc = t.with_timezone(&Utc);
            Row {
                ts_ms: utc.timestamp_millis(),
                body: json!({
                    "bpm": bpm,
                    "source": source,
                    "timestamp": fmt_utc(utc),
                    "timestamp_unix": utc.timestamp_millis(),
                }),
            }
        })
        .collect()
}

/// Ring battery rows for one local day (every 30 minutes): a ~5-day discharge/charge cycle.
pub fn gen_battery(seed: u64, user: &UserProfile, day: NaiveDate) -> Vec<Row> {
    let phase = (Rng::from_key(&format!("{seed}/{}/battery", user.id)).next_u64() % 120) as i64;
    let base = user.local(day, 0);
    (0..48)
        .map(|k| {
            let t = base + Duration::minutes(k * 30);
            let utc = t.with_timezone(&Utc);
            let h = (utc.timestamp() / 3600 + phase).rem_euclid(120);
            let (level, charging) = if h < 2 {
                (20 + h * 40, true)
            } else {
                (100 - (h - 2) * 80 / 118, false)
            };
            Row {
                ts_ms: utc.timestamp_millis(),
                body: json!({
                    "timestamp": fmt_utc(utc),
                    "timestamp_unix": utc.timestamp_millis(),
                    "level": level.clamp(0, 100),
                    "charging": charging,
                    "in_charger": charging,
                }),
            }
        })
        .collect()
}
