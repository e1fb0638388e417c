//! Where a model may be fetched from over HTTP: `https` only, and only public addresses,
//! unless the platform's operator allows `http` or private networks. Checked on the URL, on
//! every redirect, and on the addresses a name resolves to at connection time, so that a model
//! URL cannot be used to reach the machine's own services, the cloud's metadata server or the
//! internal network (server-side request forgery).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Environment variable that allows `http://` model URLs.
pub const ALLOW_HTTP_ENV: &str = "PLATFORM_ARTIFACT_ALLOW_HTTP";
/// Environment variable that allows loopback, link-local and private addresses.
pub const ALLOW_PRIVATE_ENV: &str = "PLATFORM_ARTIFACT_ALLOW_PRIVATE_NETWORKS";

/// What remote model locations are allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    /// `http://` as well as `https://`.
    pub allow_http: bool,
    /// Loopback, link-local, private and other non-public addresses.
    pub allow_private: bool,
}

/// A location the policy refuses, with why and what allows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "`{0}` is not an https:// URL; plain http:// is allowed only when the operator sets --artifact-allow-http"
    )]
    NotHttps(String),
    #[error(
        "`{url}` reaches {ip}, a {kind} address; such addresses are allowed only when the operator sets --artifact-allow-private-networks"
    )]
    Private { url: String, ip: IpAddr, kind: &'static str },
    #[error("`{url}` does not resolve: {reason}")]
    Unresolved { url: String, reason: String },
    #[error("`{0}` has no host")]
    NoHost(String),
}

impl FetchPolicy {
    /// Checks a URL's scheme, and its host when the host is an address.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), PolicyError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(PolicyError::NotHttps(url.to_string())),
        }
        match host_of(url)? {
            Host::Address(ip) => self.check_ip(url.as_str(), ip),
            Host::Name(_) => Ok(()),
        }
    }

    /// Checks an address a URL reaches.
    pub fn check_ip(&self, url: &str, ip: IpAddr) -> Result<(), PolicyError> {
        match non_public(ip) {
            Some(kind) if !self.allow_private => Err(PolicyError::Private { url: url.to_string(), ip, kind }),
            _ => Ok(()),
        }
    }

    /// Checks a URL and every address its host resolves to now (what the platform does when a
    /// model is registered).
    pub async fn check_resolved(&self, url: &reqwest::Url) -> Result<(), PolicyError> {
        self.check_url(url)?;
        let Host::Name(host) = host_of(url)? else { return Ok(()) };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| PolicyError::Unresolved { url: url.to_string(), reason: e.to_string() })?;
        for addr in addrs {
            self.check_ip(url.as_str(), addr.ip())?;
        }
        Ok(())
    }

    /// An HTTP client that keeps to the policy: every redirect is checked like the URL, and a
    /// name connects only to the allowed addresses it resolves to.
    pub fn client(&self) -> reqwest::Client {
        let policy = *self;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        reqwest::Client::builder()
            .redirect(redirects)
            .dns_resolver(Arc::new(Resolver(policy)))
            .build()
            .unwrap_or_default()
    }

    /// The environment that carries this policy to a runtime replica (nothing for the default).
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        let mut env = Vec::new();
        if self.allow_http {
            env.push((ALLOW_HTTP_ENV, "true"));
        }
        if self.allow_private {
            env.push((ALLOW_PRIVATE_ENV, "true"));
        }
        env
    }
}

/// A URL's host: an address, or a name to resolve.
enum Host<'a> {
    Address(IpAddr),
    Name(&'a str),
}

fn host_of(url: &reqwest::Url) -> Result<Host<'_>, PolicyError> {
    let host = url.host_str().ok_or_else(|| PolicyError::NoHost(url.to_string()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Address(ip),
        Err(_) => Host::Name(host),
    })
}

/// Resolves names and keeps only the addresses the policy allows.
struct Resolver(FetchPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                all.iter().copied().filter(|a| policy.check_ip(&host, a.ip()).is_ok()).collect();
            if allowed.is_empty()
                && let Some(refused) = all.first()
            {
                return Err(Box::new(policy.check_ip(&host, refused.ip()).unwrap_err()) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The kind of a non-public address, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some("private")
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local (cloud metadata)")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("reserved")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn only_https_to_public_addresses_by_default() {
        let strict = FetchPolicy::default();
        assert!(strict.check_url(&url("https://models.example.com/m.onnx")).is_ok());
        assert!(strict.check_url(&url("https://203.0.113.9/m.onnx")).is_ok());
        assert!(matches!(
            strict.check_url(&url("http://models.example.com/m.onnx")),
            Err(PolicyError::NotHttps(_))
        ));
        for refused in [
            "https://127.0.0.1/m.onnx",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.1.2.3/m.onnx",
            "https://192.168.0.7/m.onnx",
            "https://[::1]/m.onnx",
            "https://[fd00::1]/m.onnx",
            "https://[::ffff:127.0.0.1]/m.onnx",
            "https://100.64.0.1/m.onnx",
            "https://0.0.0.0/m.onnx",
        ] {
            assert!(matches!(strict.check_url(&url(refused)), Err(PolicyError::Private { .. })), "{refused}");
        }
        let open = FetchPolicy { allow_http: true, allow_private: true };
        assert!(open.check_url(&url("http://127.0.0.1:9000/m.onnx")).is_ok());
        assert_eq!(open.env(), [(ALLOW_HTTP_ENV, "true"), (ALLOW_PRIVATE_ENV, "true")]);
        assert!(strict.env().is_empty());
    }

    #[tokio::test]
    async fn names_are_checked_by_the_addresses_they_resolve_to() {
        let strict = FetchPolicy::default();
        let err = strict.check_resolved(&url("https://localhost/m.onnx")).await.unwrap_err();
        assert!(matches!(err, PolicyError::Private { kind: "loopback", .. }), "{err}");
        let allowed = FetchPolicy { allow_http: false, allow_private: true };
        assert!(allowed.check_resolved(&url("https://localhost/m.onnx")).await.is_ok());
    }
}
