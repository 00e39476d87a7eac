//! Resource quantities in the canonical form the API server stores and
//! returns: `1000m` comes back as `1`, `0.5` as `500m`, `1024Mi` as `1Gi`
//! (k8s.io/apimachinery `pkg/api/resource/quantity.go`, `CanonicalizeBytes`:
//! the largest suffix of the input's family that keeps an integer mantissa;
//! binary values below 1024 or with a fraction fall back to decimal SI;
//! precision below `n` rounds up).

use serde_json::Value;

const BIN: [(&str, u32); 6] = [("Ei", 6), ("Pi", 5), ("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)];
const DEC: [(&str, i32); 10] = [
    ("E", 18),
    ("P", 15),
    ("T", 12),
    ("G", 9),
    ("M", 6),
    ("k", 3),
    ("", 0),
    ("m", -3),
    ("u", -6),
    ("n", -9),
];

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Binary,
    Decimal,
    Exponent,
}

/// Canonical text of a quantity, or None when `text` is not one (the real
/// server would answer 400; the simulator leaves such values alone).
pub(crate) fn canonical(text: &str) -> Option<String> {
    let t = text.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    if num.is_empty() {
        return None;
    }
    // value in nano-units (10^-9), exact
    let nanos = parse_decimal_nanos(num)?;
    let (nanos, format) = if let Some((_, p)) = BIN.iter().find(|(s, _)| *s == suffix) {
        (nanos.checked_mul(1024i128.checked_pow(*p)?)?, Format::Binary)
    } else if let Some((_, e)) = DEC.iter().find(|(s, _)| *s == suffix) {
        (scale(nanos, *e)?, Format::Decimal)
    } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        (scale(nanos, exp.parse().ok()?)?, Format::Exponent)
    } else {
        return None;
    };
    if nanos == 0 {
        return Some("0".into());
    }
    if format == Format::Binary && nanos % 1_000_000_000 == 0 && nanos.abs() >= 1024 * 1_000_000_000 {
        let bytes = nanos / 1_000_000_000;
        for (s, p) in BIN {
            let unit = 1024i128.pow(p);
            if bytes % unit == 0 {
                return Some(format!("{}{}", bytes / unit, s));
            }
        }
        return Some(bytes.to_string());
    }
    for (s, e) in DEC {
        let unit = 10i128.pow((e + 9) as u32);
        if nanos % unit == 0 {
            let m = nanos / unit;
            return Some(match format {
                Format::Exponent if e != 0 => format!("{m}e{e}"),
                Format::Exponent => m.to_string(),
                _ => format!("{m}{s}"),
            });
        }
    }
    Some(format!("{nanos}n"))
}

/// Multiplies by 10^e, rounding a sub-nano remainder up (away from zero).
fn scale(nanos: i128, e: i32) -> Option<i128> {
    if e >= 0 {
        nanos.checked_mul(10i128.checked_pow(e as u32)?)
    } else {
        let d = 10i128.checked_pow((-e) as u32)?;
        let q = nanos / d;
        Some(if nanos % d != 0 { q + nanos.signum() } else { q })
    }
}

fn parse_decimal_nanos(num: &str) -> Option<i128> {
    let (neg, digits) = match num.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    v = v.checked_mul(1_000_000_000)?;
    let mut f = frac.to_string();
    let round_up = f.len() > 9 && f[9..].chars().any(|c| c != '0');
    f.truncate(9);
    while f.len() < 9 {
        f.push('0');
    }
    v += f.parse::<i128>().ok()? + i128::from(round_up);
    Some(if neg { -v } else { v })
}

/// Canonicalises every value of a resource list (`limits`, `requests`, ...)
/// in place; JSON numbers become strings as the server returns them.
pub(crate) fn canonicalise_list(list: &mut Value) {
    if let Some(m) = list.as_object_mut() {
        for v in m.values_mut() {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if let Some(c) = canonical(&text) {
                *v = Value::String(c);
            }
        }
    }
}

/// The places in built-in kinds that hold `ResourceList`s or quantities
/// (k8s.io/api core/v1 types.go: `ResourceRequirements`, `PersistentVolumeClaimSpec.Resources`,
/// `PersistentVolumeSpec.Capacity`, `ResourceQuotaSpec.Hard`, `LimitRangeItem`,
/// `EmptyDirVolumeSource.SizeLimit`, `PodSpec.Overhead`).
pub(crate) fn canonicalise_object(o: &mut Value) {
    fn walk(v: &mut Value, parent: &str) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    match k.as_str() {
                        "limits"
                        | "requests"
                        | "capacity"
                        | "hard"
                        | "overhead"
                        | "max"
                        | "min"
                        | "default"
                        | "defaultRequest"
                        | "maxLimitRequestRatio"
                            if child.is_object() && parent != "metadata" =>
                        {
                            canonicalise_list(child)
                        }
                        "sizeLimit" => {
                            if let Some(c) = child.as_str().and_then(canonical) {
                                *child = Value::String(c);
                            }
                        }
                        "metadata" => {}
                        _ => walk(child, k),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, parent)),
            _ => {}
        }
    }
    walk(o, "");
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn canonical_forms_match_apimachinery() {
        for (i, o) in [
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("2000", "2k"),
            ("100M", "100M"),
            ("1500m", "1500m"),
            ("512", "512"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("0.1", "100m"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
        ] {
            assert_eq!(canonical(i).as_deref(), Some(o), "{i}");
        }
        assert_eq!(canonical("abc"), None);
    }
}
