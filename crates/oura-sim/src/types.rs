//! Data-type catalogue: REST path segments, webhook names, scopes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum DocType {
    DailyActivity,
    DailyReadiness,
    DailySleep,
    Sleep,
    SleepTime,
    RestModePeriod,
    DailyStress,
    DailyResilience,
    DailySpo2,
    DailyCardiovascularAge,
    Vo2Max,
    Workout,
    Session,
    Tag,
    EnhancedTag,
    RingConfiguration,
}

impl DocType {
    pub const ALL: [DocType; 16] = [
        DocType::DailyActivity,
        DocType::DailyReadiness,
        DocType::DailySleep,
        DocType::Sleep,
        DocType::SleepTime,
        DocType::RestModePeriod,
        DocType::DailyStress,
        DocType::DailyResilience,
        DocType::DailySpo2,
        DocType::DailyCardiovascularAge,
        DocType::Vo2Max,
        DocType::Workout,
        DocType::Session,
        DocType::Tag,
        DocType::EnhancedTag,
        DocType::RingConfiguration,
    ];

    /// Path segment under `/v2/usercollection/` (exact spelling, e.g. `vO2_max`).
    pub fn path(self) -> &'static str {
        match self {
            DocType::DailyActivity => "daily_activity",
            DocType::DailyReadiness => "daily_readiness",
            DocType::DailySleep => "daily_sleep",
            DocType::Sleep => "sleep",
            DocType::SleepTime => "sleep_time",
            DocType::RestModePeriod => "rest_mode_period",
            DocType::DailyStress => "daily_stress",
            DocType::DailyResilience => "daily_resilience",
            DocType::DailySpo2 => "daily_spo2",
            DocType::DailyCardiovascularAge => "daily_cardiovascular_age",
            DocType::Vo2Max => "vO2_max",
            DocType::Workout => "workout",
            DocType::Session => "session",
            DocType::Tag => "tag",
            DocType::EnhancedTag => "enhanced_tag",
            DocType::RingConfiguration => "ring_configuration",
        }
    }

    /// Name in the webhook `ExtApiV2DataType` enum (e.g. `vo2_max`).
    pub fn webhook_name(self) -> &'static str {
        match self {
            DocType::Vo2Max => "vo2_max",
            other => other.path(),
        }
    }

    pub fn from_path(s: &str) -> Option<DocType> {
        DocType::ALL.into_iter().find(|t| t.path() == s)
    }

    /// Accepts the webhook name (`vo2_max`) and, for control-API convenience, the path (`vO2_max`).
    pub fn from_webhook_name(s: &str) -> Option<DocType> {
        DocType::ALL
            .into_iter()
            .find(|t| t.webhook_name() == s || t.path() == s)
    }

    pub fn scope(self) -> &'static str {
        match self {
            DocType::DailyActivity
            | DocType::DailyReadiness
            | DocType::DailySleep
            | DocType::Sleep
            | DocType::SleepTime
            | DocType::RestModePeriod
            | DocType::DailyStress => "extapi:daily",
            DocType::DailyResilience => "extapi:stress",
            DocType::DailySpo2 => "extapi:spo2",
            DocType::DailyCardiovascularAge | DocType::Vo2Max => "extapi:heart_health",
            DocType::Workout => "extapi:workout",
            DocType::Session => "extapi:session",
            DocType::Tag | DocType::EnhancedTag => "extapi:tag",
            DocType::RingConfiguration => "extapi:ring_configuration",
        }
    }

    /// List route filters by `start_date`/`end_date` (all but `ring_configuration`).
    pub fn date_filtered(self) -> bool {
        self != DocType::RingConfiguration
    }

    /// At most one document per day.
    pub fn one_per_day(self) -> bool {
        !matches!(
            self,
            DocType::Sleep
                | DocType::Workout
                | DocType::Session
                | DocType::Tag
                | DocType::EnhancedTag
                | DocType::RestModePeriod
                | DocType::RingConfiguration
        )
    }

    /// Fields always returned when `fields=` narrows the response (the schema's required set).
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            DocType::DailyActivity => &[
                "id",
                "day",
                "timestamp",
                "steps",
                "active_calories",
                "total_calories",
                "target_calories",
                "equivalent_walking_distance",
                "target_meters",
                "meters_to_target",
                "high_activity_time",
                "medium_activity_time",
                "low_activity_time",
                "sedentary_time",
                "resting_time",
                "non_wear_time",
                "high_activity_met_minutes",
                "medium_activity_met_minutes",
                "low_activity_met_minutes",
                "sedentary_met_minutes",
                "average_met_minutes",
                "inactivity_alerts",
                "met",
                "contributors",
            ],
            DocType::DailyReadiness | DocType::DailySleep => {
                &["id", "day", "timestamp", "contributors"]
            }
            DocType::Sleep => &[
                "id",
                "day",
                "bedtime_start",
                "bedtime_end",
                "period",
                "time_in_bed",
                "low_battery_alert",
            ],
            DocType::Workout => &[
                "id",
                "activity",
                "day",
                "start_datetime",
                "end_datetime",
                "intensity",
                "source",
            ],
            DocType::Session => &["id", "day", "start_datetime", "end_datetime", "type"],
            DocType::Vo2Max => &["id", "day", "timestamp", "vo2_max"],
            DocType::RestModePeriod => &["id", "start_day", "episodes"],
            DocType::RingConfiguration => &["id"],
            DocType::Tag => &["id", "day", "text", "timestamp", "tags"],
            DocType::EnhancedTag => &["id", "start_time", "start_day"],
            DocType::DailyResilience => &["id", "day", "contributors", "level"],
            _ => &["id", "day"],
        }
    }

    /// Whether the list route accepts `fields` (not tag, enhanced_tag, daily_resilience).
    pub fn supports_fields(self) -> bool {
        !matches!(
            self,
            DocType::Tag | DocType::EnhancedTag | DocType::DailyResilience
        )
    }
}

/// Time-series collections (list only, datetime-filtered, `latest` supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesType {
    HeartRate,
    RingBatteryLevel,
}

impl SeriesType {
    pub fn from_path(s: &str) -> Option<SeriesType> {
        match s {
            "heartrate" => Some(SeriesType::HeartRate),
            "ring_battery_level" => Some(SeriesType::RingBatteryLevel),
            _ => None,
        }
    }
    pub fn scope(self) -> &'static str {
        match self {
            SeriesType::HeartRate => "extapi:heartrate",
            SeriesType::RingBatteryLevel => "extapi:ring_configuration",
        }
    }
}

/// All scopes the simulator knows, in their `extapi:` form.
pub const ALL_SCOPES: &[&str] = &[
    "extapi:email",
    "extapi:personal",
    "extapi:daily",
    "extapi:heartrate",
    "extapi:workout",
    "extapi:tag",
    "extapi:session",
    "extapi:spo2",
    "extapi:stress",
    "extapi:heart_health",
    "extapi:ring_configuration",
];

/// Normalise a requested scope (legacy or `extapi:` name) to its `extapi:` form.
/// `openid`/`profile` are accepted and kept as-is. Unknown → `None`.
pub fn normalize_scope(s: &str) -> Option<String> {
    let base = s.strip_prefix("extapi:").unwrap_or(s);
    let base = match base {
        "spo2Daily" => "spo2",
        other => other,
    };
    let full = format!("extapi:{base}");
    if ALL_SCOPES.contains(&full.as_str()) {
        return Some(full);
    }
    if !s.starts_with("extapi:") && matches!(s, "openid" | "profile") {
        return Some(s.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for t in DocType::ALL {
            assert_eq!(DocType::from_path(t.path()), Some(t));
            assert_eq!(DocType::from_webhook_name(t.webhook_name()), Some(t));
        }
        assert_eq!(DocType::from_path("vo2_max"), None);
        assert_eq!(normalize_scope("spo2Daily").as_deref(), Some("extapi:spo2"));
        assert_eq!(normalize_scope("daily").as_deref(), Some("extapi:daily"));
        assert_eq!(normalize_scope("bogus"), None);
    }
}
