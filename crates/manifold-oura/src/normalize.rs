//! The pure Oura → Terra mapping (no I/O). See the crate docs for the field mapping.

use crate::MappingError;
use crate::types::*;
use chrono::{FixedOffset, NaiveDate, Offset as _};
use manifold_model::*;
use serde_json::Map;
use std::collections::BTreeMap;

const FIVE_MIN: i64 = 300;

fn invalid(data_type: &str, field: &str, message: impl Into<String>) -> MappingError {
    MappingError::InvalidField {
        data_type: data_type.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

fn oura_device() -> DeviceData {
    DeviceData {
        name: Some("Oura Ring".into()),
        manufacturer: Some("Oura".into()),
        ..DeviceData::default()
    }
}

/// Semantic checks run by [`crate::parse_document`] after deserialisation.
pub(crate) fn validate(doc: &OuraDocument) -> Result<(), MappingError> {
    let t = doc.data_type();
    let sample = |field: &str, s: &Option<PublicSample>| -> Result<(), MappingError> {
        match s {
            Some(s) if !(s.interval.is_finite() && s.interval > 0.0 && s.interval <= 86_400.0) => {
                Err(invalid(
                    t,
                    &format!("{field}.interval"),
                    "must be between 0 and 86400 seconds",
                ))
            }
            _ => Ok(()),
        }
    };
    let ordered = |start: &Timestamp, end: &Timestamp, end_field: &str| {
        if end < start {
            Err(invalid(
                t,
                end_field,
                format!("{end} is before the start {start}"),
            ))
        } else {
            Ok(())
        }
    };
    match doc {
        OuraDocument::Sleep(s) => {
            ordered(&s.bedtime_start, &s.bedtime_end, "bedtime_end")?;
            sample("heart_rate", &s.heart_rate)?;
            sample("hrv", &s.hrv)?;
            if let Some(p) = &s.sleep_phase_5_min {
                hypnogram_levels(p)?;
            }
        }
        OuraDocument::DailyActivity(a) => {
            sample("met", &a.met)?;
            if let Some(c) = &a.class_5_min {
                activity_levels(c)?;
            }
        }
        OuraDocument::Workout(w) => ordered(&w.start_datetime, &w.end_datetime, "end_datetime")?,
        OuraDocument::Session(s) => {
            ordered(&s.start_datetime, &s.end_datetime, "end_datetime")?;
            sample("heart_rate", &s.heart_rate)?;
            sample("heart_rate_variability", &s.heart_rate_variability)?;
            sample("motion_count", &s.motion_count)?;
        }
        OuraDocument::EnhancedTag(g) => {
            if let Some(end) = &g.end_time {
                ordered(&g.start_time, end, "end_time")?;
            }
            if matches!(g.end_day, Some(e) if e < g.start_day) {
                return Err(invalid(t, "end_day", "is before start_day"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `sleep_phase_5_min` characters → Terra `SleepLevel` (1 deep→5, 2 light→4, 3 REM→6, 4 awake→1).
pub fn hypnogram_levels(phases: &str) -> Result<Vec<SleepLevel>, MappingError> {
    phases
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            '1' => Ok(SleepLevel::Deep),
            '2' => Ok(SleepLevel::Light),
            '3' => Ok(SleepLevel::Rem),
            '4' => Ok(SleepLevel::Awake),
            other => Err(invalid(
                "sleep",
                "sleep_phase_5_min",
                format!("character {i} is {other:?}; expected 1-4"),
            )),
        })
        .collect()
}

/// `class_5_min` characters → Terra `ActivityLevel` (0 non-wear→Unknown, 1 rest→Rest,
/// 2 inactive→Inactive, 3 low→Low, 4 medium→Medium, 5 high→High: the same numbers).
pub fn activity_levels(classes: &str) -> Result<Vec<ActivityLevel>, MappingError> {
    classes
        .chars()
        .enumerate()
        .map(|(i, c)| match c.to_digit(10) {
            Some(d @ 0..=5) => Ok(ActivityLevel::from_code(i64::from(d))),
            _ => Err(invalid(
                "daily_activity",
                "class_5_min",
                format!("character {i} is {c:?}; expected 0-5"),
            )),
        })
        .collect()
}

/// Expands a `PublicSample` into `(time, value)` pairs in `offset`, dropping nulls and the
/// values `keep` rejects, and samples after `until`.
fn expand(
    s: &PublicSample,
    offset: FixedOffset,
    until: Option<Timestamp>,
    keep: impl Fn(f64) -> bool,
) -> Vec<(Timestamp, f64)> {
    let start = s.timestamp.with_offset(offset);
    s.items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = (*v).filter(|v| v.is_finite() && keep(*v))?;
            let t = start.plus_seconds_f64(i as f64 * s.interval)?;
            match until {
                Some(u) if t > u => None,
                _ => Some((t, v)),
            }
        })
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = v.fold((0u32, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / f64::from(n))
}

fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn hr_samples(
    pairs: &[(Timestamp, f64)],
    context: Option<HeartRateContext>,
) -> Vec<HeartRateSample> {
    pairs
        .iter()
        .map(|(t, bpm)| HeartRateSample {
            timestamp: Some(*t),
            bpm: Some(*bpm),
            context,
            ..HeartRateSample::default()
        })
        .collect()
}

fn hrv_samples(pairs: &[(Timestamp, f64)]) -> Vec<HrvRmssdSample> {
    pairs
        .iter()
        .map(|(t, v)| HrvRmssdSample {
            timestamp: Some(*t),
            hrv_rmssd: Some(*v),
            ..HrvRmssdSample::default()
        })
        .collect()
}

/// Drops empty sub-objects so the payload omits them (an all-`None` object carries nothing).
fn nonempty<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// One Oura sleep period → Terra `Sleep`.
///
/// `daily_sleep` is the `daily_sleep` document of the same `day`, if any: its score becomes
/// `scores.sleep`. Passing one for another day is an error naming `daily_sleep.day`.
pub fn sleep(doc: &OuraSleep, daily_sleep: Option<&DailySleep>) -> Result<Sleep, MappingError> {
    validate(&OuraDocument::Sleep(doc.clone()))?;
    if let Some(ds) = daily_sleep
        && ds.day != doc.day
    {
        return Err(invalid(
            "daily_sleep",
            "day",
            format!(
                "{} does not match the sleep period's day {}",
                ds.day, doc.day
            ),
        ));
    }
    let start = doc.bedtime_start;
    let end = doc.bedtime_end;
    let offset = start.offset();

    let hypnogram = match &doc.sleep_phase_5_min {
        Some(p) => hypnogram_levels(p)?
            .into_iter()
            .enumerate()
            .filter_map(|(i, level)| {
                let t = start.plus_seconds(i as i64 * FIVE_MIN)?;
                (t < end).then_some(SleepHypnogramSample {
                    timestamp: Some(t),
                    level: Some(level),
                    ..SleepHypnogramSample::default()
                })
            })
            .collect(),
        None => Vec::new(),
    };

    let asleep_total = doc.total_sleep_duration.or_else(|| {
        Some(doc.deep_sleep_duration? + doc.light_sleep_duration? + doc.rem_sleep_duration?)
    });

    let hr = doc
        .heart_rate
        .as_ref()
        .map(|s| expand(s, offset, Some(end), |v| v > 0.0))
        .unwrap_or_default();
    let hrv = doc
        .hrv
        .as_ref()
        .map(|s| expand(s, offset, Some(end), |v| v > 0.0))
        .unwrap_or_default();
    let max_hr = hr.iter().map(|(_, v)| *v).reduce(f64::max);

    let mut out = Sleep::new(SleepMetadata {
        start_time: start,
        end_time: end,
        summary_id: Some(doc.id.clone()),
        is_nap: match doc.sleep_type.as_deref() {
            Some("long_sleep") => Some(false),
            Some("sleep" | "late_nap") => Some(true),
            _ => None,
        },
        upload_type: SleepUploadType::Automatic,
        timestamp_localization: Some(TimestampLocalization::Local),
        extra: Map::new(),
    });
    out.sleep_durations_data = nonempty(SleepDurationsData {
        asleep: nonempty(AsleepDurations {
            duration_asleep_state_seconds: asleep_total,
            duration_deep_sleep_state_seconds: doc.deep_sleep_duration,
            duration_light_sleep_state_seconds: doc.light_sleep_duration,
            duration_rem_sleep_state_seconds: doc.rem_sleep_duration,
            ..AsleepDurations::default()
        }),
        awake: nonempty(AwakeDurations {
            duration_awake_state_seconds: doc.awake_time,
            sleep_latency_seconds: doc.latency,
            ..AwakeDurations::default()
        }),
        other: nonempty(OtherSleepDurations {
            duration_in_bed_seconds: doc.time_in_bed,
            ..OtherSleepDurations::default()
        }),
        sleep_efficiency: doc.efficiency,
        hypnogram_samples: some_vec(hypnogram),
        extra: Map::new(),
    });
    out.heart_rate_data = nonempty(HeartRateData {
        summary: nonempty(HeartRateSummary {
            avg_hr_bpm: doc.average_heart_rate,
            min_hr_bpm: doc.lowest_heart_rate,
            resting_hr_bpm: doc.lowest_heart_rate,
            max_hr_bpm: max_hr,
            avg_hrv_rmssd: doc.average_hrv,
            ..HeartRateSummary::default()
        }),
        detailed: nonempty(HeartRateDetailed {
            hr_samples: some_vec(hr_samples(&hr, None)),
            hrv_samples_rmssd: some_vec(hrv_samples(&hrv)),
            ..HeartRateDetailed::default()
        }),
        extra: Map::new(),
    });
    out.respiration_data = nonempty(RespirationData {
        breaths_data: nonempty(BreathsData {
            avg_breaths_per_min: doc.average_breath,
            ..BreathsData::default()
        }),
        ..RespirationData::default()
    });
    let readiness = doc.readiness.as_ref();
    out.temperature_data = nonempty(SleepTemperatureData {
        delta: readiness.and_then(|r| r.temperature_deviation),
        ..SleepTemperatureData::default()
    });
    out.readiness_data = nonempty(ReadinessData {
        readiness: readiness.and_then(|r| r.score),
        ..ReadinessData::default()
    });
    out.scores = nonempty(SleepScores {
        sleep: daily_sleep.and_then(|d| d.score),
        ..SleepScores::default()
    });
    out.device_data = Some(oura_device());
    Ok(out)
}

/// Every Oura document of one day, each optional. The engine rebuilds the day's Terra
/// `daily`, `body` and `menstruation` items from ALL stored documents of that day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DayDocuments {
    /// The day (Oura `day`).
    pub day: NaiveDate,
    /// The user's UTC offset for this day. When `None` it is taken from `daily_activity`,
    /// then `daily_readiness`, `daily_sleep`, `vO2_max` timestamps; else UTC.
    pub utc_offset: Option<FixedOffset>,
    /// `daily_activity`
    pub daily_activity: Option<DailyActivity>,
    /// `daily_readiness`
    pub daily_readiness: Option<DailyReadiness>,
    /// `daily_sleep`
    pub daily_sleep: Option<DailySleep>,
    /// `daily_stress`
    pub daily_stress: Option<DailyStress>,
    /// `daily_spo2`
    pub daily_spo2: Option<DailySpo2>,
    /// `daily_resilience`
    pub daily_resilience: Option<DailyResilience>,
    /// `daily_cardiovascular_age`
    pub daily_cardiovascular_age: Option<DailyCardiovascularAge>,
    /// `vO2_max`
    pub vo2_max: Option<Vo2Max>,
    /// `personal_info` (weight/height are attributed to this day).
    pub personal_info: Option<PersonalInfo>,
    /// `heartrate` rows; only rows whose local date (in the day's offset) is `day` are used.
    pub heartrate: Vec<HeartRateRow>,
    /// `enhanced_tag`s; only `tag_generic_period` tags covering `day` are used.
    pub enhanced_tags: Vec<EnhancedTag>,
    /// `daily_cycle_phases`
    pub daily_cycle_phases: Option<DailyCyclePhases>,
}

impl DayDocuments {
    /// An empty day.
    pub fn new(day: NaiveDate) -> Self {
        DayDocuments {
            day,
            ..DayDocuments::default()
        }
    }

    /// Files a parsed document into its slot (replacing a previous one of the same type;
    /// rows and tags accumulate). Sleep, workout and session documents are not day
    /// documents and are rejected, as are day documents of another day.
    pub fn add(&mut self, doc: OuraDocument) -> Result<(), MappingError> {
        let t = doc.data_type();
        let check = |day: NaiveDate| {
            if day == self.day {
                Ok(())
            } else {
                Err(invalid(t, "day", format!("{day} is not {}", self.day)))
            }
        };
        match doc {
            OuraDocument::DailyActivity(d) => {
                check(d.day)?;
                self.daily_activity = Some(d);
            }
            OuraDocument::DailyReadiness(d) => {
                check(d.day)?;
                self.daily_readiness = Some(d);
            }
            OuraDocument::DailySleep(d) => {
                check(d.day)?;
                self.daily_sleep = Some(d);
            }
            OuraDocument::DailyStress(d) => {
                check(d.day)?;
                self.daily_stress = Some(d);
            }
            OuraDocument::DailySpo2(d) => {
                check(d.day)?;
                self.daily_spo2 = Some(d);
            }
            OuraDocument::DailyResilience(d) => {
                check(d.day)?;
                self.daily_resilience = Some(d);
            }
            OuraDocument::DailyCardiovascularAge(d) => {
                check(d.day)?;
                self.daily_cardiovascular_age = Some(d);
            }
            OuraDocument::Vo2Max(d) => {
                check(d.day)?;
                self.vo2_max = Some(d);
            }
            OuraDocument::DailyCyclePhases(d) => {
                check(d.day)?;
                self.daily_cycle_phases = Some(d);
            }
            OuraDocument::PersonalInfo(d) => self.personal_info = Some(d),
            OuraDocument::HeartRate(d) => self.heartrate.push(d),
            OuraDocument::EnhancedTag(d) => self.enhanced_tags.push(d),
            OuraDocument::Sleep(_) | OuraDocument::Workout(_) | OuraDocument::Session(_) => {
                return Err(MappingError::UnsupportedDataType(format!(
                    "{t} is not a day document"
                )));
            }
        }
        Ok(())
    }

    /// The offset used for this day's timestamps and whether it is a real local offset.
    fn offset(&self) -> (FixedOffset, TimestampLocalization) {
        let found = self.utc_offset.or_else(|| {
            self.daily_activity
                .as_ref()
                .map(|d| d.timestamp.offset())
                .or_else(|| {
                    self.daily_readiness
                        .as_ref()?
                        .timestamp
                        .map(Timestamp::offset)
                })
                .or_else(|| self.daily_sleep.as_ref()?.timestamp.map(Timestamp::offset))
                .or_else(|| self.vo2_max.as_ref()?.timestamp.map(Timestamp::offset))
        });
        match found {
            Some(o) => (o, TimestampLocalization::Local),
            None => (chrono::Utc.fix(), TimestampLocalization::Utc),
        }
    }

    fn bounds(&self) -> Result<(Timestamp, Timestamp, TimestampLocalization), MappingError> {
        let (offset, loc) = self.offset();
        let start = Timestamp::midnight(self.day, offset)
            .ok_or_else(|| invalid("day", "day", "date out of range"))?;
        let end = start
            .plus_seconds(86_400)
            .ok_or_else(|| invalid("day", "day", "date out of range"))?;
        Ok((start, end, loc))
    }

    fn check_days(&self) -> Result<(), MappingError> {
        let days = [
            (
                "daily_activity",
                self.daily_activity.as_ref().map(|d| d.day),
            ),
            (
                "daily_readiness",
                self.daily_readiness.as_ref().map(|d| d.day),
            ),
            ("daily_sleep", self.daily_sleep.as_ref().map(|d| d.day)),
            ("daily_stress", self.daily_stress.as_ref().map(|d| d.day)),
            ("daily_spo2", self.daily_spo2.as_ref().map(|d| d.day)),
            (
                "daily_resilience",
                self.daily_resilience.as_ref().map(|d| d.day),
            ),
            (
                "daily_cardiovascular_age",
                self.daily_cardiovascular_age.as_ref().map(|d| d.day),
            ),
            ("vO2_max", self.vo2_max.as_ref().map(|d| d.day)),
            (
                "daily_cycle_phases",
                self.daily_cycle_phases.as_ref().map(|d| d.day),
            ),
        ];
        for (t, day) in days {
            if let Some(day) = day
                && day != self.day
            {
                return Err(invalid(t, "day", format!("{day} is not {}", self.day)));
            }
        }
        Ok(())
    }
}

/// All day documents → Terra `Daily` (always produced; fields without a source are omitted).
pub fn daily(day: &DayDocuments) -> Result<Daily, MappingError> {
    day.check_days()?;
    let (start, end, loc) = day.bounds()?;
    let mut out = Daily::new(DailyMetadata {
        start_time: start,
        end_time: end,
        upload_type: UploadType::Automatic,
        timestamp_localization: Some(loc),
        extra: Map::new(),
    });
    if let Some(a) = &day.daily_activity {
        validate(&OuraDocument::DailyActivity(a.clone()))?;
        let offset = a.timestamp.offset();
        let levels = match &a.class_5_min {
            Some(c) => activity_levels(c)?
                .into_iter()
                .enumerate()
                .filter_map(|(i, level)| {
                    Some(ActivityLevelSample {
                        timestamp: Some(a.timestamp.plus_seconds(i as i64 * FIVE_MIN)?),
                        activity_level: Some(level),
                        ..ActivityLevelSample::default()
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let active = match (
            a.high_activity_time,
            a.medium_activity_time,
            a.low_activity_time,
        ) {
            (Some(h), Some(m), Some(l)) => Some(h + m + l),
            _ => None,
        };
        out.active_durations_data = nonempty(ActiveDurationsData {
            activity_seconds: active,
            low_intensity_seconds: a.low_activity_time,
            moderate_intensity_seconds: a.medium_activity_time,
            vigorous_intensity_seconds: a.high_activity_time,
            inactivity_seconds: a.sedentary_time,
            rest_seconds: a.resting_time,
            activity_levels_samples: some_vec(levels),
            ..ActiveDurationsData::default()
        });
        let bmr = match (a.total_calories, a.active_calories) {
            (Some(t), Some(c)) if t >= c => Some(t - c),
            _ => None,
        };
        out.calories_data = nonempty(CaloriesData {
            total_burned_calories: a.total_calories,
            net_activity_calories: a.active_calories,
            bmr_calories: bmr,
            ..CaloriesData::default()
        });
        out.distance_data = nonempty(DailyDistanceData {
            steps: a.steps.map(|s| s.round() as i64),
            distance_meters: a.equivalent_walking_distance,
            ..DailyDistanceData::default()
        });
        let met_samples = a
            .met
            .as_ref()
            .map(|s| expand(s, offset, None, |_| true))
            .unwrap_or_default()
            .into_iter()
            .map(|(t, level)| MetSample {
                timestamp: Some(t),
                level: Some(level),
                ..MetSample::default()
            })
            .collect();
        let minutes = |s: Option<f64>| s.map(|s| s / 60.0);
        out.met_data = nonempty(MetData {
            met_samples: some_vec(met_samples),
            avg_level: a.average_met_minutes,
            num_high_intensity_minutes: minutes(a.high_activity_time),
            num_moderate_intensity_minutes: minutes(a.medium_activity_time),
            num_low_intensity_minutes: minutes(a.low_activity_time),
            num_inactive_minutes: minutes(a.sedentary_time),
            ..MetData::default()
        });
    }
    out.scores = nonempty(DailyScores {
        activity: day.daily_activity.as_ref().and_then(|a| a.score),
        recovery: day.daily_readiness.as_ref().and_then(|r| r.readiness.score),
        sleep: day.daily_sleep.as_ref().and_then(|s| s.score),
        ..DailyScores::default()
    });
    if let Some(s) = &day.daily_stress {
        let rating = match s.day_summary.as_deref() {
            Some("restored") => Some(StressLevel::Rest),
            Some("normal") => Some(StressLevel::Low),
            Some("stressful") => Some(StressLevel::High),
            Some(_) => Some(StressLevel::Unknown),
            None => None,
        };
        out.stress_data = nonempty(StressData {
            high_stress_duration_seconds: s.stress_high,
            stress_rating: rating,
            ..StressData::default()
        });
    }
    out.oxygen_data = nonempty(OxygenData {
        avg_saturation_percentage: spo2(day),
        ..OxygenData::default()
    });
    if let Some(r) = &day.daily_resilience {
        let contributors: BTreeMap<String, f64> = r
            .contributors
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), (*v)?)))
            .collect();
        out.data_enrichment = nonempty(DailyDataEnrichment {
            resilience_contributors: (!contributors.is_empty()).then_some(contributors),
            ..DailyDataEnrichment::default()
        });
    }
    if out != Daily::new(out.metadata.clone()) {
        out.device_data = Some(oura_device());
    }
    Ok(out)
}

fn spo2(day: &DayDocuments) -> Option<f64> {
    day.daily_spo2
        .as_ref()?
        .spo2_percentage
        .as_ref()?
        .average
        .filter(|v| *v > 0.0)
}

/// Heart-rate rows, SpO2, VO2max, cardiovascular age and weight/height → Terra `Body`
/// for the day, or `None` when the day has none of them.
pub fn body(day: &DayDocuments) -> Result<Option<Body>, MappingError> {
    day.check_days()?;
    let (start, end, loc) = day.bounds()?;
    let offset = start.offset();
    let mut rows: Vec<(Timestamp, f64, Option<HeartRateContext>)> = day
        .heartrate
        .iter()
        .filter(|r| r.bpm.is_finite() && r.bpm > 0.0)
        .map(|r| {
            let t = r.timestamp.with_offset(offset);
            let ctx = match r.source.as_deref() {
                Some("workout") => Some(HeartRateContext::Active),
                Some("rest" | "sleep" | "session") => Some(HeartRateContext::NotActive),
                _ => None,
            };
            (t, r.bpm, ctx)
        })
        .filter(|(t, _, _)| *t >= start && *t < end)
        .collect();
    rows.sort_by_key(|r| r.0);
    let bpm = || rows.iter().map(|r| r.1);
    let mut out = Body::new(BodyMetadata {
        start_time: start,
        end_time: end,
        timestamp_localization: Some(loc),
        extra: Map::new(),
    });
    let samples = rows
        .iter()
        .map(|(t, b, c)| HeartRateSample {
            timestamp: Some(*t),
            bpm: Some(*b),
            context: *c,
            ..HeartRateSample::default()
        })
        .collect();
    let cv = day.daily_cardiovascular_age.as_ref();
    let pwv = cv
        .and_then(|c| c.pulse_wave_velocity)
        .map(|v| PulseVelocitySample {
            timestamp: Some(start),
            pulse_wave_velocity_meters_per_second: Some(v),
            ..PulseVelocitySample::default()
        });
    out.heart_data = nonempty(HeartData {
        heart_rate_data: nonempty(HeartRateData {
            summary: nonempty(HeartRateSummary {
                avg_hr_bpm: mean(bpm()),
                min_hr_bpm: bpm().reduce(f64::min),
                max_hr_bpm: bpm().reduce(f64::max),
                ..HeartRateSummary::default()
            }),
            detailed: nonempty(HeartRateDetailed {
                hr_samples: some_vec(samples),
                ..HeartRateDetailed::default()
            }),
            extra: Map::new(),
        }),
        pulse_wave_velocity_samples: pwv.map(|p| vec![p]),
        extra: Map::new(),
    });
    let vo2 = day.vo2_max.as_ref().and_then(|v| v.vo2_max);
    let vo2_time = day
        .vo2_max
        .as_ref()
        .and_then(|v| v.timestamp)
        .map(|t| t.with_offset(offset))
        .unwrap_or(start);
    out.oxygen_data = nonempty(OxygenData {
        avg_saturation_percentage: spo2(day),
        vo2max_ml_per_min_per_kg: vo2,
        vo2_samples: vo2.map(|v| {
            vec![Vo2MaxSample {
                timestamp: Some(vo2_time),
                vo2max_ml_per_min_per_kg: Some(v),
                ..Vo2MaxSample::default()
            }]
        }),
        ..OxygenData::default()
    });
    let p = day.personal_info.as_ref();
    let measurement = MeasurementDataSample {
        measurement_time: Some(start),
        weight_kg: p.and_then(|p| p.weight).filter(|w| *w > 0.0),
        height_cm: p
            .and_then(|p| p.height)
            .filter(|h| *h > 0.0)
            .map(|h| (h * 1000.0).round() / 10.0),
        estimated_fitness_age: cv.and_then(|c| c.vascular_age).map(|a| a.round() as i64),
        ..MeasurementDataSample::default()
    };
    let has_measurement = measurement.weight_kg.is_some()
        || measurement.height_cm.is_some()
        || measurement.estimated_fitness_age.is_some();
    out.measurements_data = has_measurement.then(|| MeasurementsData {
        measurements: Some(vec![measurement]),
        ..MeasurementsData::default()
    });
    if out == Body::new(out.metadata.clone()) {
        return Ok(None);
    }
    out.device_data = Some(oura_device());
    Ok(Some(out))
}

fn cycle_phase(name: &str) -> MenstruationInterval {
    match name.to_ascii_lowercase().as_str() {
        "menstrual" | "menstruation" | "period" => MenstruationInterval::Period,
        "follicular" => MenstruationInterval::Follicular,
        "fertile" | "fertile_window" => MenstruationInterval::FertileWindow,
        "ovulation" => MenstruationInterval::Ovulation,
        "luteal" => MenstruationInterval::Luteal,
        "pms" => MenstruationInterval::Pms,
        _ => MenstruationInterval::Unknown,
    }
}

/// Period tags (`enhanced_tag` with `tag_generic_period`) covering the day and the day's
/// `daily_cycle_phases` → Terra `Menstruation`, or `None` when there is neither.
pub fn menstruation(day: &DayDocuments) -> Result<Option<Menstruation>, MappingError> {
    day.check_days()?;
    let (start, end, loc) = day.bounds()?;
    let periods: Vec<&EnhancedTag> = day
        .enhanced_tags
        .iter()
        .filter(|t| t.is_period())
        .filter(|t| t.start_day <= day.day && day.day <= t.end_day.unwrap_or(t.start_day))
        .collect();
    let phase = day
        .daily_cycle_phases
        .as_ref()
        .and_then(|c| c.phase.as_deref());
    if periods.is_empty() && phase.is_none() {
        return Ok(None);
    }
    let mut data = MenstruationData::default();
    if let Some(first) = periods.iter().min_by_key(|t| t.start_day) {
        data.current_phase = Some(MenstruationInterval::Period);
        data.period_start_date = Some(first.start_day);
        data.day_in_cycle = Some((day.day - first.start_day).num_days() + 1);
        data.period_length_days = first.end_day.map(|e| (e - first.start_day).num_days() + 1);
        data.is_predicted_cycle = Some(false);
        data.menstruation_flow = Some(
            periods
                .iter()
                .map(|t| MenstruationFlowSample {
                    timestamp: Some(if t.start_day == day.day {
                        t.start_time
                    } else {
                        start
                    }),
                    flow: Some(MenstruationFlow::Had),
                    ..MenstruationFlowSample::default()
                })
                .collect(),
        );
        data.intervals = Some(
            periods
                .iter()
                .map(|t| MenstruationIntervalSample {
                    start_timestamp: Some(t.start_time),
                    end_timestamp: t.end_time,
                    phase: Some(MenstruationInterval::Period),
                    ..MenstruationIntervalSample::default()
                })
                .collect(),
        );
    } else if let Some(p) = phase {
        data.current_phase = Some(cycle_phase(p));
    }
    let mut out = Menstruation::new(MenstruationMetadata {
        start_time: start,
        end_time: end,
        timestamp_localization: Some(loc),
        extra: Map::new(),
    });
    out.menstruation_data = Some(data);
    Ok(Some(out))
}

/// Oura workout `activity` code → Terra `ActivityType` (unknown codes → `Other` (108)).
pub fn activity_type(activity: &str) -> ActivityType {
    use ActivityType as A;
    let key = activity
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    match key.as_str() {
        "walking" | "walk" => A::Walking,
        "running" | "run" => A::Running,
        "jogging" => A::Jogging,
        "treadmill_running" => A::TreadmillRunning,
        "trail_running" => A::TrailRunning,
        "indoor_running" => A::IndoorRunning,
        "cycling" | "biking" | "bike" => A::Biking,
        "mountain_biking" => A::MountainBiking,
        "road_biking" | "road_cycling" => A::RoadBiking,
        "indoor_cycling" | "stationary_biking" | "stationary_bike" => A::StationaryBiking,
        "spinning" => A::Spinning,
        "e_biking" | "ebiking" => A::EBiking,
        "hiking" => A::Hiking,
        "swimming" => A::Swimming,
        "pool_swimming" => A::SwimmingSwimmingPool,
        "open_water_swimming" => A::SwimmingOpenWater,
        "yoga" => A::Yoga,
        "pilates" => A::Pilates,
        "strength_training" | "weight_training" => A::StrengthTraining,
        "weightlifting" | "weight_lifting" => A::Weightlifting,
        "dancing" | "dance" => A::Dancing,
        "elliptical" | "cross_trainer" => A::Elliptical,
        "rowing" => A::Rowing,
        "rowing_machine" | "indoor_rowing" => A::RowingMachine,
        "hiit" => A::Hiit,
        "crossfit" | "cross_fit" => A::Crossfit,
        "interval_training" => A::IntervalTraining,
        "circuit_training" | "cross_training" => A::CircuitTraining,
        "cardio_training" | "cardio" => A::CardioTraining,
        "stretching" => A::Stretching,
        "meditation" => A::Meditation,
        "tennis" => A::Tennis,
        "table_tennis" => A::TableTennis,
        "padel" | "padel_tennis" => A::PadelTennis,
        "badminton" => A::Badminton,
        "squash" => A::Squash,
        "golf" => A::Golf,
        "basketball" => A::Basketball,
        "soccer" | "football" => A::EnglishFootball,
        "american_football" => A::AmericanFootball,
        "volleyball" => A::Volleyball,
        "baseball" => A::Baseball,
        "softball" => A::Softball,
        "hockey" | "ice_hockey" | "field_hockey" => A::Hockey,
        "rugby" => A::Rugby,
        "handball" => A::Handball,
        "cricket" => A::Cricket,
        "boxing" => A::Boxing,
        "kickboxing" => A::Kickboxing,
        "martial_arts" => A::MartialArts,
        "climbing" | "rock_climbing" | "bouldering" => A::RockClimbing,
        "skiing" => A::Skiing,
        "cross_country_skiing" => A::CrossCountrySkiing,
        "downhill_skiing" | "alpine_skiing" => A::DownhillSkiing,
        "snowboarding" => A::Snowboarding,
        "snowshoeing" => A::Snowshoeing,
        "skating" => A::Skating,
        "ice_skating" => A::IceSkating,
        "inline_skating" | "rollerblading" => A::InlineSkating,
        "skateboarding" => A::Skateboarding,
        "surfing" => A::Surfing,
        "kayaking" => A::Kayaking,
        "canoeing" => A::Canoeing,
        "paddling" => A::Paddling,
        "stand_up_paddleboarding" | "paddleboarding" | "sup" => A::StandUpPaddleboarding,
        "sailing" => A::Sailing,
        "stair_climbing" | "stairs" => A::StairClimbing,
        "stair_machine" | "stair_climbing_machine" | "stairmaster" => A::StairClimbingMachine,
        "jump_rope" | "jumping_rope" => A::JumpingRope,
        "gardening" => A::Gardening,
        "housework" => A::Housework,
        "horseback_riding" => A::HorsebackRiding,
        "zumba" => A::Zumba,
        "aerobics" => A::Aerobics,
        "calisthenics" => A::Calisthenics,
        "triathlon" => A::Triathlon,
        "mountaineering" => A::Mountaineering,
        "fishing" => A::Fishing,
        "archery" => A::Archery,
        "wheelchair" => A::Wheelchair,
        "physical_therapy" => A::PhysicalTherapy,
        _ => A::Other,
    }
}

fn intensity_durations(intensity: Option<&str>, seconds: f64) -> ActiveDurationsData {
    let mut d = ActiveDurationsData {
        activity_seconds: Some(seconds),
        ..ActiveDurationsData::default()
    };
    match intensity {
        Some("easy") => d.low_intensity_seconds = Some(seconds),
        Some("moderate") => d.moderate_intensity_seconds = Some(seconds),
        Some("hard") => d.vigorous_intensity_seconds = Some(seconds),
        _ => {}
    }
    d
}

fn span_seconds(start: Timestamp, end: Timestamp) -> f64 {
    (end.0 - start.0).num_milliseconds() as f64 / 1000.0
}

/// Oura `workout` → Terra `Activity`.
pub fn workout(doc: &Workout) -> Result<Activity, MappingError> {
    validate(&OuraDocument::Workout(doc.clone()))?;
    let upload_type = match doc.source.as_deref() {
        Some("manual") => UploadType::Manual,
        Some("autodetected" | "confirmed" | "workout_heart_rate") => UploadType::Automatic,
        _ => UploadType::Unknown,
    };
    let mut out = Activity::new(ActivityMetadata {
        summary_id: doc.id.clone(),
        start_time: doc.start_datetime,
        end_time: doc.end_datetime,
        activity_type: activity_type(&doc.activity),
        upload_type,
        name: Some(doc.label.clone().unwrap_or_else(|| doc.activity.clone())),
        timestamp_localization: Some(TimestampLocalization::Local),
        extra: Map::new(),
    });
    let seconds = span_seconds(doc.start_datetime, doc.end_datetime);
    out.active_durations_data = Some(intensity_durations(doc.intensity.as_deref(), seconds));
    out.calories_data = nonempty(CaloriesData {
        total_burned_calories: doc.calories,
        ..CaloriesData::default()
    });
    out.distance_data = nonempty(ActivityDistanceData {
        summary: nonempty(DistanceSummary {
            distance_meters: doc.distance,
            ..DistanceSummary::default()
        }),
        ..ActivityDistanceData::default()
    });
    Ok(out)
}

/// Oura session `type` → Terra `ActivityType`.
pub fn session_activity_type(session_type: Option<&str>) -> ActivityType {
    match session_type {
        Some("breathing") => ActivityType::GuidedBreathing,
        Some("meditation" | "relaxation") => ActivityType::Meditation,
        Some("nap" | "rest") => ActivityType::Still,
        _ => ActivityType::Other,
    }
}

/// Oura `session` (breathing, meditation, …) → Terra `Activity` with HR/HRV samples.
pub fn session(doc: &Session) -> Result<Activity, MappingError> {
    validate(&OuraDocument::Session(doc.clone()))?;
    let offset = doc.start_datetime.offset();
    let end = Some(doc.end_datetime);
    let hr = doc
        .heart_rate
        .as_ref()
        .map(|s| expand(s, offset, end, |v| v > 0.0))
        .unwrap_or_default();
    let hrv = doc
        .heart_rate_variability
        .as_ref()
        .map(|s| expand(s, offset, end, |v| v > 0.0))
        .unwrap_or_default();
    let mut out = Activity::new(ActivityMetadata {
        summary_id: doc.id.clone(),
        start_time: doc.start_datetime,
        end_time: doc.end_datetime,
        activity_type: session_activity_type(doc.session_type.as_deref()),
        upload_type: UploadType::Manual,
        name: doc.session_type.clone(),
        timestamp_localization: Some(TimestampLocalization::Local),
        extra: Map::new(),
    });
    let seconds = span_seconds(doc.start_datetime, doc.end_datetime);
    out.active_durations_data = Some(ActiveDurationsData {
        activity_seconds: Some(seconds),
        ..ActiveDurationsData::default()
    });
    let bpm = || hr.iter().map(|p| p.1);
    out.heart_rate_data = nonempty(HeartRateData {
        summary: nonempty(HeartRateSummary {
            avg_hr_bpm: mean(bpm()),
            min_hr_bpm: bpm().reduce(f64::min),
            max_hr_bpm: bpm().reduce(f64::max),
            avg_hrv_rmssd: mean(hrv.iter().map(|p| p.1)),
            ..HeartRateSummary::default()
        }),
        detailed: nonempty(HeartRateDetailed {
            hr_samples: some_vec(hr_samples(&hr, None)),
            hrv_samples_rmssd: some_vec(hrv_samples(&hrv)),
            ..HeartRateDetailed::default()
        }),
        extra: Map::new(),
    });
    Ok(out)
}

/// Oura `personal_info` → Terra `Athlete`.
pub fn athlete(doc: &PersonalInfo) -> Athlete {
    Athlete {
        age: doc.age.filter(|a| a.is_finite()).map(|a| a.round() as i64),
        sex: doc.biological_sex.clone(),
        email: doc.email.clone(),
        provider_user_id: Some(doc.id.clone()),
        ..Athlete::default()
    }
}

/// The Terra data types an Oura data type feeds.
pub fn terra_types_for(data_type: &str) -> &'static [&'static str] {
    match canonical_data_type(data_type) {
        Some("sleep") => &["sleep"],
        Some("daily_sleep") => &["daily", "sleep"],
        Some("daily_activity" | "daily_readiness" | "daily_stress" | "daily_resilience") => {
            &["daily"]
        }
        Some("daily_spo2") => &["daily", "body"],
        Some("heartrate" | "vO2_max" | "daily_cardiovascular_age") => &["body"],
        Some("workout" | "session") => &["activity"],
        Some("personal_info") => &["athlete", "body"],
        Some("enhanced_tag" | "daily_cycle_phases") => &["menstruation"],
        _ => &[],
    }
}

/// What an Oura `delete` notification means for the Terra side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    /// The document was a Terra item of its own: emit a tombstone for it
    /// (see [`tombstone`]).
    Item {
        /// Terra data type.
        event_type: &'static str,
        /// What to delete.
        deleted: DeletedRef,
    },
    /// The document was one input of day aggregates: rebuild these Terra types for the day
    /// the stored document belonged to; if nothing is left, tombstone that day with
    /// [`DeletedRef::Date`].
    RebuildDay {
        /// Terra data types to rebuild.
        event_types: &'static [&'static str],
    },
}

/// Classifies an Oura `delete` of `object_id` (`data_type` as in the webhook).
pub fn delete_target(data_type: &str, object_id: &str) -> Result<DeleteTarget, MappingError> {
    let t = canonical_data_type(data_type)
        .ok_or_else(|| MappingError::UnsupportedDataType(data_type.to_owned()))?;
    let item = |event_type| DeleteTarget::Item {
        event_type,
        deleted: DeletedRef::SummaryId {
            summary_id: object_id.to_owned(),
        },
    };
    Ok(match t {
        "sleep" => item("sleep"),
        "workout" | "session" => item("activity"),
        other => DeleteTarget::RebuildDay {
            event_types: terra_types_for(other),
        },
    })
}

/// The tombstone event for an Oura `delete` of a sleep period, workout or session
/// (`summary_id` = the Oura id); `Ok(None)` for day-aggregate inputs (rebuild instead).
pub fn tombstone(
    user: &TerraUser,
    data_type: &str,
    object_id: &str,
) -> Result<Option<Event>, MappingError> {
    Ok(match delete_target(data_type, object_id)? {
        DeleteTarget::Item {
            event_type,
            deleted,
        } => Some(Event::tombstone(event_type, user.clone(), vec![deleted])),
        DeleteTarget::RebuildDay { .. } => None,
    })
}

/// A day tombstone (`{"date": …}`) for each Terra type, for when a day has no documents left.
pub fn day_tombstone(user: &TerraUser, event_type: &str, day: NaiveDate) -> Event {
    Event::tombstone(
        event_type,
        user.clone(),
        vec![DeletedRef::Date { date: day }],
    )
}
