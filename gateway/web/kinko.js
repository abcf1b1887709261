// Kinko's browser client: one WebSocket, requests matched to replies by req_id, the login
// signature computed with Web Crypto, exact decimal checks against tick and lot sizes, and the
// level-2 book with its sequence number and CRC32 checksum. No build step, no dependencies.
"use strict";

// wss:// on a page served over https://, ws:// only from a server in plain TCP: a browser refuses
// an insecure WebSocket from a secure page.
const wsScheme = location.protocol === "https:" ? "wss" : "ws";

export class Connection {
  constructor(url = `${wsScheme}://${location.host}/ws`) {
    this.url = url;
    this.reqId = 0;
    this.pending = new Map();
    this.listeners = new Map();
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      this.ws.onopen = () => resolve(this);
      this.ws.onerror = () => reject(new Error("cannot connect to " + this.url));
      this.ws.onclose = () => this.emit("close", {});
      this.ws.onmessage = (event) => {
        const message = JSON.parse(event.data);
        const waiting = message.req_id != null && this.pending.get(message.req_id);
        if (waiting) {
          this.pending.delete(message.req_id);
          waiting(message);
        }
        this.emit(message.type, message);
      };
    });
  }

  on(type, handler) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(handler);
  }

  emit(type, message) {
    for (const handler of this.listeners.get(type) || []) handler(message);
  }

  /** Sends a request; resolves with its reply (an `error` reply resolves too: check `type`). */
  request(body) {
    const reqId = ++this.reqId;
    return new Promise((resolve) => {
      this.pending.set(reqId, resolve);
      this.ws.send(JSON.stringify({ ...body, req_id: reqId }));
    });
  }

  async login(key, secret, cancelOnDisconnect = false) {
    const ts = Date.now();
    const nonce = ts * 1000 + Math.floor(Math.random() * 1000);
    const sig = await hmacHex(secret, `${key}${ts}${nonce}`);
    return this.request({ type: "login", key, ts, nonce, sig, cancel_on_disconnect: cancelOnDisconnect });
  }
}

export async function hmacHex(secret, message) {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, enc.encode(message));
  return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ exact decimals

/** A decimal string as [BigInt digits, scale]; null when it is not a plain decimal. */
export function parseDecimal(text) {
  if (typeof text !== "string" || !/^-?\d+(\.\d+)?$/.test(text.trim())) return null;
  const [whole, fraction = ""] = text.trim().split(".");
  return [BigInt(whole + fraction), fraction.length];
}

/** Whether `value` is a whole multiple of `step` (both decimal strings), exactly. */
export function isMultiple(value, step) {
  const v = parseDecimal(value), s = parseDecimal(step);
  if (!v || !s || s[0] === 0n) return false;
  const scale = Math.max(v[1], s[1]);
  const up = ([digits, sc]) => digits * 10n ** BigInt(scale - sc);
  return up(v) % up(s) === 0n;
}

export function isPositive(value) {
  const v = parseDecimal(value);
  return v !== null && v[0] > 0n;
}

/** Client-side checks of an order form against the instrument; returns {field: message}. */
export function checkOrder(spec, { orderType, price, qty }) {
  const errors = {};
  if (!isPositive(qty)) errors.qty = "quantity must be a positive decimal";
  else if (!isMultiple(qty, spec.lot_size)) errors.qty = `quantity must be a multiple of the lot size ${spec.lot_size}`;
  if (orderType !== "market") {
    if (!isPositive(price)) errors.price = "price must be a positive decimal";
    else if (!isMultiple(price, spec.tick_size)) errors.price = `price must be a multiple of the tick size ${spec.tick_size}`;
  }
  return errors;
}

/** The form field a server error code belongs to (or "form"). */
export function fieldOfError(code) {
  if (/price|tick|band|post_only/.test(code)) return "price";
  if (/qty|lot/.test(code)) return "qty";
  return "form";
}

// ------------------------------------------------------------------ the level-2 book

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const num = (text) => Number(text);

/** A book rebuilt from a snapshot and updates; `ok` is false after a gap or a wrong checksum. */
export class Book {
  constructor() {
    this.bids = new Map();
    this.asks = new Map();
    this.seq = 0;
    this.ok = false;
    this.received = false;
  }

  snapshot(message) {
    this.bids = new Map(message.bids.map(([p, q]) => [p, q]));
    this.asks = new Map(message.asks.map(([p, q]) => [p, q]));
    this.seq = message.seq;
    this.ok = this.checksum() === message.checksum;
    this.received = true;
  }

  /** Applies an update; returns false when a resubscribe is needed (gap or checksum). */
  update(message) {
    if (message.seq !== this.seq + 1) {
      this.ok = false;
      return false;
    }
    for (const [side, price, qty] of message.changes) {
      const levels = side === "buy" ? this.bids : this.asks;
      if (num(qty) === 0) levels.delete(price);
      else levels.set(price, qty);
    }
    this.seq = message.seq;
    this.ok = this.checksum() === message.checksum;
    return this.ok;
  }

  sorted(side) {
    const levels = [...(side === "buy" ? this.bids : this.asks)];
    levels.sort((a, b) => (side === "buy" ? num(b[0]) - num(a[0]) : num(a[0]) - num(b[0])));
    return levels;
  }

  checksum() {
    const text = (levels) => levels.slice(0, 10).map(([p, q]) => `${p}:${q}`).join(",");
    return crc32(`${text(this.sorted("sell"))}|${text(this.sorted("buy"))}`);
  }
}

// ------------------------------------------------------------------ small DOM helpers

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

export async function instruments() {
  const response = await fetch("/api/instruments");
  return (await response.json()).instruments;
}
