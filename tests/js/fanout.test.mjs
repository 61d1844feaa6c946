// One fleet on one Redis: our servers (the demo with REDIS_URL), our standalone emitter (the
// `emitter` example), and the real npm packages `@socket.io/redis-emitter` (v5) and
// `@socket.io/redis-adapter` (v8) with a Node socket.io 4 server (seeds-server.mjs).
//
//   DEMO_BIN=… EMITTER_BIN=… node --test fanout.test.mjs   (scripts/test.sh sets both)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createClient } from 'redis';
import { Emitter } from '@socket.io/redis-emitter';
import { startRedis, startServer } from './processes.mjs';
import { authenticated, next, withCleanups } from './helpers.mjs';

const TOKEN = 'demo-token';

function bins() {
  const { DEMO_BIN, EMITTER_BIN } = process.env;
  assert.ok(DEMO_BIN && EMITTER_BIN, 'set DEMO_BIN and EMITTER_BIN (scripts/test.sh does)');
  return { demo: DEMO_BIN, emitter: EMITTER_BIN };
}


async function postSend(server, body) {
  const res = await fetch(`${server.url}/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 204);
}

/**
 * POSTs `body` to `server` every 100 ms until `socket` gets `event` (5 s at most): for a
 * send that races a join travelling on another channel. Resolves with the event's data.
 */
async function sendUntilReceived(server, socket, event, body) {
  const got = next(socket, event);
  let received = false;
  got.then(() => (received = true), () => {});
  const until = Date.now() + 5_000;
  while (!received && Date.now() < until) {
    await postSend(server, { ...body, topic: event });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return got;
}

/** A redis-server of the test's own, stopped at cleanup. */
async function ownRedis(cleanups) {
  const redis = await startRedis();
  cleanups.push(redis.stop);
  return redis;
}

/** Our demo on `redis`, stopped at cleanup. */
async function ourServer(redis, cleanups) {
  const server = await startServer(bins().demo, [], { REDIS_URL: redis.url });
  cleanups.push(server.stop);
  return server;
}

/** A Node socket.io server with `@socket.io/redis-adapter` on `redis`, stopped at cleanup. */
async function nodeServer(redis, cleanups) {
  const server = await startServer(process.execPath, ['seeds-server.mjs'], { REDIS_URL: redis.url });
  cleanups.push(server.stop);
  return server;
}

/** A Node `@socket.io/redis-emitter` on `redis`. */
async function nodeEmitter(redis, cleanups) {
  const redisClient = createClient({ url: redis.url });
  await redisClient.connect();
  cleanups.push(() => redisClient.quit());
  return new Emitter(redisClient);
}

/** One Redis, our demo and a Node server on it, and an authenticated client on each. */
async function mixedFleet(cleanups) {
  const redis = await ownRedis(cleanups);
  const ours = await ourServer(redis, cleanups);
  const node = await nodeServer(redis, cleanups);
  return { redis, ours, node, onOurs: await authenticated(ours, cleanups), onNode: await authenticated(node, cleanups) };
}

test('a Node @socket.io/redis-emitter reaches clients of our servers (room, socket id, everyone)', () =>
  withCleanups(async (cleanups) => {
    const redis = await ownRedis(cleanups);
    const ours = await ourServer(redis, cleanups);
    const client = await authenticated(ours, cleanups);
    const emitter = await nodeEmitter(redis, cleanups);

    const room = next(client, 'from-node-room');
    emitter.to('io-default').emit('from-node-room', { n: 1 });
    assert.deepEqual(await room, { n: 1 });
    const direct = next(client, 'from-node-direct');
    emitter.to(client.id).emit('from-node-direct', 'only you');
    assert.equal(await direct, 'only you');
    const all = next(client, 'from-node-all');
    emitter.emit('from-node-all', [1, 2]);
    assert.deepEqual(await all, [1, 2]);
  }));

/** Resolves with every argument of the next `event` (rejects after 5 s). */
function nextArgs(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within 5 s`)), 5_000);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

test('several arguments and binary data cross the fleet: Node emitter to our clients, our send to Node clients', () =>
  withCleanups(async (cleanups) => {
    const { redis, ours, onOurs, onNode } = await mixedFleet(cleanups);
    const emitter = await nodeEmitter(redis, cleanups);

    const got = nextArgs(onOurs, 'node-args');
    emitter.to('io-default').emit('node-args', 'a', Buffer.from([1, 2, 3]), { nested: Buffer.from([4]), n: 5 });
    const [text, bin, obj] = await got;
    assert.equal(text, 'a');
    assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
    assert.deepEqual(Buffer.from(obj.nested), Buffer.from([4]));
    assert.equal(obj.n, 5);

    const onNodeArgs = nextArgs(onNode, 'ours-args');
    const res = await fetch(`${ours.url}/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ destination: 'io-default', topic: 'ours-args', args: ['x', { y: 1 }, [2]] }),
    });
    assert.equal(res.status, 204);
    assert.deepEqual(await onNodeArgs, ['x', { y: 1 }, [2]]);
  }));

test('our standalone emitter reaches clients of a Node socket.io server with @socket.io/redis-adapter', () =>
  withCleanups(async (cleanups) => {
    const redis = await ownRedis(cleanups);
    const node = await nodeServer(redis, cleanups);
    const client = await authenticated(node, cleanups);
    const run = (...args) => promisify(execFile)(bins().emitter, ['--redis', redis.url, ...args]);

    const room = next(client, 'from-rust-room');
    await run('--to', 'io-default', 'from-rust-room', '{"n":1}');
    assert.deepEqual(await room, { n: 1 });
    const direct = next(client, 'from-rust-direct');
    await run('--to', client.id, 'from-rust-direct', '"only you"');
    assert.equal(await direct, 'only you');
    const all = next(client, 'from-rust-all');
    await run('from-rust-all', 'true');
    assert.equal(await all, true);
  }));

test('our servers and Node servers with the Redis adapter deliver each other\'s room broadcasts', () =>
  withCleanups(async (cleanups) => {
    const { redis, ours, node, onOurs, onNode } = await mixedFleet(cleanups);

    // From our server (published as the emitter does) to both.
    let a = next(onOurs, 'from-ours');
    let b = next(onNode, 'from-ours');
    await postSend(ours, { destination: 'io-default', topic: 'from-ours', data: { n: 1 } });
    assert.deepEqual(await a, { n: 1 });
    assert.deepEqual(await b, { n: 1 });

    // From the Node server (published by its adapter, with the adapter's uid) to both.
    a = next(onOurs, 'from-node');
    b = next(onNode, 'from-node');
    await postSend(node, { destination: 'io-default', topic: 'from-node', data: { n: 2 } });
    assert.deepEqual(await a, { n: 2 });
    assert.deepEqual(await b, { n: 2 });
  }));

test('two demo instances on one Redis deliver each other\'s POST /send', () =>
  withCleanups(async (cleanups) => {
    const redis = await ownRedis(cleanups);
    const a = await ourServer(redis, cleanups);
    const b = await ourServer(redis, cleanups);
    const onA = await authenticated(a, cleanups);
    const onB = await authenticated(b, cleanups);

    const gotA = next(onA, 'from-a');
    const gotB = next(onB, 'from-a');
    await postSend(a, { destination: 'io-default', topic: 'from-a', data: { n: 1 } });
    assert.deepEqual([await gotA, await gotB], [{ n: 1 }, { n: 1 }]);

    const direct = next(onA, 'to-a');
    await postSend(b, { destination: onA.id, topic: 'to-a', data: 'across' });
    assert.equal(await direct, 'across');
  }));

test('the demo does not start when REDIS_URL points nowhere', async () => {
  await assert.rejects(
    startServer(bins().demo, [], { REDIS_URL: 'redis://127.0.0.1:1' }),
    /exited with 2[\s\S]*Redis is not reachable/,
  );
});

test('remote joins cross the fleet: the Node emitter\'s socketsJoin on our clients, ours on a Node server\'s', () =>
  withCleanups(async (cleanups) => {
    const { redis, ours, node, onOurs, onNode } = await mixedFleet(cleanups);
    const emitter = await nodeEmitter(redis, cleanups);

    // Node's emitter makes our client join a room; then a send to that room reaches it.
    emitter.in(onOurs.id).socketsJoin('node-joined');
    const first = await sendUntilReceived(ours, onOurs, 'in-node-joined', { destination: 'node-joined', data: { n: 1 } });
    assert.deepEqual(first, { n: 1 });

    // Our emitter makes the Node server's client join a room.
    await promisify(execFile)(bins().emitter, ['--redis', redis.url, '--to', onNode.id, '--join', 'rust-joined']);
    const second = await sendUntilReceived(node, onNode, 'in-rust-joined', { destination: 'rust-joined', data: { n: 2 } });
    assert.deepEqual(second, { n: 2 });
  }));

test('SIGTERM during a fan-out: each client gets every message sent before it, then the shutdown disconnect', () =>
  withCleanups(async (cleanups) => {
    const demo = await startServer(bins().demo);
    cleanups.push(demo.stop);
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await authenticated(demo, cleanups));
    const seen = clients.map(() => []);
    const closed = clients.map(
      (socket, i) =>
        new Promise((resolve) => {
          socket.on('seq', (data) => seen[i].push(data.n));
          socket.on('disconnect', (reason) => resolve(reason));
        }),
    );
    // 300 sends in flight at once; the signal comes once 150 of them were answered 204.
    const acked = [];
    const sends = [...Array(300).keys()].map(async (n) => {
      try {
        const res = await fetch(`${demo.url}/send`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ destination: 'io-default', topic: 'seq', data: { n } }),
        });
        if (res.status === 204) acked.push(n);
      } catch {
        // Refused once the demo stopped accepting: not sent, nothing to check.
      }
    });
    while (acked.length < 150) await new Promise((resolve) => setTimeout(resolve, 1));
    const beforeSignal = [...acked];
    const stopping = demo.stop(); // SIGTERM
    await Promise.allSettled(sends);
    await stopping;
    const reasons = await Promise.all(closed);
    for (let i = 0; i < clients.length; i++) {
      const got = new Set(seen[i]);
      const missing = beforeSignal.filter((n) => !got.has(n));
      assert.deepEqual(missing, [], `client ${i} lost messages sent before the signal`);
      assert.ok(['io server disconnect', 'transport close'].includes(reasons[i]), reasons[i]);
    }
  }));

test('a Node server\'s fetchSockets() and allRooms() get our servers\' answers instead of timing out', () =>
  withCleanups(async (cleanups) => {
    const { redis, ours, node, onOurs, onNode } = await mixedFleet(cleanups);

    const started = Date.now();
    const sockets = await (await fetch(`${node.url}/sockets`)).json();
    assert.ok(Date.now() - started < 3_000, 'answered, not timed out (5 s)');
    const byId = Object.fromEntries(sockets.map((s) => [s.id, s]));
    assert.ok(byId[onNode.id], 'the Node server\'s own socket');
    const mine = byId[onOurs.id];
    assert.ok(mine, 'our socket, from our server\'s answer');
    assert.ok(mine.rooms.includes('io-default') && mine.rooms.includes(onOurs.id), JSON.stringify(mine));
    assert.equal(mine.token, TOKEN, 'its handshake, with the auth payload');
    assert.deepEqual(mine.data, {}, 'the demo\'s authenticate function names nobody: no identity, socket.io\'s empty data');

    const rooms = await (await fetch(`${node.url}/rooms`)).json();
    assert.ok(rooms.includes(onOurs.id) && rooms.includes('io-default'), JSON.stringify(rooms));
  }));

/** `v` with every binary value (Buffer, ArrayBuffer, typed array) as a Buffer, to compare. */
function buffers(v) {
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(buffers);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, buffers(x)]));
  return v;
}

test('Buffers anywhere, Dates of every epoch, exact floats and 64 levels reach our clients from a Node emitter and a Node server\'s adapter as they reach Node\'s', () =>
  withCleanups(async (cleanups) => {
    const { redis, node, onOurs, onNode } = await mixedFleet(cleanups);
    const emitter = await nodeEmitter(redis, cleanups);
    let deep = 1;
    for (let i = 0; i < 64; i++) deep = [deep];
    // Before 1970 and after, with milliseconds, and the first and last a Date can hold:
    // notepack.io writes them in the 32-, 64- and 96-bit timestamp forms.
    const dates = [-14182940000, -1, 0, 1000, 1234, 2 ** 34 * 1000 + 5, 8.64e15, -8.64e15].map((ms) => new Date(ms));
    const binary = () => [Buffer.from([1, 2, 3]), { nested: Buffer.from([4]), list: [Buffer.from([5, 6]), [Buffer.alloc(0)]] }];
    const args = ['a', ...binary(), ...dates, 123456789.12345679, 0.1 + 0.2, deep];
    const expected = ['a', ...binary(), ...dates.map((d) => d.toISOString()), 123456789.12345679, 0.1 + 0.2, deep];

    const fromEmitter = [nextArgs(onOurs, 'node-values'), nextArgs(onNode, 'node-values')];
    emitter.to('io-default').emit('node-values', ...args);
    const [ours, theirs] = await Promise.all(fromEmitter);
    assert.ok(Buffer.isBuffer(ours[1]) || ours[1] instanceof ArrayBuffer, 'binary, not an object');
    assert.deepEqual(buffers(ours), expected);
    assert.deepEqual(buffers(theirs), expected);

    // Through the Node server's adapter: its own client gets the values without Redis.
    const tagged = (v) =>
      Buffer.isBuffer(v) ? { $buffer: [...v] }
      : v instanceof Date ? { $date: v.getTime() }
      : Array.isArray(v) ? v.map(tagged)
      : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tagged(x)]))
      : v;
    const fromAdapter = [nextArgs(onOurs, 'node-adapter-values'), nextArgs(onNode, 'node-adapter-values')];
    const res = await fetch(`${node.url}/emit`, {
      method: 'POST',
      body: JSON.stringify({ via: 'adapter', destination: 'io-default', topic: 'node-adapter-values', args: tagged(args) }),
    });
    assert.equal(res.status, 204);
    const [oursA, theirsA] = await Promise.all(fromAdapter);
    assert.deepEqual(buffers(theirsA), expected);
    assert.deepEqual(buffers(oursA), expected);
  }));

test('floats and 64 levels our server gets reach Node clients exactly; deeper, or a lone surrogate, is refused with an error', () =>
  withCleanups(async (cleanups) => {
    const { ours, onOurs, onNode } = await mixedFleet(cleanups);
    let deep = 1;
    for (let i = 0; i < 64; i++) deep = [deep];
    // An argument of 64 levels (`deep`), and floats serde_json parses inexactly by default.
    for (const data of [{ f: 123456789.12345679, g: 0.1 + 0.2 }, deep]) {
      const got = [next(onOurs, 'exact'), next(onNode, 'exact')];
      await postSend(ours, { destination: 'io-default', topic: 'exact', data });
      assert.deepEqual(await Promise.all(got), [data, data]);
    }

    // What MessagePack cannot carry to Node members as sent: refused, nothing published. (A
    // lone surrogate in the demo's JSON body is refused by the body's parser already, 400; from
    // a Socket.IO client it gets as far as the fan-out, which refuses it: tests/fanout.rs.)
    for (const [refused, status, why] of [
      [{ s: 'a\ud800' }, 400, /hex escape/],
      [[deep], 502, /argument 0 nests deeper than 64 levels/],
    ]) {
      const res = await fetch(`${ours.url}/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ destination: 'io-default', topic: 'refused', data: refused }),
      });
      assert.equal(res.status, status);
      assert.match(await res.text(), why);
    }
    let refusedSeen = false;
    onOurs.on('refused', () => (refusedSeen = true));
    const after = next(onOurs, 'after');
    await postSend(ours, { destination: 'io-default', topic: 'after', data: 1 });
    await after;
    assert.equal(refusedSeen, false);
  }));
