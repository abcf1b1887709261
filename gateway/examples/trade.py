#!/usr/bin/env python3
"""A whole trading session against a fresh `kinko serve`, checked step by step.

Written from docs/API.md alone. It uses only the standard library and the `websockets` package
(`python3 -m pip install websockets`).

    python3 gateway/examples/trade.py wss://127.0.0.1:8080/ws --ca data/tls/cert.pem
    python3 gateway/examples/trade.py ws://127.0.0.1:8080/ws      # a server in plain TCP

`--ca FILE` is the certificate to trust for wss:// and https:// (the one `kinko serve` generated
in its data folder); without it, the system's trusted authorities.

It assumes a server with the default configuration on a FRESH data folder: the demo accounts hold
their opening deposits, and the BTC/JPY book is empty and has never traded. Each check prints one
line. The last line is `... N passed, M failed`, and the exit status is 1 if anything failed.

The session:

* a public connection subscribes to book, trades and ticker of BTC/JPY, rebuilds the book from
  the snapshot and every update, and checks the sequence and the checksum after each update;
* alice and bob log in. Alice offers BTC, bob buys part of it, and both fill reports are
  checked: liquidity, fees, leaves. Every balance is checked against exact Decimal arithmetic;
* replaces (lost and kept priority) and cancels, by order id and by client order id;
* bad requests get their documented codes, and the connection stays usable;
* cancel-on-disconnect, roles (operator halt and resume, auditor), the HTTP endpoints and the
  heartbeat.
"""

import asyncio
import hashlib
import hmac
import json
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
import zlib
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

try:  # websockets >= 13
    from websockets.asyncio.client import connect as ws_connect
except ImportError:  # older releases: the legacy client has the same calls used here
    from websockets import connect as ws_connect

SYMBOL = "BTC/JPY"
SYMBOL_URL = "BTC-JPY"
# The default configuration (docs/API.md, section 12).
TICK = Decimal("1")
LOT = Decimal("0.0001")
MAKER_FEE = Decimal("0.001")
TAKER_FEE = Decimal("0.002")
JPY_UNIT = Decimal("1")  # JPY has 0 decimals
OPENING = {"JPY": Decimal("100000000"), "BTC": Decimal("10")}
EMPTY_BOOK_CHECKSUM = 2343686810  # crc32("|"), docs/API.md section 6
TIMEOUT_S = 5.0
# The TLS context of wss:// and https://, set from --ca in main(); None for ws:// and http://.
TLS = None
HEARTBEAT_WAIT_S = 7.0  # heartbeats come every 5 s


class Abort(Exception):
    """The session cannot go on (timeout, closed connection); counted as one failure."""


# ---------------------------------------------------------------------------------------------
# Checks


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, condition, what, detail=""):
        if condition:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
        return bool(condition)

    def eq(self, actual, expected, what):
        return self.ok(actual == expected, what, f"expected {expected!r}, got {actual!r}")

    def fields(self, message, expected, what):
        """Each key of `expected` has that value in `message`."""
        wrong = {k: message.get(k) for k, v in expected.items() if message.get(k) != v}
        return self.ok(not wrong, what, f"expected {expected}, got {wrong} in {message}")

    def error(self, reply, code, what, engine=None):
        """`reply` is an error with `code`. `engine` True: it carries a seq; False: it has none."""
        good = reply.get("type") == "error" and reply.get("code") == code
        good = good and isinstance(reply.get("message"), str) and reply["message"] != ""
        if engine is True:
            good = good and isinstance(reply.get("seq"), int)
        if engine is False:
            good = good and "seq" not in reply
        return self.ok(good, what, f"expected error {code}, got {reply}")


CHECKS = Checks()


def canonical(value: Decimal) -> str:
    """The server's decimal text: no exponent, no trailing zeros, no trailing point."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


# ---------------------------------------------------------------------------------------------
# Money arithmetic (docs/API.md, "Fees" and "Reservation")


def notional(price: Decimal, qty: Decimal) -> Decimal:
    return (price * qty).quantize(JPY_UNIT, rounding=ROUND_FLOOR)


def fee(amount: Decimal, rate: Decimal) -> Decimal:
    return (amount * rate).quantize(JPY_UNIT, rounding=ROUND_FLOOR)


def buy_reservation(price: Decimal, qty: Decimal) -> Decimal:
    held = (price * qty).quantize(JPY_UNIT, rounding=ROUND_CEILING)
    return held + (held * max(MAKER_FEE, TAKER_FEE)).quantize(JPY_UNIT, rounding=ROUND_CEILING)


# ---------------------------------------------------------------------------------------------
# The level-2 book, rebuilt from snapshot + updates


def checksum(asks: dict, bids: dict) -> int:
    """CRC-32 of `ASKS|BIDS`, top 10 levels per side, best first, `price:qty` joined by `,`."""
    top_asks = [f"{canonical(p)}:{asks[p]}" for p in sorted(asks)[:10]]
    top_bids = [f"{canonical(p)}:{bids[p]}" for p in sorted(bids, reverse=True)[:10]]
    return zlib.crc32((",".join(top_asks) + "|" + ",".join(top_bids)).encode())


class Book:
    def __init__(self, instrument):
        self.instrument = instrument
        self.asks = {}  # Decimal price -> qty text as received
        self.bids = {}
        self.seq = None
        self.updates = 0
        self.heartbeat_seq = None

    def on_message(self, m):
        if m.get("instrument") != self.instrument:
            return
        kind = m.get("type")
        if kind == "book_snapshot":
            self.asks = {Decimal(p): q for p, q in m["asks"]}
            self.bids = {Decimal(p): q for p, q in m["bids"]}
            self.seq = m["seq"]
            CHECKS.eq(checksum(self.asks, self.bids), m["checksum"],
                      f"book snapshot seq {m['seq']}: checksum of the received levels")
        elif kind == "book_update":
            if self.seq is None:
                CHECKS.ok(False, "book_update before any snapshot", str(m))
                return
            if m["seq"] <= self.seq:
                return  # older than the snapshot
            CHECKS.eq(m["seq"], self.seq + 1, f"book update seq {m['seq']} follows {self.seq}")
            for side, price, qty in m["changes"]:
                levels = self.bids if side == "buy" else self.asks
                if Decimal(qty) == 0:
                    levels.pop(Decimal(price), None)
                else:
                    levels[Decimal(price)] = qty
            self.seq = m["seq"]
            self.updates += 1
            CHECKS.eq(checksum(self.asks, self.bids), m["checksum"],
                      f"book update seq {m['seq']}: rebuilt book matches the checksum")
        elif kind == "heartbeat":
            self.heartbeat_seq = m["seq"]

    def level(self, side, price):
        levels = self.bids if side == "buy" else self.asks
        return levels.get(Decimal(price))


# ---------------------------------------------------------------------------------------------
# One WebSocket connection


def sign(secret, key, ts, nonce):
    return hmac.new(secret.encode(), f"{key}{ts}{nonce}".encode(), hashlib.sha256).hexdigest()


_last_nonce = 0


def fresh_nonce():
    """Strictly increasing within this process: microseconds, bumped on collision."""
    global _last_nonce
    _last_nonce = max(_last_nonce + 1, time.time_ns() // 1_000)
    return _last_nonce


REPLY_TYPES = {"ack", "error", "logged_in", "subscribed", "unsubscribed", "pong"}


class Conn:
    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.inbox = []  # received, not yet taken by `until`
        self.recent = []  # the last few messages, for failure reports
        self.balances = {}  # asset -> (available text, held text)
        self.hooks = []
        self.req_id = 0
        self.closed = False

    @classmethod
    async def open(cls, name, url):
        try:
            ws = await (ws_connect(url, ssl=TLS) if TLS else ws_connect(url))
        except Exception as e:  # noqa: BLE001 — any failure to connect ends the session
            raise Abort(f"{name}: cannot connect to {url}: {e!r}")
        return cls(name, ws)

    async def _read(self, timeout):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise
        except Exception as e:  # noqa: BLE001 — closed connection
            self.closed = True
            raise Abort(f"{self.name}: connection closed: {e!r}")
        m = json.loads(raw)
        self.recent = (self.recent + [m])[-8:]
        if m.get("type") == "balance":
            self.balances[m["asset"]] = (m["available"], m["held"])
        elif m.get("type") == "logged_in":
            for b in m.get("balances", []):
                self.balances[b["asset"]] = (b["available"], b["held"])
        for hook in self.hooks:
            hook(m)
        self.inbox.append(m)
        return m

    async def until(self, wanted, what, timeout=TIMEOUT_S):
        """The first message (received earlier and not yet taken, or arriving) that is wanted."""
        for i, m in enumerate(self.inbox):
            if wanted(m):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Abort(f"{self.name}: no {what} within {timeout} s; last messages: {self.recent}")
            try:
                m = await self._read(left)
            except asyncio.TimeoutError:
                continue
            if wanted(m):
                return self.inbox.pop()  # `_read` appended it last

    async def until_state(self, condition, timeout=TIMEOUT_S):
        """Reads until `condition()` holds; False on timeout (the caller reports it)."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await self._read(left)
            except asyncio.TimeoutError:
                return condition()
        return True

    async def send_text(self, text):
        try:
            await self.ws.send(text)
        except Exception as e:  # noqa: BLE001
            raise Abort(f"{self.name}: send failed: {e!r}")

    async def request(self, message):
        """Sends `message` with a fresh req_id and returns the reply to it."""
        self.req_id += 1
        req_id = self.req_id
        await self.send_text(json.dumps(dict(message, req_id=req_id)))
        return await self.until(
            lambda m: m.get("req_id") == req_id and m.get("type") in REPLY_TYPES,
            f"reply to {message.get('type')} req_id {req_id}")

    async def raw_request(self, text):
        """Sends raw text; returns the next error or pong (raw requests carry no readable id)."""
        await self.send_text(text)
        return await self.until(lambda m: m.get("type") in ("error", "pong"), "reply to raw text")

    async def login(self, name, cancel_on_disconnect=False):
        key, secret = f"demo-{name}", f"demo-{name}-secret"
        ts = int(time.time() * 1000)
        nonce = fresh_nonce()
        reply = await self.request({"type": "login", "key": key, "ts": ts, "nonce": nonce,
                                    "sig": sign(secret, key, ts, nonce),
                                    "cancel_on_disconnect": cancel_on_disconnect})
        if reply.get("code") in ("unknown_key", "bad_signature"):
            print(f"note: the server refused {key} ({reply.get('code')}): this script logs in "
                  "with the demo keys of the embedded configuration (demo-NAME / "
                  "demo-NAME-secret); a server started with --config FILE knows only the keys "
                  "FILE lists", file=sys.stderr)
        return reply

    async def order(self, **fields):
        return await self.request(dict({"type": "new_order", "instrument": SYMBOL}, **fields))

    async def execution(self, exec_kind, order_id, what):
        return await self.until(
            lambda m: m.get("type") == "execution" and m.get("exec") == exec_kind
            and m.get("order_id") == order_id, what)

    async def expect_balance(self, asset, available: Decimal, held: Decimal, what):
        want = (canonical(available), canonical(held))
        reached = await self.until_state(lambda: self.balances.get(asset) == want)
        CHECKS.ok(reached, f"{what}: {asset} available {want[0]}, held {want[1]}",
                  f"latest seen {self.balances.get(asset)}")

    async def close(self):
        if not self.closed:
            self.closed = True
            try:
                await self.ws.close()
            except Exception:  # noqa: BLE001 — already gone
                pass


# ---------------------------------------------------------------------------------------------
# HTTP


def http_get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=TIMEOUT_S, context=TLS) as response:
            body = response.read().decode()
            kind = response.headers.get("content-type", "")
            return response.status, (json.loads(body) if "json" in kind else body)
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body
    except Exception as e:  # noqa: BLE001
        raise Abort(f"GET {path} failed: {e!r}")


def http_base(ws_url):
    match = re.match(r"^ws(s?)://([^/]+)", ws_url)
    if not match:
        raise Abort(f"not a ws:// URL: {ws_url}")
    return f"http{match.group(1)}://{match.group(2)}"


# ---------------------------------------------------------------------------------------------
# The session


async def session(url):
    base = http_base(url)
    conns = []

    async def connect(name):
        conn = await Conn.open(name, url)
        conns.append(conn)
        return conn

    try:
        await scenario(url, base, connect)
    finally:
        for conn in conns:
            await conn.close()


async def scenario(url, base, connect):
    d = Decimal

    print("HTTP before trading")
    status, health = http_get(base, "/health")
    CHECKS.ok(status == 200 and health.get("status") == "ok" and isinstance(health.get("last_seq"), int),
              "GET /health is ok with a last_seq", f"{status} {health}")
    status, listing = http_get(base, "/api/instruments")
    btc = next((i for i in listing.get("instruments", []) if i.get("symbol") == SYMBOL), {}) \
        if isinstance(listing, dict) else {}
    CHECKS.fields(btc, {"base": "BTC", "quote": "JPY", "tick_size": canonical(TICK),
                        "lot_size": canonical(LOT), "maker_fee": canonical(MAKER_FEE),
                        "taker_fee": canonical(TAKER_FEE)},
                  "GET /api/instruments lists BTC/JPY with the default tick, lot and fees")
    status, rest_book = http_get(base, f"/api/book/{SYMBOL_URL}")
    CHECKS.ok(status == 200 and rest_book.get("bids") == [] and rest_book.get("asks") == []
              and rest_book.get("seq") == 0 and rest_book.get("checksum") == EMPTY_BOOK_CHECKSUM,
              "GET /api/book/BTC-JPY: empty book at seq 0 (fresh data folder)", f"{status} {rest_book}")
    status, unknown = http_get(base, "/api/book/DOGE-JPY")
    CHECKS.ok(status == 404 and isinstance(unknown, dict) and unknown.get("code") == "unknown_instrument",
              "GET /api/book/DOGE-JPY is 404 unknown_instrument", f"{status} {unknown}")

    print("Market data subscription")
    watcher = await connect("watcher")
    book = Book(SYMBOL)
    watcher.hooks.append(book.on_message)
    channels = [f"book:{SYMBOL}", f"trades:{SYMBOL}", f"ticker:{SYMBOL}"]
    reply = await watcher.request({"type": "subscribe", "channels": channels})
    CHECKS.fields(reply, {"type": "subscribed", "channels": channels}, "subscribe is confirmed")
    snapshot = await watcher.until(lambda m: m.get("type") == "book_snapshot", "book_snapshot")
    CHECKS.fields(snapshot, {"instrument": SYMBOL, "seq": 0, "bids": [], "asks": [],
                             "checksum": EMPTY_BOOK_CHECKSUM}, "the snapshot is the empty book at seq 0")
    ticker = await watcher.until(lambda m: m.get("type") == "ticker", "initial ticker")
    CHECKS.fields(ticker, {"instrument": SYMBOL, "last": None, "best_bid": None, "best_ask": None,
                           "volume_24h": "0"}, "the initial ticker has no trade and no quotes")
    reply = await watcher.order(side="buy", order_type="limit", price="15000000", qty="0.1",
                                client_order_id=1)
    CHECKS.error(reply, "not_logged_in", "an order before login is refused: not_logged_in", engine=False)
    reply = await watcher.request({"type": "login", "key": "demo-alice", "ts": int(time.time() * 1000),
                                   "nonce": fresh_nonce(), "sig": "00" * 32})
    CHECKS.error(reply, "bad_signature", "a login with a wrong signature is refused: bad_signature")

    print("Login")
    alice = await connect("alice")
    bob = await connect("bob")
    for conn, name, account in ((alice, "alice", 0), (bob, "bob", 1)):
        reply = await conn.login(name)
        CHECKS.fields(reply, {"type": "logged_in", "account": account, "role": "trader",
                              "cancel_on_disconnect": False}, f"{name} logs in as trader, account {account}")
        for asset in ("JPY", "BTC"):
            CHECKS.eq(conn.balances.get(asset), (canonical(OPENING[asset]), "0"),
                      f"{name}'s opening {asset} balance at login")
    reply = await alice.login("alice")
    CHECKS.error(reply, "already_logged_in", "a second login on one connection: already_logged_in")

    # Balances as the script expects them: asset -> [available, held].
    bal = {who: {a: [OPENING[a], d(0)] for a in OPENING} for who in ("alice", "bob")}

    print("Alice offers 0.5 BTC at 15,000,123 (GTC)")
    ask_price, ask_qty = d("15000123"), d("0.5")
    ack = await alice.order(side="sell", order_type="limit", price=canonical(ask_price),
                            qty=canonical(ask_qty), client_order_id=1)
    CHECKS.ok(ack.get("type") == "ack" and isinstance(ack.get("order_id"), str)
              and ack["order_id"].isdigit() and isinstance(ack.get("seq"), int)
              and ack.get("client_order_id") == 1 and ack.get("instrument") == SYMBOL,
              "alice's sell is acknowledged with a string order_id and a seq", str(ack))
    ask_id = ack.get("order_id")
    accepted = await alice.execution("accepted", ask_id, "alice's accepted execution")
    CHECKS.fields(accepted, {"side": "sell", "order_type": "limit", "price": "15000123", "qty": "0.5",
                             "tif": "gtc", "post_only": False, "client_order_id": 1,
                             "seq": ack.get("seq"), "account": 0},
                  "execution accepted: the order as sent, with the ack's seq")
    rested = await alice.execution("rested", ask_id, "alice's rested execution")
    CHECKS.fields(rested, {"price": "15000123", "qty": "0.5"}, "execution rested: 0.5 at 15000123")
    bal["alice"]["BTC"] = [OPENING["BTC"] - ask_qty, ask_qty]
    await alice.expect_balance("BTC", *bal["alice"]["BTC"], "alice's sell holds its BTC")
    CHECKS.ok(await watcher.until_state(lambda: book.level("sell", ask_price) == "0.5"),
              "the public book shows the ask 0.5 at 15000123", f"asks {book.asks}")

    print("Bob buys 0.1234 BTC at 15,000,123: a partial fill of alice's offer")
    buy_qty = d("0.1234")
    ack = await bob.order(side="buy", order_type="limit", price=canonical(ask_price),
                          qty=canonical(buy_qty), client_order_id=1)
    CHECKS.ok(ack.get("type") == "ack" and isinstance(ack.get("order_id"), str),
              "bob's buy is acknowledged", str(ack))
    bid_id, fill_seq = ack.get("order_id"), ack.get("seq")
    amount = notional(ask_price, buy_qty)
    fee_taker, fee_maker = fee(amount, TAKER_FEE), fee(amount, MAKER_FEE)
    bob_fill = await bob.execution("fill", bid_id, "bob's fill")
    CHECKS.fields(bob_fill, {"side": "buy", "liquidity": "taker", "price": canonical(ask_price),
                             "qty": canonical(buy_qty), "leaves_qty": "0", "fee": canonical(fee_taker),
                             "fee_asset": "JPY", "seq": fill_seq, "account": 1},
                  f"bob's fill: taker, fee {canonical(fee_taker)} JPY (0.2% of {canonical(amount)}), nothing left")
    alice_fill = await alice.execution("fill", ask_id, "alice's fill")
    CHECKS.fields(alice_fill, {"side": "sell", "liquidity": "maker", "price": canonical(ask_price),
                               "qty": canonical(buy_qty), "leaves_qty": canonical(ask_qty - buy_qty),
                               "fee": canonical(fee_maker), "fee_asset": "JPY", "seq": fill_seq},
                  f"alice's fill: maker, fee {canonical(fee_maker)} JPY (0.1%), 0.3766 left")
    exec_id = bob_fill.get("exec_id", "")
    CHECKS.ok(exec_id == alice_fill.get("exec_id") and exec_id.startswith(f"{fill_seq}-"),
              "both fill reports carry the exec_id SEQ-INDEX of the fill", f"{exec_id} / {alice_fill.get('exec_id')}")
    bal["bob"]["JPY"] = [OPENING["JPY"] - amount - fee_taker, d(0)]
    bal["bob"]["BTC"] = [OPENING["BTC"] + buy_qty, d(0)]
    bal["alice"]["JPY"] = [OPENING["JPY"] + amount - fee_maker, d(0)]
    bal["alice"]["BTC"] = [OPENING["BTC"] - ask_qty, ask_qty - buy_qty]
    await bob.expect_balance("JPY", *bal["bob"]["JPY"], "bob paid notional plus taker fee")
    await bob.expect_balance("BTC", *bal["bob"]["BTC"], "bob received the BTC")
    await alice.expect_balance("JPY", *bal["alice"]["JPY"], "alice received notional minus maker fee")
    await alice.expect_balance("BTC", *bal["alice"]["BTC"], "alice's unfilled rest stays held")
    trade = await watcher.until(lambda m: m.get("type") == "trade", "trade message")
    index = int(exec_id.split("-")[1]) if re.fullmatch(r"\d+-\d+", exec_id) else -1
    CHECKS.fields(trade, {"instrument": SYMBOL, "price": canonical(ask_price), "qty": canonical(buy_qty),
                          "aggressor": "buy", "trade_id": fill_seq * 65536 + index},
                  "the trade is published: aggressor buy, trade_id = seq * 65536 + index")
    trade_id = trade.get("trade_id")
    CHECKS.ok(await watcher.until_state(lambda: book.level("sell", ask_price) == "0.3766"),
              "the public ask shrinks to 0.3766", f"asks {book.asks}")
    ticker = await watcher.until(lambda m: m.get("type") == "ticker" and m.get("last") is not None,
                                 "ticker after the trade")
    CHECKS.fields(ticker, {"last": canonical(ask_price), "best_ask": canonical(ask_price),
                           "best_bid": None, "volume_24h": canonical(buy_qty)},
                  "the ticker shows the last price and the 24 h volume")

    print("Alice replaces her rest: new price and size (priority lost), new client order id")
    new_price, new_qty = d("15000200"), d("0.3")
    ack = await alice.request({"type": "replace", "client_order_id": 1, "price": canonical(new_price),
                               "qty": canonical(new_qty), "new_client_order_id": 11})
    CHECKS.fields(ack, {"type": "ack", "order_id": ask_id, "client_order_id": 11},
                  "replace by client_order_id is acknowledged, same order_id")
    replaced = await alice.execution("replaced", ask_id, "alice's replaced execution")
    CHECKS.fields(replaced, {"price": "15000200", "qty": "0.3", "priority": "lost", "client_order_id": 11},
                  "execution replaced: priority lost")
    rested = await alice.execution("rested", ask_id, "alice's rested execution after replace")
    CHECKS.fields(rested, {"price": "15000200", "qty": "0.3"}, "the replaced order rests at its new price")
    bal["alice"]["BTC"] = [OPENING["BTC"] - buy_qty - new_qty, new_qty]
    await alice.expect_balance("BTC", *bal["alice"]["BTC"], "the replace released the BTC no longer offered")
    CHECKS.ok(await watcher.until_state(lambda: book.level("sell", ask_price) is None
                                        and book.level("sell", new_price) == "0.3"),
              "the public book moved the ask to 15000200", f"asks {book.asks}")

    print("Bob bids 0.05 at 14,990,000, shrinks it (priority kept), then cancels it")
    bid_price, bid_qty = d("14990000"), d("0.05")
    ack = await bob.order(side="buy", order_type="limit", price=canonical(bid_price),
                          qty=canonical(bid_qty), client_order_id=2)
    CHECKS.eq(ack.get("type"), "ack", "bob's bid is acknowledged")
    bid2_id = ack.get("order_id")
    spent = OPENING["JPY"] - bal["bob"]["JPY"][0]
    reserve = buy_reservation(bid_price, bid_qty)
    await bob.expect_balance("JPY", OPENING["JPY"] - spent - reserve, reserve,
                             "the bid holds its notional plus the higher fee, rounded up")
    CHECKS.ok(await watcher.until_state(lambda: book.level("buy", bid_price) == "0.05"),
              "the public book shows the bid", f"bids {book.bids}")
    dup = await bob.order(side="buy", order_type="limit", price=canonical(bid_price), qty="0.01",
                          client_order_id=2)
    CHECKS.error(dup, "duplicate_client_order_id",
                 "a second open order with the same client_order_id: duplicate_client_order_id", engine=True)
    small = d("0.02")
    ack = await bob.request({"type": "replace", "order_id": bid2_id, "price": canonical(bid_price),
                             "qty": canonical(small)})
    CHECKS.fields(ack, {"type": "ack", "order_id": bid2_id, "client_order_id": 2},
                  "replace by order_id is acknowledged")
    replaced = await bob.execution("replaced", bid2_id, "bob's replaced execution")
    CHECKS.fields(replaced, {"qty": "0.02", "price": "14990000", "priority": "kept"},
                  "same price, smaller size: priority kept")
    reserve = buy_reservation(bid_price, small)
    await bob.expect_balance("JPY", OPENING["JPY"] - spent - reserve, reserve,
                             "the smaller bid holds less")
    CHECKS.ok(await watcher.until_state(lambda: book.level("buy", bid_price) == "0.02"),
              "the public bid shrinks to 0.02", f"bids {book.bids}")
    ack = await bob.request({"type": "cancel", "order_id": bid2_id})
    CHECKS.fields(ack, {"type": "ack", "order_id": bid2_id}, "cancel by order_id is acknowledged")
    cancelled = await bob.execution("cancelled", bid2_id, "bob's cancelled execution")
    CHECKS.fields(cancelled, {"qty": "0.02", "leaves_qty": "0", "reason": "requested"},
                  "execution cancelled: 0.02 removed, nothing left, reason requested")
    await bob.expect_balance("JPY", *bal["bob"]["JPY"], "the cancel released bob's JPY")
    CHECKS.ok(await watcher.until_state(lambda: book.level("buy", bid_price) is None),
              "the public bid is gone", f"bids {book.bids}")

    print("Alice cancels by client order id")
    ack = await alice.request({"type": "cancel", "client_order_id": 11})
    CHECKS.fields(ack, {"type": "ack", "order_id": ask_id}, "cancel by client_order_id is acknowledged")
    cancelled = await alice.execution("cancelled", ask_id, "alice's cancelled execution")
    CHECKS.fields(cancelled, {"qty": "0.3", "leaves_qty": "0", "reason": "requested"},
                  "execution cancelled: 0.3 removed")
    bal["alice"]["BTC"] = [OPENING["BTC"] - buy_qty, d(0)]
    await alice.expect_balance("BTC", *bal["alice"]["BTC"], "alice's BTC is all available again")
    CHECKS.ok(await watcher.until_state(lambda: not book.asks and not book.bids),
              "the public book is empty again", f"asks {book.asks} bids {book.bids}")
    CHECKS.eq(checksum({}, {}), EMPTY_BOOK_CHECKSUM, "the empty book's checksum is crc32('|')")

    print("Bad requests get their codes; the connection stays usable")
    reply = await bob.order(side="buy", order_type="limit", price="15000000.5", qty="0.1", client_order_id=3)
    CHECKS.error(reply, "off_tick", "off-tick price: off_tick, from the gateway (no seq)", engine=False)
    CHECKS.ok(reply.get("req_id") == bob.req_id, "the error echoes the req_id", str(reply))
    reply = await bob.request({"type": "ping"})
    CHECKS.eq(reply.get("type"), "pong", "ping after the error: pong")
    reply = await bob.order(side="buy", order_type="limit", price="15000000", qty="0.00001", client_order_id=3)
    CHECKS.error(reply, "off_lot", "off-lot quantity: off_lot", engine=False)
    reply = await bob.order(side="buy", order_type="limit", price="20000000", qty="0.1", client_order_id=3)
    CHECKS.error(reply, "outside_price_band", "price outside the band: outside_price_band, from the engine (seq)",
                 engine=True)
    reply = await bob.order(side="buy", order_type="limit", price=15000000, qty="0.1", client_order_id=3)
    CHECKS.error(reply, "invalid_field", "a price sent as a JSON number: invalid_field", engine=False)
    reply = await bob.order(side="buy", order_type="limit", price="15000000", qty="0.1", client_order_id=3,
                            colour="blue")
    CHECKS.error(reply, "unknown_field", "an unknown field: unknown_field", engine=False)
    reply = await bob.request({"type": "cancel", "order_id": "999999"})
    CHECKS.error(reply, "unknown_order", "cancel of an order that does not exist: unknown_order")
    reply = await bob.raw_request("{oops")
    CHECKS.error(reply, "bad_json", "text that is not JSON: bad_json")
    reply = await bob.request({"type": "teleport"})
    CHECKS.error(reply, "unknown_type", "an unknown request type: unknown_type")
    await bob.expect_balance("JPY", *bal["bob"]["JPY"], "refused orders held nothing")
    reply = await bob.request({"type": "ping"})
    CHECKS.eq(reply.get("type"), "pong", "the connection is still usable")

    print("Cancel-on-disconnect")
    carol = await connect("carol")
    reply = await carol.login("carol", cancel_on_disconnect=True)
    CHECKS.fields(reply, {"type": "logged_in", "account": 2, "cancel_on_disconnect": True},
                  "carol logs in with cancel_on_disconnect")
    carol_price = d("15100000")
    ack = await carol.order(side="sell", order_type="limit", price=canonical(carol_price), qty="0.01",
                            client_order_id=1)
    CHECKS.eq(ack.get("type"), "ack", "carol's ask is acknowledged")
    CHECKS.ok(await watcher.until_state(lambda: book.level("sell", carol_price) == "0.01"),
              "carol's ask is on the public book", f"asks {book.asks}")
    await carol.close()
    CHECKS.ok(await watcher.until_state(lambda: book.level("sell", carol_price) is None),
              "carol's ask is cancelled when her connection closes", f"asks {book.asks}")

    print("Roles: operator halts and resumes, auditor reads")
    operator = await connect("operator")
    reply = await operator.login("operator")
    CHECKS.fields(reply, {"type": "logged_in", "role": "operator"}, "the operator key logs in as operator")
    reply = await operator.order(side="buy", order_type="limit", price="15000000", qty="0.1", client_order_id=1)
    CHECKS.error(reply, "forbidden", "an operator cannot trade: forbidden", engine=False)
    # docs/API.md, known issues: this refusal comes back with "req_id": null, so match it by code.
    bob.req_id += 1
    await bob.send_text(json.dumps({"type": "halt", "req_id": bob.req_id, "instrument": SYMBOL}))
    reply = await bob.until(lambda m: m.get("type") == "error" and m.get("req_id") in (bob.req_id, None),
                            "reply to halt")
    CHECKS.error(reply, "forbidden", "a trader cannot halt: forbidden", engine=False)
    if reply.get("req_id") is None:
        print("  note  the forbidden halt came back with req_id null (known issue, docs/API.md section 11)")
    reply = await operator.request({"type": "halt", "instrument": SYMBOL})
    CHECKS.ok(reply.get("type") == "ack" and isinstance(reply.get("seq"), int), "the operator halts BTC/JPY",
              str(reply))
    reply = await bob.order(side="buy", order_type="limit", price="15000000", qty="0.01", client_order_id=4)
    CHECKS.error(reply, "instrument_halted", "an order on a halted instrument: instrument_halted", engine=True)
    reply = await operator.request({"type": "resume", "instrument": SYMBOL})
    CHECKS.eq(reply.get("type"), "ack", "the operator resumes BTC/JPY")
    ack = await bob.order(side="buy", order_type="limit", price="15000000", qty="0.01", tif="ioc",
                          client_order_id=4)
    CHECKS.eq(ack.get("type"), "ack", "after the resume, bob's IOC order is accepted")
    expired = await bob.execution("expired", ack.get("order_id"), "bob's expired execution")
    CHECKS.fields(expired, {"qty": "0.01"}, "the IOC finds no ask and expires in full")
    await bob.expect_balance("JPY", *bal["bob"]["JPY"], "the expired IOC released its reservation")
    auditor = await connect("auditor")
    reply = await auditor.login("auditor")
    CHECKS.fields(reply, {"type": "logged_in", "role": "auditor"}, "the auditor key logs in as auditor")
    reply = await auditor.order(side="sell", order_type="limit", price="15000000", qty="0.1", client_order_id=1)
    CHECKS.error(reply, "forbidden", "an auditor cannot trade: forbidden", engine=False)

    print("HTTP after trading")
    status, rest_book = http_get(base, f"/api/book/{SYMBOL_URL}")
    CHECKS.ok(status == 200 and rest_book.get("seq") == book.seq
              and rest_book.get("checksum") == checksum(book.asks, book.bids)
              and rest_book.get("asks") == [] and rest_book.get("bids") == [],
              "GET /api/book/BTC-JPY agrees with the rebuilt book (seq, checksum, levels)",
              f"REST {rest_book}, local seq {book.seq}")
    status, trades = http_get(base, f"/api/trades/{SYMBOL_URL}")
    listed = trades.get("trades", []) if isinstance(trades, dict) else []
    CHECKS.ok(status == 200 and [t.get("trade_id") for t in listed] == [trade_id]
              and listed[0].get("price") == canonical(ask_price),
              "GET /api/trades/BTC-JPY lists the one trade", f"{status} {trades}")
    status, metrics = http_get(base, "/metrics")
    CHECKS.ok(status == 200 and isinstance(metrics, str)
              and 'kinko_rejects_total{reason="outside_price_band"} 1' in metrics,
              "GET /metrics counts the outside_price_band reject", "metric missing")

    print("Heartbeat and unsubscribe")
    book.heartbeat_seq = None  # wait for one that comes after the last update
    got = await watcher.until_state(lambda: book.heartbeat_seq is not None, timeout=HEARTBEAT_WAIT_S)
    CHECKS.ok(got and book.heartbeat_seq == book.seq,
              "a heartbeat arrives with the seq of the last update (no gap)",
              f"heartbeat seq {book.heartbeat_seq}, local {book.seq}")
    reply = await watcher.request({"type": "unsubscribe", "channels": [f"ticker:{SYMBOL}"]})
    CHECKS.fields(reply, {"type": "unsubscribed", "channels": [f"ticker:{SYMBOL}"]}, "unsubscribe is confirmed")
    CHECKS.eq(book.updates, 9, "nine book updates were seen, each checked")


def main():
    global TLS
    args = sys.argv[1:]
    ca = None
    if len(args) == 3 and args[1] == "--ca":
        ca, args = args[2], args[:1]
    if len(args) != 1 or not args[0].startswith(("ws://", "wss://")):
        print(
            "usage: python3 gateway/examples/trade.py wss://127.0.0.1:8080/ws [--ca data/tls/cert.pem]",
            file=sys.stderr,
        )
        return 2
    url = args[0]
    if url.startswith("wss://"):
        TLS = ssl.create_default_context(cafile=ca)
    print(f"Kinko trading session against {url}")
    try:
        asyncio.run(session(url))
    except Abort as e:
        CHECKS.ok(False, "session aborted", str(e))
    except KeyboardInterrupt:
        CHECKS.ok(False, "interrupted")
    result = "PASS" if CHECKS.failed == 0 else "FAIL"
    print(f"{result}: trade.py against {url}: {CHECKS.passed} passed, {CHECKS.failed} failed")
    return 0 if CHECKS.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
