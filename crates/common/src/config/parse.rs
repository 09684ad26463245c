//! Reading a config: TOML text (or a file) to a validated [`Config`] whose paths are resolved
//! (`~/` expanded; relative paths in a file taken relative to the file's directory).

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

impl Config {
    /// Parses TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Config::parse(text, origin, None)
    }

    /// Loads a config file; relative paths in it are taken relative to the file's directory
    /// (made absolute).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        let base = path.parent().map(|dir| match std::env::current_dir() {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir.to_path_buf(),
        });
        Config::parse(&text, &origin, base.as_deref())
    }

    /// Parses and validates `text`, then resolves its paths against `base` (if any).
    fn parse(text: &str, origin: &str, base: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        config.resolve_paths(base);
        Ok(config)
    }

    fn resolve_paths(&mut self, base: Option<&Path>) {
        let fix = |p: &Path| {
            let p = expand(p);
            match base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p,
            }
        };
        self.node.data_dir = fix(&self.node.data_dir);
        self.node.control_socket = self.node.control_socket.as_deref().map(fix);
        self.share.dirs = self.share.dirs.iter().map(|d| fix(d)).collect();
        self.share.download_dir = self.share.download_dir.as_deref().map(fix);
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `$XDG_DATA_HOME/kazoo`, or `~/.local/share/kazoo`.
pub(super) fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kazoo"),
        _ => home().join(".local/share/kazoo"),
    }
}

/// Expands a leading `~/` to the home directory.
fn expand(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RoleSetting, DEFAULT_PORT};
    use super::*;

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::from_toml("", "test").unwrap();
        assert_eq!(c.node.role, RoleSetting::Auto);
        assert_eq!(c.node.listen.port(), DEFAULT_PORT);
        assert_eq!(c.supernode.max_peers, 40);
        assert!(c.network.bootstrap.is_empty());
    }

    #[test]
    fn full_config_parses() {
        let id = "ab".repeat(32);
        let text = format!(
            r#"
            [node]
            role = "supernode"
            listen = "127.0.0.1:0"
            data_dir = "/tmp/k"
            [share]
            dirs = ["/srv/music"]
            download_dir = "/tmp/dl"
            [network]
            bootstrap = ["127.0.0.1:4710", "{id}@[::1]:5000"]
            [supernode]
            max_leaves = 3
            max_peers = 30
            "#
        );
        let c = Config::from_toml(&text, "test").unwrap();
        assert_eq!(c.node.role, RoleSetting::Supernode);
        assert_eq!(c.network.bootstrap[0].node, None);
        assert_eq!(c.network.bootstrap[1].node.unwrap().to_hex(), id);
        assert_eq!(c.network.bootstrap[1].addr.port(), 5000);
        assert_eq!(c.download_dir(), PathBuf::from("/tmp/dl"));
        assert_eq!(c.supernode.max_leaves, 3);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[node]\nrolle = \"leaf\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("rolle"), "{err}");
        let err = Config::from_toml("[nodes]\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("nodes"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::from_toml("[node]\nrole = \"king\"\n", "x").is_err());
        assert!(Config::from_toml("[network]\nbootstrap = [\"nope\"]\n", "x").is_err());
        assert!(Config::from_toml("[node]\nlisten = \"1.2.3:4\"\n", "x").is_err());
    }

    #[test]
    fn host_names_are_kept_for_the_node_to_resolve() {
        let id = "ab".repeat(32);
        let text = format!(
            "[node]\nlisten = \"localhost:0\"\n[network]\nbootstrap = [\"sn.example.net:4710\", \"{id}@[::1]:4711\"]\n"
        );
        let c = Config::from_toml(&text, "x").unwrap();
        assert_eq!(c.node.listen.to_string(), "localhost:0");
        assert_eq!(
            c.network.bootstrap[0].addr.to_string(),
            "sn.example.net:4710"
        );
        assert_eq!(c.network.bootstrap[0].addr.ip(), None);
        assert!(c.network.bootstrap[1].addr.ip().unwrap().is_ipv6());
        // The default listens on every interface, IPv4 and IPv6.
        let d = Config::default();
        assert_eq!(d.node.listen.to_string(), "[::]:4710");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[node]\ndata_dir = \"data\"\n[share]\ndirs = [\"music\"]\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.node.data_dir, dir.path().join("data"));
        assert_eq!(c.share.dirs, vec![dir.path().join("music")]);
    }
}
