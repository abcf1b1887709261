//! Criterion micro-benchmarks of the matching core's basic operations on a book of 1,000 orders
//! over about 750 levels (see `kinko_bench::fixture`).
//!
//! Every bench works in batches of [`BATCH_OPS`]: it prepares a batch untimed, times the batch,
//! then undoes it untimed (an add is cancelled, a cancelled order put back, a move moved back, a
//! taken maker was the bench's own), so that every batch meets the same book. One clock pair per
//! batch keeps the clock's cost (~25 ns) under 1 ns per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use engine::{Sequenced, Side, TimeInForce};
use kinko_bench::fixture::{BookFixture, Resting, ACCOUNT_MAKER, ACCOUNT_TAKER};

const SEED: u64 = 0x626f_6f6b;
/// Operations timed together. Sweeps place five levels per operation inside the fixture's gap of
/// 199 free prices, so 32 × 5 = 160 must fit.
const BATCH_OPS: usize = 32;
const QTY_LOTS_BENCH: i64 = 10;
const SWEEP_LEVELS: usize = 5;

/// Runs `iters` operations in batches: `prepare` builds a batch and what undoing it needs
/// (untimed), the batch is applied (timed), `undo` restores the book (untimed).
fn batched<U>(
    fixture: &mut BookFixture,
    iters: u64,
    mut prepare: impl FnMut(&mut BookFixture, usize) -> (Vec<Sequenced>, U),
    mut undo: impl FnMut(&mut BookFixture, U),
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let ops = BATCH_OPS.min((iters - done) as usize);
        let (batch, plan) = prepare(fixture, ops);
        let start = Instant::now();
        for record in &batch {
            black_box(fixture.apply(record));
        }
        timed += start.elapsed();
        undo(fixture, plan);
        done += ops as u64;
    }
    timed
}

/// A non-crossing GTC limit at a uniform price among the book's levels (a new level or the tail of
/// an existing one); undone by cancelling it.
fn add(c: &mut Criterion) {
    let mut fixture = BookFixture::new(SEED);
    c.bench_function("add", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut fixture,
                iters,
                |fixture, ops| {
                    let first_id = fixture.matcher().order_id_next();
                    let batch = (0..ops)
                        .map(|i| {
                            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                            let price_ticks = fixture.price_behind_gap(side);
                            fixture.limit(
                                ACCOUNT_MAKER,
                                side,
                                price_ticks,
                                QTY_LOTS_BENCH,
                                TimeInForce::Gtc,
                            )
                        })
                        .collect();
                    (batch, first_id..first_id + ops as u64)
                },
                |fixture, order_ids| {
                    for order_id in order_ids {
                        let record = fixture.cancel(ACCOUNT_MAKER, order_id);
                        fixture.apply(&record);
                    }
                },
            )
        })
    });
}

/// Cancelling one of the book's orders; undone by placing an equal order back (a new id).
fn cancel(c: &mut Criterion) {
    let mut fixture = BookFixture::new(SEED);
    c.bench_function("cancel", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut fixture,
                iters,
                |fixture, ops| {
                    // Untimed: the orders this batch will cancel.
                    let first_id = fixture.matcher().order_id_next();
                    for i in 0..ops {
                        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                        let price_ticks = fixture.price_behind_gap(side);
                        let record = fixture.limit(
                            ACCOUNT_MAKER,
                            side,
                            price_ticks,
                            QTY_LOTS_BENCH,
                            TimeInForce::Gtc,
                        );
                        fixture.apply(&record);
                    }
                    // Cancelled newest first: each is then the tail of its level, as often as not.
                    let batch = (0..ops as u64)
                        .rev()
                        .map(|k| fixture.cancel(ACCOUNT_MAKER, first_id + k))
                        .collect();
                    (batch, ())
                },
                |_, ()| {},
            )
        })
    });
}

/// A move (cancel-replace to a new price, same quantity) of one of the book's orders; undone by
/// moving it back.
fn move_order(c: &mut Criterion) {
    let mut fixture = BookFixture::new(SEED);
    let mut cursor = 0;
    c.bench_function("move", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut fixture,
                iters,
                |fixture, ops| {
                    let mut moved: Vec<Resting> = Vec::with_capacity(ops);
                    let batch = (0..ops)
                        .map(|_| {
                            // Distinct orders within a batch, so that moving back is exact.
                            let order = fixture.resting[cursor % fixture.resting.len()];
                            cursor += 1;
                            moved.push(order);
                            let mut price_ticks = fixture.price_behind_gap(order.side);
                            if price_ticks == order.price_ticks {
                                price_ticks += 1;
                            }
                            fixture.replace(&order, price_ticks)
                        })
                        .collect();
                    (batch, moved)
                },
                |fixture, moved| {
                    for order in &moved {
                        let record = fixture.replace(order, order.price_ticks);
                        fixture.apply(&record);
                    }
                },
            )
        })
    });
}

/// An IOC that fills exactly one resting order and empties its level; the maker is the bench's
/// own, placed inside the fixture's gap, so taking it restores the book.
fn match_one_level(c: &mut Criterion) {
    take_levels(c, "match_one_level", 1);
}

/// An IOC that sweeps five levels (one order each).
fn sweep_levels(c: &mut Criterion) {
    take_levels(c, "sweep_5_levels", SWEEP_LEVELS);
}

fn take_levels(c: &mut Criterion, name: &str, levels: usize) {
    let mut fixture = BookFixture::new(SEED);
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            batched(
                &mut fixture,
                iters,
                |fixture, ops| (prepare_takers(fixture, ops, levels), ()),
                |_, ()| {},
            )
        })
    });
}

/// Places `ops × levels` one-order ask levels just under the best ask, then returns `ops` IOC
/// buys, each taking the `levels` lowest of them (the IOC's limit is the highest it may take).
fn prepare_takers(fixture: &mut BookFixture, ops: usize, levels: usize) -> Vec<Sequenced> {
    let best_ask = fixture.best_ask();
    let makers = (ops * levels) as i64;
    let lowest = best_ask - makers;
    assert!(
        lowest > fixture.best_bid(),
        "the bench's makers must fit in the gap"
    );
    for price_ticks in (lowest..best_ask).rev() {
        let record = fixture.limit(
            ACCOUNT_MAKER,
            Side::Sell,
            price_ticks,
            QTY_LOTS_BENCH,
            TimeInForce::Gtc,
        );
        fixture.apply(&record);
    }
    (0..ops as i64)
        .map(|op| {
            let limit_ticks = lowest + (op + 1) * levels as i64 - 1;
            fixture.limit(
                ACCOUNT_TAKER,
                Side::Buy,
                limit_ticks,
                QTY_LOTS_BENCH * levels as i64,
                TimeInForce::Ioc,
            )
        })
        .collect()
}

/// Short runs: the whole suite finishes in about a minute on the 2-core CI machine.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = book;
    config = config();
    targets = add, cancel, move_order, match_one_level, sweep_levels
}
criterion_main!(book);
