//! The ledger refuses every posting set that would break an invariant, and applies the rest whole.

use ledger::*;

const BTC: AssetId = 0;
const JPY: AssetId = 1;

fn ledger() -> (Ledger, AccountId, AccountId) {
    let mut l = Ledger::new(
        vec![AssetSpec::coin("BTC", 8), AssetSpec::fiat("JPY", 0)],
        8,
    );
    let customer = l.open_account(Pool::Customer);
    let house = l.open_account(Pool::House);
    (l, customer, house)
}

fn deposit(
    l: &mut Ledger,
    account: AccountId,
    pool: Pool,
    asset: AssetId,
    location: Location,
    amount: i64,
) {
    let mut set = PostingSet::new(PostingKind::Deposit);
    set.increase(LedgerAccount::Custody { pool, location }, asset, amount);
    set.increase(LedgerAccount::available(account), asset, amount);
    l.apply(&set).unwrap();
}

fn reserved_none(l: &Ledger) -> Vec<i128> {
    vec![0; l.balance_cells()]
}

#[test]
fn unbalanced_set_is_refused_and_nothing_changes() {
    let (mut l, c, _) = ledger();
    let mut set = PostingSet::new(PostingKind::Deposit);
    set.increase(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Hot,
        },
        BTC,
        100,
    );
    set.increase(LedgerAccount::available(c), BTC, 99);
    assert_eq!(
        l.apply(&set),
        Err(Violation::Unbalanced { asset: BTC, sum: 1 })
    );
    assert_eq!(l.balance(c, BTC), Balance::default());
    assert_eq!(l.check_all(&reserved_none(&l)), Ok(()));
}

#[test]
fn cross_pool_move_without_obligation_is_commingling() {
    let (mut l, c, h) = ledger();
    deposit(&mut l, c, Pool::Customer, BTC, Location::Hot, 100);
    // A customer's coins credited straight to the house: balanced overall, but not per pool.
    let mut set = PostingSet::new(PostingKind::Settlement);
    set.decrease(LedgerAccount::available(c), BTC, 10);
    set.increase(LedgerAccount::available(h), BTC, 10);
    assert!(matches!(
        l.apply(&set),
        Err(Violation::Commingled {
            pool: Pool::Customer,
            ..
        })
    ));
    // The same move through `transfer` records the obligation and is accepted.
    let mut set = PostingSet::new(PostingKind::Settlement);
    set.transfer(
        (LedgerAccount::available(c), Pool::Customer),
        (LedgerAccount::available(h), Pool::House),
        BTC,
        10,
    );
    l.apply(&set).unwrap();
    assert_eq!(l.row(Pool::Customer, BTC).due_to, 10);
    assert_eq!(l.row(Pool::House, BTC).due_from, 10);
    // Customer custody (100) covers customers (90); the surplus (10) is what is owed to the house.
    assert_eq!(l.check_all(&reserved_none(&l)), Ok(()));
    assert_eq!(l.totals(Pool::Customer, BTC).surplus(), 10);
}

#[test]
fn customer_custody_cannot_pay_the_house() {
    let (mut l, c, _) = ledger();
    deposit(&mut l, c, Pool::Customer, JPY, Location::Bank, 1_000);
    // Moving customer bank money to the house bank with no obligation to settle.
    let mut set = PostingSet::new(PostingKind::Sweep);
    set.decrease(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Bank,
        },
        JPY,
        500,
    );
    set.increase(
        LedgerAccount::Custody {
            pool: Pool::House,
            location: Location::Bank,
        },
        JPY,
        500,
    );
    assert!(matches!(l.apply(&set), Err(Violation::Commingled { .. })));
    // Not even labelled as a top-up: a top-up only goes from the house to customers.
    let mut set2 = set;
    set2.kind = PostingKind::TopUp;
    assert!(matches!(
        l.apply(&set2),
        Err(Violation::Commingled {
            pool: Pool::Customer,
            ..
        })
    ));
    assert_eq!(
        l.row(Pool::Customer, JPY).custody[Location::Bank.index()],
        1_000
    );
}

#[test]
fn top_up_moves_house_money_into_the_customer_pool_only() {
    let (mut l, c, h) = ledger();
    deposit(&mut l, h, Pool::House, JPY, Location::Bank, 1_000);
    let mut set = PostingSet::new(PostingKind::TopUp);
    set.decrease(LedgerAccount::available(h), JPY, 300);
    set.decrease(
        LedgerAccount::Custody {
            pool: Pool::House,
            location: Location::Bank,
        },
        JPY,
        300,
    );
    set.increase(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Bank,
        },
        JPY,
        300,
    );
    set.increase(LedgerAccount::available(c), JPY, 300);
    l.apply(&set).unwrap();
    assert_eq!(l.balance(c, JPY).available, 300);
    assert_eq!(l.check_all(&reserved_none(&l)), Ok(()));
}

#[test]
fn no_balance_goes_negative_and_held_funds_cannot_be_spent() {
    let (mut l, c, _) = ledger();
    deposit(&mut l, c, Pool::Customer, JPY, Location::Bank, 100);
    let mut hold = PostingSet::new(PostingKind::Reserve);
    hold.decrease(LedgerAccount::available(c), JPY, 80);
    hold.increase(LedgerAccount::held(c), JPY, 80);
    l.apply(&hold).unwrap();
    let mut spend = PostingSet::new(PostingKind::WithdrawalComplete);
    spend.decrease(LedgerAccount::available(c), JPY, 30);
    spend.decrease(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Bank,
        },
        JPY,
        30,
    );
    assert!(matches!(
        l.apply(&spend),
        Err(Violation::Negative {
            account: LedgerAccount::Holder {
                bucket: Bucket::Available,
                ..
            },
            balance: -10,
            ..
        })
    ));
    assert_eq!(
        l.balance(c, JPY),
        Balance {
            available: 20,
            held: 80
        }
    );
    // Held must match what the caller has reserved.
    let mut reserved = reserved_none(&l);
    assert!(matches!(
        l.check_all(&reserved),
        Err(Violation::HeldMismatch {
            held: 80,
            reserved: 0,
            ..
        })
    ));
    reserved[c as usize * 2 + JPY as usize] = 80;
    assert_eq!(l.check_all(&reserved), Ok(()));
}

#[test]
fn overflow_and_unknown_accounts_are_refused() {
    let (mut l, c, _) = ledger();
    deposit(&mut l, c, Pool::Customer, BTC, Location::Hot, i64::MAX);
    let mut set = PostingSet::new(PostingKind::Deposit);
    set.increase(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Hot,
        },
        BTC,
        1,
    );
    set.increase(LedgerAccount::available(c), BTC, 1);
    assert!(matches!(l.apply(&set), Err(Violation::Overflow { .. })));
    let mut set = PostingSet::new(PostingKind::Deposit);
    set.increase(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Bank,
        },
        JPY,
        1,
    );
    set.increase(LedgerAccount::available(77), JPY, 1);
    assert!(matches!(
        l.apply(&set),
        Err(Violation::UnknownAccount { .. })
    ));
}

#[test]
fn customer_coins_cannot_be_moved_to_the_house_even_as_a_top_up() {
    let (mut l, c, _) = ledger();
    deposit(&mut l, c, Pool::Customer, BTC, Location::Hot, 1_000);
    assert_eq!(l.check_segregation(), Ok(()));
    // A top-up runs from the house to customers, never the other way.
    let mut theft = PostingSet::new(PostingKind::TopUp);
    theft.decrease(
        LedgerAccount::Custody {
            pool: Pool::Customer,
            location: Location::Hot,
        },
        BTC,
        400,
    );
    theft.increase(
        LedgerAccount::Custody {
            pool: Pool::House,
            location: Location::Hot,
        },
        BTC,
        400,
    );
    assert!(l.apply(&theft).is_err(), "the ledger itself never books it");
}

#[test]
fn hot_wallet_cap_is_reported() {
    let (mut l, c, _) = ledger();
    deposit(&mut l, c, Pool::Customer, BTC, Location::Cold, 950);
    deposit(&mut l, c, Pool::Customer, BTC, Location::Hot, 50);
    assert_eq!(l.check_hot_cap(BTC), Ok(())); // 50 of 1000 = 5%
    deposit(&mut l, c, Pool::Customer, BTC, Location::Hot, 1);
    assert!(matches!(
        l.check_hot_cap(BTC),
        Err(Violation::HotOverCap {
            hot: 51,
            owed: 1001,
            ..
        })
    ));
}
