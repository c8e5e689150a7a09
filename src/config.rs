//! The configuration: defaults < TOML file < environment < flags, merged
//! here and validated once at start-up, each section by the module that owns
//! it ([`crate::settings`] says how sections are shaped).
//!
//! Everything that can be wrong with a configuration is found before a
//! socket is opened, and reported as one line that names the offending key:
//! an operator paging through a crash-looping pod sees the fix, not a trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::settings::RawAuth;
use crate::listener::RawServer;
use crate::metrics::RawMetrics;
use crate::ratelimit::RawLimits;
use crate::telemetry::settings::{RawLog, RawTracing};
use crate::upstream::{validate_upstreams, RawProxy};

pub use crate::auth::settings::AuthSettings;
pub use crate::listener::ServerSettings;
pub use crate::metrics::MetricsSettings;
pub use crate::ratelimit::LimitSettings;
pub use crate::routes::{CustomRoute, ALERTMANAGER, DISTRIBUTOR, QUERY_FRONTEND, RULER};
pub use crate::settings::{ConfigError, ENV_PREFIX};
pub use crate::telemetry::settings::{LogFormat, LogSettings, TracingSettings};
pub use crate::tls::{ClientAuth, ServerTlsSettings};
pub use crate::upstream::{ProxySettings, Upstream};

/// Values given on the command line; each one overrides file and environment.
///
/// Kept as strings so that the `config` crate converts and reports them with
/// the same rules (and the same key names) as file and environment values.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pairs: Vec<(&'static str, String)>,
}

impl Overrides {
    /// Records `key = value` when the flag was given.
    pub fn set(&mut self, key: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.pairs.push((key, value));
        }
    }
}

/// The validated configuration the gateway runs with. It serializes to the
/// same keys a file uses, secrets redacted: that is `check-config`'s output,
/// and it loads again as a configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    /// Upstreams by name; always holds `distributor` and `query_frontend`.
    pub upstreams: BTreeMap<String, Upstream>,
    pub proxy: ProxySettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub tracing: TracingSettings,
    pub metrics: MetricsSettings,
    pub limits: LimitSettings,
    /// Operator-defined routes, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<CustomRoute>,
}

// ---- raw, as deserialized ------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    server: RawServer,
    upstreams: BTreeMap<String, String>,
    proxy: RawProxy,
    auth: RawAuth,
    log: RawLog,
    tracing: RawTracing,
    metrics: RawMetrics,
    limits: RawLimits,
    routes: Vec<CustomRoute>,
}

// ---- loading ---------------------------------------------------------------

/// Where the settings come from, kept so that a reload reads them again
/// the same way: the file, the environment at start-up, the flags.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    env: Vec<(String, String)>,
    overrides: Overrides,
}

/// What the commands that only sign or check tokens need: they run where
/// no upstream is configured (an operator's laptop, a CI job).
pub struct TokenSettings {
    pub auth: AuthSettings,
    /// TLS and timeouts for fetching JWKS and OIDC documents.
    pub proxy: ProxySettings,
}

impl ConfigSource {
    pub fn new(
        file: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: Overrides,
    ) -> Self {
        Self {
            file,
            env: env.into_iter().collect(),
            overrides,
        }
    }

    /// Every section, validated.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        Settings::load(self.file.as_deref(), self.env.clone(), &self.overrides)
    }

    /// Only `[auth]` and `[proxy]`, validated; the rest is parsed (a typo is
    /// still an error) but upstreams need not be set.
    pub fn load_token_settings(&self) -> Result<TokenSettings, ConfigError> {
        let raw = RawSettings::load(self.file.as_deref(), self.env.clone(), &self.overrides)?;
        Ok(TokenSettings {
            auth: raw.auth.validate()?,
            proxy: raw.proxy.validate()?,
        })
    }
}

impl Settings {
    /// Loads defaults, the optional TOML `file`, `CORTEX_GATEWAY__…` variables
    /// from `env` and the flag `overrides`, in rising precedence, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        RawSettings::load(file, env, overrides)?.validate()
    }
}

impl RawSettings {
    fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Load(format!(
                    "--config: {} is not a readable file",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let mut env: config::Map<String, String> = env.into_iter().collect();
        adopt_otel_variables(&mut env);
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .separator("__")
                .source(Some(env)),
        );
        for (key, value) in &overrides.pairs {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))
    }
}

/// The standard `OTEL_*` variables configure `[tracing]` like our own
/// variables do; `CORTEX_GATEWAY__TRACING__*` wins when both are set.
fn adopt_otel_variables(env: &mut config::Map<String, String>) {
    let sampler_ratio = match env.get("OTEL_TRACES_SAMPLER").map(String::as_str) {
        Some("always_off" | "parentbased_always_off") => Some("0".to_owned()),
        Some("always_on" | "parentbased_always_on") => Some("1".to_owned()),
        Some("traceidratio" | "parentbased_traceidratio") => {
            env.get("OTEL_TRACES_SAMPLER_ARG").cloned()
        }
        _ => None,
    };
    let endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").cloned().or_else(|| {
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|traces| traces.trim_end_matches("/v1/traces").to_owned())
    });
    let adopted = [
        ("CORTEX_GATEWAY__TRACING__OTLP_ENDPOINT", endpoint),
        (
            "CORTEX_GATEWAY__TRACING__PROTOCOL",
            env.get("OTEL_EXPORTER_OTLP_PROTOCOL").cloned(),
        ),
        (
            "CORTEX_GATEWAY__TRACING__SERVICE_NAME",
            env.get("OTEL_SERVICE_NAME").cloned(),
        ),
        ("CORTEX_GATEWAY__TRACING__SAMPLE_RATIO", sampler_ratio),
    ];
    for (key, value) in adopted {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            env.entry(key.to_owned()).or_insert(value);
        }
    }
}

impl RawSettings {
    /// Each section validated by its owner; the routes last, since they
    /// name upstreams.
    fn validate(self) -> Result<Settings, ConfigError> {
        let upstreams = validate_upstreams(self.upstreams)?;
        let names: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        crate::routes::validate_custom_routes(&self.routes, &names)?;
        let auth = self.auth.validate()?;
        let limits = self.limits.validate()?;
        crate::ratelimit::validate_tenant_limits(&limits.values, &auth.tenants)?;
        Ok(Settings {
            server: self.server.validate()?,
            upstreams,
            proxy: self.proxy.validate()?,
            auth,
            log: self.log.validate()?,
            tracing: self.tracing.validate()?,
            metrics: self.metrics.validate(),
            limits,
            routes: self.routes,
        })
    }
}

impl Settings {
    /// The effective configuration as TOML, with every secret replaced by
    /// `<redacted>`, so it can be pasted into a ticket safely.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://d:8080"),
        (
            "CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND",
            "http://q:8080/prefix/",
        ),
        ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "s3cret"),
    ];

    fn write_file(contents: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(contents)
    }

    /// A throwaway file for config tests, without a tempfile dependency.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempFile(pub PathBuf);

        impl TempFile {
            pub fn new(contents: &str) -> Self {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "cortex-gateway-test-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, contents).unwrap();
                Self(path)
            }
        }

        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_apply_and_env_keys_use_double_underscores() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.http_listen_port, 80);
        assert_eq!(settings.server.http_listen_address, "0.0.0.0");
        assert_eq!(
            settings.server.graceful_shutdown_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(settings.proxy.timeout, Duration::from_secs(300));
        assert_eq!(settings.proxy.connect_timeout, Duration::from_secs(5));
        assert_eq!(settings.auth.tenant_claim, "tenant_id");
        assert_eq!(settings.auth.signing_secret(), b"s3cret");
        assert!(settings.auth.audience.is_empty());
        assert_eq!(settings.upstreams[DISTRIBUTOR].origin, "http://d:8080");
        assert_eq!(settings.upstreams[QUERY_FRONTEND].path_prefix, "/prefix");
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_env_and_env_beats_file() {
        let file = write_file(
            r#"
            [server]
            http_listen_port = 8080
            graceful_shutdown_timeout = "10s"
            [upstreams]
            distributor = "http://file-d"
            query_frontend = "http://file-q"
            [auth]
            jwt_secret = "from-file"
            "#,
        );
        let env_vars = env(&[
            ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://env-d"),
            ("CORTEX_GATEWAY__SERVER__HTTP_LISTEN_PORT", "9000"),
            ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "from-env"),
        ]);
        let mut overrides = Overrides::default();
        overrides.set("server.http_listen_port", Some("9100".to_owned()));

        let settings = Settings::load(Some(&file.0), env_vars, &overrides).unwrap();
        assert_eq!(settings.server.http_listen_port, 9100, "flag wins");
        assert_eq!(
            settings.upstreams[DISTRIBUTOR].origin, "http://env-d",
            "env beats file"
        );
        assert_eq!(
            settings.upstreams[QUERY_FRONTEND].origin, "http://file-q",
            "file beats default"
        );
        assert_eq!(settings.auth.signing_secret(), b"from-env");
        assert_eq!(
            settings.server.graceful_shutdown_timeout,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn numeric_looking_secrets_are_kept_verbatim() {
        let mut vars = env(&MINIMAL[..2]);
        vars.push(("CORTEX_GATEWAY__AUTH__JWT_SECRET".into(), "0123e5".into()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.signing_secret(), b"0123e5");
    }

    #[test]
    fn lists_come_from_arrays_or_comma_separated_env() {
        let mut vars = env(MINIMAL);
        vars.push((
            "CORTEX_GATEWAY__AUTH__AUDIENCE".into(),
            "cortex, mimir".into(),
        ));
        vars.push(("CORTEX_GATEWAY__AUTH__ALGORITHMS".into(), "HS512".into()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.audience, ["cortex", "mimir"]);
        assert_eq!(settings.auth.algorithms, [Algorithm::HS512]);

        let file = write_file("[auth]\naudience = [\"a\", \"b\"]\n");
        let settings = Settings::load(Some(&file.0), env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.auth.audience, ["a", "b"]);
    }

    fn error_of(file: Option<&str>, vars: &[(&str, &str)]) -> String {
        let file = file.map(write_file);
        Settings::load(
            file.as_ref().map(|f| f.0.as_path()),
            env(vars),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let no_secret = error_of(None, &MINIMAL[..2]);
        assert!(
            no_secret.starts_with("auth.jwt_secret: must be set (flag -gateway.auth.jwt-secret, env CORTEX_GATEWAY__AUTH__JWT_SECRET"),
            "{no_secret}"
        );
        let empty_secret = error_of(
            None,
            &[
                MINIMAL[0],
                MINIMAL[1],
                ("CORTEX_GATEWAY__AUTH__JWT_SECRET", ""),
            ],
        );
        assert!(
            empty_secret.starts_with("auth.jwt_secret: must be set"),
            "{empty_secret}"
        );

        let no_distributor = error_of(None, &MINIMAL[1..]);
        assert!(
            no_distributor.starts_with("upstreams.distributor: must be set"),
            "{no_distributor}"
        );

        for (address, why) in [
            ("d:8080", "absolute"),
            ("ftp://d", "absolute"),
            ("/relative", "absolute"),
            ("http://user:pw@d", "credentials"),
            ("http://d/?x=1", "query"),
        ] {
            let error = error_of(
                None,
                &[
                    ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", address),
                    MINIMAL[1],
                    MINIMAL[2],
                ],
            );
            assert!(
                error.starts_with("upstreams.distributor: "),
                "{address}: {error}"
            );
            assert!(error.contains(why), "{address}: {error}");
        }

        // A file mistake: the error starts with the key to change.
        for (file, start) in [
            (
                "[[routes]]\nprefix = \"/loki/api/v1/push\"\nupstream = \"loki\"\n",
                "routes[0].upstream: unknown upstream `loki`",
            ),
            ("[proxy]\ntimeout = \"soon\"\n", "proxy.timeout: "),
            ("[auth]\nalgorithms = [\"none\"]\n", "auth.algorithms: "),
            (
                "[server]\nmax_request_header_size = 131073\n",
                "server.max_request_header_size: 131073 is out of range",
            ),
            (
                "[server]\nmax_request_headers = 97\n",
                "server.max_request_headers: 97 is out of range",
            ),
            (
                "[server]\nmax_request_headers = 0\n",
                "server.max_request_headers: ",
            ),
            (
                "[limits]\nbackend = \"redis\"\n",
                "limits.redis_url: must be set when limits.backend = \"redis\"",
            ),
            ("[limits]\nbackend = \"memcached\"\n", "limits.backend: "),
            (
                "[limits]\nbackend = \"redis\"\nredis_url = \"localhost:6379\"\n",
                "limits.redis_url: must start with redis:// or rediss://",
            ),
            (
                "[auth.tenants.team-a.limits]\nrequests_per_second = -1\n",
                "auth.tenants.team-a.limits.requests_per_second: ",
            ),
        ] {
            let error = error_of(Some(file), MINIMAL);
            assert!(error.starts_with(start), "{file}: {error}");
        }
        // Mistakes the config crate reports still name the key.
        for (file, named) in [
            ("[auth]\njwt_secert = \"x\"\n", "jwt_secert"),
            (
                "[server]\nhttp_listen_port = \"eighty\"\n",
                "server.http_listen_port",
            ),
        ] {
            let error = error_of(Some(file), MINIMAL);
            assert!(error.contains(named), "{file}: {error}");
        }
    }

    #[test]
    fn otel_variables_configure_tracing_below_our_own() {
        let mut vars = env(MINIMAL);
        vars.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            "http://jaeger:4318/".into(),
        ));
        vars.push(("OTEL_SERVICE_NAME".into(), "gw-eu".into()));
        vars.push((
            "OTEL_TRACES_SAMPLER".into(),
            "parentbased_traceidratio".into(),
        ));
        vars.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.25".into()));
        let settings = Settings::load(None, vars.clone(), &Overrides::default()).unwrap();
        assert_eq!(
            settings.tracing.otlp_endpoint.as_deref(),
            Some("http://jaeger:4318")
        );
        assert_eq!(settings.tracing.service_name, "gw-eu");
        assert_eq!(settings.tracing.sample_ratio, 0.25);

        vars.push((
            "CORTEX_GATEWAY__TRACING__SERVICE_NAME".into(),
            "ours".into(),
        ));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.tracing.service_name, "ours");

        let defaults = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(defaults.tracing.otlp_endpoint, None);
        assert_eq!(defaults.tracing.service_name, "cortex-gateway");

        let grpc = error_of(Some("[tracing]\nprotocol = \"grpc\"\n"), MINIMAL);
        assert!(grpc.starts_with("tracing.protocol: "), "{grpc}");
        let ratio = error_of(Some("[tracing]\nsample_ratio = 2.0\n"), MINIMAL);
        assert!(ratio.starts_with("tracing.sample_ratio: "), "{ratio}");
    }

    #[test]
    fn secret_files_hold_one_key_per_line_first_signs() {
        let file = write_file("new-key\n\nold-key  \r\n");
        let mut vars = env(&MINIMAL[..2]);
        vars.push((
            "CORTEX_GATEWAY__AUTH__JWT_SECRET_FILE".into(),
            file.0.display().to_string(),
        ));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.signing_secret(), b"new-key");
        assert_eq!(
            settings.auth.secrets,
            [
                crate::settings::Secret::new("new-key"),
                crate::settings::Secret::new("old-key")
            ]
        );
        assert_eq!(
            settings.auth.jwt_secret_file.as_deref(),
            Some(file.0.as_path())
        );

        let empty = write_file("\n  \n");
        let mut vars = env(&MINIMAL[..2]);
        vars.push((
            "CORTEX_GATEWAY__AUTH__JWT_SECRET_FILE".into(),
            empty.0.display().to_string(),
        ));
        let error = Settings::load(None, vars, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("auth.jwt_secret_file: "), "{error}");
    }

    #[test]
    fn head_limits_default_and_stay_within_what_actix_can_enforce() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.max_request_header_size, 65536);
        assert_eq!(settings.server.max_request_headers, 64);

        let file = "[server]\nmax_request_header_size = 131072\nmax_request_headers = 96\n";
        let file = write_file(file);
        let settings = Settings::load(Some(&file.0), env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.max_request_header_size, 131072);
        assert_eq!(settings.server.max_request_headers, 96);
        // Beyond either bound is an error: see `errors_name_the_key`.
    }

    #[test]
    fn empty_optional_upstreams_mean_unset() {
        let mut vars = env(MINIMAL);
        vars.push(("CORTEX_GATEWAY__UPSTREAMS__RULER".into(), String::new()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert!(!settings.upstreams.contains_key(RULER));
    }

    #[test]
    fn redacted_toml_hides_the_secret_and_reloads() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        let rendered = settings.to_redacted_toml();
        assert!(!rendered.contains("s3cret"), "{rendered}");
        assert!(
            rendered.contains("jwt_secret = \"<redacted>\""),
            "{rendered}"
        );
        assert!(!format!("{settings:?}").contains("s3cret"));

        let file = write_file(&rendered);
        let reloaded =
            Settings::load(Some(&file.0), env(&MINIMAL[2..]), &Overrides::default()).unwrap();
        assert_eq!(reloaded.upstreams, settings.upstreams);
        assert_eq!(reloaded.proxy.timeout, settings.proxy.timeout);
    }
}
