//! `kinko-node`: the engine thread behind a line protocol on stdin and stdout, for the crash test
//! and for poking at a journal by hand. Each input line is `TOKEN COMMAND`; each output line is
//! `ready LAST_SEQ STATE_HASH` once, then `ack TOKEN SEQ` for every command, printed only after
//! the batch holding it is journaled.
//!
//! Commands: `account customer|house`, `deposit ACCOUNT ASSET UNITS TX`,
//! `order ACCOUNT SYMBOL buy|sell PRICE_TICKS QTY_LOTS CLIENT_ID [gtc|ioc]`,
//! `cancel ACCOUNT ORDER_ID`.

use ledger::Pool;

use crate::command::{Command, NewOrder};
use crate::exchange::{ExchangeCommand, ExchangeConfig};
use crate::types::*;

/// Parses one command (without its token) against `config`'s asset and instrument names.
pub fn parse_command(config: &ExchangeConfig, text: &str) -> Result<ExchangeCommand, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let number = |i: usize| -> Result<i64, String> {
        words
            .get(i)
            .ok_or(format!("missing argument {i}"))?
            .parse::<i64>()
            .map_err(|e| format!("argument {i}: {e}"))
    };
    match words.first().copied() {
        Some("account") => match words.get(1).copied() {
            Some("customer") => Ok(ExchangeCommand::CreateAccount {
                pool: Pool::Customer,
            }),
            Some("house") => Ok(ExchangeCommand::CreateAccount { pool: Pool::House }),
            _ => Err("account customer|house".into()),
        },
        Some("deposit") => {
            let asset = config
                .assets
                .iter()
                .position(|a| Some(a.code.as_str()) == words.get(2).copied())
                .ok_or("unknown asset")?;
            let mut tx = [0u8; 32];
            tx[..8].copy_from_slice(&(number(4)? as u64).to_le_bytes());
            Ok(ExchangeCommand::Deposit {
                account: number(1)? as AccountId,
                asset: asset as ledger::AssetId,
                amount_units: number(3)?,
                tx,
            })
        }
        Some("order") => {
            let instrument = config
                .instruments
                .iter()
                .position(|i| Some(i.symbol.as_str()) == words.get(2).copied())
                .ok_or("unknown instrument")?;
            let side = match words.get(3).copied() {
                Some("buy") => Side::Buy,
                Some("sell") => Side::Sell,
                _ => return Err("buy|sell".into()),
            };
            let tif = match words.get(7).copied() {
                None | Some("gtc") => TimeInForce::Gtc,
                Some("ioc") => TimeInForce::Ioc,
                Some(other) => return Err(format!("time in force {other}")),
            };
            Ok(ExchangeCommand::Trade(Command::NewOrder(NewOrder {
                account: number(1)? as AccountId,
                instrument: instrument as InstrumentId,
                client_order_id: number(6)? as ClientOrderId,
                side,
                kind: OrderKind::limit(number(4)?, tif),
                qty_lots: number(5)?,
                stp: None,
            })))
        }
        Some("cancel") => Ok(ExchangeCommand::Trade(Command::Cancel {
            account: number(1)? as AccountId,
            order: OrderRef::Id(number(2)? as OrderId),
        })),
        _ => Err(format!("unknown command: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command_and_rejects_garbage() {
        let config = crate::defaults::config();
        assert!(matches!(
            parse_command(&config, "account house"),
            Ok(ExchangeCommand::CreateAccount { pool: Pool::House })
        ));
        assert!(matches!(
            parse_command(&config, "deposit 3 JPY 1000 7"),
            Ok(ExchangeCommand::Deposit {
                account: 3,
                asset: 5,
                amount_units: 1000,
                ..
            })
        ));
        assert!(parse_command(&config, "order 1 BTC/JPY buy 15000000 10 5 ioc").is_ok());
        assert!(parse_command(&config, "order 1 DOGE/JPY buy 1 1 1").is_err());
        assert!(parse_command(&config, "deposit x JPY 1 1").is_err());
        assert!(parse_command(&config, "").is_err());
    }
}
