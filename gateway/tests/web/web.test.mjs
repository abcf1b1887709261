// Browser tests of the pages `kinko serve` serves (gateway/web), in a real browser: Playwright
// (playwright-core) driving Debian's Chromium, against the real server on a fresh data folder and
// a free loopback port. Screenshots go to target/web-screenshots/.
//
// Over TLS, as `kinko serve` runs by default: https:// pages and wss:// from the page. The browser
// accepts the server's self-signed certificate as a user does once (ignoreHTTPSErrors); this
// script first checks that the server presents the certificate of its data folder, then lets its
// own fetch and WebSocket (Node's, which cannot be given a CA at run time) skip verification.
//
//   KINKO_BIN=target/release/kinko node --experimental-websocket --test web.test.mjs
//
// Orders "through the API" are sent by this script over its own WebSocket, signed with Node's
// crypto, independently of the page's code.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../../..");
const bin = process.env.KINKO_BIN ?? join(root, "target/release/kinko");
const shots = join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "web-screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

let server, base, data, browser;

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

before(async () => {
  mkdirSync(shots, { recursive: true });
  data = mkdtempSync(join(tmpdir(), "kinko-web-"));
  const port = await freePort();
  base = `https://127.0.0.1:${port}`;
  server = spawn(bin, ["serve", "--data", data, "--http", `127.0.0.1:${port}`, "--fix", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const cert = join(data, "tls", "cert.pem");
  for (let i = 0; i < 300 && !existsSync(cert); i++) await new Promise((r) => setTimeout(r, 100));
  // The server presents the certificate it generated: a client trusting that file alone connects.
  let trusted = false;
  for (let i = 0; i < 300 && !trusted; i++) {
    trusted = await new Promise((ok) => {
      const socket = tlsConnect({ host: "127.0.0.1", port, ca: readFileSync(cert) }, () => {
        ok(socket.authorized);
        socket.end();
      });
      socket.on("error", () => setTimeout(() => ok(false), 100));
    });
  }
  assert.ok(trusted, "the server presents DATA/tls/cert.pem");
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  if (server) {
    const stopped = new Promise((ok) => server.on("exit", ok));
    server.kill("SIGTERM");
    await stopped;
  }
  rmSync(data, { recursive: true, force: true });
  rmSync(`${data}.master-key`, { force: true });
});

/** A WebSocket client of our own, for orders placed "through the API". */
async function apiClient(name) {
  const ws = new WebSocket(`${base.replace("http", "ws")}/ws`);
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = fail;
  });
  let reqId = 0;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.req_id != null && waiting.has(m.req_id)) {
      waiting.get(m.req_id)(m);
      waiting.delete(m.req_id);
    }
  };
  const request = (body) =>
    new Promise((ok) => {
      const id = ++reqId;
      waiting.set(id, ok);
      ws.send(JSON.stringify({ ...body, req_id: id }));
    });
  const key = `demo-${name}`, ts = Date.now(), nonce = ts * 1000 + 7;
  const sig = createHmac("sha256", `demo-${name}-secret`).update(`${key}${ts}${nonce}`).digest("hex");
  const login = await request({ type: "login", key, ts, nonce, sig });
  assert.equal(login.type, "logged_in", JSON.stringify(login));
  return { request, close: () => ws.close() };
}

async function page(path) {
  const p = await browser.newPage({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true });
  const errors = [];
  p.on("pageerror", (e) => errors.push(e.message));
  await p.goto(`${base}${path}`);
  p.jsErrors = errors;
  return p;
}

async function login(p, key, secret) {
  await p.fill("#key", key);
  await p.fill("#secret", secret);
  await p.click("#login button[type=submit]");
}

test("the market page shows the book change when an order is placed through the API", async () => {
  const p = await page("/?instrument=BTC-JPY");
  await p.waitForSelector("[data-testid=book-state].ok");
  assert.equal(await p.locator("#bids tr").count(), 0, "the demo book starts empty");
  const alice = await apiClient("alice");
  const ack = await alice.request({ type: "new_order", instrument: "BTC/JPY", side: "buy", order_type: "limit",
    price: "14900000", qty: "0.25", client_order_id: 1 });
  assert.equal(ack.type, "ack", JSON.stringify(ack));
  const row = p.locator('#bids tr[data-price="14900000"]');
  await row.waitFor();
  assert.equal(await row.locator("td").nth(1).textContent(), "0.25");
  // The page rebuilt the book from the updates and its checksum matches the server's.
  await p.waitForSelector("[data-testid=book-state].ok");
  assert.match(await p.textContent("[data-testid=book-state]"), /checksum ok/);
  // A trade reaches the tape and the ticker.
  const bob = await apiClient("bob");
  await bob.request({ type: "new_order", instrument: "BTC/JPY", side: "sell", order_type: "limit",
    price: "14900000", qty: "0.1", client_order_id: 1 });
  await p.locator("#tape tr").first().waitFor();
  assert.equal(await p.locator("#tape tr td").nth(1).textContent(), "14900000");
  await p.waitForFunction(() => document.querySelector("#last").textContent === "14900000");
  await p.locator('#bids tr[data-price="14900000"] td:nth-child(2)', { hasText: "0.15" }).waitFor();
  await p.screenshot({ path: join(shots, "market.png"), fullPage: true });
  assert.deepEqual(p.jsErrors, []);
  alice.close();
  bob.close();
  await p.close();
});

test("a trader logs in, places, replaces and cancels an order through the form", async () => {
  const p = await page("/trade");
  await login(p, "demo-carol", "wrong-secret");
  await p.locator("[data-testid=login-error]", { hasText: "bad_signature" }).waitFor();
  await login(p, "demo-carol", "demo-carol-secret");
  await p.locator("#desk").waitFor();
  await p.locator('#balances tr[data-asset="JPY"]').waitFor();
  await p.selectOption("#instrument", "ETH/JPY");
  await p.selectOption("#side", "buy");
  await p.fill("#price", "480000");
  await p.fill("#qty", "0.5");
  await p.click("#order button[type=submit]");
  const row = p.locator("#orders tr").first();
  await row.waitFor();
  assert.equal(await row.locator("[data-field=price]").textContent(), "480000");
  assert.equal(await row.locator("[data-field=open]").textContent(), "0.5");
  // The reservation shows as held JPY: 480,000 × 0.5 + 0.2% taker fee = 240,480.
  await p.locator('#balances tr[data-asset="JPY"] td:nth-child(3)', { hasText: "240480" }).waitFor();
  // Replace: a new price and quantity.
  await row.locator("input").nth(0).fill("481000");
  await row.locator("input").nth(1).fill("0.4");
  await row.locator("button", { hasText: "Replace" }).click();
  await p.locator("#orders tr [data-field=price]", { hasText: "481000" }).waitFor();
  assert.equal(await p.locator("#orders tr [data-field=open]").first().textContent(), "0.4");
  await p.screenshot({ path: join(shots, "trade.png"), fullPage: true });
  // Cancel: the order leaves the list and nothing stays held.
  await p.locator("#orders tr button", { hasText: "Cancel" }).click();
  await p.waitForFunction(() => document.querySelectorAll("#orders tr").length === 0);
  await p.locator('#balances tr[data-asset="JPY"] td:nth-child(3)', { hasText: /^0$/ }).waitFor();
  assert.deepEqual(p.jsErrors, []);
  await p.close();
});

test("an off-tick price is explained next to the price, and so is a server rejection", async () => {
  const p = await page("/trade");
  await login(p, "demo-alice", "demo-alice-secret");
  await p.locator("#desk").waitFor();
  await p.locator("#orders tr").first().waitFor();
  await p.selectOption("#instrument", "BTC/JPY");
  await p.fill("#price", "15000000.5");
  await p.fill("#qty", "0.00015");
  await p.click("#order button[type=submit]");
  const priceError = await p.locator("[data-testid=price-error]").textContent();
  assert.match(priceError, /multiple of the tick size 1/);
  assert.match(await p.locator("[data-testid=qty-error]").textContent(), /multiple of the lot size 0\.0001/);
  // Alice's bid from the market test is listed (open orders are fetched at login); nothing new was sent.
  assert.equal(await p.locator("#orders tr").count(), 1);
  assert.equal(await p.locator("#orders tr [data-field=open]").textContent(), "0.15");
  // On tick and lot, but outside the ±10% band: the server refuses and the page says why, at the price.
  await p.fill("#price", "30000000");
  await p.fill("#qty", "0.0001");
  await p.click("#order button[type=submit]");
  await p.locator("[data-testid=price-error]", { hasText: "outside_price_band" }).waitFor();
  assert.equal(await p.locator("[data-testid=qty-error]").textContent(), "");
  await p.screenshot({ path: join(shots, "trade-rejected.png"), fullPage: true });
  await p.close();
});

test("an operator sees the incident after a simulated hot-wallet drain", async () => {
  const p = await page("/custody");
  await login(p, "demo-operator", "demo-operator-secret");
  await p.locator("[data-testid=banner].fine").waitFor();
  await p.locator('#assets tr[data-asset="XEM"][data-pool="customer"]').waitFor();
  const drained = await fetch(`${base}/sim/drain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ pool: "customer", asset: "XEM", wallet: "hot", amount: "100000000" }),
  }).then((r) => r.json());
  assert.equal(drained.taken, "150000");
  const banner = p.locator("[data-testid=banner].alarm", { hasText: "INCIDENT" });
  await banner.waitFor({ timeout: 20000 });
  const text = await banner.textContent();
  assert.match(text, /XEM hot wallet of the customer pool short by 150000/);
  assert.match(text, /XEM: 150000 owed to customers is NOT covered/);
  assert.match(text, /XEM: withdrawals halted/);
  const xem = p.locator('#assets tr[data-asset="XEM"][data-pool="customer"]');
  assert.equal(await xem.locator("td.lost").textContent(), "150000");
  await p.locator("#incidents tr").first().waitFor();
  await p.screenshot({ path: join(shots, "custody-incident.png"), fullPage: true });
  assert.deepEqual(p.jsErrors, []);
  await p.close();
});

// Last: it throttles logins from 127.0.0.1 for a minute.
test("an operator sees repeated failed logins throttled and reported", async () => {
  const p = await page("/custody");
  await login(p, "demo-operator", "demo-operator-secret");
  await p.locator("#security-policy", { hasText: "failed logins since start" }).waitFor();
  for (let i = 0; i < 5; i++) {
    const ws = new WebSocket(`${base.replace("http", "ws")}/ws`);
    await new Promise((ok) => ws.addEventListener("open", ok));
    const reply = new Promise((ok) => ws.addEventListener("message", (e) => ok(JSON.parse(e.data))));
    ws.send(JSON.stringify({ type: "login", req_id: 1, key: "demo-bob", ts: Date.now(), nonce: i + 1, sig: "00" }));
    assert.equal((await reply).code, "bad_signature");
    ws.close();
  }
  const banner = p.locator("[data-testid=banner].alarm", { hasText: "LOGIN THROTTLED" });
  await banner.waitFor({ timeout: 10000 });
  assert.match(await banner.textContent(), /LOGIN THROTTLED: (address 127\.0\.0\.1|key demo-bob)/);
  const rows = p.locator("#security tr");
  await rows.first().waitFor();
  const subjects = await rows.locator("td:nth-child(2)").allTextContents();
  assert.deepEqual(subjects.sort(), ["address 127.0.0.1", "key demo-bob"]);
  await p.screenshot({ path: join(shots, "custody-security.png"), fullPage: true });
  assert.deepEqual(p.jsErrors, []);
  await p.close();
});
