//! The `cortex-gateway` binary: parse the command line, load the settings,
//! run the command.

use std::process::ExitCode;

use anyhow::Context;
use cortex_gateway::auth::mint_token;
use cortex_gateway::cli::{self, Command};
use cortex_gateway::config::{ConfigSource, Settings};
use cortex_gateway::metrics::Metrics;
use cortex_gateway::server::Gateway;
use cortex_gateway::telemetry::{self, EarlyRejections};
use cortex_gateway::verify;

fn main() -> ExitCode {
    let invocation = cli::parse(std::env::args_os());
    if let Some(Command::Demo(args)) = &invocation.cli.command {
        // The demo brings its own upstream and secret: no configuration.
        return match cortex_gateway::demo::run(args.port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    let global = &invocation.cli.global;
    // Variables that are not UTF-8 cannot be ours; skip them rather than panic.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let source = ConfigSource::new(global.config.clone(), env, global.overrides());
    // Signing and checking tokens needs no upstream.
    let outcome = match &invocation.cli.command {
        Some(Command::Token(args)) => source
            .load_token_settings()
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                let request = args.request(&settings.auth);
                Ok(mint_token(&settings.auth, &request)?)
            })
            .map(|token| println!("{token}")),
        Some(Command::Verify(args)) => source
            .load_token_settings()
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                let token = verify::read_token(&args.token)?;
                Ok(verify::run(&settings, &token)?)
            })
            .map(|report| print!("{report}")),
        Some(Command::CheckConfig) => source
            .load()
            .map(|settings| print!("{}", settings.to_redacted_toml()))
            .map_err(anyhow::Error::from),
        Some(Command::Serve) | Some(Command::Demo(_)) | None => source
            .load()
            .map_err(anyhow::Error::from)
            .and_then(|settings| serve(settings, source.clone(), &invocation.ignored_flags)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The secret in the shipped configuration file, which is public.
const SHIPPED_EXAMPLE_SECRET: &[u8] = b"change-me-this-is-only-for-local-testing";

fn serve(settings: Settings, source: ConfigSource, ignored_flags: &[String]) -> anyhow::Result<()> {
    let metrics = Metrics::new(settings.metrics.per_tenant);
    let telemetry = telemetry::init(
        &settings.log,
        &settings.tracing,
        EarlyRejections::new(&metrics),
    )?;
    for flag in ignored_flags {
        tracing::warn!(flag, "ignoring a Go gateway flag that has no effect here");
    }
    let secret = settings.auth.signing_secret();
    if secret == SHIPPED_EXAMPLE_SECRET {
        tracing::warn!("auth.jwt_secret is the example value from config/cortex-gateway.toml: anyone can mint tokens; set your own secret before exposing the gateway");
    } else if secret.len() < 32 {
        tracing::warn!(
            "auth.jwt_secret is shorter than 32 bytes; HS256 keys should be at least 256 bits"
        );
    }
    let gateway = Gateway::new(settings, metrics, telemetry.exports_traces())?.follow(source);
    actix_web::rt::System::new()
        .block_on(gateway.serve())
        .context("server failed")
}
