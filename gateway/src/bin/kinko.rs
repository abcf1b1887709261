//! `kinko`: the exchange. Thin: it parses arguments and calls the gateway library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::{default_config, ServeConfig};

#[derive(Parser)]
#[command(name = "kinko", version, about = "Kinko: a crypto-asset exchange core")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the exchange (default configuration unless --config is given).
    Serve {
        /// A TOML configuration file (see kinko.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data folder for the journal and snapshots.
        #[arg(long)]
        data: Option<PathBuf>,
        /// HTTP and WebSocket address.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// FIX address.
        #[arg(long)]
        fix: Option<std::net::SocketAddr>,
    },
    /// Drive the matching core in-process through a short scripted session.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Cmd::Demo) {
        Cmd::Demo => match gateway::demo::run(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kinko: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Serve {
            config,
            data,
            http,
            fix,
        } => {
            let mut config = match config {
                Some(path) => match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| ServeConfig::from_toml(&t))
                {
                    Ok(config) => config,
                    Err(e) => {
                        eprintln!("kinko: {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
                None => default_config(),
            };
            if let Some(data) = data {
                config.server.data = data;
            }
            if let Some(http) = http {
                config.server.http = http;
            }
            if let Some(fix) = fix {
                config.server.fix = fix;
            }
            serve(config)
        }
    }
}

fn serve(config: ServeConfig) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let running = match gateway::server::start(config.clone()).await {
            Ok(running) => running,
            Err(e) => {
                eprintln!("kinko: {e}");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&config, running.http, running.fix);
        wait_for_signal().await;
        eprintln!("kinko: shutting down (writing a snapshot)...");
        match running.shutdown().await {
            Ok(seq) => {
                eprintln!("kinko: stopped cleanly at seq {seq}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kinko: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_banner(config: &ServeConfig, http: std::net::SocketAddr, fix: std::net::SocketAddr) {
    println!("Kinko is running.");
    println!("  data folder   {}", config.server.data.display());
    println!("  durability    {:?}", config.server.durability);
    println!("  HTTP          http://{http}/health   http://{http}/metrics   http://{http}/api/instruments");
    println!("  WebSocket     ws://{http}/ws");
    println!(
        "  FIX 4.4       {fix}  (SenderCompID = Username = API key, Password = its secret, TargetCompID {})",
        config.fix.comp_id
    );
    println!();
    println!("API keys (login: sig = hex(HMAC-SHA256(secret, key + ts_ms + nonce))):");
    for key in &config.keys {
        println!(
            "  {:<16} secret {:<26} account {:<8} role {:?}",
            key.key, key.secret, key.account, key.role
        );
    }
    println!();
    println!("Try it: python3 gateway/examples/trade.py ws://{http}/ws   (pip install websockets)");
    println!("Stop with Ctrl-C: a snapshot is written on the way out.");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
