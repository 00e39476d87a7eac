//! LogQL expressions of Loki ruler rules: a light offline check and the
//! textual comparison plumb uses for them. There is no LogQL parser in
//! Rust (`promql-parser` refuses log pipelines such as `|= "error"`), so
//! LogQL is compared as text with whitespace normalised, never by meaning:
//! `sum by (job) (…)` and `sum(…) by (job)` are different texts here
//! although Loki evaluates them alike. Loki stores and returns the
//! expression as it was posted (its ruler keeps `rulefmt` text: Loki
//! `pkg/ruler/base/rulespb` `ToProto`/`FromProto` copy `Expr.Value`), so the
//! only noise to remove is whitespace that YAML block scalars add.

/// What a Loki ruler would refuse for sure: an empty expression, brackets
/// that do not pair up, an unterminated string, or no stream selector
/// (every LogQL query has one `{…}`: Loki `pkg/logql/syntax`). Deeper
/// errors (unknown functions, bad pipeline stages) are left to the ruler,
/// which answers them with `400` on write.
pub fn check(expr: &str) -> Result<(), String> {
    if expr.trim().is_empty() {
        return Err("empty LogQL expression".into());
    }
    let mut stack = Vec::new();
    let mut chars = expr.chars();
    let mut saw_selector = false;
    while let Some(c) = chars.next() {
        match c {
            '"' | '`' => {
                let close = c;
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated string in LogQL expression: {}", short(expr))),
                        Some('\\') if close == '"' => {
                            chars.next();
                        }
                        Some(x) if x == close => break,
                        Some(_) => {}
                    }
                }
            }
            '(' | '{' | '[' => {
                if c == '{' {
                    saw_selector = true;
                }
                stack.push(c);
            }
            ')' | '}' | ']' => {
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if stack.pop() != Some(want) {
                    return Err(format!("unbalanced {c:?} in LogQL expression: {}", short(expr)));
                }
            }
            _ => {}
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!("unclosed {open:?} in LogQL expression: {}", short(expr)));
    }
    if !saw_selector {
        return Err(format!(
            "LogQL expression without a stream selector {{…}}: {}",
            short(expr)
        ));
    }
    Ok(())
}

fn short(expr: &str) -> String {
    let one_line = normalise(expr);
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

/// The expression with whitespace outside string literals collapsed to one
/// space, and removed next to brackets and commas; strings are kept exactly
/// (`|= "a  b"` matches two spaces).
pub fn normalise(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut pending_space = false;
    let mut chars = expr.trim().chars();
    let tight = |c: char| matches!(c, '(' | ')' | '{' | '}' | '[' | ']' | ',');
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !out.ends_with(tight) && !tight(c) && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
        if c == '"' || c == '`' {
            let close = c;
            while let Some(s) = chars.next() {
                out.push(s);
                if s == '\\' && close == '"' {
                    if let Some(e) = chars.next() {
                        out.push(e);
                    }
                    continue;
                }
                if s == close {
                    break;
                }
            }
        }
    }
    out
}

/// Whether two LogQL texts are the same once whitespace is normalised.
pub fn same_text(a: &str, b: &str) -> bool {
    normalise(a) == normalise(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_not_a_difference_but_strings_are_kept() {
        assert!(same_text(
            "sum(rate({app=\"foo\"} |= \"error\" [5m])) by (job)\n  > 0.05\n",
            "sum(rate( { app=\"foo\" }  |=  \"error\"  [5m] )) by (job) > 0.05"
        ));
        assert!(!same_text("{app=\"foo\"} |= \"a  b\"", "{app=\"foo\"} |= \"a b\""));
        assert!(!same_text(
            "count_over_time({app=\"foo\"}[5m]) > 10",
            "count_over_time({app=\"foo\"}[5m]) > 11"
        ));
    }

    #[test]
    fn obvious_mistakes_are_refused() {
        assert_eq!(check("sum(count_over_time({app=\"x\"} |= \"}\" [1m]))"), Ok(()));
        for (e, needle) in [
            ("", "empty"),
            ("sum(count_over_time({app=\"x\"}[1m])", "unclosed '('"),
            ("count_over_time({app=\"x\"[1m])", "unbalanced"),
            ("{app=\"x} |= \"y\"", "unterminated"),
            ("up == 0", "stream selector"),
        ] {
            let err = check(e).unwrap_err();
            assert!(err.contains(needle), "{e}: {err}");
        }
    }
}
