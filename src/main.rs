//! `secrets-agent`: serve (mode picked from the environment), `health`, `exec`, `render`,
//! `webhook` or `install`; `sm start` is the AWS Workload Credentials Provider 3.x spelling of
//! serving.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use secrets_agent::commands::{exec, health, install, render, serve, webhook};
use secrets_agent::config::{Config, ConfigError, Env, Overrides};
use secrets_agent::EXIT_USAGE;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Serves AWS Secrets Manager secrets and SSM parameters from a cache on localhost.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (also SECRETS_AGENT_CONFIG).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Listen address: 127.0.0.1, ::1, ADDR:PORT or unix:/path (also SECRETS_AGENT_LISTEN).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Port (also http_port, PARAMETERS_SECRETS_EXTENSION_HTTP_PORT). Checked with the other
    /// settings, so a bad value is reported like them (exit 64).
    #[arg(long, global = true)]
    port: Option<String>,
    /// Generate a random token and write it to this file, mode 0444 (also SECRETS_AGENT_TOKEN_FILE).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the agent on the configured address answers /ping, else 1.
    Health,
    /// Resolve awssm:/awsparam: placeholders in the environment, then run COMMAND in this
    /// process (same PID). Exit 78 if a placeholder cannot be resolved.
    Exec(exec::Args),
    /// Write secrets to files on a memory filesystem; with --once write them and exit (exit 73
    /// if a file cannot be written, 78 if a secret cannot be resolved), else keep them current.
    Render(render::Args),
    /// Kubernetes mutating admission webhook over HTTPS (POST /mutate, GET /healthz, GET
    /// /metrics); --listen defaults to 127.0.0.1:8443.
    Webhook(webhook::Args),
    /// Copy this binary to DIR/secrets-agent (the webhook's env mode does it in an init
    /// container).
    Install {
        /// The folder to copy to (a mounted volume).
        dir: PathBuf,
    },
    /// The AWS Workload Credentials Provider 3.x command line: `sm start [-c FILE]` serves, as
    /// no subcommand does (without -c, its default file
    /// /etc/aws-workload-credentials-provider/config.toml is read when it exists).
    Sm {
        #[command(subcommand)]
        action: SmAction,
    },
}

/// `sm` actions of the 3.x command line.
#[derive(Subcommand)]
enum SmAction {
    /// Serve (the same as running with no subcommand).
    Start,
}

/// The configuration file 3.x reads when given none.
const AWS_PROVIDER_CONFIG: &str = "/etc/aws-workload-credentials-provider/config.toml";

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and succeed; a usage error is EX_USAGE, as
        // every other bad setting.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Variables that are not UTF-8 are none of ours; `exec` passes them on untouched.
    let vars: Vec<_> = std::env::vars_os().collect();
    let env: Env = vars
        .iter()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
        .collect();
    // The webhook's --listen is its own address (HTTPS, port 8443), not the agent's.
    let webhook_listen = match cli.command {
        Some(Command::Webhook(_)) => cli.listen.take(),
        _ => None,
    };
    // `sm start` without a file reads 3.x's default file, as 3.x does, unless ours names one.
    let config_file = match (&cli.command, cli.config) {
        (Some(Command::Sm { .. }), None)
            if !env.contains_key("SECRETS_AGENT_CONFIG")
                && std::path::Path::new(AWS_PROVIDER_CONFIG).exists() =>
        {
            Some(PathBuf::from(AWS_PROVIDER_CONFIG))
        }
        (_, given) => given,
    };
    let overrides = Overrides {
        config_file,
        listen: cli.listen,
        port: cli.port,
        token_file: cli.token_file,
    };
    let config = Config::load(&overrides, &env);
    let text = |c: Result<Config, _>| c.map_err(|e: ConfigError| e.to_string());
    ExitCode::from(match cli.command {
        None | Some(Command::Sm { .. }) => serve::main(config, env),
        Some(Command::Health) => health::run(config),
        Some(Command::Exec(args)) => exec::run(args, text(config), &env, vars),
        Some(Command::Render(args)) => render::run(args, text(config), &env),
        Some(Command::Webhook(args)) => webhook::run(args, webhook_listen, text(config), &env),
        Some(Command::Install { dir }) => install::run(&dir),
    })
}
