//! Times as a user reads them: the system's local time (`TZ` honoured) and an age
//! ("2026-11-24 23:41:02 (3 min ago)").

/// The broken-down local time of unix time `unix` (none if out of range).
fn local_tm(unix: u64) -> Option<libc::tm> {
    let t = libc::time_t::try_from(unix).ok()?;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer), and
    // `localtime_r` only reads `t` and writes `tm`, returning null on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::localtime_r(&t, &mut tm) };
    (!done.is_null()).then_some(tm)
}

/// `YYYY-MM-DD HH:MM:SS` in local time.
pub fn local(unix: u64) -> String {
    match local_tm(unix) {
        Some(tm) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => format!("unix {unix}"),
    }
}

/// `HH:MM:SS` in local time, or the whole date when it is not today.
pub fn local_short(unix: u64, now: u64) -> String {
    let full = local(unix);
    let today = local(now);
    match (full.split_once(' '), today.split_once(' ')) {
        (Some((day, time)), Some((this_day, _))) if day == this_day => time.to_owned(),
        _ => full,
    }
}

/// How long ago `unix` was at `now`: "just now", "42 s ago", "3 min ago", "2 h 5 min ago",
/// "3 days ago".
pub fn age(unix: u64, now: u64) -> String {
    let secs = now.saturating_sub(unix);
    match secs {
        0..=4 => "just now".into(),
        5..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => match secs % 3600 / 60 {
            0 => format!("{} h ago", secs / 3600),
            min => format!("{} h {min} min ago", secs / 3600),
        },
        _ => match secs / 86_400 {
            1 => "1 day ago".into(),
            days => format!("{days} days ago"),
        },
    }
}

/// `2026-11-24 23:41:02 (3 min ago)`.
pub fn since(unix: u64, now: u64) -> String {
    format!("{} ({})", local(unix), age(unix, now))
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(100, 100), "just now");
        assert_eq!(age(100, 142), "42 s ago");
        assert_eq!(age(0, 180), "3 min ago");
        assert_eq!(age(0, 7200), "2 h ago");
        assert_eq!(age(0, 7500), "2 h 5 min ago");
        assert_eq!(age(0, 86_400), "1 day ago");
        assert_eq!(age(0, 3 * 86_400 + 5), "3 days ago");
        assert_eq!(age(200, 100), "just now");
    }

    #[test]
    fn local_time_has_the_date_and_time_shape() {
        let text = local(1_795_528_473);
        assert_eq!(text.len(), 19, "{text}");
        assert_eq!(&text[4..5], "-");
        assert!(text.starts_with("2026-11-2"), "{text}");
    }
}
