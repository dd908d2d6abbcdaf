//! Typed, layered configuration: built-in `config/default.toml`, then an optional `--config`
//! file, then `BBB_GATEWAY__SECTION__KEY` environment variables. Validated once at start-up so a
//! bad value stops the gateway with a message naming the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::limits::IpNet;

/// The defaults, compiled in so an installed binary needs no files.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub bbb: BbbSettings,
    pub admin: AdminSettings,
    pub cache: CacheSettings,
    pub cluster: ClusterSettings,
    pub retention: RetentionSettings,
    pub limits: LimitsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The public listener: WebSocket, BBB's end callbacks, health.
    pub listen: SocketAddr,
    /// The private listener: admin REST, metrics, the status page.
    pub admin_listen: SocketAddr,
    /// The base URL BBB servers reach this gateway at (end callbacks); `None`: `http://` and
    /// the address actually bound.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_ms: u64,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BbbSettings {
    pub poll_interval_secs: u64,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    pub create_retry_servers: u32,
    pub max_body_bytes: usize,
    /// How long a confirmation that a meeting runs is trusted.
    pub confirm_ttl_ms: u64,
    /// Every `bbb.*` request is answered within it.
    pub join_deadline_ms: u64,
    /// Creates carry `meta_endCallbackUrl`, so BBB tells the gateway when a meeting ends.
    pub end_callbacks: bool,
    /// What happens to a new meeting when no eligible server has room for it.
    pub placement_overflow: crate::coordinator::placement::Overflow,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AdminSettings {{ tokens: [{} redacted] }}",
            self.tokens.len()
        )
    }
}

/// Several instances on one PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// How long the poll leader's lease lasts; it is renewed every third of it, and another
    /// instance takes the poll over at most this long after the leader died.
    pub lease_ms: u64,
}

/// What the leader deletes when it has been idle long enough.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Ended or unplaced meetings of private calls and deleted rooms, private calls, and
    /// anonymous users, idle for this many days.
    pub days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub refresh_interval_ms: u64,
}

/// Abuse controls (`[limits]`): what one client may cost the gateway, so a flood costs the
/// flooder and not the other users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Frames a session may send a second on average, after a burst of `frames_burst`.
    pub frames_per_sec: u32,
    pub frames_burst: u32,
    /// Open WebSocket connections per client address (IPv6: per /64).
    pub connections_per_ip: u32,
    /// `authenticate` commands per client address a second, after a burst.
    pub authenticate_per_ip_per_sec: u32,
    pub authenticate_per_ip_burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client address (addresses or CIDR
    /// ranges); empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

/// Timing and abuse limits of a session; tests shorten them.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often an idle client is pinged.
    pub heartbeat_interval: Duration,
    /// A client silent this long is dropped.
    pub client_timeout: Duration,
    /// Invalid frames tolerated within `invalid_window` before closing with 1008.
    pub max_invalid_frames: usize,
    pub invalid_window: Duration,
    /// `bbb.*` requests one session may have in flight; more are refused at once so one
    /// client cannot queue unbounded work on the coordinator that all sessions share.
    pub max_in_flight: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            max_invalid_frames: 20,
            invalid_window: Duration::from_secs(60),
            max_in_flight: 8,
        }
    }
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "the configuration file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BBB_GATEWAY__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("BBB_GATEWAY")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("admin.tokens")
                .with_list_parse_key("limits.trusted_proxies")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
            if v == 0 {
                return Err(ConfigError(format!("{key} must be greater than 0")));
            }
            Ok(())
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "database.url must start with sqlite://, postgres:// or postgresql://".into(),
            ));
        }
        positive("database.pool_size", self.database.pool_size.into())?;
        positive(
            "database.connect_timeout_ms",
            self.database.connect_timeout_ms,
        )?;
        positive("bbb.poll_interval_secs", self.bbb.poll_interval_secs)?;
        positive("bbb.connect_timeout_ms", self.bbb.connect_timeout_ms)?;
        positive("bbb.request_timeout_ms", self.bbb.request_timeout_ms)?;
        positive("bbb.unhealthy_after", self.bbb.unhealthy_after.into())?;
        positive("bbb.healthy_after", self.bbb.healthy_after.into())?;
        positive("bbb.max_body_bytes", self.bbb.max_body_bytes as u64)?;
        positive("bbb.confirm_ttl_ms", self.bbb.confirm_ttl_ms)?;
        positive("bbb.join_deadline_ms", self.bbb.join_deadline_ms)?;
        positive("cache.refresh_interval_ms", self.cache.refresh_interval_ms)?;
        positive("retention.days", self.retention.days.into())?;
        if self.cluster.lease_ms < 300 {
            return Err(ConfigError(
                "cluster.lease_ms must be at least 300 (it is renewed every third of it)".into(),
            ));
        }
        let l = &self.limits;
        positive("limits.frames_per_sec", l.frames_per_sec.into())?;
        positive("limits.frames_burst", l.frames_burst.into())?;
        positive("limits.connections_per_ip", l.connections_per_ip.into())?;
        positive(
            "limits.authenticate_per_ip_per_sec",
            l.authenticate_per_ip_per_sec.into(),
        )?;
        positive(
            "limits.authenticate_per_ip_burst",
            l.authenticate_per_ip_burst.into(),
        )?;
        if self.http.admin_listen == self.http.listen && self.http.listen.port() != 0 {
            return Err(ConfigError(format!(
                "http.admin_listen must differ from http.listen (both are {}): the admin \
                 routes are served on their own listener",
                self.http.listen
            )));
        }
        if let Some(url) = &self.http.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError(format!("http.public_url is not a URL ({e}): {url:?}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(ConfigError(format!(
                    "http.public_url must be an http:// or https:// URL with a host, got {url:?}"
                )));
            }
        }
        if self.admin.tokens.iter().any(|t| t.len() < 16) {
            return Err(ConfigError(
                "admin.tokens: every token must be at least 16 characters long".into(),
            ));
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.bbb.poll_interval_secs)
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.database.connect_timeout_ms)
    }

    pub fn confirm_ttl(&self) -> Duration {
        Duration::from_millis(self.bbb.confirm_ttl_ms)
    }

    pub fn join_deadline(&self) -> Duration {
        Duration::from_millis(self.bbb.join_deadline_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.cluster.lease_ms)
    }

    /// `http.public_url`, or `http://` and the address the listener actually bound.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.http.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_files() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.http.listen.port(), 8375);
        assert!(s.database.url.starts_with("sqlite://"));
        assert!(s.admin.tokens.is_empty());
    }

    #[test]
    fn file_overrides_only_its_keys_and_env_wins() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[bbb]\npoll_interval_secs = 3\n[http]\nlisten = \"127.0.0.1:9000\""
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("BBB_GATEWAY__HTTP__LISTEN", "127.0.0.1:9001"),
                (
                    "BBB_GATEWAY__ADMIN__TOKENS",
                    "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(s.bbb.poll_interval_secs, 3);
        assert_eq!(s.bbb.request_timeout_ms, 5000);
        assert_eq!(s.http.listen.port(), 9001);
        assert_eq!(s.admin.tokens.len(), 2);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            Settings::load_with_env(None, env(&[("BBB_GATEWAY__BBB__POLL_INTERVAL_SECS", "0")]))
                .unwrap_err();
        assert!(e.to_string().contains("bbb.poll_interval_secs"), "{e}");
        let e = Settings::load_with_env(None, env(&[("BBB_GATEWAY__HTTP__LISTEN", "nope")]))
            .unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = Settings::load_with_env(None, env(&[("BBB_GATEWAY__DATABASE__URL", "mysql://x")]))
            .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        for bad in ["nope", "ftp://gw.example", "http://"] {
            let e = Settings::load_with_env(None, env(&[("BBB_GATEWAY__HTTP__PUBLIC_URL", bad)]))
                .unwrap_err();
            assert!(e.to_string().contains("http.public_url"), "{bad}: {e}");
        }
        let e = Settings::load_with_env(None, env(&[("BBB_GATEWAY__BBB__CONFIRM_TTL_MS", "0")]))
            .unwrap_err();
        assert!(e.to_string().contains("bbb.confirm_ttl_ms"), "{e}");
    }

    #[test]
    fn the_public_url_defaults_to_the_bound_address() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(s.public_url(bound), "http://127.0.0.1:4321");
        assert_eq!(
            (s.bbb.confirm_ttl_ms, s.bbb.join_deadline_ms),
            (2000, 10000)
        );
        assert!(s.bbb.end_callbacks);
        let s = Settings::load_with_env(
            None,
            env(&[("BBB_GATEWAY__HTTP__PUBLIC_URL", "https://gw.example.org/")]),
        )
        .unwrap();
        assert_eq!(s.public_url(bound), "https://gw.example.org");
    }

    #[test]
    fn the_admin_listener_and_the_limits_have_defaults() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.http.admin_listen.to_string(), "127.0.0.1:8376");
        let l = &s.limits;
        assert_eq!((l.frames_per_sec, l.frames_burst), (20, 100));
        assert_eq!(l.connections_per_ip, 1000);
        assert_eq!(
            (l.authenticate_per_ip_per_sec, l.authenticate_per_ip_burst),
            (20, 200)
        );
        assert!(l.trusted_proxies.is_empty());
    }

    #[test]
    fn trusted_proxies_come_from_the_environment_and_bad_ones_name_the_key() {
        let s = Settings::load_with_env(
            None,
            env(&[(
                "BBB_GATEWAY__LIMITS__TRUSTED_PROXIES",
                "127.0.0.1,10.0.0.0/8,fd00::/8",
            )]),
        )
        .unwrap();
        let proxies = &s.limits.trusted_proxies;
        assert_eq!(proxies.len(), 3);
        assert!(proxies[1].contains("10.2.3.4".parse().unwrap()));
        let e = Settings::load_with_env(
            None,
            env(&[("BBB_GATEWAY__LIMITS__TRUSTED_PROXIES", "10.0.0.0/99")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let e = Settings::load_with_env(None, env(&[("BBB_GATEWAY__LIMITS__FRAMES_PER_SEC", "0")]))
            .unwrap_err();
        assert!(e.to_string().contains("limits.frames_per_sec"), "{e}");
        let e = Settings::load_with_env(
            None,
            env(&[("BBB_GATEWAY__HTTP__ADMIN_LISTEN", "127.0.0.1:8375")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("http.admin_listen"), "{e}");
    }

    #[test]
    fn placement_overflow_defaults_to_least_full_and_is_checked() {
        use crate::coordinator::placement::Overflow;
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.bbb.placement_overflow, Overflow::LeastFull);
        let s = Settings::load_with_env(
            None,
            env(&[("BBB_GATEWAY__BBB__PLACEMENT_OVERFLOW", "refuse")]),
        )
        .unwrap();
        assert_eq!(s.bbb.placement_overflow, Overflow::Refuse);
        let e = Settings::load_with_env(
            None,
            env(&[("BBB_GATEWAY__BBB__PLACEMENT_OVERFLOW", "spill")]),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bbb.placement_overflow"), "{msg}");
        assert!(
            msg.contains("least_full") && msg.contains("refuse"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let e =
            Settings::load_with_env(Some(Path::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.toml"));
    }

    #[test]
    fn redacts_database_password() {
        assert_eq!(
            redact_url("postgres://u:hunter2@localhost:5432/db"),
            "postgres://u:***@localhost:5432/db"
        );
    }
}
