//! Small SVG charts drawn on the server: bars for counts per time bucket, lines for times. No
//! script, no library; colours come from the stylesheet's classes.

use std::fmt::Write as _;

use super::html::E;

const W: f64 = 560.0;
const H: f64 = 150.0;
/// The plot area: room on the left for the scale, below for the time axis.
const LEFT: f64 = 44.0;
const RIGHT: f64 = W - 6.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = H - 22.0;

/// What every chart says around its data.
pub struct Frame<'a> {
    /// Read by screen readers and shown as a tooltip.
    pub label: &'a str,
    /// Under the left and right ends of the time axis (`60 min ago`, `now`).
    pub from: &'a str,
    pub to: &'a str,
    /// Formats a value of the scale.
    pub scale: fn(f64) -> String,
}

/// 1, 2 or 5 times a power of ten, at least `v`: a scale maximum a person reads easily.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v * 0.999_999)
        .unwrap_or(10.0 * power)
}

fn open(frame: &Frame, max: f64) -> String {
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{label}"><title>{label}</title><line class="axis" x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{RIGHT}" y2="{TOP}" stroke-dasharray="3 3"/><text x="{lx}" y="{ty}" text-anchor="end">{max}</text><text x="{lx}" y="{BOTTOM}" text-anchor="end">0</text><text x="{LEFT}" y="{by}">{from}</text><text x="{RIGHT}" y="{by}" text-anchor="end">{to}</text>"#,
        label = E(frame.label),
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
        by = H - 6.0,
        max = E(&(frame.scale)(max)),
        from = E(frame.from),
        to = E(frame.to),
    );
    out
}

/// Bars per bucket, one per series side by side; `series` are (CSS class, values), all of the
/// same length.
pub fn bars(frame: &Frame, series: &[(&str, &[f64])]) -> String {
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let max = nice_ceiling(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    let mut out = open(frame, max);
    if n > 0 {
        let slot = (RIGHT - LEFT) / n as f64;
        let bar = (slot * 0.85 / series.len().max(1) as f64).max(0.5);
        for (s, (class, values)) in series.iter().enumerate() {
            let _ = write!(out, r#"<g class="{}">"#, E(class));
            for (i, v) in values.iter().enumerate() {
                if *v <= 0.0 {
                    continue;
                }
                let h = (v / max * (BOTTOM - TOP)).max(1.0);
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
                    LEFT + slot * i as f64 + bar * s as f64,
                    BOTTOM - h,
                    bar,
                    h
                );
            }
            out.push_str("</g>");
        }
    }
    out.push_str("</svg>");
    out
}

/// One line per series through the buckets that have a value; `series` are (CSS class,
/// values).
pub fn lines(frame: &Frame, series: &[(&str, &[Option<f64>])]) -> String {
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let max = nice_ceiling(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
            .fold(0.0, f64::max),
    );
    let mut out = open(frame, max);
    if n > 0 {
        let slot = (RIGHT - LEFT) / n as f64;
        for (class, values) in series {
            let mut d = String::new();
            let point = |i: usize, v: f64| {
                (
                    LEFT + slot * (i as f64 + 0.5),
                    BOTTOM - v / max * (BOTTOM - TOP),
                )
            };
            for (i, v) in values.iter().enumerate() {
                let Some(v) = *v else { continue };
                let (x, y) = point(i, v);
                let joined = i > 0 && values[i - 1].is_some();
                let _ = write!(d, "{}{x:.1} {y:.1} ", if joined { "L" } else { "M" });
                // A point with no neighbour would draw nothing: mark it with a ring.
                let alone = !joined && values.get(i + 1).is_none_or(Option::is_none);
                if alone {
                    let _ = write!(
                        out,
                        r#"<circle class="{}" cx="{x:.1}" cy="{y:.1}" r="2"/>"#,
                        E(class)
                    );
                }
            }
            if !d.is_empty() {
                let _ = write!(out, r#"<path class="{}" d="{}"/>"#, E(class), d.trim_end());
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame<'static> {
        Frame {
            label: "paid <per> minute",
            from: "60 min ago",
            to: "now",
            scale: |v| format!("{v}"),
        }
    }

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(480.0), 500.0);
    }

    #[test]
    fn bars_draw_one_rect_per_nonzero_value_inside_the_plot() {
        let svg = bars(
            &frame(),
            &[
                ("c-paid", &[0.0, 3.0, 10.0]),
                ("c-ticketed", &[1.0, 0.0, 0.0]),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(
            svg.contains("paid &lt;per&gt; minute"),
            "the label is escaped: {svg}"
        );
        assert!(svg.contains(">10<"), "the scale shows the maximum: {svg}");
    }

    #[test]
    fn lines_break_where_a_bucket_has_no_value() {
        let svg = lines(
            &frame(),
            &[("l-p50", &[Some(1.0), Some(2.0), None, Some(4.0)])],
        );
        assert_eq!(svg.matches("<path").count(), 1, "{svg}");
        assert_eq!(svg.matches('M').count(), 2, "two runs: {svg}");
        let empty = lines(&frame(), &[("l-p50", &[None, None])]);
        assert!(!empty.contains("<path"), "{empty}");
    }
}
