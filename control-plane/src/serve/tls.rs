//! HTTPS for the embedded default: on first start, a private CA and a server certificate
//! signed by it are generated into `{data-dir}/tls/`. Clients trust `ca.pem` (`curl --cacert`,
//! `platform-cli --ca-cert`); the CA key never leaves the data directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::auth::private_file::write as write_private;

/// Why the certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// The files of a generated certificate.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Returns the self-signed certificate in `dir`, generating it for `hosts` on first use.
pub fn ensure_self_signed(dir: &Path, hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let files =
        SelfSigned { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    let write = |path: &Path, text: &str| {
        write_private(path, text.as_bytes())
            .map_err(|source| TlsError::Write { path: path.display().to_string(), source })
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, "platform local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut names: Vec<String> = vec!["localhost".into()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "platform");
    for name in &names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    let key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;

    write(&dir.join("ca.key"), &issuer.key().serialize_pem())?;
    write(&files.key, &key.serialize_pem())?;
    write(&files.cert, &format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write(&files.ca, &ca_cert.pem())?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_self_signed(dir.path(), &["my-host".into()]).unwrap();
        let pem = std::fs::read_to_string(&first.cert).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "server certificate then its CA");
        assert!(std::fs::read_to_string(&first.key).unwrap().contains("PRIVATE KEY"));
        let again = ensure_self_signed(dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&again.cert).unwrap(), pem);
    }
}
