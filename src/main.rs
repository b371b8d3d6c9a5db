use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use natter::config::{Cli, Command, LogFormat};
use natter::ops;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, registry};

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("NATTER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever NATTER_LOG says: these crates log handshake auth (tokens) and raw
    // frames at debug/trace, so they never get below info.
    let never_secrets = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("socketioxide", LevelFilter::INFO)
        .with_target("engineioxide", LevelFilter::INFO)
        .with_target("tungstenite", LevelFilter::INFO);
    let filter = filter.and(never_secrets);
    // Colour only for a person at a terminal: a file or journald would keep
    // the escape codes as text.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => registry().with(layer.with_filter(filter)).init(),
        LogFormat::Json => registry().with(layer.json().with_filter(filter)).init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(Box::new(cli.serve)));
    init_logging(match &command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    });
    let result = match command {
        Command::Serve(args) => natter::app::serve(*args).await,
        Command::User(command) => ops::user(command).await,
        Command::Backup(args) => ops::backup(args).await,
        Command::Export(args) => ops::export(args).await,
        Command::Migrate(args) => ops::migrate(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
