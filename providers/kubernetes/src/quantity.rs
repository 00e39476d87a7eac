//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`) read as exact
//! amounts, so `1000m` and `1`, `1024Mi` and `1Gi`, `0.5` and `500m` compare
//! equal. Grammar and suffixes from k8s.io/apimachinery
//! pkg/api/resource/quantity.go (`<signedNumber><suffix>`, binary suffixes
//! Ki..Ei, decimal n, u, m, "", k, M, G, T, P, E, and `e`/`E` exponents).

use serde_json::Value;

/// Amount in billionths of a unit (nano), exact for every suffix kube
/// accepts short of absurdly large values; `None` if it is not a quantity.
pub fn parse(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') {
        return None;
    }
    let digits = format!("{whole}{frac}");
    let mantissa: i128 = digits.parse().ok()?;
    // value = mantissa * 10^(-frac.len()) * multiplier; in nano units.
    let (pow2, pow10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let exponent = pow10 + 9 - frac.len() as i32;
    let mut value = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    if exponent >= 0 {
        value = value.checked_mul(10i128.checked_pow(exponent as u32)?)?;
    } else {
        // Finer than a nano-unit: kube rounds up; so do we.
        let div = 10i128.checked_pow((-exponent) as u32)?;
        value = (value + div - 1) / div;
    }
    Some(if negative { -value } else { value })
}

/// A JSON value read as a quantity (YAML may give `0.5` or `2` as numbers).
pub fn parse_value(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse(s),
        Value::Number(n) => parse(&n.to_string()),
        _ => None,
    }
}

/// Whether the field at `fields` holds quantities: resource limits and
/// requests (core/v1 ResourceRequirements, ResourceList), ResourceQuota
/// `hard`, PersistentVolume `capacity`, LimitRange bounds, emptyDir
/// `sizeLimit`, and HPA metric targets (`averageValue`, `value`).
pub fn is_quantity_path(fields: &[&str]) -> bool {
    let n = fields.len();
    let parent = if n >= 2 { fields[n - 2] } else { "" };
    let last = fields.last().copied().unwrap_or_default();
    matches!(
        parent,
        "limits"
            | "requests"
            | "hard"
            | "capacity"
            | "max"
            | "min"
            | "default"
            | "defaultRequest"
            | "maxLimitRequestRatio"
            | "overhead"
    ) || matches!(last, "sizeLimit" | "averageValue" | "divisor")
        || (last == "value" && parent == "target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_amounts_in_different_spellings() {
        assert_eq!(parse("1000m"), parse("1"));
        assert_eq!(parse("1024Mi"), parse("1Gi"));
        assert_eq!(parse("0.5"), parse("500m"));
        assert_eq!(parse("1e3"), parse("1k"));
        assert_eq!(parse("1.5Gi"), parse("1536Mi"));
        assert_ne!(parse("1G"), parse("1Gi"));
        assert_ne!(parse("100m"), parse("1"));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Xi"), None);
    }
}
