//! In steady state an add, cancel, replace or match does no heap allocation. A counting global
//! allocator watches this thread while a warmed-up mixed workload runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;

use common::workload::{command, spec, Rng};
use engine::*;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator can run while thread-locals are being torn down.
    let watching = WATCHING.try_with(|w| w.get()).unwrap_or(false);
    if watching {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `commands` commands and returns how many fills they printed.
fn run(
    matcher: &mut Matcher,
    rng: &mut Rng,
    seq: &mut u64,
    commands: usize,
    out: &mut Vec<Event>,
) -> usize {
    let mut fills = 0;
    for _ in 0..commands {
        *seq += 1;
        let command = command(rng, matcher);
        out.clear();
        matcher.apply(
            &Sequenced {
                seq: *seq,
                ts_ns: *seq,
                command,
            },
            out,
        );
        fills += out
            .iter()
            .filter(|e| matches!(e, Event::Fill { .. }))
            .count();
    }
    fills
}

#[test]
fn steady_state_matching_allocates_nothing() {
    let config = EngineConfig {
        orders_max: 1 << 14,
        levels_per_side_max: 1 << 10,
        stops_per_side_max: 1 << 10,
        accounts_max: 64,
        orders_open_per_account_max: 1 << 10,
        // The invariant checker itself allocates nothing, but it is O(book): keep the run quick.
        check_invariants: false,
    };
    let mut matcher = Matcher::new(config, vec![spec()]);
    let mut rng = Rng(7);
    let mut out: Vec<Event> = Vec::with_capacity(4_096);
    let mut seq = 0;
    run(&mut matcher, &mut rng, &mut seq, 50_000, &mut out);
    assert!(matcher.orders_open() > 100, "the warm-up built a book");

    WATCHING.with(|w| w.set(true));
    let fills = run(&mut matcher, &mut rng, &mut seq, 200_000, &mut out);
    WATCHING.with(|w| w.set(false));

    let allocations = ALLOCATIONS.with(|a| a.get());
    assert!(fills > 10_000, "the measured run matched: {fills}");
    assert_eq!(
        allocations, 0,
        "heap allocations during steady-state matching"
    );
    assert_eq!(matcher.check_invariants(), Ok(()));
}

/// The positive control: the counter does see allocations on this thread.
#[test]
fn the_counter_counts() {
    WATCHING.with(|w| w.set(true));
    let v: Vec<u64> = Vec::with_capacity(std::hint::black_box(16));
    WATCHING.with(|w| w.set(false));
    drop(v);
    assert!(ALLOCATIONS.with(|a| a.get()) >= 1);
}
