//! "The last event seen": Authentik's `created` timestamp plus the event
//! pk, persisted in the state DB's `meta` table so a restart resumes where
//! the last run stopped.
//!
//! Events are compared by instant, not text: DRF omits zero microseconds
//! and renders the server's time zone offset, so strings do not sort.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

const META_KEY: &str = "events_catchup_position";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Microseconds since the Unix epoch; `i64::MIN` for "before every
    /// event" (Authentik had none when we first looked).
    pub at: i64,
    /// The event's `created` as Authentik sent it, for logs.
    pub created: String,
    pub pk: String,
}

impl Position {
    /// Before every event: everything Authentik records from now on is new.
    pub fn origin() -> Self {
        Self {
            at: i64::MIN,
            created: String::new(),
            pk: String::new(),
        }
    }

    pub fn of(created: &str, pk: &str) -> Result<Self> {
        Ok(Self {
            at: parse_timestamp(created)?,
            created: created.to_owned(),
            pk: pk.to_owned(),
        })
    }

    /// Whether an event at `at` still needs reading. Events of the same
    /// instant count (`>=`): several can share a timestamp, and only
    /// deduplication by pk tells them apart.
    pub fn admits(&self, at: i64) -> bool {
        at >= self.at
    }

    /// The later of the two; equal instants keep `self`.
    pub fn max(self, other: Self) -> Self {
        if other.at > self.at { other } else { self }
    }

    pub async fn load(store: &Store) -> Result<Option<Self>> {
        match store.get_meta(META_KEY).await? {
            None => Ok(None),
            Some(raw) => serde_json::from_str(&raw)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("meta {META_KEY}: {e}"))),
        }
    }

    pub async fn save(&self, store: &Store) -> Result<()> {
        let raw = serde_json::to_string(self)
            .map_err(|e| Error::Corrupt(format!("meta {META_KEY}: {e}")))?;
        store.set_meta(META_KEY, &raw).await
    }
}

/// ISO 8601 / RFC 3339 (`2026-08-05T12:34:56[.ffffff](Z|±HH:MM)`) to
/// microseconds since the Unix epoch.
pub fn parse_timestamp(raw: &str) -> Result<i64> {
    let bad = || {
        Error::Authentik(format!(
            "event `created` {raw:?} is not an ISO 8601 timestamp"
        ))
    };
    let (date, rest) = raw.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (Some(Some(year)), Some(Some(month)), Some(Some(day))) =
        (date_parts.next(), date_parts.next(), date_parts.next())
    else {
        return Err(bad());
    };
    let zone_at = rest.find(['Z', 'z', '+', '-']).ok_or_else(bad)?;
    let (clock, zone) = rest.split_at(zone_at);
    let offset_secs = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
            let h: i64 = h.parse().map_err(|_| bad())?;
            let m: i64 = m.parse().map_err(|_| bad())?;
            sign * (h * 3600 + m * 60)
        }
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms_parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (Some(Some(hour)), Some(Some(minute)), Some(Some(second))) =
        (hms_parts.next(), hms_parts.next(), hms_parts.next())
    else {
        return Err(bad());
    };
    if !fraction.chars().all(|c| c.is_ascii_digit()) || !(1..=12).contains(&month) {
        return Err(bad());
    }
    // Microseconds: pad or cut the fraction to six digits.
    let micros: i64 = format!("{fraction:0<6}")[..6].parse().map_err(|_| bad())?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_compare_as_instants() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_timestamp("2026-08-05T12:34:56Z").unwrap(),
            1_785_933_296_000_000
        );
        // DRF omits zero microseconds; a shorter fraction is padded.
        assert_eq!(
            parse_timestamp("2026-08-05T12:34:56.5Z").unwrap(),
            parse_timestamp("2026-08-05T12:34:56.500000Z").unwrap()
        );
        // The same instant in another zone.
        assert_eq!(
            parse_timestamp("2026-08-05T14:34:56.000001+02:00").unwrap(),
            parse_timestamp("2026-08-05T12:34:56.000001Z").unwrap()
        );
        assert!(
            parse_timestamp("2026-08-05T12:34:56Z").unwrap()
                < parse_timestamp("2026-08-05T12:34:56.000001Z").unwrap()
        );
        for bad in [
            "",
            "yesterday",
            "2026-08-05",
            "2026-08-05T12:34:56",
            "2026-13-05T00:00:00Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_instant_is_read_again() {
        let seen = Position::of("2026-08-05T12:34:56Z", "a").unwrap();
        assert!(seen.admits(seen.at), "an event of the same second");
        assert!(seen.admits(seen.at + 1));
        assert!(!seen.admits(seen.at - 1));
        assert!(Position::origin().admits(i64::MIN));
    }

    #[test]
    fn max_keeps_the_later_position() {
        let a = Position::of("2026-08-05T12:34:56Z", "a").unwrap();
        let b = Position::of("2026-08-05T12:34:57Z", "b").unwrap();
        assert_eq!(a.clone().max(b.clone()), b);
        assert_eq!(b.clone().max(a.clone()), b);
        let same = Position::of("2026-08-05T12:34:56Z", "c").unwrap();
        assert_eq!(a.clone().max(same), a);
    }

    #[tokio::test]
    async fn the_position_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/s.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        assert_eq!(Position::load(&store).await.unwrap(), None);
        let seen = Position::of("2026-08-05T12:34:56.123456Z", "e1").unwrap();
        seen.save(&store).await.unwrap();
        drop(store);
        let store = Store::open(&url).await.unwrap();
        assert_eq!(Position::load(&store).await.unwrap(), Some(seen));
    }
}
