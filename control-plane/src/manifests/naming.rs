//! Names and label values of rendered objects: DNS-safe, at most 63 characters, and distinct
//! for distinct inputs (long or unusual ids are shortened with a stable hash of the original).

/// The Deployment and Service name of a DeployedModel: `ep-{endpoint}-dm-{id}`, a DNS-1035
/// label (lowercase alphanumerics and `-`, starting with a letter, at most 63 characters). Long
/// or unusual ids are shortened with a hash of the originals, so distinct inputs stay distinct.
pub fn deployment_name(endpoint_id: &str, deployed_model_id: &str) -> String {
    let e = dns_part(endpoint_id);
    let d = dns_part(deployed_model_id);
    let plain = format!("ep-{e}-dm-{d}");
    let clean = e == endpoint_id && d == deployed_model_id && !e.is_empty() && !d.is_empty();
    if clean && plain.len() <= 63 {
        return plain;
    }
    let hash = short_hash(&format!("{endpoint_id}\0{deployed_model_id}"));
    let d: String = d.chars().take(20).collect();
    let d = d.trim_end_matches('-');
    let suffix = if d.is_empty() { format!("-dm-{hash}") } else { format!("-dm-{d}-{hash}") };
    let room = 63 - 3 - suffix.len();
    let e: String = e.chars().take(room).collect();
    let e = e.trim_end_matches('-');
    if e.is_empty() { format!("ep{suffix}") } else { format!("ep-{e}{suffix}") }
}

/// Lowercase alphanumerics with single `-` between runs, no leading or trailing `-`.
pub(crate) fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A Kubernetes label value for `s`: unchanged when valid, else sanitised and suffixed with a
/// hash of the original (at most 63 characters, alphanumeric at both ends).
pub fn label_value(s: &str) -> String {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = s.len() <= 63
        && s.chars().all(valid_char)
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if valid {
        return s.to_string();
    }
    let cleaned: String = s.chars().map(|c| if valid_char(c) { c } else { '-' }).collect();
    let cleaned: String =
        cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(54).collect();
    let cleaned = cleaned.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = short_hash(s);
    if cleaned.is_empty() { hash } else { format!("{cleaned}-{hash}") }
}

/// 8 hex digits of FNV-1a 64: stable across platforms and releases.
pub fn short_hash(s: &str) -> String {
    format!("{:08x}", fnv1a(s.as_bytes()) as u32)
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An image reference without registry path, tag or digest: `platform-runtime`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// The name of an endpoint's objects: `ep-{endpoint}`, a DNS-1035 label; long or unusual ids
/// are shortened with a hash of the original so distinct ids stay distinct.
pub fn endpoint_object_name(endpoint_id: &str) -> String {
    let e = dns_part(endpoint_id);
    if e == endpoint_id && !e.is_empty() && e.len() <= 60 {
        return format!("ep-{e}");
    }
    let hash = short_hash(endpoint_id);
    let e: String = e.chars().take(63 - 4 - hash.len()).collect();
    let e = e.trim_end_matches('-');
    if e.is_empty() { format!("ep-{hash}") } else { format!("ep-{e}-{hash}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_safe_and_distinct() {
        assert_eq!(deployment_name("fraud", "4567"), "ep-fraud-dm-4567");
        let long = "a".repeat(63);
        let n = deployment_name(&long, "1234567890");
        assert!(
            n.len() <= 63 && n.starts_with("ep-a") && n.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{n}"
        );
        assert_ne!(deployment_name(&long, "1234567890"), deployment_name(&format!("{long}b"), "1234567890"));
        let odd = deployment_name("My_Endpoint!", "");
        assert!(
            odd.len() <= 63 && odd.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(deployment_name("a_b", "1"), deployment_name("a-b", "1"));
        assert_eq!(label_value("iris"), "iris");
        let v = label_value("Display Name with spaces and a very long tail that goes past sixty-three chars");
        assert!(v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{v}");
        assert_eq!(image_repository("ghcr.io/x/platform-runtime:0.1.0"), "platform-runtime");
        assert_eq!(image_repository("localhost:5000/platform-runtime@sha256:ab"), "platform-runtime");
    }
}
