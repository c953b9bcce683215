//! The opaque cursor of a keyset-paged list: where the last page ended, as a moment and an id
//! (hex of `<unix microseconds>|<uuid>`). Only a cursor this API returned decodes.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::problem::FieldError;

/// A page's `limit` (its default when absent) and `cursor`, each error pushed in `errors`
/// under its field's name.
pub(crate) fn page_query(
    limit: Option<i64>,
    cursor: Option<&str>,
    default: i64,
    max: i64,
    errors: &mut Vec<FieldError>,
) -> (i64, Option<(DateTime<Utc>, Uuid)>) {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        errors.push(FieldError::new("limit", format!("must be 1 to {max}")));
    }
    let cursor = cursor.and_then(|text| {
        let decoded = decode(text);
        if decoded.is_none() {
            errors.push(FieldError::new("cursor", "not a cursor this API returned"));
        }
        decoded
    });
    (limit, cursor)
}

pub(crate) fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    hex::encode(format!("{}|{id}", at.timestamp_micros()))
}

pub(crate) fn decode(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = String::from_utf8(hex::decode(text).ok()?).ok()?;
    let (micros, id) = raw.split_once('|')?;
    Some((
        DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_was_encoded_and_nothing_else_decodes() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_796_649_177_123_456).unwrap();
        let id = Uuid::from_u128(42);
        assert_eq!(decode(&encode(at, id)), Some((at, id)));
        for bad in [
            "",
            "zz",
            &hex::encode("12|not-a-uuid"),
            &hex::encode("x|00000000-0000-0000-0000-00000000002a"),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
