//! Timestamps as the API reports them (RFC 3339, UTC) and epoch seconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

pub fn now_epoch_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

pub fn now_epoch_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
