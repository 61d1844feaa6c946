// The demo's `GET /metrics`: known traffic from the official socket.io-client (good, refused,
// failing and timed-out authentications, a flooder, joins, sends), then each counter moved by
// exactly that much; promtool (Prometheus' own checker) passes the output; the Grafana
// dashboard in the repository asks only for metrics the demo exports.
//
//   DEMO_BIN=… node --test metrics.test.mjs   (scripts/test.sh sets it)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { io } from 'socket.io-client';
import { startRedis, startServer } from './processes.mjs';
import { eventually, next, withCleanups } from './helpers.mjs';

async function demo(cleanups, env = {}) {
  assert.ok(process.env.DEMO_BIN, 'set DEMO_BIN (scripts/test.sh does)');
  const server = await startServer(process.env.DEMO_BIN, [], { AUTH_TIMEOUT_MS: '500', ...env });
  cleanups.push(server.stop);
  return server;
}

/** The text format read into `name{labels}` → value (labels as written, sorted by the exporter). */
async function scrape(server) {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  const text = await res.text();
  const values = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, values };
}

/** `promtool check metrics` (Prometheus' own linter) on `text`: its exit code and output. */
async function promtool(text) {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (out += chunk));
  child.stdin.end(text);
  const code = await new Promise((resolve) => child.once('close', resolve));
  return { code, out };
}

/** How much each series moved between two scrapes (0 for one that is in neither). */
const moved = (before, after) => (series) => (after.values.get(series) ?? 0) - (before.values.get(series) ?? 0);

function connect(server, cleanups, auth) {
  const socket = io(server.url, { path: '/io', forceNew: true, reconnection: false, transports: ['websocket'], auth });
  cleanups.push(() => socket.disconnect());
  // Listened for from the start: the server may cut it off before the test awaits it.
  socket.gone = new Promise((resolve) => socket.once('disconnect', resolve));
  return socket;
}

/** A client with `token` in its handshake that sends the seeds' `authenticate`; resolves with
 * the event that answered it. */
async function authenticateWith(server, cleanups, token) {
  const socket = connect(server, cleanups, { token });
  await next(socket, 'connect');
  const answer = Promise.race([
    next(socket, 'authenticated').then(() => 'authenticated'),
    next(socket, 'unauthenticated').then(() => 'unauthenticated'),
  ]);
  socket.emit('authenticate');
  return { socket, answer: await answer };
}

test('each counter moves by exactly the traffic it counts, and promtool passes the output', () =>
  withCleanups(async (cleanups) => {
    const server = await demo(cleanups);
    const before = await scrape(server);

    const good = [];
    for (let i = 0; i < 3; i++) {
      const c = await authenticateWith(server, cleanups, 'demo-token');
      assert.equal(c.answer, 'authenticated');
      good.push(c.socket);
    }
    for (const token of ['wrong', 'also-wrong', 'boom']) {
      const c = await authenticateWith(server, cleanups, token);
      assert.equal(c.answer, 'unauthenticated');
      await c.socket.gone;
    }
    // Two that never authenticate, each sending one event first: the deadline cuts them off.
    for (let i = 0; i < 2; i++) {
      const socket = connect(server, cleanups);
      await next(socket, 'connect');
      socket.emit('early', 1);
      await socket.gone;
    }
    // Joins: one admitted (public-), one refused by the validate function.
    good[0].emit('join', { rooms: ['public-a'] });
    good[0].emit('join', { rooms: ['private-b'] });
    // Sends: two delivered, one dropped (no topic), one refused (a reserved topic).
    const send = (body) =>
      fetch(`${server.url}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal((await send({ topic: 'news', data: 1 })).status, 204);
    assert.equal((await send({ destination: 'public-a', topic: 'news', data: 2 })).status, 204);
    assert.equal((await send({ topic: '', data: 3 })).status, 204);
    assert.equal((await send({ topic: 'disconnect', data: 4 })).status, 400);
    // A flooder: 1,000 events at once, far over 100/s with bursts of 200.
    const flooder = good[2];
    const started = Date.now();
    for (let i = 0; i < 1000; i++) flooder.emit('noise', i);

    // 6 authenticate events, 2 early ones, 2 joins and the flood.
    const events = 6 + 2 + 2 + 1000;
    await eventually(async () => {
      const now = await scrape(server);
      return moved(before, now)('socketio_events_received_total') === events;
    }, 'every event counted');
    // The flood is handled in order behind the others: over the limit once at most the burst
    // (200) and the refill since it started went through (or past the socket's queue).
    const over = (d) => d('socketio_events_dropped_total{reason="rate_limited"}') + d('socketio_events_dropped_total{reason="queue_full"}');
    const floor = () => 1000 - 200 - Math.ceil(100 * ((Date.now() - started) / 1000 + 0.5));
    const after = await eventually(async () => {
      const now = await scrape(server);
      return over(moved(before, now)) >= floor() ? now : null;
    }, 'the flood handled');
    const d = moved(before, after);
    assert.ok(over(d) <= 1000, `${over(d)} dropped of 1000`);
    assert.equal(d('socketio_events_received_total'), events);
    assert.equal(d('socketio_connections_total'), 8);
    assert.equal(d('socketio_connected_sockets'), 3, 'the three good clients are still connected');
    assert.equal(d('socketio_auth_total{result="ok"}'), 3);
    assert.equal(d('socketio_auth_total{result="refused"}'), 2);
    assert.equal(d('socketio_auth_total{result="error"}'), 1);
    assert.equal(d('socketio_auth_total{result="timeout"}'), 2);
    assert.equal(d('socketio_auth_duration_seconds_count'), 6, 'the function ran for each authenticate');
    assert.equal(d('socketio_events_dropped_total{reason="not_authenticated"}'), 2);
    assert.equal(d('socketio_room_joins_total{result="ok"}'), 1);
    assert.equal(d('socketio_room_joins_total{result="refused"}'), 1);
    assert.equal(d('socketio_sends_total{outcome="sent"}'), 2);
    assert.equal(d('socketio_sends_total{outcome="dropped"}'), 1);
    assert.equal(d('socketio_sends_total{outcome="failed"}'), 1);
    for (const socket of good) socket.disconnect();
    await eventually(async () => moved(before, await scrape(server))('socketio_connected_sockets') === 0, 'the gauge back where it was');

    // No label takes a value the client chose.
    for (const series of after.values.keys()) {
      assert.doesNotMatch(series, /noise|early|public-a|private-b|news/, series);
    }
    const checked = await promtool(after.text);
    assert.equal(checked.code, 0, `promtool check metrics: ${checked.out}`);
    assert.equal(checked.out.trim(), '', 'no lint remark either');
  }));

test('with Redis: publishes timed, and messages from Redis counted by result', () =>
  withCleanups(async (cleanups) => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    const server = await demo(cleanups, { REDIS_URL: redis.url });
    const before = await scrape(server);
    const send = (body) =>
      fetch(`${server.url}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (let i = 0; i < 5; i++) assert.equal((await send({ topic: 'news', data: i + 1 })).status, 204);
    const after = await eventually(async () => {
      const now = await scrape(server);
      return moved(before, now)('socketio_fanout_received_total{result="delivered"}') === 5 ? now : null;
    }, 'five deliveries from Redis');
    const d = moved(before, after);
    assert.equal(d('socketio_redis_publish_duration_seconds_count'), 5);
    assert.equal(d('socketio_sends_total{outcome="sent"}'), 5);
  }));

test('every expression of the Grafana dashboard asks for metrics the demo exports', () =>
  withCleanups(async (cleanups) => {
    const dashboard = JSON.parse(readFileSync(new URL('../../dashboards/socketio-stack.json', import.meta.url)));
    const redis = await startRedis();
    cleanups.push(redis.stop);
    const server = await demo(cleanups, { REDIS_URL: redis.url });
    // Traffic, so that the series exist: one of each kind the panels show.
    const c = await authenticateWith(server, cleanups, 'demo-token');
    await authenticateWith(server, cleanups, 'wrong');
    c.socket.emit('join', { rooms: ['public-a'] });
    await fetch(`${server.url}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"topic":"t","data":1}' });
    const { text } = await eventually(async () => {
      const now = await scrape(server);
      const there = ['socketio_room_joins_total{result="ok"}', 'socketio_fanout_received_total{result="delivered"}'];
      return there.every((series) => now.values.has(series)) ? now : null;
    }, 'the join and the delivery counted');
    const exported = new Set();
    for (const line of text.split('\n')) {
      const m = /^# TYPE (\S+) (\S+)/.exec(line);
      if (!m) continue;
      exported.add(m[1]);
      if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m[1] + s);
    }
    // What only faults make (errors, panics, drops, misses, reconnections) is checked against
    // the crate's list of names instead.
    const declared = new Set(readFileSync(new URL('../../src/telemetry.rs', import.meta.url), 'utf8').match(/"socketio_[a-z_]+"/g).map((n) => n.slice(1, -1)));
    const faultsOnly = /errors|panics|dropped|misses|reconnects/;
    const expressions = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(expressions.length >= 13, `${expressions.length} expressions`);
    for (const expr of expressions) {
      const names = expr.match(/socketio_[a-z_]+/g) ?? [];
      assert.ok(names.length > 0, `no metric in ${expr}`);
      for (const name of names) {
        if (faultsOnly.test(name)) {
          assert.ok(declared.has(name), `${name} (in ${expr}) is not one of the crate's metrics`);
        } else {
          assert.ok(exported.has(name), `${name} (in ${expr}) is not exported: ${[...exported].join(', ')}`);
        }
      }
    }
  }));
