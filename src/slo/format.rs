//! How measured values read in results: `99.82%`, `412.3 ms`, `148.2/s`, `6 s`,
//! `1,000 requests`. Shared by the verdicts and the retry validation.

/// A share 0..=1 as a percentage with 2 decimals; `100%` and `0%` when exact.
pub fn percent(x: f64) -> String {
    if x == 1.0 {
        "100%".to_string()
    } else if x == 0.0 {
        "0%".to_string()
    } else if x.is_finite() {
        format!("{:.2}%", x * 100.0)
    } else {
        "n/a".to_string()
    }
}

/// Milliseconds: `412.3 ms`, `0.85 ms` below 1 ms, `∞ ms` for "beyond every answer".
pub fn millis(ms: f64) -> String {
    if ms.is_infinite() {
        "∞ ms".to_string()
    } else if ms.abs() < 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// Just the number of [`millis`], for ranges (`380.1–430.2 ms`).
pub fn millis_number(ms: f64) -> String {
    millis(ms).trim_end_matches(" ms").to_string()
}

/// Requests per second: `148.2/s`.
pub fn per_sec(x: f64) -> String {
    format!("{x:.1}/s")
}

/// Seconds without needless decimals: `6 s`, `1.5 s`.
pub fn secs(s: f64) -> String {
    format!("{} s", number(s))
}

/// A number with at most 3 decimals and no trailing zeros: `20`, `1.5`, `0.125`.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let s = format!("{x:.3}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A plain number as PromQL gives it: `0.25`, `1250`, `1.234e-5` when tiny, `+Inf`.
pub fn plain(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if x != 0.0 && x.abs() < 0.001 {
        format!("{x:.3e}")
    } else {
        number(x)
    }
}

/// A count with thousands separators: `1,000`, `3,838`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `95%` for a confidence of 0.95.
pub fn confidence(c: f64) -> String {
    format!("{}%", number(c * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_people_write_them() {
        assert_eq!(percent(0.99823), "99.82%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(f64::NAN), "n/a");
        assert_eq!(millis(412.34), "412.3 ms");
        assert_eq!(millis(0.851), "0.85 ms");
        assert_eq!(millis(f64::INFINITY), "∞ ms");
        assert_eq!(per_sec(148.24), "148.2/s");
        assert_eq!(secs(6.0), "6 s");
        assert_eq!(secs(1.5), "1.5 s");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(confidence(0.95), "95%");
        assert_eq!(confidence(0.999), "99.9%");
        assert_eq!(plain(0.25), "0.25");
        assert_eq!(plain(1250.0), "1250");
        assert_eq!(plain(0.0000123), "1.230e-5");
        assert_eq!(plain(f64::INFINITY), "+Inf");
        assert_eq!(plain(f64::NEG_INFINITY), "-Inf");
        assert_eq!(plain(f64::NAN), "NaN");
    }
}
