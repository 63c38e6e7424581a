//! Number formatting: a float with no fractional part is written as a JSON integer
//! (`25200`, not `25200.0`), so integral values from providers and from Terra's own
//! examples round-trip byte-for-byte.

use serde::Serializer;
use serde::ser::SerializeMap;
use std::collections::BTreeMap;

/// Largest magnitude below which every integral `f64` is exactly an `i64` we can print.
const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

pub(crate) fn f64_value<S: Serializer>(x: f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < EXACT {
        s.serialize_i64(x as i64)
    } else {
        s.serialize_f64(x)
    }
}

pub(crate) fn opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => f64_value(*x, s),
        None => s.serialize_none(),
    }
}

struct Num(f64);

impl serde::Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        f64_value(self.0, s)
    }
}

pub(crate) fn opt_f64_map<S: Serializer>(
    v: &Option<BTreeMap<String, f64>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(m) => {
            let mut map = s.serialize_map(Some(m.len()))?;
            for (k, x) in m {
                map.serialize_entry(k, &Num(*x))?;
            }
            map.end()
        }
        None => s.serialize_none(),
    }
}
