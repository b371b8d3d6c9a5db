use std::process::ExitCode;

use clap::Parser;
use natter::config::{Cli, Command, LogFormat};
use natter::ops;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("NATTER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    init_logging(match &command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    });
    let result = match command {
        Command::Serve(args) => natter::app::serve(args).await,
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
