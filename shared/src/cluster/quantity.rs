//! Kubernetes quantities (`250m`, `512Mi`, `1.5Gi`, `1e3`), read one way for the whole service:
//! by `kube_quantity`, as the API server reads them.

use kube_quantity::ParsedQuantity;

/// The largest quantity the service reads, in base units: far beyond any cluster's, and small
/// enough that a whole multiple of it stays exact.
const LARGEST: f64 = 1e18;

/// The quantity's value in base units (cores, bytes); `None` when `text` is not a quantity, or
/// is negative or beyond [`LARGEST`].
pub fn value(text: &str) -> Option<f64> {
    read(text).map(|(_, value)| value)
}

/// The quantity and its value, within the bounds [`value`] says.
fn read(text: &str) -> Option<(ParsedQuantity, f64)> {
    // A number first, as the API server requires: kube_quantity reads a bare suffix (`m`) as 0.
    let number = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !number.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let parsed = ParsedQuantity::try_from(text).ok()?;
    let value = parsed
        .to_bytes_f64()
        .filter(|v| v.is_finite() && (0.0..=LARGEST).contains(v))?;
    Some((parsed, value))
}

/// A CPU quantity in millicores.
pub fn millicores(text: &str) -> Option<f64> {
    value(text).map(|cores| cores * 1e3)
}

/// A size in whole bytes (`10Gi`, `500M`, `1048576`).
pub fn bytes(text: &str) -> Option<u64> {
    value(text).filter(|b| b.fract() == 0.0).map(|b| b as u64)
}

/// `text` times `n`, written with its own suffix (`500m` × 2 is `1000m`); `None` when `text` is
/// not a quantity or the product is beyond [`LARGEST`].
pub fn times(text: &str, n: u32) -> Option<String> {
    let (parsed, _) = read(text).filter(|(_, value)| value * f64::from(n) <= LARGEST)?;
    Some((parsed * n).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_api_server_reads_them() {
        for (text, expected) in [
            ("250m", 0.25),
            ("2", 2.0),
            ("0.5", 0.5),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1.5Gi", 1.5 * 1024f64.powi(3)),
            ("1G", 1e9),
            ("1e3", 1e3),
            ("1500000n", 1.5e-3),
            ("20u", 2e-5),
            ("0", 0.0),
        ] {
            let read = value(text).unwrap_or_else(|| panic!("{text} is a quantity"));
            assert!((read - expected).abs() <= expected * 1e-12, "{text}: {read}");
        }
        for bad in [
            "",
            "m",
            "-1",
            "lots",
            "1Qi",
            "NaN",
            "inf",
            "1 Gi",
            "2Ei",
            "1e19",
            "9".repeat(40).as_str(),
        ] {
            assert_eq!(value(bad), None, "{bad}");
        }
    }

    #[test]
    fn millicores_bytes_and_multiples() {
        assert_eq!(millicores("250m"), Some(250.0));
        assert_eq!(millicores("1500000n"), Some(1.5));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1Ki"), Some(1024));
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("250m"), None, "a fraction of a byte");
        assert_eq!(times("500m", 2).as_deref(), Some("1000m"));
        assert_eq!(times("4Gi", 2).as_deref(), Some("8Gi"));
        assert_eq!(times("1", 20).as_deref(), Some("20"));
        assert_eq!(times("1Ei", 2), None, "beyond the largest");
        assert_eq!(times("lots", 2), None);
    }
}
