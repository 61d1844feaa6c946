// What the interop suites share besides child processes (processes.mjs).
import { io } from 'socket.io-client';
import puppeteer from 'puppeteer-core';

/** Resolves with the first argument of the next `event` on `socket`; rejects after `ms`. */
export function next(socket, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${ms} ms`)), ms);
    socket.once(event, (data) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

/** Runs `body(cleanups)`, then every function it pushed on `cleanups`, last first. */
export async function withCleanups(body) {
  const cleanups = [];
  try {
    await body(cleanups);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

/**
 * A client named `name` on namespace `nsp` of `server` (in `room` when given) that
 * acknowledges `question` with `{from, got}` unless `silent`.
 */
export async function client(server, cleanups, { name, room, silent = false, nsp = '/' }) {
  const socket = io(`${server.url}${nsp}`, { path: '/io', auth: { name, room }, forceNew: true, reconnection: false });
  cleanups.push(() => socket.disconnect());
  if (!silent) socket.on('question', (got, ack) => ack({ from: name, got: shown(got) }));
  // Answers the bytes it got, reversed, as binary data.
  socket.on('reverse', (got, ack) => ack(Buffer.from(got).reverse()));
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}

export async function post(server, path, body) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

export async function get(server, path) {
  const res = await fetch(`${server.url}${path}`);
  return { status: res.status, body: await res.json() };
}

/** Polls `probe` every 50 ms until it returns a truthy value (5 s at most). */
export async function eventually(probe, what) {
  const until = Date.now() + 5_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`not within 5 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Binary data as `{$hex}` (what the servers' routes show it as). */
export const shown = (v) =>
  Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? { $hex: Buffer.from(v.buffer ?? v, v.byteOffset ?? 0, v.byteLength).toString('hex') }
  : Array.isArray(v) ? v.map(shown)
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shown(x)]))
  : v;

/** The sorted `from` of each acknowledgement. */
export const froms = (responses) => responses.map((r) => r.from).sort();

/** The fleet suites' cast: ann (in lobby) and carl on `rust`, bob (in lobby) and dora (in node-only) on `node`. */
export async function fourClients(rust, node, cleanups) {
  return {
    ann: await client(rust, cleanups, { name: 'ann', room: 'lobby' }),
    carl: await client(rust, cleanups, { name: 'carl' }),
    bob: await client(node, cleanups, { name: 'bob', room: 'lobby' }),
    dora: await client(node, cleanups, { name: 'dora', room: 'node-only' }),
  };
}

/** Debian's headless Chromium (CHROMIUM_BIN for another build), closed at cleanup. */
export async function launchChromium(cleanups) {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    // Root in a container: Chromium's sandbox needs namespaces it does not get.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  cleanups.push(() => browser.close());
  return browser;
}

/** A socket.io-client connected to `server` with `token` and authenticated through the seeds'
 * `authenticate` (so in `io-default`). */
export async function authenticated(server, cleanups, token = 'demo-token') {
  const socket = io(server.url, { path: '/io', auth: { token }, forceNew: true, reconnection: false });
  cleanups.push(() => socket.disconnect());
  await next(socket, 'connect');
  const ok = next(socket, 'authenticated');
  socket.emit('authenticate');
  await ok;
  return socket;
}
