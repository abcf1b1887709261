//! `kinko admin`: the operator's command line. It is a WebSocket client like any other: it logs
//! in with an operator key and sends the custody requests of docs/API.md, so every action is
//! journaled with the operator who made it. Approvals of cold → hot moves are signed here, on the
//! approver's machine, with a seed that never reaches the server.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Connection {
    /// `wss://…/ws`, or `ws://…/ws` for a server in plain TCP.
    pub url: String,
    /// The PEM certificate a `wss://` server must present (or its CA's): `DATA/tls/cert.pem`.
    pub ca: std::path::PathBuf,
    pub key: String,
    pub secret: String,
}

/// One administrative action.
#[derive(Clone, Debug)]
pub enum AdminAction {
    Status,
    /// Halts the named activities of an asset (the others keep their state).
    Halt {
        asset: String,
        deposits: bool,
        withdrawals: bool,
        trading: bool,
    },
    /// Resumes the named activities (none named: all three).
    Resume {
        asset: String,
        deposits: bool,
        withdrawals: bool,
        trading: bool,
    },
    SweepToCold {
        asset: String,
        amount: String,
        house: bool,
    },
    ColdToHot {
        asset: String,
        amount: String,
        house: bool,
    },
    /// Signs request `request_id` with a 32-byte ed25519 seed and sends the approval.
    Approve {
        request_id: u64,
        seed: [u8; 32],
    },
    TopUp {
        asset: String,
        amount: String,
    },
    /// Any other operator request of docs/API.md, sent as it is (keys, security status, house
    /// policy, cancelling a cold → hot request).
    Request(Value),
}

struct Client {
    ws: tokio_tungstenite::WebSocketStream<crate::transport::Stream>,
    req_id: u64,
}

impl Client {
    async fn connect(connection: &Connection) -> Result<Client, String> {
        let ws = crate::transport::connect_ws(&connection.url, Some(&connection.ca))
            .await
            .map_err(|e| {
                if connection.ca.exists() {
                    e
                } else {
                    format!("{e} (the server's certificate: --ca FILE, or --data DIR)")
                }
            })?;
        let mut client = Client { ws, req_id: 0 };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        // Nonces must grow per key: nanoseconds keep two quick invocations apart.
        let (ts, nonce) = (now.as_millis() as u64, now.as_nanos() as u64);
        let sig = crate::auth::sign(&connection.secret, &connection.key, ts, nonce);
        let reply = client
            .request(json!({"type": "login", "key": connection.key, "ts": ts, "nonce": nonce, "sig": sig}))
            .await?;
        if reply["type"] != "logged_in" {
            return Err(format!("login refused: {reply}"));
        }
        Ok(client)
    }

    /// Sends a request and returns its reply (the first message carrying its `req_id`).
    async fn request(&mut self, mut request: Value) -> Result<Value, String> {
        self.req_id += 1;
        request["req_id"] = json!(self.req_id);
        self.ws
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = std::time::Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout(deadline, self.ws.next())
                .await
                .map_err(|_| "no reply within 30 s".to_string())?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    if value["req_id"] == json!(self.req_id) {
                        return Ok(value);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("the server closed the connection: {frame:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection closed".into()),
            }
        }
    }
}

/// Runs one action and returns the server's reply; an error reply is an `Err` with its text.
pub async fn run(connection: &Connection, action: AdminAction) -> Result<Value, String> {
    let mut client = Client::connect(connection).await?;
    let pool = |house: bool| if house { "house" } else { "customer" };
    let request = match action {
        AdminAction::Status => json!({"type": "custody_status"}),
        AdminAction::Halt {
            asset,
            deposits,
            withdrawals,
            trading,
        } => {
            let current = current_halts(&mut client, &asset).await?;
            json!({"type": "set_asset_halts", "asset": asset,
                "deposits": deposits || current.0, "withdrawals": withdrawals || current.1, "trading": trading || current.2})
        }
        AdminAction::Resume {
            asset,
            deposits,
            withdrawals,
            trading,
        } => {
            let all = !(deposits || withdrawals || trading);
            let current = current_halts(&mut client, &asset).await?;
            json!({"type": "set_asset_halts", "asset": asset,
                "deposits": current.0 && !(all || deposits), "withdrawals": current.1 && !(all || withdrawals),
                "trading": current.2 && !(all || trading)})
        }
        AdminAction::SweepToCold {
            asset,
            amount,
            house,
        } => {
            json!({"type": "sweep_to_cold", "asset": asset, "amount": amount, "pool": pool(house)})
        }
        AdminAction::ColdToHot {
            asset,
            amount,
            house,
        } => json!({"type": "cold_to_hot", "asset": asset, "amount": amount, "pool": pool(house)}),
        AdminAction::Approve { request_id, seed } => {
            approval(&mut client, request_id, &SigningKey::from_bytes(&seed)).await?
        }
        AdminAction::TopUp { asset, amount } => {
            json!({"type": "top_up", "asset": asset, "amount": amount})
        }
        AdminAction::Request(request) => request,
    };
    let reply = client.request(request).await?;
    if reply["type"] == "error" {
        return Err(format!(
            "{}: {}",
            reply["code"].as_str().unwrap_or("error"),
            reply["message"].as_str().unwrap_or("")
        ));
    }
    Ok(reply)
}

async fn current_halts(client: &mut Client, asset: &str) -> Result<(bool, bool, bool), String> {
    let status = client.request(json!({"type": "custody_status"})).await?;
    let entry = status["assets"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["asset"].as_str() == Some(&asset.to_ascii_uppercase()))
        })
        .ok_or_else(|| format!("unknown asset {asset}: {status}"))?;
    let halted = &entry["halted"];
    let flag = |name: &str| halted[name].as_bool().unwrap_or(false);
    Ok((flag("deposits"), flag("withdrawals"), flag("trading")))
}

/// Reads the request from the server, rebuilds the exact bytes to sign from its pool, asset and
/// amount, and signs them.
async fn approval(client: &mut Client, request_id: u64, key: &SigningKey) -> Result<Value, String> {
    let status = client.request(json!({"type": "custody_status"})).await?;
    let request = status["cold_to_hot"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|r| r["request_id"].as_str() == Some(&request_id.to_string()))
        })
        .ok_or_else(|| format!("no pending cold-to-hot request {request_id}"))?;
    let pool = match request["pool"].as_str() {
        Some("house") => ledger::Pool::House,
        _ => ledger::Pool::Customer,
    };
    let asset = request["asset_id"]
        .as_u64()
        .and_then(|a| u16::try_from(a).ok())
        .ok_or_else(|| format!("the request has no asset id: {request}"))?;
    let units: i64 = request["amount_units"]
        .as_str()
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| format!("the request has no amount in units: {request}"))?;
    let message = engine::custody::cold_move_message(request_id, pool, asset, units);
    // The server shows the bytes too; the approver signs what it rebuilt, and says so.
    if request["message"].as_str() != Some(hex(&message).as_str()) {
        return Err(format!(
            "the server's message {} differs from the request's fields ({})",
            request["message"],
            hex(&message)
        ));
    }
    Ok(json!({
        "type": "approve_cold_to_hot", "request_id": request_id.to_string(),
        "approver": hex(&key.verifying_key().to_bytes()), "signature": hex(&key.sign(&message).to_bytes()),
    }))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 32-byte seed from 64 hex digits (a seed file's content).
pub fn parse_seed(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err("a seed is 64 hex digits".into());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| "a seed is 64 hex digits".to_string())?;
    }
    Ok(seed)
}
