// Interop suite: the Rust demo server (examples/demo) driven by the OFFICIAL
// npm `socket.io-client` v4, so the wire protocol, the authentication flow, the
// keep-alive pings, room management and the HTTP side (/send, /health, /stats)
// are checked against the reference client, not against our own Rust client.
//
// What it proves, per test: the auth flow accepts `auth.token` and a
// `Bearer` header over polling, polling+upgrade and websocket; wrong tokens and
// a throwing authenticate function get the exact `unauthenticated` messages
// and a server-side disconnect; the auth timeout fires (and only for clients
// that never authenticate); pings repeat at the configured interval; default
// rooms, `join` (validated: `public-` only) and `leave` work, and `join` before
// authentication is ignored; POST /send reaches a room, one socket id, or
// everyone, and nobody else; /health and /stats answer; SIGTERM shuts down
// cleanly.
//
// Negative assertions ("X must NOT arrive") never rely on sleeping: X is sent
// first, then a message the client is known to receive (a "barrier", usually
// sent to the socket's own id). The server delivers one socket's messages in
// order, so once the barrier is seen, X would already have arrived.
//
// Run (Node >= 20), after building the demo:
//   cd tests/js && npm ci && DEMO_BIN=../../target/debug/examples/demo node --test
// Set DEMO_STDERR=inherit to see the demo's logs live; otherwise the tail of
// its stderr is appended to the error of a failing test.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { io } from 'socket.io-client';

const TOKEN = 'demo-token';
const IO_PATH = '/io';
const STARTUP_DEADLINE_MS = 15_000;
const EVENT_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 20_000;
const STDERR_TAIL_BYTES = 16 * 1024;

const INVALID_TOKEN_MESSAGE = 'Invalid token to authenticate! Please login again!';
const AUTH_FAILED_MESSAGE = 'Failed to authenticate connection! Please login again!';

// ---------------------------------------------------------------------------
// Demo process
// ---------------------------------------------------------------------------

/** Every demo child ever spawned, killed hard at exit as a safety net. */
const allChildren = new Set();
process.on('exit', () => {
  for (const child of allChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

/**
 * Spawns the demo binary on an ephemeral port and waits for its
 * `listening on <port>` line. Returns { port, url, child, stderrTail(), stop() }.
 */
async function startDemo(envOverrides = {}) {
  const bin = process.env.DEMO_BIN;
  if (!bin) {
    throw new Error(
      'DEMO_BIN is not set: build the demo and run e.g. ' +
        'DEMO_BIN=../../target/debug/examples/demo node --test',
    );
  }
  const binPath = path.resolve(bin);
  const inheritStderr = process.env.DEMO_STDERR === 'inherit';
  const child = spawn(binPath, [], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      IO_PATH,
      AUTH_TOKEN: TOKEN,
      ...envOverrides,
    },
    stdio: ['ignore', 'pipe', inheritStderr ? 'inherit' : 'pipe'],
  });
  allChildren.add(child);

  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
    if (stderr.length > 2 * STDERR_TAIL_BYTES) stderr = stderr.slice(-STDERR_TAIL_BYTES);
  });
  const stderrTail = () => stderr.slice(-STDERR_TAIL_BYTES);

  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const stdoutLines = [];
  const port = await new Promise((resolve, reject) => {
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.off('exit', onEarlyExit);
      child.kill('SIGKILL');
      reject(
        new Error(
          `demo did not start (${binPath}): ${why}\n` +
            `--- stdout ---\n${stdoutLines.join('\n')}\n--- stderr (tail) ---\n${stderrTail()}`,
        ),
      );
    };
    const timer = setTimeout(
      () => fail(`no "listening on <port>" line within ${STARTUP_DEADLINE_MS} ms`),
      STARTUP_DEADLINE_MS,
    );
    const onEarlyExit = (code, signal) => fail(`exited early (code ${code}, signal ${signal})`);
    child.once('error', (err) => fail(`spawn failed: ${err.message}`));
    child.once('exit', onEarlyExit);
    // Keep consuming stdout for the whole life of the child (no pipe stall).
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdoutLines.push(line);
      const m = /^listening on (\d+)\s*$/.exec(line);
      if (settled || !m) return;
      const p = Number(m[1]);
      if (!(p > 0 && p < 65536)) return fail(`bad port in ${JSON.stringify(line)}`);
      settled = true;
      clearTimeout(timer);
      child.off('exit', onEarlyExit);
      resolve(p);
    });
  });

  let stopping;
  /** SIGTERM, then await exit (SIGKILL after 5 s). Idempotent. */
  const stop = () => {
    if (!stopping) {
      stopping = (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const hard = setTimeout(() => child.kill('SIGKILL'), 5_000);
        const result = await exited;
        clearTimeout(hard);
        allChildren.delete(child);
        return result;
      })();
    }
    return stopping;
  };

  return { port, url: `http://127.0.0.1:${port}`, child, exited, stderrTail, stop };
}

// ---------------------------------------------------------------------------
// Socket.IO client helpers
// ---------------------------------------------------------------------------

/**
 * Resolves with the first argument of the next `event` on `emitter`; rejects
 * after `timeoutMs`, or as soon as one of `failOn` fires. Always unsubscribes.
 */
function once(emitter, event, timeoutMs = EVENT_TIMEOUT_MS, { failOn = [] } = {}) {
  return new Promise((resolve, reject) => {
    const listeners = [];
    const done = () => {
      clearTimeout(timer);
      for (const [ev, fn] of listeners) emitter.off(ev, fn);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    const onEvent = (value) => {
      done();
      resolve(value);
    };
    listeners.push([event, onEvent]);
    for (const bad of failOn) {
      const onBad = (value) => {
        done();
        const detail = value instanceof Error ? value.message : JSON.stringify(value);
        reject(new Error(`got "${bad}" (${detail}) while waiting for "${event}"`));
      };
      listeners.push([bad, onBad]);
    }
    for (const [ev, fn] of listeners) emitter.on(ev, fn);
  });
}

/**
 * Records every event a socket receives, in arrival order, from before it
 * connects: server events (via onAny) and `disconnect`. Lets a test wait for
 * something that may already have arrived, and check what came before a barrier.
 */
class Recorder {
  constructor(socket) {
    this.log = [];
    this.waiters = new Set();
    socket.onAny((event, ...args) => this.#push(event, args));
    socket.on('disconnect', (reason) => this.#push('disconnect', [reason]));
  }

  #push(event, args) {
    const entry = { event, data: args[0], args, at: performance.now(), index: this.log.length };
    this.log.push(entry);
    for (const waiter of [...this.waiters]) waiter(entry);
  }

  /**
   * Resolves with the first entry (already logged or future) for which
   * `match(entry)` is true; `match` sees each entry once, in order.
   */
  waitFor(match, label, timeoutMs = EVENT_TIMEOUT_MS) {
    for (const entry of this.log) if (match(entry)) return Promise.resolve(entry);
    return new Promise((resolve, reject) => {
      const waiter = (entry) => {
        if (!match(entry)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(entry);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${label}; received so far: ` +
              this.describe(),
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** First entry named `event` (whose data satisfies `pred`). */
  next(event, pred = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
    return this.waitFor((e) => e.event === event && pred(e.data), `"${event}"`, timeoutMs);
  }

  /** The n-th (1-based) entry named `event`. */
  nth(event, n, timeoutMs = EVENT_TIMEOUT_MS) {
    let seen = 0;
    return this.waitFor((e) => e.event === event && ++seen === n, `${n} x "${event}"`, timeoutMs);
  }

  entries(event, pred = () => true) {
    return this.log.filter((e) => e.event === event && pred(e.data));
  }

  describe() {
    const s = this.log.map((e) => `${e.event} ${JSON.stringify(e.args)}`).join(' | ');
    return s.length > 2000 ? `${s.slice(0, 2000)}…` : s || '(nothing)';
  }
}

/**
 * Connects a fresh client (own Manager, no auto-reconnect) to the demo and
 * waits for `connect`. Returns { socket, rec }. Closed by the test's cleanup.
 */
async function connectClient(demo, cleanups, opts = {}) {
  const socket = io(demo.url, {
    path: IO_PATH,
    forceNew: true,
    reconnection: false,
    autoConnect: false,
    timeout: EVENT_TIMEOUT_MS,
    ...opts,
  });
  const rec = new Recorder(socket);
  cleanups.push(() => socket.disconnect());
  const connected = once(socket, 'connect', EVENT_TIMEOUT_MS, { failOn: ['connect_error'] });
  socket.connect();
  await connected;
  assert.ok(socket.id, 'socket.id set after connect');
  return { socket, rec };
}

/**
 * Emits `authenticate` and waits for the outcome; fails fast (with the
 * server's message) on `unauthenticated` or a disconnect. Returns the
 * `authenticated` payload.
 */
async function authenticate(client) {
  client.socket.emit('authenticate');
  const outcome = await client.rec.waitFor(
    (e) => ['authenticated', 'unauthenticated', 'disconnect'].includes(e.event),
    '"authenticated"',
  );
  assert.equal(
    outcome.event,
    'authenticated',
    `expected "authenticated", got "${outcome.event}" ${JSON.stringify(outcome.args)}`,
  );
  return outcome.data;
}

function assertIsoTime(value, what) {
  assert.equal(typeof value, 'string', `${what}: time must be a string, got ${JSON.stringify(value)}`);
  const parsed = new Date(value);
  assert.ok(!Number.isNaN(parsed.getTime()), `${what}: unparseable time ${JSON.stringify(value)}`);
  assert.equal(parsed.toISOString(), value, `${what}: time is not in Date#toISOString() form`);
  // The server clock is this machine's clock: the stamp must be "now".
  assert.ok(Math.abs(parsed.getTime() - Date.now()) < 60_000, `${what}: time ${value} is not now`);
}

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

/** Plain node:http request, no keep-alive. Resolves { status, headers, body }. */
function httpRequest(demo, method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port: demo.port,
        method,
        path: urlPath,
        agent: false,
        timeout: EVENT_TIMEOUT_MS,
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** POST /send {destination?, topic, data}; asserts 204. */
async function postSend(demo, { destination, topic, data }) {
  const body = destination === undefined ? { topic, data } : { destination, topic, data };
  const res = await httpRequest(demo, 'POST', '/send', body);
  assert.equal(res.status, 204, `POST /send ${JSON.stringify(body)} -> ${res.status} ${res.body}`);
}

let probeSeq = 0;

/**
 * Sends a `probe` to each room in `rooms` (in order), then a `barrier` to the
 * client's own socket id, waits for the barrier and returns the set of rooms
 * whose probe arrived before it, i.e. the rooms the client is in right now.
 */
async function probeRooms(demo, client, rooms) {
  const id = ++probeSeq;
  for (const room of rooms) {
    await postSend(demo, { destination: room, topic: 'probe', data: { room, id } });
  }
  await postSend(demo, { destination: client.socket.id, topic: 'barrier', data: { id } });
  const barrier = await client.rec.next('barrier', (d) => d?.id === id);
  return new Set(
    client.rec.log
      .slice(0, barrier.index)
      .filter((e) => e.event === 'probe' && e.data?.id === id)
      .map((e) => e.data.room),
  );
}

/** Calls `check` every `intervalMs` until it returns a truthy value (bounded). */
async function pollUntil(check, label, { timeoutMs = 5_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last?.ok) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms: ${label} (last: ${JSON.stringify(last)})`);
    }
    await delay(intervalMs);
  }
}

const roomsOf = (set) => [...set].sort();

// ---------------------------------------------------------------------------
// Test wrapper: one demo per test, everything torn down in an after hook
// ---------------------------------------------------------------------------

/**
 * Declares a test with its own demo process (env overrides in `env`). The body
 * gets { demo, connect(opts), t }. Sockets and the demo are closed in the
 * test's after hook (sockets first, LIFO); on failure the demo's stderr tail is
 * appended to the error.
 */
function scenario(name, env, body, { timeout = TEST_TIMEOUT_MS } = {}) {
  test(name, { timeout }, async (t) => {
    const cleanups = [];
    t.after(async () => {
      const errors = [];
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length) throw errors[0];
    });
    const demo = await startDemo(env);
    cleanups.push(() => demo.stop());
    try {
      await body({ t, demo, connect: (opts) => connectClient(demo, cleanups, opts) });
    } catch (err) {
      if (err && typeof err === 'object' && process.env.DEMO_STDERR !== 'inherit') {
        try {
          err.message += `\n--- demo stderr (tail) ---\n${demo.stderrTail()}`;
        } catch {
          /* read-only message: keep the original error */
        }
      }
      throw err;
    }
  });
}

after(async () => {
  // Safety net: a child left over by an aborted test.
  for (const child of allChildren) child.kill('SIGKILL');
});

// ---------------------------------------------------------------------------
// 1-2. Successful authentication
// ---------------------------------------------------------------------------

const TRANSPORT_VARIANTS = [
  ['polling + upgrade (default)', undefined],
  ['polling only', ['polling']],
  ['websocket only', ['websocket']],
];

for (const [label, transports] of TRANSPORT_VARIANTS) {
  // A long ping interval: a ping within 5 s can only be the initial one.
  scenario(
    `auth.token is accepted: authenticated {id, time} + initial ping [${label}]`,
    { PING_INTERVAL_MS: '60000' },
    async ({ connect }) => {
      const client = await connect({ auth: { token: TOKEN }, ...(transports && { transports }) });
      const authed = await authenticate(client);
      assert.equal(authed.id, client.socket.id, 'authenticated.id is the socket id');
      assertIsoTime(authed.time, 'authenticated');
      const ping = await client.rec.next('ping');
      assertIsoTime(ping.data?.time, 'ping');
      assert.equal(client.rec.entries('unauthenticated').length, 0);
      assert.ok(client.socket.connected);
    },
  );
}

for (const [label, transports] of [TRANSPORT_VARIANTS[0], TRANSPORT_VARIANTS[2]]) {
  // Node's client can set headers on both transports (browsers can't for ws).
  scenario(
    `authorization: Bearer header is accepted [${label}]`,
    { PING_INTERVAL_MS: '60000' },
    async ({ connect }) => {
      const client = await connect({
        extraHeaders: { authorization: `Bearer ${TOKEN}` },
        ...(transports && { transports }),
      });
      const authed = await authenticate(client);
      assert.equal(authed.id, client.socket.id);
      assertIsoTime(authed.time, 'authenticated');
      assertIsoTime((await client.rec.next('ping')).data?.time, 'ping');
    },
  );
}

// ---------------------------------------------------------------------------
// 3. Keep-alive pings repeat (and the auth timeout spares authenticated clients)
// ---------------------------------------------------------------------------

scenario(
  'pings repeat every PING_INTERVAL_MS; an authenticated client outlives AUTH_TIMEOUT_MS',
  { PING_INTERVAL_MS: '300', AUTH_TIMEOUT_MS: '500' },
  async ({ connect }) => {
    const client = await connect({ auth: { token: TOKEN }, transports: ['websocket'] });
    await authenticate(client);
    // Initial ping + 3 interval pings: ~900 ms, i.e. well past the 500 ms auth timeout.
    await client.rec.nth('ping', 4);
    const authedAt = client.rec.entries('authenticated')[0].index;
    const pings = client.rec.entries('ping');
    assert.ok(
      pings.filter((p) => p.index > authedAt).length >= 3,
      `at least 3 pings after "authenticated": ${client.rec.describe()}`,
    );
    for (const p of pings) assertIsoTime(p.data?.time, 'ping');
    for (let i = 1; i < pings.length; i++) {
      const gap = pings[i].at - pings[i - 1].at;
      assert.ok(
        gap >= 150 && gap <= 2000,
        `gap between ping ${i - 1} and ${i} is ${gap.toFixed(0)} ms (want 150..2000)`,
      );
      assert.ok(
        Date.parse(pings[i].data.time) >= Date.parse(pings[i - 1].data.time),
        'ping times do not go backwards',
      );
    }
    assert.equal(client.rec.entries('disconnect').length, 0, 'not disconnected by the auth timeout');
    assert.ok(client.socket.connected);
  },
);

// ---------------------------------------------------------------------------
// 4-5. Refused authentication
// ---------------------------------------------------------------------------

const REFUSALS = [
  ['wrong auth.token', { auth: { token: 'not-the-token' } }, INVALID_TOKEN_MESSAGE],
  ['wrong Bearer header', { extraHeaders: { authorization: 'Bearer nope' } }, INVALID_TOKEN_MESSAGE],
  ['no credentials', {}, INVALID_TOKEN_MESSAGE],
  ['authenticate fn throws (token "boom")', { auth: { token: 'boom' } }, AUTH_FAILED_MESSAGE],
];

for (const [label, opts, message] of REFUSALS) {
  scenario(
    `${label} -> unauthenticated "${message.split('!')[0]}!" then server disconnect`,
    {},
    async ({ connect }) => {
      const client = await connect(opts);
      client.socket.emit('authenticate');
      const refused = await client.rec.next('unauthenticated');
      assert.equal(refused.data?.message, message);
      assertIsoTime(refused.data?.time, 'unauthenticated');
      const disconnect = await client.rec.next('disconnect');
      assert.equal(disconnect.data, 'io server disconnect');
      assert.ok(refused.index < disconnect.index, 'unauthenticated arrives before the disconnect');
      assert.equal(client.rec.entries('authenticated').length, 0, 'never authenticated');
      assert.equal(client.rec.entries('ping').length, 0, 'no pings for a refused client');
    },
  );
}

// ---------------------------------------------------------------------------
// 5b. Authentication at the handshake (AUTH_AT=handshake: socket.io's io.use idiom)
// ---------------------------------------------------------------------------

/** Connects without waiting for `connect`: resolves with the first of connect / connect_error. */
function connectOutcome(demo, cleanups, opts, beforeConnect = () => {}) {
  const socket = io(demo.url, { path: IO_PATH, forceNew: true, reconnection: false, timeout: EVENT_TIMEOUT_MS, autoConnect: false, ...opts });
  cleanups.push(() => socket.disconnect());
  beforeConnect(socket);
  socket.connect();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('neither connect nor connect_error')), EVENT_TIMEOUT_MS);
    socket.once('connect', () => (clearTimeout(timer), resolve({ socket, connected: true })));
    socket.once('connect_error', (err) => (clearTimeout(timer), resolve({ socket, connected: false, err })));
  });
}

for (const [label, opts, message] of REFUSALS) {
  test(`AUTH_AT=handshake: ${label} -> connect_error "${message.split('!')[0]}!", never a socket`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const cleanups = [];
    t.after(async () => {
      for (const fn of cleanups.reverse()) await fn();
    });
    const demo = await startDemo({ AUTH_AT: 'handshake' });
    cleanups.push(() => demo.stop());
    const outcome = await connectOutcome(demo, cleanups, opts);
    assert.equal(outcome.connected, false, 'refused at CONNECT');
    assert.equal(outcome.err.message, message, 'the connect_error handler sees the message');
    assert.equal(outcome.socket.id, undefined, 'no socket id');
    const stats = JSON.parse((await httpRequest(demo, 'GET', '/stats')).body);
    assert.equal(stats.clients, 0, 'nothing tracked');
  });
}

test('AUTH_AT=handshake: a good token connects authenticated: authenticated {id, time}, pings, rooms and handlers at once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const cleanups = [];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  const demo = await startDemo({ AUTH_AT: 'handshake', AUTH_TIMEOUT_MS: '300' });
  cleanups.push(() => demo.stop());
  let rec;
  const outcome = await connectOutcome(demo, cleanups, { auth: { token: TOKEN } }, (socket) => (rec = new Recorder(socket)));
  assert.equal(outcome.connected, true);
  const { socket } = outcome;
  const announced = (await rec.next('authenticated')).data;
  assert.equal(announced.id, socket.id);
  assertIsoTime(announced.time, 'authenticated');
  // A seeds client's authenticate is harmless, and the auth deadline (300 ms) does not apply.
  socket.emit('authenticate');
  await delay(800);
  assert.ok(socket.connected, 'still connected past the auth deadline');
  const rooms = await probeRooms(demo, { socket, rec }, ['io-default', 'elsewhere']);
  assert.deepEqual(roomsOf(rooms), ['io-default'], 'default rooms joined');
  assert.ok(rec.entries('ping').length >= 1, 'the first ping');
  assert.equal(rec.entries('authenticated').length, 1, 'announced once');
});

// ---------------------------------------------------------------------------
// 6. Authentication timeout
// ---------------------------------------------------------------------------

scenario(
  'a client that never authenticates is disconnected after AUTH_TIMEOUT_MS',
  { AUTH_TIMEOUT_MS: '500' },
  async ({ connect }) => {
    const client = await connect({ auth: { token: TOKEN } });
    const connectedAt = performance.now();
    const disconnect = await client.rec.next('disconnect');
    const elapsed = disconnect.at - connectedAt;
    assert.equal(disconnect.data, 'io server disconnect');
    assert.ok(elapsed >= 300, `disconnected too early: ${elapsed.toFixed(0)} ms after connect`);
    assert.ok(elapsed <= 5000, `disconnected too late: ${elapsed.toFixed(0)} ms after connect`);
    assert.equal(client.rec.entries('authenticated').length, 0);
  },
);

// ---------------------------------------------------------------------------
// 7. Default rooms
// ---------------------------------------------------------------------------

scenario('authenticated clients are in io-default and io-notification', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);

  const rich = { n: 1, s: 'héllo ✓ "quoted"', a: [1, 'x', null, { deep: true }], o: { b: false } };
  await postSend(demo, { destination: 'io-default', topic: 't1', data: rich });
  assert.deepEqual((await client.rec.next('t1')).data, rich);

  await postSend(demo, { destination: 'io-notification', topic: 't2', data: { n: 2 } });
  assert.deepEqual((await client.rec.next('t2')).data, { n: 2 });

  // Non-object payloads survive too.
  for (const [i, data] of ['plain string', 42, [1, 2, 3]].entries()) {
    await postSend(demo, { destination: 'io-default', topic: `scalar-${i}`, data });
    assert.deepEqual((await client.rec.next(`scalar-${i}`)).data, data);
  }
});

scenario('POST /send with args reaches the client as that many arguments', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);
  const args = ['lobby', { text: 'hi' }, [1, 2], null, 0];
  const res = await httpRequest(demo, 'POST', '/send', { destination: client.socket.id, topic: 'chat', args });
  assert.equal(res.status, 204, res.body);
  assert.deepEqual((await client.rec.next('chat')).args, args);
  const both = await httpRequest(demo, 'POST', '/send', { topic: 'chat', data: 1, args: [2] });
  assert.equal(both.status, 422, `data and args together: ${both.status} ${both.body}`);
});

// ---------------------------------------------------------------------------
// 8. join / leave
// ---------------------------------------------------------------------------

scenario('join admits only public- rooms; leave works for any room', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);

  // Before joining, public-a reaches nobody.
  assert.deepEqual(roomsOf(await probeRooms(demo, client, ['public-a', 'private-b'])), []);

  // private-b is listed first, so once public-a is in effect the request for
  // private-b has been decided too.
  client.socket.emit('join', { rooms: ['private-b', 'public-a'] });
  await pollUntil(
    async () => ({ ok: (await probeRooms(demo, client, ['public-a'])).has('public-a') }),
    'join of public-a to take effect',
  );
  // Barrier: private-b is sent first, then public-a, then the socket-id barrier.
  assert.deepEqual(
    roomsOf(await probeRooms(demo, client, ['private-b', 'public-a', 'io-default'])),
    ['io-default', 'public-a'],
    'private-b must have been refused',
  );

  // leave is not validated: a default room can be left as well.
  client.socket.emit('leave', { rooms: ['public-a', 'io-notification'] });
  await pollUntil(async () => {
    const inRooms = await probeRooms(demo, client, ['public-a', 'io-notification']);
    return { ok: inRooms.size === 0, rooms: roomsOf(inRooms) };
  }, 'leave of public-a and io-notification to take effect');
  assert.deepEqual(
    roomsOf(await probeRooms(demo, client, ['public-a', 'io-notification', 'io-default'])),
    ['io-default'],
    'leaving must not drop other rooms',
  );
  assert.ok(client.socket.connected);
});

// ---------------------------------------------------------------------------
// 9. Socket-id destination and broadcast
// ---------------------------------------------------------------------------

scenario('send to one socket id reaches only it; no destination reaches everyone', {}, async ({ demo, connect }) => {
  const a = await connect({ auth: { token: TOKEN } });
  const b = await connect({ auth: { token: TOKEN } });
  await authenticate(a);
  await authenticate(b);
  assert.notEqual(a.socket.id, b.socket.id);

  await postSend(demo, { destination: a.socket.id, topic: 'direct', data: { to: 'a' } });
  await postSend(demo, { destination: b.socket.id, topic: 'direct', data: { to: 'b' } });
  // Barrier for both clients: a broadcast, sent after the two direct messages.
  await postSend(demo, { topic: 'everyone', data: { hello: 'all' } });

  for (const [name, client] of [['a', a], ['b', b]]) {
    const barrier = await client.rec.next('everyone');
    assert.deepEqual(barrier.data, { hello: 'all' });
    const direct = client.rec.log
      .slice(0, barrier.index)
      .filter((e) => e.event === 'direct')
      .map((e) => e.data.to);
    assert.deepEqual(direct, [name], `client ${name} gets exactly its own direct message`);
  }
});

// socket.io's RESERVED_EVENTS: a client receiving one drops its connection (parse error).
const RESERVED_EVENTS = ['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'];

scenario('POST /send refuses reserved topics (400), drops falsy topics (204); the client stays', {}, async ({ demo, connect }) => {
  const a = await connect({ auth: { token: TOKEN } });
  await authenticate(a);
  const start = a.rec.log.length;
  for (const topic of RESERVED_EVENTS) {
    for (const destination of [undefined, 'io-default', a.socket.id]) {
      const body = { destination, topic, data: { x: 1 } };
      const res = await httpRequest(demo, 'POST', '/send', body);
      assert.equal(res.status, 400, `POST /send ${JSON.stringify(body)} -> ${res.status} ${res.body}`);
      assert.ok(res.body.includes(`"${topic}"`) && res.body.includes('reserved'), res.body);
    }
  }
  // The seeds drop a send with any falsy topic silently: 204, nothing delivered.
  for (const topic of [null, false, 0, '', undefined]) {
    const body = { destination: a.socket.id, topic, data: { x: 1 } };
    const res = await httpRequest(demo, 'POST', '/send', body);
    assert.equal(res.status, 204, `POST /send ${JSON.stringify(body)} -> ${res.status} ${res.body}`);
  }
  // A truthy non-string topic is not a topic: refused as a malformed body.
  const res = await httpRequest(demo, 'POST', '/send', { topic: 1, data: { x: 1 } });
  assert.equal(res.status, 422, `POST /send {topic: 1} -> ${res.status} ${res.body}`);

  await postSend(demo, { destination: a.socket.id, topic: 'barrier', data: { n: 1 } });
  const barrier = await a.rec.next('barrier');
  const between = a.rec.log.slice(start, barrier.index).filter((e) => e.event !== 'ping');
  assert.deepEqual(between, [], `nothing but the barrier arrived: ${a.rec.describe()}`);
  assert.ok(a.socket.connected, 'the client is still connected');
  await postSend(demo, { destination: a.socket.id, topic: 'after', data: { n: 2 } });
  assert.deepEqual((await a.rec.next('after')).data, { n: 2 });
  assert.equal(a.rec.entries('disconnect').length, 0, a.rec.describe());
});

// ---------------------------------------------------------------------------
// 10. Nothing room-related before authentication
// ---------------------------------------------------------------------------

scenario('join before authentication is ignored; default rooms only after auth', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });

  // Unauthenticated: not in the default rooms (the socket-id barrier still works).
  assert.deepEqual(roomsOf(await probeRooms(demo, client, ['io-default', 'io-notification'])), []);

  client.socket.emit('join', { rooms: ['public-x'] });
  await authenticate(client); // processed after the join, on the same socket
  assert.deepEqual(
    roomsOf(await probeRooms(demo, client, ['public-x', 'io-default'])),
    ['io-default'],
    'the pre-auth join of public-x must have been ignored',
  );

  // Control: the same join after authentication is admitted.
  client.socket.emit('join', { rooms: ['public-x'] });
  await pollUntil(
    async () => ({ ok: (await probeRooms(demo, client, ['public-x'])).has('public-x') }),
    'post-auth join of public-x to take effect',
  );
});

// ---------------------------------------------------------------------------
// 11. HTTP routes and configuration
// ---------------------------------------------------------------------------

scenario('GET /health answers 200 "ok"', {}, async ({ demo }) => {
  const res = await httpRequest(demo, 'GET', '/health');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'ok');
});

scenario('GET /stats reports {clients, rss}; clients tracks connections', {}, async ({ demo, connect }) => {
  const stats = async () => {
    const res = await httpRequest(demo, 'GET', '/stats');
    assert.equal(res.status, 200, `/stats -> ${res.status} ${res.body}`);
    assert.match(String(res.headers['content-type']), /application\/json/);
    const body = JSON.parse(res.body);
    assert.ok(Number.isInteger(body.clients) && body.clients >= 0, `clients: ${res.body}`);
    assert.ok(typeof body.rss === 'number' && body.rss > 0, `rss: ${res.body}`);
    return body;
  };

  assert.equal((await stats()).clients, 0, 'a fresh demo tracks no clients');

  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);
  assert.equal((await stats()).clients, 1, 'the authenticated client is tracked');

  client.socket.disconnect();
  await pollUntil(async () => {
    const { clients } = await stats();
    return { ok: clients === 0, clients };
  }, 'clients to drop back to 0 after the client disconnects');
});

scenario('Socket.IO is served at IO_PATH only', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);

  const stray = io(demo.url, { path: '/socket.io', forceNew: true, reconnection: false, timeout: 3000 });
  try {
    const err = await once(stray, 'connect_error', EVENT_TIMEOUT_MS, { failOn: ['connect'] });
    assert.ok(err instanceof Error);
  } finally {
    stray.disconnect();
  }
});

// ---------------------------------------------------------------------------
// 12. Graceful shutdown
// ---------------------------------------------------------------------------

scenario('SIGTERM disconnects clients and exits with status 0', {}, async ({ demo, connect }) => {
  const client = await connect({ auth: { token: TOKEN } });
  await authenticate(client);

  const exit = demo.stop();
  const disconnect = await client.rec.next('disconnect');
  assert.ok(
    ['io server disconnect', 'transport close'].includes(disconnect.data),
    `disconnect reason: ${disconnect.data}`,
  );
  const { code, signal } = await exit;
  assert.equal(signal, null, `demo died from ${signal} instead of shutting down`);
  assert.equal(code, 0, `demo exit status ${code}`);
});
