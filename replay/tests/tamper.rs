//! Tampering, each caught and located at the right sequence number: first by the checksums and
//! the chain when the forger did not fix them, then — with checksums and chain recomputed by the
//! forger, which they cannot catch — by re-execution, the batch structure and the house policy.

mod common;

use common::*;
use engine::journal::format::encode_into;
use engine::{Event, ExchangeCommand, ExchangeEvent, HouseSide, Settlement, Side};
use replay::{verify, Finding, TornTail, VerifyFailure, VerifyOptions};

fn failure(dir: &std::path::Path) -> VerifyFailure {
    match verify(dir, &VerifyOptions::default()) {
        Ok(summary) => panic!("a tampered journal verified: {summary:?}"),
        Err(failure) => failure,
    }
}

#[track_caller]
fn assert_at(failure: &VerifyFailure, seq: u64, code: &str) {
    assert_eq!(failure.location.seq, Some(seq), "{failure}");
    assert_eq!(failure.findings[0].code(), code, "{failure}");
    assert!(failure.location.segment.is_some(), "{failure}");
    assert!(failure.location.offset.is_some(), "{failure}");
}

/// Alice's JPY deposit with 1,000,000 JPY more: the same length of payload.
fn richer(command: &ExchangeCommand) -> ExchangeCommand {
    match *command {
        ExchangeCommand::Deposit {
            account,
            asset,
            amount_units,
            tx,
        } => ExchangeCommand::Deposit {
            account,
            asset,
            amount_units: amount_units + 1_000_000,
            tx,
        },
        other => panic!("not a deposit: {other:?}"),
    }
}

#[test]
fn an_edited_amount_breaks_the_checksum() {
    let dir = TempDir::new("tamper-crc");
    let seqs = coincheck(dir.path());
    let record = command_record(dir.path(), seqs.deposit_alice_jpy);
    let mut payload = Vec::new();
    encode_into(
        &richer(&engine::journal::format::decode(&record.payload).unwrap()),
        &mut payload,
    );
    patch_record(dir.path(), &record, &payload, false);
    let failure = failure(dir.path());
    assert_at(&failure, seqs.deposit_alice_jpy, "corrupt_record");
    assert_eq!(failure.location.offset, Some(record.offset));
}

#[test]
fn an_edited_amount_with_its_checksum_fixed_breaks_the_chain() {
    let dir = TempDir::new("tamper-chain");
    let seqs = coincheck(dir.path());
    let record = command_record(dir.path(), seqs.deposit_alice_jpy);
    let mut payload = Vec::new();
    encode_into(
        &richer(&engine::journal::format::decode(&record.payload).unwrap()),
        &mut payload,
    );
    patch_record(dir.path(), &record, &payload, true);
    // One command per batch: the failing commit is that command's batch.
    assert_at(&failure(dir.path()), seqs.deposit_alice_jpy, "chain_broken");
}

#[test]
fn an_edited_amount_with_checksums_and_chain_fixed_diverges_on_re_execution() {
    let (source, forged) = (
        TempDir::new("tamper-amount-src"),
        TempDir::new("tamper-amount"),
    );
    let seqs = coincheck(source.path());
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if let (true, Payload::Command(c)) =
                (record.seq == seqs.deposit_alice_jpy, &mut record.payload)
            {
                *c = richer(c);
            }
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, seqs.deposit_alice_jpy, "divergence");
    let Finding::Diverged(d) = &failure.findings[0] else {
        unreachable!()
    };
    assert_eq!(d.event_index, 0);
    assert!(
        d.journaled
            .as_ref()
            .unwrap()
            .contains("amount_units: 1000000,"),
        "{d}"
    );
    assert!(
        d.reexecuted
            .as_ref()
            .unwrap()
            .contains("amount_units: 2000000,"),
        "{d}"
    );
}

#[test]
fn a_removed_command_leaves_a_gap_even_with_the_chain_fixed() {
    let (source, forged) = (TempDir::new("tamper-gap-src"), TempDir::new("tamper-gap"));
    let seqs = coincheck(source.path());
    let removed = seqs.bob_sells_3000;
    forge(source.path(), forged.path(), |batches| {
        batches.retain(|b| b[0].seq != removed);
    });
    let failure = failure(forged.path());
    // The reader meets seq removed + 1 where `removed` was expected.
    assert_at(&failure, removed + 1, "corrupt_record");
    assert!(
        failure
            .to_string()
            .contains(&format!("where {removed} was expected")),
        "{failure}"
    );
}

#[test]
fn a_removed_events_record_is_a_malformed_batch() {
    let (source, forged) = (
        TempDir::new("tamper-events-src"),
        TempDir::new("tamper-events"),
    );
    let seqs = coincheck(source.path());
    forge(source.path(), forged.path(), |batches| {
        for batch in batches.iter_mut() {
            batch.retain(|r| {
                !(r.seq == seqs.alice_buys_3000 && matches!(r.payload, Payload::Events(_)))
            });
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, seqs.alice_buys_3000, "batch_structure");
}

#[test]
fn a_reordered_pair_renumbered_diverges() {
    let (source, forged) = (TempDir::new("tamper-swap-src"), TempDir::new("tamper-swap"));
    let seqs = coincheck(source.path());
    let (first, second) = (seqs.bob_sells_3000, seqs.alice_buys_3000);
    forge(source.path(), forged.path(), |batches| {
        // Swap the two batches' contents but keep the numbering, so that no gap gives it away:
        // Alice's buy now comes before Bob's offer.
        let i = batches.iter().position(|b| b[0].seq == first).unwrap();
        let (a, b) = (batches[i].clone(), batches[i + 1].clone());
        batches[i] = b.into_iter().map(|r| Record { seq: first, ..r }).collect();
        batches[i + 1] = a.into_iter().map(|r| Record { seq: second, ..r }).collect();
    });
    let failure = failure(forged.path());
    assert_at(&failure, first, "divergence");
}

#[test]
fn an_event_that_differs_from_re_execution_is_located() {
    let (source, forged) = (
        TempDir::new("tamper-event-src"),
        TempDir::new("tamper-event"),
    );
    let seqs = coincheck(source.path());
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if record.seq != seqs.alice_buys_3000 {
                continue;
            }
            if let Payload::Events(events) = &mut record.payload {
                for event in events.iter_mut() {
                    if let ExchangeEvent::Settled(s) = event {
                        s.fee_buyer_units -= 1; // A yen less taken from Alice.
                    }
                }
            }
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, seqs.alice_buys_3000, "divergence");
    assert!(
        failure.to_string().contains("fee_buyer_units: 530"),
        "{failure}"
    );
}

#[test]
fn an_injected_house_fill_on_a_forbidden_instrument_is_divergence_and_internalization() {
    let (source, forged) = (TempDir::new("tamper-nomi-src"), TempDir::new("tamper-nomi"));
    let seqs = coincheck(source.path());
    let target = seqs.bob_rests_500;
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            let Payload::Events(events) = &mut record.payload else {
                continue;
            };
            if record.seq == target {
                *events = house_buys_bob_s_offer(events);
            }
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, target, "divergence");
    assert!(failure.has("internalization"), "{failure}");
    assert!(!failure.has("house_side_mislabelled"), "{failure}");
    let text = failure.to_string();
    assert!(text.contains("XEM/JPY"), "{text}");
}

/// Bob's resting offer of 500 XEM at 95.000, rewritten as if the house (account 3) had taken 200
/// of it off the book: the fill and its settlement, with the house side stated.
fn house_buys_bob_s_offer(events: &[ExchangeEvent]) -> Vec<ExchangeEvent> {
    let ExchangeEvent::Order(Event::Accepted { order_id, .. }) = events[0] else {
        panic!("{events:?}");
    };
    let fill = Event::Fill {
        instrument: XEM_JPY,
        maker_order_id: order_id,
        taker_order_id: order_id + 1,
        maker_account: 1,
        taker_account: 3,
        price_ticks: 95_000,
        qty_lots: 200,
        aggressor: Side::Buy,
        maker_qty_open: 300,
        taker_qty_open: 0,
    };
    let settled = Settlement {
        instrument: XEM_JPY,
        maker_order_id: order_id,
        taker_order_id: order_id + 1,
        buyer: 3,
        seller: 1,
        base: XEM,
        quote: JPY,
        base_units: 200 * XEM_UNITS,
        notional_units: 19_000,
        fee_buyer_units: 38,
        fee_seller_units: 19,
        house: HouseSide::Taker,
    };
    let mut forged = events.to_vec();
    forged.insert(1, ExchangeEvent::Order(fill));
    forged.insert(2, ExchangeEvent::Settled(settled));
    forged
}

#[test]
fn a_mislabelled_house_side_is_found_without_re_execution_s_help() {
    let (source, forged) = (
        TempDir::new("tamper-label-src"),
        TempDir::new("tamper-label"),
    );
    let seqs = coincheck(source.path());
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if record.seq != seqs.bob_rests_500 {
                continue;
            }
            if let Payload::Events(events) = &mut record.payload {
                let mut with_fill = house_buys_bob_s_offer(events);
                // The forger also hides the house side.
                if let ExchangeEvent::Settled(s) = &mut with_fill[2] {
                    s.house = HouseSide::None;
                }
                *events = with_fill;
            }
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, seqs.bob_rests_500, "divergence");
    assert!(failure.has("house_side_mislabelled"), "{failure}");
}

#[test]
fn time_going_backwards_is_a_failure() {
    let (source, forged) = (TempDir::new("tamper-time-src"), TempDir::new("tamper-time"));
    let seqs = coincheck(source.path());
    forge(source.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if record.seq == seqs.halt {
                record.ts_ns = ns("2018-01-26T08:00:00+09:00");
            }
        }
    });
    let failure = failure(forged.path());
    assert_at(&failure, seqs.halt, "time_backwards");
}

#[test]
fn a_torn_tail_fails_unless_allowed() {
    let dir = TempDir::new("tamper-torn");
    let seqs = coincheck(dir.path());
    // Zero the last commit record: the last batch has no commit, as after a crash mid-write.
    let read = replay::open_journal(dir.path()).unwrap();
    let last = read.batches.last().unwrap();
    let end = read.end.offset;
    let path = dir.path().join("journal").join("segment-000000.kjl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[last.offset..end].fill(0);
    std::fs::write(&path, bytes).unwrap();
    let failure = failure(dir.path());
    assert_at(&failure, seqs.halt, "torn_tail");
    let allowed = VerifyOptions {
        torn_tail: TornTail::Allow,
        ..VerifyOptions::default()
    };
    let summary = verify(dir.path(), &allowed).expect("everything before the tail verifies");
    assert_eq!(summary.commands, seqs.halt - 1);
    assert!(summary.tail_cut.is_some());
}

#[test]
fn an_untouched_rewrite_verifies() {
    // The forger's tools themselves change nothing: the tests above fail for their edits alone.
    let (source, copy) = (TempDir::new("tamper-none-src"), TempDir::new("tamper-none"));
    let seqs = coincheck(source.path());
    forge(source.path(), copy.path(), |_| {});
    let summary = verify(copy.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(summary.commands, seqs.last);
    let original = verify(source.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(summary.state_hash, original.state_hash);
}
