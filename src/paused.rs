//! Paying paused fleet-wide (docs/design.md, rule S4), in words: what every command, page and
//! start line says while a pause is in force. The `pause` and `resume` commands are in
//! `commands::pause_resume`, the SQL in `jobs::pauses`; the claim reads the pauses in force itself.

use crate::domain::PauseScope;
use crate::jobs::Pause;

/// The pauses in force in one line: `paying every method paused since … by …: …; paying
/// method 3 paused since …`.
pub fn said(pauses: &[Pause]) -> String {
    pauses
        .iter()
        .map(Pause::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long, in words that fit a line: `40 s`, `12 min`, `3 h 5 min`.
pub fn for_how_long(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The lines `list` and `status` print first while a pause is in force (nothing otherwise).
pub fn banner(pauses: &[Pause]) -> String {
    let mut out = String::new();
    for p in pauses {
        let resume = match p.scope() {
            PauseScope::Every => "ticketing-tracker resume".to_owned(),
            PauseScope::Method(m) => format!("ticketing-tracker resume --method {}", m.code()),
        };
        out.push_str(&format!(
            "PAYING PAUSED: {} (for {}); no pay.do leaves for these orders, paid orders are still followed; `{resume}` ends it\n",
            p.describe(),
            for_how_long(p.seconds)
        ));
    }
    out
}

/// Whether the pauses in force hold an order of `method`, for its `status`.
pub fn holds(pauses: &[Pause], method: i16) -> Option<&Pause> {
    pauses.iter().find(|p| p.scope().holds(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_long_reads_at_a_glance() {
        assert_eq!(for_how_long(12.4), "12 s");
        assert_eq!(for_how_long(125.0), "2 min");
        assert_eq!(for_how_long(3.0 * 3600.0 + 300.0), "3 h 5 min");
        assert_eq!(for_how_long(-1.0), "0 s");
    }
}
