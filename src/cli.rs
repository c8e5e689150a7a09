//! Commands and flags. Flags keep the Go gateway's names and spellings
//! (`-gateway.auth.jwt-secret=…`, one or two dashes, `=` or a separate value),
//! so a Kubernetes manifest written for the Go gateway runs unchanged.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use jsonwebtoken::Algorithm;

use crate::auth::settings::min_token_version;
use crate::auth::{AuthSettings, SigningKey, TokenRequest};
use crate::config::Overrides;
use crate::duration;

#[derive(Debug, Parser)]
#[command(
    name = "cortex-gateway",
    version,
    about = "Authenticating gateway for Cortex and Mimir: verifies a JWT, sets X-Scope-OrgID, streams to the upstream.",
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no command is given).
    Serve,
    /// Print one token signed with the configured secret (or --key-file), and nothing else.
    Token(TokenArgs),
    /// Check a token against the configuration: print its claims and the key that verified it, or why it is refused (exit 1).
    Verify(VerifyArgs),
    /// Load and validate the configuration; print it with secrets redacted.
    CheckConfig,
    /// Try the gateway without Cortex: a built-in echo upstream, a token and a curl line.
    Demo(DemoArgs),
}

/// Flags accepted by every command, each overriding file and environment.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(
        long,
        global = true,
        env = "CORTEX_GATEWAY_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// server.http_listen_address
    #[arg(long = "server.http-listen-address", global = true, value_name = "IP")]
    pub http_listen_address: Option<String>,
    /// server.http_listen_port
    #[arg(long = "server.http-listen-port", global = true, value_name = "PORT")]
    pub http_listen_port: Option<String>,
    /// server.graceful_shutdown_timeout
    #[arg(
        long = "server.graceful-shutdown-timeout",
        global = true,
        value_name = "DURATION"
    )]
    pub graceful_shutdown_timeout: Option<String>,
    /// server.http_read_timeout
    #[arg(
        long = "server.http-read-timeout",
        global = true,
        value_name = "DURATION"
    )]
    pub http_read_timeout: Option<String>,
    /// server.http_idle_timeout (how long a kept-alive client connection may sit idle)
    #[arg(
        long = "server.http-idle-timeout",
        global = true,
        value_name = "DURATION"
    )]
    pub http_idle_timeout: Option<String>,
    /// server.http_conn_limit (0 = unlimited)
    #[arg(long = "server.http-conn-limit", global = true, value_name = "N")]
    pub http_conn_limit: Option<String>,
    /// server.http_tls_cert_path (serve HTTPS)
    #[arg(long = "server.http-tls-cert-path", global = true, value_name = "FILE")]
    pub http_tls_cert_path: Option<String>,
    /// server.http_tls_key_path
    #[arg(long = "server.http-tls-key-path", global = true, value_name = "FILE")]
    pub http_tls_key_path: Option<String>,
    /// server.http_tls_client_auth (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)
    #[arg(
        long = "server.http-tls-client-auth",
        global = true,
        value_name = "POLICY"
    )]
    pub http_tls_client_auth: Option<String>,
    /// server.http_tls_ca_path (CA for client certificates)
    #[arg(long = "server.http-tls-ca-path", global = true, value_name = "FILE")]
    pub http_tls_ca_path: Option<String>,
    /// upstreams.distributor
    #[arg(
        long = "gateway.distributor.address",
        global = true,
        value_name = "URL"
    )]
    pub distributor: Option<String>,
    /// upstreams.query_frontend
    #[arg(
        long = "gateway.query-frontend.address",
        global = true,
        value_name = "URL"
    )]
    pub query_frontend: Option<String>,
    /// upstreams.ruler
    #[arg(long = "gateway.ruler.address", global = true, value_name = "URL")]
    pub ruler: Option<String>,
    /// upstreams.alertmanager
    #[arg(
        long = "gateway.alertmanager.address",
        global = true,
        value_name = "URL"
    )]
    pub alertmanager: Option<String>,
    /// auth.jwt_secret (prefer the environment or auth.jwt_secret_file: flags show in `ps`)
    #[arg(
        long = "gateway.auth.jwt-secret",
        global = true,
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// auth.tenant_claim
    #[arg(
        long = "gateway.auth.tenant-id-claim",
        global = true,
        value_name = "CLAIM"
    )]
    pub tenant_claim: Option<String>,
    /// auth.extra_headers (comma-separated)
    #[arg(
        long = "gateway.auth.jwt-extra-headers",
        global = true,
        value_name = "HEADERS"
    )]
    pub extra_headers: Option<String>,
    /// log.level
    #[arg(long = "log.level", global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// log.format (text or json)
    #[arg(long = "log.format", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl GlobalArgs {
    /// The flags that were given, as configuration overrides.
    pub fn overrides(&self) -> Overrides {
        let mut overrides = Overrides::default();
        let pairs: [(&'static str, &Option<String>); 19] = [
            ("server.http_conn_limit", &self.http_conn_limit),
            ("server.http_tls_cert_path", &self.http_tls_cert_path),
            ("server.http_tls_key_path", &self.http_tls_key_path),
            ("server.http_tls_client_auth", &self.http_tls_client_auth),
            ("server.http_tls_ca_path", &self.http_tls_ca_path),
            ("server.http_listen_address", &self.http_listen_address),
            ("server.http_listen_port", &self.http_listen_port),
            (
                "server.graceful_shutdown_timeout",
                &self.graceful_shutdown_timeout,
            ),
            ("server.http_read_timeout", &self.http_read_timeout),
            ("server.http_idle_timeout", &self.http_idle_timeout),
            ("upstreams.distributor", &self.distributor),
            ("upstreams.query_frontend", &self.query_frontend),
            ("upstreams.ruler", &self.ruler),
            ("upstreams.alertmanager", &self.alertmanager),
            ("auth.jwt_secret", &self.jwt_secret),
            ("auth.tenant_claim", &self.tenant_claim),
            ("auth.extra_headers", &self.extra_headers),
            ("log.level", &self.log_level),
            ("log.format", &self.log_format),
        ];
        for (key, value) in pairs {
            overrides.set(key, value.clone());
        }
        overrides
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port for the gateway, on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tenant id, sent upstream as X-Scope-OrgID.
    #[arg(long)]
    pub tenant: String,
    /// Value of the `version` claim; by default 1, or the tenant's
    /// `min_token_version` when that is higher (so the token is not born revoked).
    #[arg(long = "version")]
    pub token_version: Option<u64>,
    /// Value of the `aud` claim.
    #[arg(long)]
    pub audience: Option<String>,
    /// Lifetime, e.g. 24h or 30m; 0 mints a token without `exp`.
    #[arg(long, default_value = "24h", value_parser = duration::parse)]
    pub expires_in: Duration,
    /// HS256, HS384, HS512 with the configured secret; with --key-file
    /// RS*, PS*, ES256/384 or EdDSA (default: implied by the key's type).
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,
    /// Sign with this private key (PEM) instead of the configured secret.
    #[arg(long, value_name = "PEM")]
    pub key_file: Option<PathBuf>,
    /// The header's `kid`: the id the public key is published under.
    #[arg(long)]
    pub kid: Option<String>,
    /// The `scope` claim: route families the token may use (write, read,
    /// rules, alerts; comma or space separated). Without it: all.
    #[arg(long)]
    pub scope: Option<String>,
}

impl TokenArgs {
    /// The token to mint under `auth`.
    pub fn request(&self, auth: &AuthSettings) -> TokenRequest {
        let minimum = min_token_version(auth.min_token_version, &auth.tenants, &self.tenant);
        TokenRequest {
            tenant: self.tenant.clone(),
            version: self.token_version.unwrap_or(minimum.max(1)),
            audience: self.audience.clone(),
            expires_in: (!self.expires_in.is_zero()).then_some(self.expires_in),
            algorithm: self.algorithm,
            scope: self.scope.as_ref().map(|words| {
                words
                    .split([',', ' '])
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            kid: self.kid.clone(),
            key: match &self.key_file {
                Some(path) => SigningKey::PrivateKeyFile(path.clone()),
                None => SigningKey::ConfiguredSecret,
            },
        }
    }
}

/// `verify`'s arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token, or `-` to read it from standard input (keeps it out of
    /// the shell history and the process list).
    pub token: String,
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let upper = name.to_ascii_uppercase();
    let canonical = if upper == "EDDSA" { "EdDSA" } else { &upper };
    canonical.parse().map_err(|_| {
        format!(
            "`{name}` is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA"
        )
    })
}

/// Flags of the Go gateway's HTTP/gRPC server that have no meaning here.
/// They are accepted and reported, so an existing manifest still starts.
/// The `bool` tells whether the flag takes a value.
const IGNORED_GO_FLAGS: &[(&str, bool)] = &[
    ("server.grpc-listen-address", true),
    ("server.grpc-listen-port", true),
    ("server.grpc-listen-network", true),
    ("server.grpc-conn-limit", true),
    ("server.grpc-max-recv-msg-size-bytes", true),
    ("server.grpc-max-send-msg-size-bytes", true),
    ("server.grpc-max-concurrent-streams", true),
    ("server.http-listen-network", true),
    ("server.http-write-timeout", true),
    ("server.register-instrumentation", false),
    ("server.log-source-ips-enabled", false),
];

/// The parsed command line, plus the Go flags that were accepted but ignored.
pub struct Invocation {
    pub cli: Cli,
    pub ignored_flags: Vec<String>,
}

/// Parses the process arguments; prints help, version or a usage error and
/// exits as clap does.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Invocation {
    let (args, ignored_flags) = rewrite_go_flags(args, &long_flag_names());
    Invocation {
        cli: Cli::parse_from(args),
        ignored_flags,
    }
}

fn long_flag_names() -> HashSet<String> {
    let command = Cli::command();
    let mut names: HashSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        names.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned)),
        );
    }
    names.extend(["help".to_owned(), "version".to_owned()]);
    names
}

/// Rewrites Go-style `-long.flag[=value]` into clap's `--long.flag[=value]`
/// for known long flags, and drops the Go server flags we ignore. Single-dash
/// arguments that are not known long flags are left for clap to judge.
pub fn rewrite_go_flags(
    args: impl IntoIterator<Item = OsString>,
    known: &HashSet<String>,
) -> (Vec<OsString>, Vec<String>) {
    let mut rewritten = Vec::new();
    let mut ignored = Vec::new();
    let mut args = args.into_iter();
    if let Some(program) = args.next() {
        rewritten.push(program);
    }
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            rewritten.push(arg);
            continue;
        };
        if text == "--" {
            rewritten.push(arg);
            rewritten.extend(args.by_ref());
            break;
        }
        let Some(flag) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            rewritten.push(arg);
            continue;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        if let Some(&(_, takes_value)) = IGNORED_GO_FLAGS.iter().find(|(n, _)| *n == name) {
            if takes_value && inline_value.is_none() {
                args.next();
            }
            ignored.push(name.to_owned());
        } else if known.contains(name) {
            rewritten.push(OsString::from(format!("--{flag}")));
        } else {
            rewritten.push(arg);
        }
    }
    (rewritten, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Cli {
        let args = std::iter::once("cortex-gateway")
            .chain(args.iter().copied())
            .map(OsString::from);
        let (args, _) = rewrite_go_flags(args, &long_flag_names());
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn go_flag_spellings_all_work() {
        for args in [
            &["-gateway.distributor.address=http://d:80"][..],
            &["--gateway.distributor.address=http://d:80"],
            &["-gateway.distributor.address", "http://d:80"],
            &["--gateway.distributor.address", "http://d:80"],
        ] {
            let cli = parse_args(args);
            assert_eq!(
                cli.global.distributor.as_deref(),
                Some("http://d:80"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn flags_become_overrides_for_their_keys() {
        let cli = parse_args(&[
            "-gateway.auth.jwt-secret",
            "s",
            "-server.http-listen-port=8080",
            "-gateway.query-frontend.address=http://q",
            "-log.level=debug",
        ]);
        let overrides = format!("{:?}", cli.global.overrides());
        for expected in [
            "(\"auth.jwt_secret\", \"s\")",
            "(\"server.http_listen_port\", \"8080\")",
            "(\"upstreams.query_frontend\", \"http://q\")",
            "(\"log.level\", \"debug\")",
        ] {
            assert!(overrides.contains(expected), "{overrides} lacks {expected}");
        }
    }

    #[test]
    fn global_flags_work_after_a_subcommand() {
        let cli = parse_args(&[
            "token",
            "--tenant",
            "t1",
            "-gateway.auth.jwt-secret=s",
            "--expires-in",
            "1h",
        ]);
        let Some(Command::Token(token)) = cli.command else {
            panic!("token command expected");
        };
        assert_eq!(token.tenant, "t1");
        assert_eq!(token.expires_in, Duration::from_secs(3600));
        assert_eq!(cli.global.jwt_secret.as_deref(), Some("s"));
    }

    #[test]
    fn ignored_go_server_flags_are_dropped_with_their_values() {
        let args = [
            "x",
            "-server.grpc-listen-port",
            "9095",
            "-server.register-instrumentation",
            "-server.http-write-timeout=2m",
            "serve",
        ]
        .map(OsString::from);
        let (rewritten, ignored) = rewrite_go_flags(args, &long_flag_names());
        assert_eq!(rewritten, ["x", "serve"].map(OsString::from));
        assert_eq!(
            ignored,
            [
                "server.grpc-listen-port",
                "server.register-instrumentation",
                "server.http-write-timeout"
            ]
        );
    }

    #[test]
    fn unknown_flags_still_fail() {
        let args = ["x", "-gateway.distributr.address=http://d"].map(OsString::from);
        let (rewritten, _) = rewrite_go_flags(args, &long_flag_names());
        assert!(Cli::try_parse_from(rewritten).is_err());
    }
}
