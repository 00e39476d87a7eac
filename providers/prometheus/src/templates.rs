//! The offline check of the Go templates in alerting rules' labels and
//! annotations, the part of `promtool check rules` that runs
//! `text/template`'s parser over each value (Prometheus
//! `model/rulefmt/rulefmt.go` `testTemplateParsing`, which prepends
//! `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}`
//! `{{$externalURL := .ExternalURL}}{{$value := .Value}}` and calls
//! `template.Expander.ParseTest`). Go's parser refuses at parse time: an
//! unclosed action, an unterminated string or comment, an unknown function
//! (`function "humanise" not defined`), an undefined variable, and
//! unbalanced `if`/`range`/`with`/`define`/`block` … `end`. This module
//! checks exactly those, so a broken template is a file:line error in
//! `plan`/`validate` instead of a refused reload.
//!
//! It is a checker, not a template engine: nothing is executed, and
//! argument types and counts (checked by Go only at execution) are not.

/// Functions a rule template may call: Go's `text/template` built-ins
/// (`text/template/funcs.go` `builtins`) and Prometheus's own
/// (`template/template.go` `NewTemplateExpander` funcMap, 2.x and 3.x).
const FUNCTIONS: &[&str] = &[
    // text/template built-ins
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    // Prometheus template/template.go
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "urlUnescape",
];

/// Words of the template language that are not function calls
/// (`text/template/parse/lex.go` `key`, plus the literals).
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true", "false",
];

/// Variables Prometheus defines before every rule template.
const PREDEFINED: &[&str] = &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Var(String),
    /// `:=` or `=`.
    Assign,
    Comma,
    Other,
}

/// Checks one label or annotation value; the message reads like Go's.
pub fn check(text: &str) -> Result<(), String> {
    let mut vars: Vec<String> = PREDEFINED.iter().map(|v| v.to_string()).collect();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        // `{{- ` trims space; the dash is only a marker when a space follows.
        let body_start = if after.starts_with("- ") { 2 } else { 0 };
        let body = &after[body_start..];
        let trimmed = body.trim_start();
        if let Some(comment) = trimmed.strip_prefix("/*") {
            let Some(end) = comment.find("*/") else {
                return Err("unclosed comment".into());
            };
            let tail = comment[end + 2..].trim_start();
            let tail = tail.strip_prefix('-').map(str::trim_start).unwrap_or(tail);
            let Some(tail) = tail.strip_prefix("}}") else {
                return Err("comment ends before closing delimiter".into());
            };
            rest = tail;
            continue;
        }
        let (tokens, consumed) = lex_action(body)?;
        rest = &body[consumed..];
        check_action(&tokens, &mut vars, &mut open)?;
    }
    if let Some(unclosed) = open.last() {
        return Err(format!("unexpected EOF (missing {{{{end}}}} for {{{{{unclosed}}}}})"));
    }
    Ok(())
}

/// Lexes one action up to and including its `}}` (or ` -}}`); returns its
/// tokens and how many bytes of `body` it used.
fn lex_action(body: &str) -> Result<(Vec<Token>, usize), String> {
    let bytes = body.as_bytes();
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '}' if body[i..].starts_with("}}") => {
                if depth != 0 {
                    return Err("unclosed left paren".into());
                }
                return Ok((tokens, i + 2));
            }
            '-' if body[i..].starts_with("-}}") && body[..i].chars().next_back().is_some_and(char::is_whitespace) => {
                if depth != 0 {
                    return Err("unclosed left paren".into());
                }
                return Ok((tokens, i + 3));
            }
            '"' | '`' | '\'' => {
                let close = c;
                let mut j = i + 1;
                loop {
                    match bytes.get(j).map(|b| *b as char) {
                        None => {
                            return Err(if close == '\'' {
                                "unterminated character constant".into()
                            } else if close == '`' {
                                "unterminated raw quoted string".into()
                            } else {
                                "unterminated quoted string".into()
                            })
                        }
                        Some('\\') if close != '`' => j += 2,
                        Some('\n') if close != '`' => return Err("unterminated quoted string".into()),
                        Some(x) if x == close => break,
                        Some(_) => j += 1,
                    }
                }
                tokens.push(Token::Other);
                i = j + 1;
            }
            '(' => {
                depth += 1;
                tokens.push(Token::Other);
                i += 1;
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unexpected right paren".into());
                }
                tokens.push(Token::Other);
                i += 1;
            }
            '$' => {
                let j = ident_end(body, i + 1, false);
                tokens.push(Token::Var(body[i..j].to_string()));
                i = j;
            }
            '.' => {
                // A field chain (`.Labels.x`) or `.` itself: never a call.
                let j = ident_end(body, i + 1, true);
                tokens.push(Token::Other);
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = ident_end(body, i + 1, false);
                tokens.push(Token::Word(body[i..j].to_string()));
                // A field access after a word (`x.y`) is the word's field.
                while j < bytes.len() && bytes[j] == b'.' {
                    j = ident_end(body, j + 1, false);
                }
                i = j;
            }
            ':' if body[i..].starts_with(":=") => {
                tokens.push(Token::Assign);
                i += 2;
            }
            '=' => {
                tokens.push(Token::Assign);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            _ => {
                if !c.is_whitespace() {
                    tokens.push(Token::Other);
                }
                // Step over a whole UTF-8 character.
                i += body[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            }
        }
    }
    Err("unclosed action".into())
}

fn check_action(tokens: &[Token], vars: &mut Vec<String>, open: &mut Vec<String>) -> Result<(), String> {
    let Some(first) = tokens.first() else {
        return Err("missing value for command".into());
    };
    let mut start = 0;
    if let Token::Word(w) = first {
        match w.as_str() {
            "end" => {
                if open.pop().is_none() {
                    return Err("unexpected {{end}}".into());
                }
                return Ok(());
            }
            "else" => {
                if open.is_empty() {
                    return Err("unexpected {{else}}".into());
                }
                start = 1;
                // `{{else if …}}` / `{{else with …}}` continue the chain.
                if matches!(tokens.get(1), Some(Token::Word(k)) if k == "if" || k == "with") {
                    start = 2;
                }
            }
            "if" | "range" | "with" | "block" => {
                open.push(w.clone());
                start = 1;
            }
            "define" => {
                open.push(w.clone());
                return Ok(());
            }
            "template" => return Ok(()),
            "break" | "continue" => {
                if !open.iter().any(|o| o == "range") {
                    return Err(format!("{{{{{w}}}}} outside {{{{range}}}}"));
                }
                return Ok(());
            }
            _ => {}
        }
    }
    let tokens = &tokens[start..];
    // Declarations: `$x :=` or `$i, $e :=` at the start of a pipeline.
    let mut declared = Vec::new();
    let mut body_start = 0;
    if let Some(assign) = tokens.iter().position(|t| *t == Token::Assign) {
        let head = &tokens[..assign];
        if !head.is_empty() && head.iter().all(|t| matches!(t, Token::Var(_) | Token::Comma)) {
            for t in head {
                if let Token::Var(v) = t {
                    declared.push(v.clone());
                }
            }
            body_start = assign + 1;
        }
    }
    for t in &tokens[body_start..] {
        match t {
            Token::Word(w) if !KEYWORDS.contains(&w.as_str()) && !FUNCTIONS.contains(&w.as_str()) => {
                return Err(format!("function {w:?} not defined"));
            }
            Token::Var(v) if !vars.contains(v) && !declared.contains(v) => {
                // `$x = …` assigns an existing variable; `$x :=` declares.
                return Err(format!("undefined variable {v:?}"));
            }
            _ => {}
        }
    }
    // Variables stay visible after their declaration (Go scopes them to the
    // enclosing block; being lenient here never refuses a valid template).
    vars.extend(declared);
    Ok(())
}

/// Where an identifier that starts at byte `from` of `body` ends: Go
/// identifiers are Unicode letters, digits and `_` (and `.` in a field
/// chain when `dots`), walked by character so the end is always on a
/// character boundary (found by fuzzing: a byte-wise walk cut `ّ` in two).
fn ident_end(body: &str, from: usize, dots: bool) -> usize {
    let mut end = from;
    for c in body.get(from..).unwrap_or("").chars() {
        if c.is_alphanumeric() || c == '_' || (dots && c == '.') {
            end += c.len_utf8();
        } else {
            break;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_with_letters_beyond_ascii_never_split_a_character() {
        // Found by fuzzing (fuzz/regressions/go_templates): `$` then bytes
        // of `ّ` (U+0651) made the lexer slice inside the character.
        let input = "{{\u{6} $\u{651}\u{50c}e{{ ";
        assert!(check(input).is_err());
        assert!(check("{{ $größe := 1 }}{{ $größe }}").is_ok());
        assert!(check("{{ .Labels.straße }}").is_ok());
    }

    #[test]
    fn valid_templates_pass() {
        for t in [
            "plain text",
            "{{ $labels.instance }} is down",
            "{{ $value | humanize }}",
            "{{ printf \"%.2f\" $value }}%",
            "{{- $labels.job -}} {{ humanizePercentage $value }}",
            "{{ if gt $value 1.0 }}high{{ else if lt $value 0.5 }}low{{ else }}ok{{ end }}",
            "{{ range $i, $e := query \"up\" }}{{ $e.Labels.job }}{{ end }}",
            "{{ with $x := $labels.job }}{{ $x }}{{ end }}",
            "{{/* a comment */}}text",
            "{{ .Labels.job }} {{ $externalLabels.cluster }} {{ $externalURL }}",
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
            "{{ \"}}\" }}",
            "{{ $labels.severity | toUpper }} — ümlaut",
        ] {
            assert_eq!(check(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn broken_templates_are_refused_as_go_would() {
        for (t, needle) in [
            ("{{ $labels.instance", "unclosed action"),
            ("{{ humanise $value }}", "function \"humanise\" not defined"),
            ("{{ $lables.instance }}", "undefined variable \"$lables\""),
            ("{{ if $value }}x", "missing {{end}}"),
            ("x{{ end }}", "unexpected {{end}}"),
            ("{{ printf \"%s }}", "unterminated quoted string"),
            ("{{ (humanize $value }}", "unclosed left paren"),
            ("{{}}", "missing value"),
            ("{{/* never closed }}", "unclosed comment"),
        ] {
            let err = check(t).unwrap_err();
            assert!(err.contains(needle), "{t}: {err}");
        }
    }
}
