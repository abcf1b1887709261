//! `kinko`: the exchange. Thin: it parses arguments and calls the gateway library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::{default_config, machine_cores, ServeConfig};

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
        /// Serve plain TCP, NOT ENCRYPTED, instead of TLS (transport = "plaintext"): for
        /// benchmarks and local tests only. The server warns at start.
        #[arg(long)]
        plaintext: bool,
    },
    /// Drive the matching core in-process through a short scripted session.
    Demo,
    /// Operator actions on a running exchange (custody, halts), over its WebSocket API.
    Admin {
        /// The exchange's WebSocket address: wss://, or ws:// for a server in plain TCP.
        #[arg(long, default_value = "wss://127.0.0.1:8080/ws")]
        url: String,
        /// The certificate (PEM) the server must present, or its CA's [default: DATA/tls/cert.pem].
        #[arg(long)]
        ca: Option<PathBuf>,
        /// The server's data folder, where its generated certificate is (DATA/tls/cert.pem).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// An operator API key (the status also works with an auditor key).
        #[arg(long, default_value = "demo-operator")]
        key: String,
        /// The key's secret. Better from the environment (`KINKO_ADMIN_SECRET`) than on the
        /// command line, where other users of the machine can read it in the process list.
        #[arg(
            long,
            env = "KINKO_ADMIN_SECRET",
            hide_env_values = true,
            default_value = "demo-operator-secret"
        )]
        secret: String,
        #[command(subcommand)]
        action: AdminCmd,
    },
}

#[derive(clap::Args)]
struct Activities {
    /// Deposits of the asset.
    #[arg(long)]
    deposits: bool,
    /// Withdrawals of the asset.
    #[arg(long)]
    withdrawals: bool,
    /// Trading of every instrument that uses the asset.
    #[arg(long)]
    trading: bool,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Custody status: wallets against the ledger, halts, incidents, alerts, queues.
    Status,
    /// Halt deposits, withdrawals and/or trading of an asset (none named: all three).
    Halt {
        asset: String,
        #[command(flatten)]
        what: Activities,
    },
    /// Resume deposits, withdrawals and/or trading of an asset (none named: all three).
    Resume {
        asset: String,
        #[command(flatten)]
        what: Activities,
    },
    /// Move coins from a hot wallet to its cold wallet.
    SweepToCold {
        asset: String,
        amount: String,
        /// The house pool's wallets (default: the customers').
        #[arg(long)]
        house: bool,
    },
    /// Ask for a cold → hot move; it needs M approvals (`kinko admin approve`).
    ColdToHot {
        asset: String,
        amount: String,
        #[arg(long)]
        house: bool,
    },
    /// Sign and send an approval of a cold → hot request with an approver's ed25519 seed.
    Approve {
        request_id: u64,
        /// A file holding the 32-byte seed as 64 hex digits (keep it off the server).
        #[arg(long, conflicts_with = "demo_approver")]
        seed_file: Option<PathBuf>,
        /// One of the default configuration's demo approvers (0, 1 or 2). Demo only.
        #[arg(long)]
        demo_approver: Option<usize>,
    },
    /// The house replaces customer-pool losses of an asset from its own cold wallet or bank.
    TopUp { asset: String, amount: String },
    /// Cancel a pending cold → hot request.
    CancelColdToHot { request_id: u64 },
    /// Set an instrument's house policy: `forbidden` (the house never trades it) or `disclosed`.
    Policy { instrument: String, policy: String },
    /// Failed logins, throttled addresses and keys, security alerts.
    Security,
    /// API keys: create, list, rotate, revoke. Secrets are shown once, at creation or rotation.
    Keys {
        #[command(subcommand)]
        action: KeysCmd,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Every key with its account, role, permissions, allowlist, expiry and status (no secrets).
    List,
    /// A new key; prints its secret once.
    Create {
        /// The account (its name in the configuration, e.g. alice, or its number).
        #[arg(long)]
        account: String,
        /// trader, operator or auditor.
        #[arg(long, default_value = "trader")]
        role: String,
        /// Comma-separated: read, trade, withdraw (default: the role's).
        #[arg(long, value_delimiter = ',')]
        permissions: Option<Vec<String>>,
        /// An address or CIDR range the key may be used from (repeat for more). None: any.
        #[arg(long = "allow-ip")]
        allow_ips: Vec<String>,
        /// When the key stops working: RFC 3339 (2027-01-01T00:00:00Z) or ms since the epoch.
        #[arg(long)]
        expires: Option<String>,
        /// The key's name (default: k- and 16 random hex digits).
        #[arg(long)]
        name: Option<String>,
    },
    /// A new secret for a key; the old one stops working and its sessions are closed.
    Rotate { key: String },
    /// Revoke a key: refused from now on, its open sessions closed at once.
    Revoke { key: String },
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
        Cmd::Admin {
            url,
            ca,
            data,
            key,
            secret,
            action,
        } => {
            let ca = ca.unwrap_or_else(|| data.join("tls").join("cert.pem"));
            let connection = gateway::admin::Connection {
                url,
                ca,
                key,
                secret,
            };
            admin(connection, action)
        }
        Cmd::Serve {
            config,
            data,
            http,
            fix,
            plaintext,
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
            if plaintext {
                config.server.transport = gateway::config::Transport::Plaintext;
            }
            serve(config)
        }
    }
}

fn admin(connection: gateway::admin::Connection, action: AdminCmd) -> ExitCode {
    use gateway::admin::AdminAction;
    let activities = |w: Activities| {
        let all = !(w.deposits || w.withdrawals || w.trading);
        (all || w.deposits, all || w.withdrawals, all || w.trading)
    };
    let action = match action {
        AdminCmd::Status => AdminAction::Status,
        AdminCmd::Halt { asset, what } => {
            let (deposits, withdrawals, trading) = activities(what);
            AdminAction::Halt {
                asset,
                deposits,
                withdrawals,
                trading,
            }
        }
        AdminCmd::Resume { asset, what } => {
            let (deposits, withdrawals, trading) = activities(what);
            AdminAction::Resume {
                asset,
                deposits,
                withdrawals,
                trading,
            }
        }
        AdminCmd::SweepToCold {
            asset,
            amount,
            house,
        } => AdminAction::SweepToCold {
            asset,
            amount,
            house,
        },
        AdminCmd::ColdToHot {
            asset,
            amount,
            house,
        } => AdminAction::ColdToHot {
            asset,
            amount,
            house,
        },
        AdminCmd::Approve {
            request_id,
            seed_file,
            demo_approver,
        } => {
            let seed = match (seed_file, demo_approver) {
                (Some(path), _) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|text| gateway::admin::parse_seed(&text)),
                (None, Some(i)) if i < 3 => Ok(engine::defaults::demo_approver_seed(i)),
                (None, Some(i)) => Err(format!("there are 3 demo approvers, not {}", i + 1)),
                (None, None) => Err("give --seed-file or --demo-approver".into()),
            };
            match seed {
                Ok(seed) => AdminAction::Approve { request_id, seed },
                Err(e) => {
                    eprintln!("kinko admin: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        AdminCmd::TopUp { asset, amount } => AdminAction::TopUp { asset, amount },
        AdminCmd::CancelColdToHot { request_id } => AdminAction::Request(serde_json::json!({
            "type": "cancel_cold_to_hot", "request_id": request_id.to_string(),
        })),
        AdminCmd::Policy { instrument, policy } => AdminAction::Request(serde_json::json!({
            "type": "set_house_policy", "instrument": instrument, "policy": policy,
        })),
        AdminCmd::Security => AdminAction::Request(serde_json::json!({"type": "security_status"})),
        AdminCmd::Keys { action } => AdminAction::Request(match action {
            KeysCmd::List => serde_json::json!({"type": "list_keys"}),
            KeysCmd::Create {
                account,
                role,
                permissions,
                allow_ips,
                expires,
                name,
            } => {
                let account = match account.parse::<u64>() {
                    Ok(n) => serde_json::json!(n),
                    Err(_) => serde_json::json!(account),
                };
                serde_json::json!({
                    "type": "create_key", "key": name, "account": account, "role": role,
                    "permissions": permissions, "allow_ips": allow_ips, "expires_at": expires,
                })
            }
            KeysCmd::Rotate { key } => serde_json::json!({"type": "rotate_key", "key": key}),
            KeysCmd::Revoke { key } => serde_json::json!({"type": "revoke_key", "key": key}),
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(gateway::admin::run(&connection, action)) {
        Ok(reply) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&reply).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kinko admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: ServeConfig) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.idle.gateway_workers(machine_cores()))
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
        print!("{}", gateway::server::banner(&config, &running));
        tokio::select! {
            _ = wait_for_signal() => {
                eprintln!("kinko: shutting down (writing a snapshot)...");
            }
            failure = running.engine_stopped() => {
                // Exit non-zero, so that a supervisor restarts the server: recovery then takes up
                // from the journal, which holds every acknowledged command.
                eprintln!("kinko: {failure}; every session was closed with engine_stopped, exiting");
            }
        }
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
