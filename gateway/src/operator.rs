//! Operator requests beside custody: API keys (create, list, rotate, revoke), the security status
//! (failed logins, throttling, alerts), the house policy per instrument and cancelling a cold →
//! hot request. Every change is a journaled `ExchangeCommand::Operator` naming the operator's key
//! (the audit trail, `kinko-replay actions`); key secrets are shown once, in the reply to the
//! request that made them, and never again.

use engine::audit::{KeyChange, OperatorCommand};
use engine::{ExchangeCommand, ExchangeEvent, HousePolicy};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{NewKey, Pending, Principal};
use crate::config::{Permission, Role};
use crate::hub::{close_sessions_of_key, Shared};
use crate::protocol::{typed, ApiError};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub req_id: Option<u64>,
    /// The key's public name; absent: `k-` and 16 random hex digits.
    #[serde(default)]
    pub key: Option<String>,
    /// The account's name in the configuration, or its number.
    pub account: Value,
    #[serde(default = "trader")]
    pub role: Role,
    /// `read`, `trade`, `withdraw`; absent: the role's default.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// RFC 3339, or milliseconds since the Unix epoch.
    #[serde(default)]
    pub expires_at: Option<String>,
}

fn trader() -> Role {
    Role::Trader
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyName {
    #[serde(default)]
    pub req_id: Option<u64>,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plain {
    #[serde(default)]
    pub req_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HousePolicyMsg {
    #[serde(default)]
    pub req_id: Option<u64>,
    pub instrument: String,
    /// `forbidden` or `disclosed`.
    pub policy: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdMove {
    #[serde(default)]
    pub req_id: Option<u64>,
    pub request_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorRequest {
    CreateKey(CreateKey),
    ListKeys(Plain),
    RotateKey(KeyName),
    RevokeKey(KeyName),
    SecurityStatus(Plain),
    SetHousePolicy(HousePolicyMsg),
    CancelColdToHot(ColdMove),
}

impl OperatorRequest {
    pub fn parse(kind: &str, body: Value) -> Option<Result<OperatorRequest, ApiError>> {
        Some(match kind {
            "create_key" => typed(body).map(OperatorRequest::CreateKey),
            "list_keys" => typed(body).map(OperatorRequest::ListKeys),
            "rotate_key" => typed(body).map(OperatorRequest::RotateKey),
            "revoke_key" => typed(body).map(OperatorRequest::RevokeKey),
            "security_status" => typed(body).map(OperatorRequest::SecurityStatus),
            "set_house_policy" => typed(body).map(OperatorRequest::SetHousePolicy),
            "cancel_cold_to_hot" => typed(body).map(OperatorRequest::CancelColdToHot),
            _ => return None,
        })
    }

    pub fn req_id(&self) -> Option<u64> {
        match self {
            OperatorRequest::CreateKey(m) => m.req_id,
            OperatorRequest::ListKeys(m) | OperatorRequest::SecurityStatus(m) => m.req_id,
            OperatorRequest::RotateKey(m) | OperatorRequest::RevokeKey(m) => m.req_id,
            OperatorRequest::SetHousePolicy(m) => m.req_id,
            OperatorRequest::CancelColdToHot(m) => m.req_id,
        }
    }
}

/// What the session does with a request.
pub enum Action {
    Reply(Value),
    Submit(ExchangeCommand),
    /// Submit, and apply the key change once the journal holds it.
    SubmitKey(ExchangeCommand, Box<Pending>),
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn operator(principal: Option<&Principal>) -> Result<&Principal, ApiError> {
    match principal {
        None => Err(ApiError::new(
            "not_logged_in",
            "log in with an operator key",
        )),
        Some(p) if p.role == Role::Operator => Ok(p),
        Some(_) => Err(ApiError::new(
            "forbidden",
            "only an operator key may change keys and policies",
        )),
    }
}

fn overseer(principal: Option<&Principal>) -> Result<&Principal, ApiError> {
    match principal {
        None => Err(ApiError::new(
            "not_logged_in",
            "log in with an operator or auditor key",
        )),
        Some(p) if p.role != Role::Trader => Ok(p),
        Some(_) => Err(ApiError::new(
            "forbidden",
            "keys and the security status are for operator and auditor keys",
        )),
    }
}

fn attributed(principal: &Principal, command: OperatorCommand) -> ExchangeCommand {
    ExchangeCommand::Operator {
        operator: principal.id,
        command,
    }
}

pub fn handle(
    shared: &Shared,
    principal: Option<&Principal>,
    request: OperatorRequest,
) -> Result<Action, ApiError> {
    let now = now_ms();
    let store_error = |e: String| ApiError::new("invalid_key_request", e);
    Ok(match request {
        OperatorRequest::ListKeys(m) => {
            overseer(principal)?;
            Action::Reply(
                json!({"type": "keys", "req_id": m.req_id, "keys": shared.keys.list(now)}),
            )
        }
        OperatorRequest::SecurityStatus(m) => {
            overseer(principal)?;
            let mut status = shared.keys.security_status(now);
            status["type"] = json!("security_status");
            status["req_id"] = json!(m.req_id);
            Action::Reply(status)
        }
        OperatorRequest::CreateKey(m) => {
            let p = operator(principal)?;
            let account = account_of(shared, &m.account)?;
            let permissions = match &m.permissions {
                None => m.role.permissions_default(),
                Some(names) => {
                    let mut bits = 0;
                    for name in names {
                        bits |= Permission::parse(name)
                            .ok_or_else(|| {
                                ApiError::new(
                                    "invalid_field",
                                    format!("unknown permission {name:?}: read, trade or withdraw"),
                                )
                            })?
                            .bit();
                    }
                    bits
                }
            };
            if m.role != Role::Trader && permissions & !Permission::Read.bit() != 0 {
                return Err(ApiError::new(
                    "invalid_field",
                    "an operator or auditor key can only have the read permission",
                ));
            }
            let expires_ms = m
                .expires_at
                .as_deref()
                .map(crate::config::parse_time_ms)
                .transpose()
                .map_err(|e| ApiError::new("invalid_field", format!("expires_at: {e}")))?;
            let pending = shared
                .keys
                .create(
                    NewKey {
                        name: m.key,
                        account,
                        role: m.role,
                        permissions,
                        allow_ips: m.allow_ips,
                        expires_ms,
                    },
                    now,
                )
                .map_err(store_error)?;
            Action::SubmitKey(
                attributed(p, OperatorCommand::Key(pending.change)),
                Box::new(pending),
            )
        }
        OperatorRequest::RotateKey(m) => {
            let p = operator(principal)?;
            let pending = shared.keys.rotate(&m.key).map_err(store_error)?;
            Action::SubmitKey(
                attributed(p, OperatorCommand::Key(pending.change)),
                Box::new(pending),
            )
        }
        OperatorRequest::RevokeKey(m) => {
            let p = operator(principal)?;
            // Refused from this moment on, and every open session of the key closed, before the
            // journal record: a revocation must not wait for anything.
            let pending = shared.keys.revoke(&m.key).map_err(store_error)?;
            let closed = close_sessions_of_key(shared, &m.key, "key_revoked");
            tracing::warn!(
                "key {} revoked by {}; {closed} open session(s) closed",
                m.key,
                p.key
            );
            Action::SubmitKey(
                attributed(p, OperatorCommand::Key(pending.change)),
                Box::new(pending),
            )
        }
        OperatorRequest::SetHousePolicy(m) => {
            let p = operator(principal)?;
            let (instrument, _) = crate::protocol::instrument(&shared.exchange, &m.instrument)?;
            let policy = match m.policy.as_str() {
                "forbidden" => HousePolicy::Forbidden,
                "disclosed" => HousePolicy::Disclosed,
                other => {
                    return Err(ApiError::new(
                        "invalid_field",
                        format!("policy {other:?}: forbidden or disclosed"),
                    ))
                }
            };
            Action::Submit(attributed(
                p,
                OperatorCommand::SetHousePolicy { instrument, policy },
            ))
        }
        OperatorRequest::CancelColdToHot(m) => {
            let p = operator(principal)?;
            let request_id = m.request_id.parse().map_err(|_| {
                ApiError::new("invalid_field", "field `request_id` must be a request id")
            })?;
            Action::Submit(attributed(
                p,
                OperatorCommand::ColdToHotCancel { request_id },
            ))
        }
    })
}

fn account_of(shared: &Shared, account: &Value) -> Result<u32, ApiError> {
    let accounts = shared.inner.lock().custody.pools.len() as u64;
    let id = match account {
        Value::String(name) => shared.config.account_id(name).map(u64::from),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    id.filter(|id| *id < accounts)
        .map(|id| id as u32)
        .ok_or_else(|| ApiError::new("invalid_field", format!("no account {account}")))
}

/// The journal holds a key change: apply it, and say what it made in the fields of the
/// acknowledgement (a new secret, shown this once); `Err` holds the fields of an error when the
/// key store could not take it. Called by the hub for every journaled key
/// change, so that a change is applied even when the operator's session closed before its
/// acknowledgement came back. The hub then closes a rotated key's open sessions, like a
/// revocation's, once the acknowledgement is on its way (an operator may rotate its own key).
pub fn key_change_journaled(
    shared: &Shared,
    pending: &Pending,
    events: &[ExchangeEvent],
) -> Result<serde_json::Map<String, Value>, serde_json::Map<String, Value>> {
    let mut reply = serde_json::Map::new();
    if !events
        .iter()
        .any(|e| matches!(e, ExchangeEvent::KeyChanged { .. }))
    {
        // Refused by the engine: the acknowledgement says why, and nothing is applied.
        return Err(reply);
    }
    if let Err(e) = shared.keys.commit(pending, now_ms()) {
        tracing::error!("key {}: {e}", pending.name);
        reply.insert("type".into(), json!("error"));
        reply.insert("code".into(), json!("key_store_failed"));
        reply.insert("message".into(), json!(e));
        return Err(reply);
    }
    let kind = match pending.change {
        KeyChange::Created { .. } => "key_created",
        KeyChange::Rotated { .. } => "key_rotated",
        KeyChange::Revoked { .. } => "key_revoked",
        KeyChange::Registered { .. } => "key_registered",
    };
    reply.insert("type".into(), json!(kind));
    reply.insert("key".into(), json!(pending.name));
    if let Some(secret) = &pending.secret {
        reply.insert("secret".into(), json!(secret));
    }
    if let Some(principal) = shared.keys.principal(&pending.name) {
        reply.insert("id".into(), json!(principal.id));
        reply.insert(
            "permissions".into(),
            json!(Permission::names(principal.permissions)),
        );
    }
    Ok(reply)
}
