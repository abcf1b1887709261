//! Level-2 book changes are derivable from events alone: a ladder rebuilt from
//! `Event::level_delta` equals the book's own levels after every command.

mod common;

use std::collections::BTreeMap;

use common::workload::{command, spec, Rng};
use engine::*;

#[test]
fn ladder_from_events_equals_the_book_after_every_command() {
    let config = EngineConfig {
        orders_max: 1 << 12,
        levels_per_side_max: 1 << 9,
        stops_per_side_max: 1 << 8,
        accounts_max: 64,
        orders_open_per_account_max: 1 << 9,
        check_invariants: true,
    };
    let mut matcher = Matcher::new(config, vec![spec()]);
    let mut derived: BTreeMap<(Side, PriceTicks), QtyLots> = BTreeMap::new();
    let mut rng = Rng(11);
    let mut out = Vec::new();
    let mut deltas = 0;
    for seq in 1..=20_000 {
        let command = command(&mut rng, &matcher);
        out.clear();
        matcher.apply(
            &Sequenced {
                seq,
                ts_ns: seq,
                command,
            },
            &mut out,
        );
        for delta in out.iter().filter_map(Event::level_delta) {
            deltas += 1;
            let total = derived.entry((delta.side, delta.price_ticks)).or_insert(0);
            *total += delta.delta_lots;
            assert!(*total >= 0, "negative level at seq {seq}: {delta:?}");
            if *total == 0 {
                derived.remove(&(delta.side, delta.price_ticks));
            }
        }
        for side in [Side::Buy, Side::Sell] {
            let book: Vec<(PriceTicks, QtyLots)> = matcher
                .levels(0, side)
                .map(|(price, qty, _)| (price, qty))
                .collect();
            let mut from_events: Vec<(PriceTicks, QtyLots)> = derived
                .iter()
                .filter(|((s, _), _)| *s == side)
                .map(|((_, price), qty)| (*price, *qty))
                .collect();
            if side == Side::Buy {
                from_events.reverse();
            }
            assert_eq!(
                book, from_events,
                "{side:?} ladder differs at seq {seq}: {out:?}"
            );
        }
    }
    assert!(
        deltas > 15_000,
        "the workload moved the book: {deltas} deltas"
    );
}
