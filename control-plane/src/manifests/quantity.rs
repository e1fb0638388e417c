//! Kubernetes resource quantities (`"2"`, `"250m"`, `"7680Mi"`, `"1e9"`, `"1.5G"`): parsing CPU to
//! millicores and memory to bytes, and formatting them back the way people write them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A quantity as found in a config file: a string, or a bare number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Raw {
    Int(u64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Int(n) => write!(f, "{n}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Text(s) => f.write_str(s),
        }
    }
}

/// A text that is not a Kubernetes quantity, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(String);

/// Parses a quantity into its value in base units (cores, bytes), as a float.
pub fn parse(text: &str) -> Result<f64, QuantityError> {
    let err = |m: String| QuantityError(m);
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty quantity".into()));
    }
    let split =
        s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| err(format!("`{s}` is not a quantity")))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err(format!("`{s}` is not a quantity")))?;
            10f64.powi(exp)
        }
        other => return Err(err(format!("unknown suffix `{other}` in `{s}`"))),
    };
    let value = number * factor;
    if !value.is_finite() || value < 0.0 {
        return Err(err(format!("`{s}` is not a non-negative quantity")));
    }
    Ok(value)
}

/// CPU in millicores, rounded up (`"2"` = 2000, `"250m"` = 250, `"0.5"` = 500).
pub fn parse_cpu_millis(text: &str) -> Result<u64, QuantityError> {
    let cores = parse(text)?;
    Ok((cores * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Memory in bytes, rounded up.
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    let bytes = parse(text)?;
    Ok((bytes - 1e-9).ceil().max(0.0) as u64)
}

/// Millicores as a Kubernetes CPU quantity: whole cores as `"2"`, else `"250m"`.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) { (millis / 1000).to_string() } else { format!("{millis}m") }
}

/// Bytes as a Kubernetes memory quantity in the largest binary unit that divides them.
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    if bytes == 0 {
        return "0".into();
    }
    for (unit, size) in UNITS {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_quantities() {
        assert_eq!(parse_cpu_millis("2").unwrap(), 2000);
        assert_eq!(parse_cpu_millis("250m").unwrap(), 250);
        assert_eq!(parse_cpu_millis("0.5").unwrap(), 500);
        assert_eq!(parse_cpu_millis("1.0001").unwrap(), 1001);
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("7680Mi").unwrap(), 7680 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1e9").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert!(parse("lots").is_err());
        assert!(parse("1Xi").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("").is_err());
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_memory(1 << 30), "1Gi");
        assert_eq!(format_memory(7680 << 20), "7680Mi");
        assert_eq!(format_memory(1000), "1000");
    }
}
