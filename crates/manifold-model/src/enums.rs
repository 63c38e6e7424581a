//! Terra's numeric enums. Each serialises as a JSON **number** with the value from Terra's
//! OpenAPI tables (e.g. `"level": 4`); values this crate does not know are kept in
//! `Unrecognized(n)` so they round-trip instead of failing the whole payload.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! numeric_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value not in the reference table; kept verbatim.
            Unrecognized(i64),
        }

        impl $name {
            /// The numeric wire value.
            pub const fn code(self) -> i64 {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unrecognized(v) => v,
                }
            }

            /// The variant for a numeric wire value (never fails).
            pub const fn from_code(code: i64) -> Self {
                match code {
                    $( $value => Self::$variant, )*
                    other => Self::Unrecognized(other),
                }
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.code()
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self::from_code(v)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(CodeVisitor).map(Self::from_code)
            }
        }
    };
}

/// Accepts an integer, or a float with no fractional part (`4.0`), as an enum code.
struct CodeVisitor;

impl Visitor<'_> for CodeVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer enum code")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("enum code out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

numeric_enum! {
    /// `SleepLevel` (hypnogram `level`).
    SleepLevel {
        /// 0
        Unknown = 0,
        /// 1
        Awake = 1,
        /// 2
        Sleeping = 2,
        /// 3
        OutOfBed = 3,
        /// 4
        Light = 4,
        /// 5
        Deep = 5,
        /// 6
        Rem = 6,
    }
}

numeric_enum! {
    /// `SleepUploadType` (`sleep.metadata.upload_type`). Note: 1 = Manual, 2 = Automatic.
    SleepUploadType {
        /// 0
        Unknown = 0,
        /// 1
        Manual = 1,
        /// 2
        Automatic = 2,
        /// 3
        Tentative = 3,
        /// 4
        Indeterminate = 4,
    }
}

numeric_enum! {
    /// `UploadType` (activity/daily `metadata.upload_type`). Note: 1 = Automatic, 2 = Manual.
    UploadType {
        /// 0
        Unknown = 0,
        /// 1
        Automatic = 1,
        /// 2
        Manual = 2,
        /// 3
        Update = 3,
        /// 4
        Delete = 4,
        /// 5
        Pending = 5,
        /// 6
        ThirdPartyUpload = 6,
    }
}

numeric_enum! {
    /// `ActivityLevel` (`activity_levels_samples[].activity_level`).
    ActivityLevel {
        /// 0
        Unknown = 0,
        /// 1
        Rest = 1,
        /// 2
        Inactive = 2,
        /// 3
        LowIntensity = 3,
        /// 4
        MediumIntensity = 4,
        /// 5
        HighIntensity = 5,
    }
}

numeric_enum! {
    /// `TimestampLocalization`: 0 = UTC (written `+00:00`), 1 = local time.
    TimestampLocalization {
        /// 0
        Utc = 0,
        /// 1
        Local = 1,
    }
}

numeric_enum! {
    /// `HeartRateContext` (`hr_samples[].context`).
    HeartRateContext {
        /// 0
        NotSet = 0,
        /// 1
        Active = 1,
        /// 2
        NotActive = 2,
    }
}

numeric_enum! {
    /// `OxygenSaturationType`.
    OxygenSaturationType {
        /// 0
        Blood = 0,
        /// 1
        Muscle = 1,
    }
}

numeric_enum! {
    /// `StressLevel` (`stress_data.stress_rating`).
    StressLevel {
        /// 0
        Unknown = 0,
        /// 1 (1-25)
        Rest = 1,
        /// 2 (26-50)
        Low = 2,
        /// 3 (51-75)
        Medium = 3,
        /// 4 (76-100)
        High = 4,
    }
}

numeric_enum! {
    /// `RecoveryLevel` (`readiness_data.recovery_level`).
    RecoveryLevel {
        /// 0
        Unknown = 0,
        /// 1
        VeryPoor = 1,
        /// 2
        Poor = 2,
        /// 3
        Compromised = 3,
        /// 4
        Ok = 4,
        /// 5
        Good = 5,
        /// 6
        VeryGood = 6,
    }
}

numeric_enum! {
    /// `MenstruationFlow`.
    MenstruationFlow {
        /// 0
        Unknown = 0,
        /// 1
        NoFlow = 1,
        /// 2
        Light = 2,
        /// 3
        Medium = 3,
        /// 4
        Heavy = 4,
        /// 5 (flow occurred, intensity not specified)
        Had = 5,
    }
}

numeric_enum! {
    /// `MenstruationInterval` (`menstruation_data.current_phase`, `intervals[].phase`).
    MenstruationInterval {
        /// 0
        Unknown = 0,
        /// 1
        Period = 1,
        /// 2
        Follicular = 2,
        /// 3
        FertileWindow = 3,
        /// 4
        Ovulation = 4,
        /// 5
        Luteal = 5,
        /// 6
        Pms = 6,
        /// 7
        FirstTrimester = 7,
        /// 8
        SecondTrimester = 8,
        /// 9
        ThirdTrimester = 9,
    }
}

numeric_enum! {
    /// `ActivityType` (`activity.metadata.type`), values from Terra's OpenAPI table.
    /// Note that `0` is `InVehicle`: never test it for truthiness.
    ActivityType {
        /// In Vehicle
        InVehicle = 0,
        /// Biking
        Biking = 1,
        /// Still
        Still = 3,
        /// Unknown
        Unknown = 4,
        /// Tilting
        Tilting = 5,
        /// Walking
        Walking = 7,
        /// Running
        Running = 8,
        /// Aerobics
        Aerobics = 9,
        /// Badminton
        Badminton = 10,
        /// Baseball
        Baseball = 11,
        /// Basketball
        Basketball = 12,
        /// Biathlon
        Biathlon = 13,
        /// Hand Biking
        Handbiking = 14,
        /// Mountain Biking
        MountainBiking = 15,
        /// Road Biking
        RoadBiking = 16,
        /// Spinning
        Spinning = 17,
        /// Stationary Biking
        StationaryBiking = 18,
        /// Utility Biking
        UtilityBiking = 19,
        /// Boxing
        Boxing = 20,
        /// Calisthenics
        Calisthenics = 21,
        /// Circuit Training
        CircuitTraining = 22,
        /// Cricket
        Cricket = 23,
        /// Dancing
        Dancing = 24,
        /// Elliptical
        Elliptical = 25,
        /// Fencing
        Fencing = 26,
        /// American Football
        AmericanFootball = 27,
        /// Australian Football
        AustralianFootball = 28,
        /// English Football
        EnglishFootball = 29,
        /// Frisbee
        Frisbee = 30,
        /// Gardening
        Gardening = 31,
        /// Golf
        Golf = 32,
        /// Gymnastics
        Gymnastics = 33,
        /// Handball
        Handball = 34,
        /// Hiking
        Hiking = 35,
        /// Hockey
        Hockey = 36,
        /// Horseback Riding
        HorsebackRiding = 37,
        /// Housework
        Housework = 38,
        /// Jumping Rope
        JumpingRope = 39,
        /// Kayaking
        Kayaking = 40,
        /// Kettlebell Training
        KettlebellTraining = 41,
        /// Kickboxing
        Kickboxing = 42,
        /// Kitesurfing
        Kitesurfing = 43,
        /// Martial Arts
        MartialArts = 44,
        /// Meditation
        Meditation = 45,
        /// Mixed Martial Arts
        MixedMartialArts = 46,
        /// P90X Exercises
        P90xExercises = 47,
        /// Paragliding
        Paragliding = 48,
        /// Pilates
        Pilates = 49,
        /// Polo
        Polo = 50,
        /// Racquetball
        Racquetball = 51,
        /// Rock Climbing
        RockClimbing = 52,
        /// Rowing
        Rowing = 53,
        /// Rowing Machine
        RowingMachine = 54,
        /// Rugby
        Rugby = 55,
        /// Jogging
        Jogging = 56,
        /// Running on Sand
        RunningOnSand = 57,
        /// Treadmill Running
        TreadmillRunning = 58,
        /// Sailing
        Sailing = 59,
        /// Scuba Diving
        ScubaDiving = 60,
        /// Skateboarding
        Skateboarding = 61,
        /// Skating
        Skating = 62,
        /// Cross Skating
        CrossSkating = 63,
        /// Indoor Rollerblading
        IndoorRollerblading = 64,
        /// Skiing
        Skiing = 65,
        /// Back Country Skiing
        BackCountrySkiing = 66,
        /// Cross Country Skiing
        CrossCountrySkiing = 67,
        /// Downhill Skiing
        DownhillSkiing = 68,
        /// Kite Skiing
        KiteSkiing = 69,
        /// Roller Skiing
        RollerSkiing = 70,
        /// Sledding
        Sledding = 71,
        /// Snowboarding
        Snowboarding = 73,
        /// Snowmobile
        Snowmobile = 74,
        /// Snowshoeing
        Snowshoeing = 75,
        /// Squash
        Squash = 76,
        /// Stair Climbing
        StairClimbing = 77,
        /// Stair Climbing Machine
        StairClimbingMachine = 78,
        /// Stand Up Paddleboarding
        StandUpPaddleboarding = 79,
        /// Strength Training
        StrengthTraining = 80,
        /// Surfing
        Surfing = 81,
        /// Swimming
        Swimming = 82,
        /// Swimming in Pool
        SwimmingSwimmingPool = 83,
        /// Open Water Swimming
        SwimmingOpenWater = 84,
        /// Table Tennis
        TableTennis = 85,
        /// Team Sports
        TeamSports = 86,
        /// Tennis
        Tennis = 87,
        /// Treadmill
        Treadmill = 88,
        /// Volleyball
        Volleyball = 89,
        /// Beach Volleyball
        VolleyballBeach = 90,
        /// Indoor Volleyball
        VolleyballIndoor = 91,
        /// Wakeboarding
        Wakeboarding = 92,
        /// Walking for Fitness
        WalkingFitness = 93,
        /// Nordic Walking
        NordicWalking = 94,
        /// Treadmill Walking
        WalkingTreadmill = 95,
        /// Water Polo
        Waterpolo = 96,
        /// Weightlifting
        Weightlifting = 97,
        /// Wheelchair
        Wheelchair = 98,
        /// Windsurfing
        Windsurfing = 99,
        /// Yoga
        Yoga = 100,
        /// Zumba
        Zumba = 101,
        /// Diving
        Diving = 102,
        /// Ergometer
        Ergometer = 103,
        /// Ice Skating
        IceSkating = 104,
        /// Indoor Skating
        IndoorSkating = 105,
        /// Curling
        Curling = 106,
        /// Other
        Other = 108,
        /// CrossFit
        Crossfit = 113,
        /// HIIT
        Hiit = 114,
        /// Interval Training
        IntervalTraining = 115,
        /// Walking with Stroller
        WalkingStroller = 116,
        /// Elevator
        Elevator = 117,
        /// Escalator
        Escalator = 118,
        /// Archery
        Archery = 119,
        /// Softball
        Softball = 120,
        /// Guided Breathing
        GuidedBreathing = 122,
        /// Cardio Training
        CardioTraining = 123,
        /// Lacrosse
        Lacrosse = 124,
        /// Stretching
        Stretching = 125,
        /// Triathlon
        Triathlon = 126,
        /// Inline Skating
        InlineSkating = 127,
        /// Sky Diving
        SkyDiving = 128,
        /// Paddling
        Paddling = 129,
        /// Mountaineering
        Mountaineering = 130,
        /// Fishing
        Fishing = 131,
        /// Water Skiing
        WaterSkiing = 132,
        /// Indoor Running
        IndoorRunning = 133,
        /// Padel Tennis
        PadelTennis = 134,
        /// Driving
        Driving = 135,
        /// Off-Road Driving
        OffRoadDriving = 136,
        /// Motorbiking
        Motorbiking = 137,
        /// Motor Racing
        MotorRacing = 138,
        /// Enduro
        Enduro = 139,
        /// Canoeing
        Canoeing = 140,
        /// Orienteering
        Orienteering = 141,
        /// Hang Gliding
        HangGliding = 142,
        /// Flying
        Flying = 143,
        /// Hot Air Ballooning
        HotAirBallooning = 144,
        /// Jet Skiing
        JetSkiing = 145,
        /// Power Boating
        PowerBoating = 146,
        /// Gaelic Football
        GaelicFootball = 147,
        /// Hurling
        Hurling = 148,
        /// Trail Running
        TrailRunning = 149,
        /// Gravel Cycling
        GravelCycling = 150,
        /// Multisport
        Multisport = 151,
        /// E-Biking
        EBiking = 152,
        /// E-Mountain Biking
        EMountainBiking = 153,
        /// Physical Therapy
        PhysicalTherapy = 154,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_as_numbers() {
        assert_eq!(serde_json::to_string(&SleepLevel::Rem).unwrap(), "6");
        assert_eq!(serde_json::to_string(&ActivityType::Running).unwrap(), "8");
        assert_eq!(ActivityType::from_code(0), ActivityType::InVehicle);
        assert_eq!(ActivityType::from_code(122), ActivityType::GuidedBreathing);
        let v: UploadType = serde_json::from_str("2").unwrap();
        assert_eq!(v, UploadType::Manual);
        let v: SleepUploadType = serde_json::from_str("2.0").unwrap();
        assert_eq!(v, SleepUploadType::Automatic);
        let v: SleepLevel = serde_json::from_str("42").unwrap();
        assert_eq!(v, SleepLevel::Unrecognized(42));
        assert_eq!(serde_json::to_string(&v).unwrap(), "42");
        assert!(serde_json::from_str::<SleepLevel>("\"deep\"").is_err());
        assert!(serde_json::from_str::<SleepLevel>("4.5").is_err());
    }
}
