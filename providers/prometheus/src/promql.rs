//! PromQL and Prometheus durations by meaning: a canonical form of an
//! expression (parsed by `promql-parser`, never by hand) in which spelling
//! that cannot change the result is gone, and Prometheus's duration syntax.
//!
//! Why a canonical form and not the parser's `Display`: Prometheus re-prints
//! every rule expression in `/api/v1/rules` (`rule.Query().String()` in
//! `web/api/v1/api.go`), keeping parentheses and the matcher order it was
//! given, while Git holds what people wrote. Two expressions mean the same
//! when their syntax trees are the same up to (a) parentheses, which the
//! tree already expresses by its shape, (b) the order of label matchers in a
//! selector and of label names in `by`/`without`/`on`/`ignoring`/
//! `group_left`/`group_right` (sets in Prometheus: `promql/parser/ast.go`
//! keeps `Grouping []string` and `MatchingLabels` only to build label sets),
//! (c) number and duration spelling (`1e3` = `1000`, `60m` = `1h`) and string
//! quoting (`'a'` = `"a"`), and (d) `{__name__="up"}` = `up`.

use std::fmt::Write;
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality};
use promql_parser::util::display_duration;

/// Parses `expr` and returns its canonical text, or the parser's message.
pub fn canonical(expr: &str) -> Result<String, String> {
    let tree = parser::parse(expr)?;
    let mut out = String::with_capacity(expr.len());
    write_canonical(&tree, &mut out);
    Ok(out)
}

/// Whether two expressions mean the same. Unparseable text is compared as
/// text after trimming (it cannot be live anyway: Prometheus refuses it).
pub fn same_meaning(a: &str, b: &str) -> bool {
    if a.trim() == b.trim() {
        return true;
    }
    match (canonical(a), canonical(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn sorted_labels(labels: &[String]) -> String {
    let mut v: Vec<&str> = labels.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(",")
}

fn write_canonical(expr: &Expr, out: &mut String) {
    match expr {
        Expr::Paren(p) => write_canonical(&p.expr, out),
        Expr::Binary(b) => {
            out.push('(');
            write_canonical(&b.lhs, out);
            let _ = write!(out, " {}", b.op);
            if let Some(m) = &b.modifier {
                if m.return_bool {
                    out.push_str(" bool");
                }
                match &m.matching {
                    Some(LabelModifier::Include(ls)) => {
                        let _ = write!(out, " on({})", sorted_labels(&ls.labels));
                    }
                    Some(LabelModifier::Exclude(ls)) if !ls.labels.is_empty() => {
                        let _ = write!(out, " ignoring({})", sorted_labels(&ls.labels));
                    }
                    _ => {}
                }
                match &m.card {
                    VectorMatchCardinality::ManyToOne(ls) => {
                        let _ = write!(out, " group_left({})", sorted_labels(&ls.labels));
                    }
                    VectorMatchCardinality::OneToMany(ls) => {
                        let _ = write!(out, " group_right({})", sorted_labels(&ls.labels));
                    }
                    _ => {}
                }
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    let _ = write!(out, " fill({:?},{:?})", m.fill_values.lhs, m.fill_values.rhs);
                }
            }
            out.push(' ');
            write_canonical(&b.rhs, out);
            out.push(')');
        }
        Expr::Aggregate(a) => {
            let _ = write!(out, "{}", a.op);
            match &a.modifier {
                Some(LabelModifier::Include(ls)) if !ls.labels.is_empty() => {
                    let _ = write!(out, " by({})", sorted_labels(&ls.labels));
                }
                Some(LabelModifier::Exclude(ls)) => {
                    let _ = write!(out, " without({})", sorted_labels(&ls.labels));
                }
                _ => {}
            }
            out.push('(');
            if let Some(param) = &a.param {
                write_canonical(param, out);
                out.push_str(", ");
            }
            write_canonical(&a.expr, out);
            out.push(')');
        }
        Expr::Unary(u) => {
            out.push_str("-(");
            write_canonical(&u.expr, out);
            out.push(')');
        }
        Expr::Subquery(s) => {
            out.push('(');
            write_canonical(&s.expr, out);
            let _ = write!(
                out,
                ")[{}:{}]",
                display_duration(&s.range),
                s.step.as_ref().map(display_duration).unwrap_or_default()
            );
            if let Some(at) = &s.at {
                let _ = write!(out, " {at}");
            }
            if let Some(offset) = &s.offset {
                let _ = write!(out, " offset {offset}");
            }
        }
        Expr::NumberLiteral(n) => {
            let _ = write!(out, "{n}");
        }
        Expr::StringLiteral(s) => {
            let _ = write!(out, "{s}");
        }
        Expr::VectorSelector(vs) => write_selector(vs, None, out),
        Expr::MatrixSelector(ms) => write_selector(&ms.vs, Some(ms.range), out),
        Expr::Call(c) => {
            let _ = write!(out, "{}(", c.func.name);
            for (i, arg) in c.args.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_canonical(arg, out);
            }
            out.push(')');
        }
        Expr::Extension(e) => {
            let _ = write!(out, "{e:?}");
        }
    }
}

fn write_selector(vs: &parser::VectorSelector, range: Option<Duration>, out: &mut String) {
    let is_name = |m: &Matcher| m.name == "__name__" && matches!(m.op, MatchOp::Equal);
    // `up` and `{__name__="up"}` select the same series: Prometheus's own
    // parser turns a metric name into exactly that matcher
    // (promql/parser/generated_parser.y, `vector_selector`).
    let name = vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| is_name(m))
            .map(|m| m.value.clone())
    });
    let mut simple: Vec<String> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| !(is_name(m) && Some(&m.value) == name.as_ref()))
        .map(ToString::to_string)
        .collect();
    simple.sort_unstable();
    if let Some(name) = &name {
        out.push_str(name);
    }
    if !simple.is_empty() || !vs.matchers.or_matchers.is_empty() {
        out.push('{');
        out.push_str(&simple.join(","));
        let mut ors: Vec<String> = vs
            .matchers
            .or_matchers
            .iter()
            .map(|group| {
                let mut g: Vec<String> = group.iter().map(ToString::to_string).collect();
                g.sort_unstable();
                g.join(",")
            })
            .collect();
        ors.sort_unstable();
        if !ors.is_empty() {
            out.push_str(&ors.join(" or "));
        }
        out.push('}');
    }
    if let Some(range) = range {
        let _ = write!(out, "[{}]", display_duration(&range));
    }
    if let Some(at) = &vs.at {
        let _ = write!(out, " {at}");
    }
    if let Some(offset) = &vs.offset {
        let _ = write!(out, " offset {offset}");
    }
}

/// Parses a duration as Prometheus does for rule files (`model.Duration`'s
/// YAML unmarshalling → `model.ParseDuration` in prometheus/common
/// `model/time.go`): `"0"` is zero, an empty string and plain numbers such
/// as `"300"` are errors, otherwise units `y w d h m s ms` in that order.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text {
        "0" => return Ok(Duration::ZERO),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    // promql-parser also accepts float seconds, which model.ParseDuration
    // does not; refuse them first.
    if text.parse::<f64>().is_ok() || !text.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("not a valid duration string: {text:?}"));
    }
    match promql_parser::util::parse_duration(text) {
        Ok(d) => Ok(d),
        // promql-parser refuses zero for ranges; a rule's `for: 0s` is fine.
        Err(e) if e.contains("greater than 0") => Ok(Duration::ZERO),
        Err(_) => Err(format!("not a valid duration string: {text:?}")),
    }
}

/// Prometheus's spelling of a duration (`model.Duration.String`): `1h`,
/// `1h30m`, `90d`, `0s`.
pub fn format_duration(d: Duration) -> String {
    display_duration(&d)
}

/// A duration the API reports as (float) seconds, e.g. `"duration": 300`.
pub fn from_seconds(secs: f64) -> Duration {
    if secs.is_finite() && secs > 0.0 {
        Duration::from_millis((secs * 1000.0).round() as u64)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_that_does_not_change_meaning() {
        for (a, b) in [
            ("up == 0", "  (up)   ==\n 0 "),
            (
                "rate(x{a=\"1\",b=\"2\"}[5m]) > 1e3",
                "rate(x{b='2', a=\"1\"}[300s]) > 1000",
            ),
            ("sum by (a, b) (x)", "sum(x) by (b,a)"),
            ("a / on(x, y) group_left(z) b", "(a) / on (y, x) group_left (z) (b)"),
            ("{__name__=\"up\", job=\"x\"}", "up{job=\"x\"}"),
            ("max_over_time(x[1h:5m])", "max_over_time((x)[60m:300s])"),
            ("x offset 1h", "x offset 60m"),
        ] {
            assert_eq!(canonical(a).unwrap(), canonical(b).unwrap(), "{a} vs {b}");
            assert!(same_meaning(a, b));
        }
    }

    #[test]
    fn changes_that_matter() {
        for (a, b) in [
            ("up == 0", "up == 1"),
            ("rate(x[5m])", "rate(x[10m])"),
            ("rate(x[5m])", "irate(x[5m])"),
            ("x{a=\"1\"}", "x{a!=\"1\"}"),
            ("x{a=\"1\"}", "y{a=\"1\"}"),
            ("(a + b) * c", "a + b * c"),
            ("sum by (a) (x)", "sum without (a) (x)"),
        ] {
            assert!(!same_meaning(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn durations_as_prometheus_reads_them() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("60m").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "300", "1.5m", "5 m", "m", "1x", "5m1h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(from_seconds(300.0)), "5m");
    }
}
