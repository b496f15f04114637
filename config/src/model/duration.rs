//! Durations in zowe.yaml: a number of milliseconds (`250`) or a human string (`250ms`, `10s`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration as written in zowe.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Milliseconds, for `const` defaults.
    pub const fn ms(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: milliseconds as a number, or a string such as \"250ms\", \"10s\", \"8h\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_millis(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|v| Dur(Duration::from_millis(v)))
                    .map_err(|_| E::custom(format!("found {v}, a duration cannot be negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Dur(Duration::from_secs_f64(v / 1000.0)))
                } else {
                    Err(E::custom(format!("found {v}, a duration must be a non-negative number of milliseconds")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!("found \"{v}\", not a duration ({e}); write e.g. \"250ms\", \"10s\" or a number of milliseconds"))
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_milliseconds_and_strings_are_human() {
        let d: Dur = serde_json::from_value(serde_json::json!(250)).unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        let d: Dur = serde_json::from_value(serde_json::json!("10s")).unwrap();
        assert_eq!(d.0, Duration::from_secs(10));
        assert!(serde_json::from_value::<Dur>(serde_json::json!("soon")).is_err());
        assert!(serde_json::from_value::<Dur>(serde_json::json!(-5)).is_err());
        assert_eq!(serde_json::to_value(Dur::ms(1500)).unwrap(), "1s 500ms");
    }
}
