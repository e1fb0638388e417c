//! The saved configuration (`auth login` writes it): server, token, project, location and the
//! CA certificate that the server's certificate chains to. It lives in
//! `$PLATFORM_CONFIG`, else `$XDG_CONFIG_HOME/platform/config.yaml`, else
//! `~/.config/platform/config.yaml` (`%APPDATA%\platform\config.yaml` on Windows).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot tell where the configuration goes: set PLATFORM_CONFIG, XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What `auth login` saves. Every field can be overridden by a flag or a `PLATFORM_*` variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The id of `token`, to revoke it on `auth logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// A PEM file of the CA to trust for `server` (a copy kept beside this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// Where the configuration file is, from the environment (`var` looks a variable up). Pure.
pub fn config_path(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(file) = set("PLATFORM_CONFIG") {
        return Some(PathBuf::from(file));
    }
    let base = match set("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(xdg) => xdg,
        None if cfg!(windows) => PathBuf::from(set("APPDATA")?),
        None => PathBuf::from(set("HOME")?).join(".config"),
    };
    Some(base.join("platform").join("config.yaml"))
}

/// The configuration file of this process's environment.
pub fn default_path() -> Result<PathBuf, ConfigError> {
    config_path(|name| std::env::var(name).ok()).ok_or(ConfigError::NoConfigDir)
}

impl Config {
    /// Reads `path`; a file that does not exist is an empty configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_norway::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Writes `path` readable by its owner only (it holds a token), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write { path: path.to_path_buf(), source };
        let text =
            serde_norway::to_string(self).map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        write_private(path, text.as_bytes()).map_err(write_err)
    }

    /// Copies the PEM file `ca` beside the configuration file, so that the saved configuration
    /// keeps working when the original moves, and records the copy.
    pub fn keep_ca_cert(&mut self, config_file: &Path, pem: &[u8]) -> Result<(), ConfigError> {
        let copy = config_file.with_file_name("ca.pem");
        write_private(&copy, pem).map_err(|source| ConfigError::Write { path: copy.clone(), source })?;
        self.ca_cert = Some(copy);
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_path_follows_platform_config_then_xdg_then_home() {
        let all = [("PLATFORM_CONFIG", "/x/c.yaml"), ("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")];
        assert_eq!(config_path(env(&all)), Some(PathBuf::from("/x/c.yaml")));
        if cfg!(unix) {
            assert_eq!(config_path(env(&all[1..])), Some(PathBuf::from("/xdg/platform/config.yaml")));
            assert_eq!(
                config_path(env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")])),
                Some(PathBuf::from("/home/u/.config/platform/config.yaml")),
                "a relative XDG_CONFIG_HOME is ignored, as the spec says"
            );
            assert_eq!(config_path(env(&[("PLATFORM_CONFIG", "")])), None);
        }
    }

    #[test]
    fn saved_configuration_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        assert_eq!(Config::load(&path).unwrap(), Config::default(), "no file is no configuration");
        let mut config = Config {
            server: Some("https://localhost:8443".into()),
            token: Some("t0k3n".into()),
            project: Some("default".into()),
            ..Config::default()
        };
        config.keep_ca_cert(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        assert_eq!(config.ca_cert.as_deref(), Some(dir.path().join("sub/ca.pem").as_path()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("server: https://localhost:8443"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_broken_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "sever: typo\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("config.yaml is not a valid configuration") && e.contains("sever"), "{e}");
    }
}
