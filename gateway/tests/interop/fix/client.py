#!/usr/bin/env python3
"""QuickFIX as an independent FIX 4.4 initiator against Kinko's acceptor.

QuickFIX (the C++ engine, through the `quickfix-py` wheel) runs the whole session layer on the
client side with its own data dictionary validation: if Kinko sent a message QuickFIX finds wrong,
QuickFIX would reject it and this script would not see it. The scenario:

1. log on (Username/Password in the Logon), enter a sell order, replace it;
2. a WebSocket trader buys part of it: the fill arrives over FIX;
3. log out; while away, the WebSocket trader buys again;
4. log on again with the sequence numbers QuickFIX kept on disk: QuickFIX sees the gap, sends a
   ResendRequest by itself, and receives the missed fill again (PossDupFlag=Y);
5. cancel the rest, check the final state with an OrderStatusRequest, log out.

Prints one line per check and a closing `N passed, M failed`; exits non-zero on any failure.
"""
import argparse
import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import time

import quickfix as fix
import quickfix44 as fix44
from websockets.sync.client import connect

WAIT_SECS = 10


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {name} {detail}", flush=True)
        return ok


class Client(fix.Application):
    """Collects what arrives; puts credentials in the Logon."""

    def __init__(self, key, secret):
        super().__init__()
        self.key = key
        self.secret = secret
        self.session = None
        self.events = queue.Queue()
        self.reports = queue.Queue()
        self.admin_in = []
        self.admin_out = []

    def onCreate(self, session):
        self.session = session

    def onLogon(self, session):
        self.events.put("logon")

    def onLogout(self, session):
        self.events.put("logout")

    def toAdmin(self, message, session):
        msg_type = fix.MsgType()
        message.getHeader().getField(msg_type)
        self.admin_out.append(msg_type.getValue())
        if msg_type.getValue() == fix.MsgType_Logon:
            message.setField(fix.Username(self.key))
            message.setField(fix.Password(self.secret))

    def fromAdmin(self, message, session):
        self.admin_in.append(message.toString().replace("\x01", "|"))

    def toApp(self, message, session):
        pass

    def fromApp(self, message, session):
        # The message object belongs to QuickFIX and dies with the callback: keep its fields.
        self.reports.put(parse(message.toString()))

    def wait_event(self, wanted):
        deadline = time.time() + WAIT_SECS
        while time.time() < deadline:
            try:
                if self.events.get(timeout=0.2) == wanted:
                    return True
            except queue.Empty:
                pass
        return False

    def wait_report(self, predicate):
        """The first application message satisfying `predicate` (others are dropped)."""
        deadline = time.time() + WAIT_SECS
        while time.time() < deadline:
            try:
                message = self.reports.get(timeout=0.2)
            except queue.Empty:
                continue
            if predicate(message):
                return message
        return None

    def send(self, message):
        fix.Session.sendToTarget(message, self.session)


def parse(text):
    """tag → value (the first occurrence), plus the raw text under 0."""
    fields = {0: text.replace("\x01", "|")}
    for part in text.split("\x01"):
        tag, _, value = part.partition("=")
        if tag.isdigit():
            fields.setdefault(int(tag), value)
    return fields


def field(message, tag):
    """A field of a received message as text, or None."""
    return message.get(tag)


def report(exec_type, cl_ord_id=None):
    def wanted(message):
        return (
            field(message, 35) == "8"
            and field(message, 150) == exec_type
            and (cl_ord_id is None or field(message, 11) == cl_ord_id)
        )

    return wanted


def settings_file(path, args, store):
    dictionary = os.path.join(sys.prefix, "share", "quickfix", "FIX44.xml")
    text = f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={store}/store
FileLogPath={store}/log
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={dictionary}
HeartBtInt=5
SocketConnectHost=127.0.0.1
SocketConnectPort={args.fix_port}

[SESSION]
BeginString=FIX.4.4
SenderCompID={args.key}
TargetCompID=KINKO
"""
    with open(path, "w") as f:
        f.write(text)


def start_initiator(app, config):
    settings = fix.SessionSettings(config)
    initiator = fix.SocketInitiator(
        app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings)
    )
    initiator.start()
    return initiator


class WebSocketTrader:
    """Bob, on the WebSocket API."""

    def __init__(self, port, key, secret):
        self.ws = connect(f"ws://127.0.0.1:{port}/ws")  # closed when the phase's process exits
        self.req_id = 0
        ts = int(time.time() * 1000)
        sig = hmac.new(secret.encode(), f"{key}{ts}{ts}".encode(), hashlib.sha256).hexdigest()
        reply = self.request({"type": "login", "key": key, "ts": ts, "nonce": ts, "sig": sig})
        assert reply["type"] == "logged_in", reply

    def request(self, body):
        self.req_id += 1
        body["req_id"] = self.req_id
        self.ws.send(json.dumps(body))
        while True:
            reply = json.loads(self.ws.recv(timeout=WAIT_SECS))
            if reply.get("req_id") == self.req_id:
                return reply

    def buy(self, client_order_id, price, qty):
        return self.request({
            "type": "new_order", "instrument": "BTC/JPY", "side": "buy", "order_type": "limit",
            "price": price, "qty": qty, "client_order_id": client_order_id,
        })


def build(message, *fields):
    for value in fields:
        message.setField(value)
    return message


def new_order(cl_ord_id, side, qty, price):
    message = build(
        fix44.NewOrderSingle(),
        fix.ClOrdID(cl_ord_id), fix.Side(side), fix.TransactTime(), fix.OrdType(fix.OrdType_LIMIT),
    )
    message.setField(fix.Symbol("BTC/JPY"))
    message.setField(fix.OrderQty(float(qty)))
    message.setField(fix.Price(float(price)))
    message.setField(fix.TimeInForce(fix.TimeInForce_GOOD_TILL_CANCEL))
    message.setField(fix.HandlInst("1"))
    return message


def phase_one(args, config, checks):
    """Log on, enter, replace, get filled by the WebSocket trader, log out."""
    app = Client(args.key, args.secret)
    initiator = start_initiator(app, config)
    checks.check("logon", app.wait_event("logon"))

    app.send(new_order("1", fix.Side_SELL, "0.5", "15000000"))
    new = app.wait_report(report("0", "1"))
    checks.check("new order acknowledged (ExecType=0, OrdStatus=0)", new is not None and field(new, 39) == "0")
    order_id = field(new, 37) if new else None

    replace = build(
        fix44.OrderCancelReplaceRequest(),
        fix.OrigClOrdID("1"), fix.ClOrdID("2"), fix.Side(fix.Side_SELL), fix.TransactTime(),
        fix.OrdType(fix.OrdType_LIMIT),
    )
    replace.setField(fix.Symbol("BTC/JPY"))
    replace.setField(fix.OrderQty(0.4))
    replace.setField(fix.Price(15000100))
    app.send(replace)
    replaced = app.wait_report(report("5", "2"))
    checks.check(
        "replaced (ExecType=5, OrigClOrdID=1, OrderQty=0.4, same OrderID)",
        replaced is not None and field(replaced, 41) == "1" and field(replaced, 38) == "0.4"
        and field(replaced, 37) == order_id,
    )

    bob = WebSocketTrader(args.http_port, "demo-bob", "demo-bob-secret")
    ack = bob.buy(1, "15000100", "0.1")
    checks.check("WebSocket trader's order accepted", ack.get("type") == "ack", str(ack))
    fill = app.wait_report(report("F", "2"))
    checks.check(
        "fill against the WebSocket trader (LastQty=0.1, CumQty=0.1, LeavesQty=0.3)",
        fill is not None and field(fill, 32) == "0.1" and field(fill, 14) == "0.1"
        and field(fill, 151) == "0.3" and field(fill, 31) == "15000100",
        fill[0] if fill else "",
    )
    initiator.stop()
    checks.check("logout", app.wait_event("logout"))


def phase_two(args, config, checks):
    """While away, the WebSocket trader buys again; log on, recover it by resend, cancel."""
    bob = WebSocketTrader(args.http_port, "demo-bob", "demo-bob-secret")
    ack = bob.buy(2, "15000100", "0.1")
    checks.check("second WebSocket order accepted while the FIX client is away", ack.get("type") == "ack", str(ack))
    time.sleep(0.5)

    app = Client(args.key, args.secret)
    initiator = start_initiator(app, config)
    checks.check("logon again with the kept sequence numbers", app.wait_event("logon"))
    missed = app.wait_report(report("F", "2"))
    checks.check(
        "missed fill recovered by resend (PossDupFlag=Y, CumQty=0.2, LeavesQty=0.2)",
        missed is not None and field(missed, 43) == "Y" and field(missed, 14) == "0.2"
        and field(missed, 151) == "0.2",
        missed[0] if missed else "",
    )
    checks.check("QuickFIX asked for the gap itself (ResendRequest)", "2" in app.admin_out)

    cancel = build(
        fix44.OrderCancelRequest(),
        fix.OrigClOrdID("2"), fix.ClOrdID("3"), fix.Side(fix.Side_SELL), fix.TransactTime(),
    )
    cancel.setField(fix.Symbol("BTC/JPY"))
    app.send(cancel)
    cancelled = app.wait_report(report("4", "3"))
    checks.check(
        "cancelled (ExecType=4, OrdStatus=4, CumQty=0.2)",
        cancelled is not None and field(cancelled, 39) == "4" and field(cancelled, 14) == "0.2",
        cancelled[0] if cancelled else "",
    )

    status = build(fix44.OrderStatusRequest(), fix.ClOrdID("2"), fix.Side(fix.Side_SELL))
    status.setField(fix.Symbol("BTC/JPY"))
    app.send(status)
    answer = app.wait_report(report("I"))
    checks.check(
        "order status (ExecType=I, OrdStatus=4, AvgPx=15000100)",
        answer is not None and field(answer, 39) == "4" and field(answer, 6) == "15000100",
        answer[0] if answer else "",
    )
    initiator.stop()
    checks.check("logout", app.wait_event("logout"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fix-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", default="demo-alice")
    parser.add_argument("--secret", default="demo-alice-secret")
    parser.add_argument("--phase", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.store, exist_ok=True)
    config = os.path.join(args.store, "initiator.cfg")
    settings_file(config, args, args.store)
    if args.phase:
        # One QuickFIX initiator per process: the wheel does not survive a second one in the same
        # process, and a real client restarting is a new process anyway (its sequence numbers
        # come back from QuickFIX's FileStore).
        checks = Checks()
        (phase_one if args.phase == 1 else phase_two)(args, config, checks)
        print(f"RESULT {checks.passed} {checks.failed}", flush=True)
        os._exit(0)
    passed = failed = 0
    for phase in (1, 2):
        run = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--phase", str(phase)],
            capture_output=True, text=True, timeout=120,
        )
        sys.stdout.write("".join(l + "\n" for l in run.stdout.splitlines() if not l.startswith("RESULT")))
        result = [l for l in run.stdout.splitlines() if l.startswith("RESULT")]
        if not result:
            print(f"FAIL  phase {phase} ended without a result (exit {run.returncode})\n{run.stderr}")
            failed += 1
            continue
        _, p, f = result[-1].split()
        passed += int(p)
        failed += int(f)
    print(f"interop: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
