//! Integers in request bodies as JSON Schema counts them: `5` and `5.0` are the same integer, so a client (or a
//! generator) that writes integral numbers with a fraction part is understood; `2.5` is refused naming the field.
//! Use with `#[serde(deserialize_with = "crate::integral::…")]` on every integer field a client sends.

use serde::de::{Error, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

/// Beyond 2^53 a float no longer holds every integer exactly; such a number is not taken as one.
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// An integer field: a JSON integer, or a number with a zero fraction part, that fits `T`.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let value = deserializer.deserialize_any(IntegralVisitor)?;
    T::try_from(value).map_err(|_| D::Error::custom(format!("{value} is out of range for this field")))
}

/// An optional integer field (absent or `null`: `None`).
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    Ok(Option::<Integer<T>>::deserialize(deserializer)?.map(|Integer(value)| value))
}

/// An integer field where `null` differs from absent: absent is `None` (with `#[serde(default)]`), `null` is
/// `Some(None)`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    optional(deserializer).map(Some)
}

/// An integer read by `integer`, for use inside `Option` and collections.
struct Integer<T>(T);

impl<'de, T: TryFrom<i128>> Deserialize<'de> for Integer<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        integer(deserializer).map(Integer)
    }
}

struct IntegralVisitor;

impl Visitor<'_> for IntegralVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<i128, E> {
        Ok(value.into())
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<i128, E> {
        Ok(value.into())
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<i128, E> {
        if value.fract() == 0.0 && value.abs() <= MAX_EXACT_FLOAT_INTEGER {
            // Exact: the value is integral and within the range where f64 holds integers exactly.
            Ok(value as i128)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(deserialize_with = "super::integer")]
        count: u32,
        #[serde(default, deserialize_with = "super::optional")]
        limit: Option<i64>,
        #[serde(default, deserialize_with = "super::nullable")]
        grace: Option<Option<u32>>,
    }

    fn parse(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn integral_numbers_are_integers() {
        let fields = parse(r#"{"count": 5.0, "limit": -3.0, "grace": 11596.0}"#).unwrap();
        assert_eq!((fields.count, fields.limit, fields.grace), (5, Some(-3), Some(Some(11596))));
        let fields = parse(r#"{"count": 7, "limit": 1e3}"#).unwrap();
        assert_eq!((fields.count, fields.limit, fields.grace), (7, Some(1000), None));
    }

    #[test]
    fn null_and_absent_differ_where_they_should() {
        assert_eq!(parse(r#"{"count": 1, "grace": null}"#).unwrap().grace, Some(None));
        assert_eq!(parse(r#"{"count": 1}"#).unwrap().grace, None);
        assert_eq!(parse(r#"{"count": 1, "limit": null}"#).unwrap().limit, None);
    }

    #[test]
    fn fractions_strings_and_out_of_range_numbers_are_refused() {
        assert!(parse(r#"{"count": 2.5}"#).unwrap_err().contains("floating point `2.5`, expected an integer"));
        assert!(parse(r#"{"count": "5"}"#).unwrap_err().contains("expected an integer"));
        assert!(parse(r#"{"count": -1}"#).unwrap_err().contains("out of range"));
        assert!(parse(r#"{"count": 4294967296.0}"#).unwrap_err().contains("out of range"));
        assert!(parse(r#"{"count": 1e300}"#).unwrap_err().contains("expected an integer"));
    }
}
