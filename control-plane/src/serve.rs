//! `platform serve`: the embedded default in one process.

use std::sync::Arc;

use anyhow::Context;

use crate::api::{self, App};
use crate::auth::token::TokenKeys;
use crate::config::ServeConfig;

/// Runs the platform until SIGTERM or Ctrl-C.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let store = crate::store::open(&config.database_url())
        .await
        .with_context(|| format!("cannot open the database {}", redact(&config.database_url())))?;
    let keys = TokenKeys::load_or_create(&config.jwt_key_file())
        .with_context(|| format!("cannot read the token key {}", config.jwt_key_file().display()))?;
    let app = Arc::new(App { store, keys, token_ttl: config.token_ttl });

    let admin_password = std::env::var("PLATFORM_ADMIN_PASSWORD").ok();
    if let Some(admin) = crate::bootstrap::first_admin(&app, &config.data_dir, admin_password)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the first admin: {}", e.message))?
    {
        println!("Created the first user. Keep these; they are not shown again.");
        println!("  username: {}", admin.username);
        println!("  password: {}", admin.password);
        println!("  API token (also in {}):", config.data_dir.join("admin-token").display());
        println!("  {}", admin.token);
    }

    let router = api::router(app);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        runtime::shutdown_signal().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    if config.insecure_http {
        tracing::info!(address = %config.listen, "serving plain HTTP (--insecure-http)");
        return axum_server::bind(config.listen)
            .handle(handle)
            .serve(router.into_make_service())
            .await
            .with_context(|| format!("cannot serve on {}", config.listen));
    }
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let host = config.listen.ip().to_string();
            let generated = crate::tls::ensure_self_signed(&config.data_dir.join("tls"), &[host])?;
            tracing::info!(ca = %generated.ca.display(), "using the self-signed certificate; clients trust its CA");
            (generated.cert, generated.key)
        }
    };
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.with_context(|| {
        format!("cannot load the TLS certificate {} and key {}", cert.display(), key.display())
    })?;
    tracing::info!(address = %config.listen, "serving HTTPS");
    axum_server::bind_rustls(config.listen, tls)
        .handle(handle)
        .serve(router.into_make_service())
        .await
        .with_context(|| format!("cannot serve on {}", config.listen))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
