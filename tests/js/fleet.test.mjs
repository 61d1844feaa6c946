// A mixed fleet on one Redis: our `fleet` example and Node socket.io servers with
// @socket.io/redis-adapter (fleet-node-server.mjs), driven alike over HTTP, with clients of
// the official socket.io-client on each. Every operation that crosses the fleet, both ways.
//
//   FLEET_BIN=… EMITTER_BIN=… node --test fleet.test.mjs   (scripts/test.sh sets both)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createClient } from 'redis';
import { Emitter } from '@socket.io/redis-emitter';
import { startRedis, startServer } from './processes.mjs';
import { client, fourClients, eventually, froms, get, next, post, shown, withCleanups } from './helpers.mjs';

function fleetBin() {
  const { FLEET_BIN } = process.env;
  assert.ok(FLEET_BIN, 'set FLEET_BIN (scripts/test.sh does)');
  return FLEET_BIN;
}

function emitterBin() {
  const { EMITTER_BIN } = process.env;
  assert.ok(EMITTER_BIN, 'set EMITTER_BIN (scripts/test.sh does)');
  return EMITTER_BIN;
}

async function ownRedis(cleanups) {
  const redis = await startRedis();
  cleanups.push(redis.stop);
  return redis;
}

async function rustMember(redis, cleanups) {
  const server = await startServer(fleetBin(), [], { REDIS_URL: redis.url });
  cleanups.push(server.stop);
  return server;
}

async function nodeMember(redis, cleanups) {
  const server = await startServer(process.execPath, ['fleet-node-server.mjs'], { REDIS_URL: redis.url });
  cleanups.push(server.stop);
  return server;
}

/** Resolves once the fleet has `n` servers (each has subscribed), as Redis counts them. */
async function fleetOf(rust, n) {
  await eventually(async () => (await get(rust, '/server-count')).body === n, `${n} servers`);
}


/** One Redis, a Rust member and a Node member, two clients on each. */
async function mixedFleet(cleanups) {
  const redis = await ownRedis(cleanups);
  const rust = await rustMember(redis, cleanups);
  const node = await nodeMember(redis, cleanups);
  await fleetOf(rust, 2);
  const clients = await fourClients(rust, node, cleanups);
  return { redis, rust, node, clients };
}

test("a Node server's io.timeout(ms).emit(.., cb) reaches our clients, and its callback gets their acks with Node clients', no timeout", () =>
  withCleanups(async (cleanups) => {
    const { rust, node } = await mixedFleet(cleanups);
    const everyone = await post(node, '/ack-broadcast', { event: 'question', args: ['all?'], timeout_ms: 4_000 });
    assert.equal(everyone.body.error, null);
    assert.deepEqual(froms(everyone.body.responses), ['ann', 'bob', 'carl', 'dora']);
    assert.ok(everyone.body.responses.every((r) => r.got === 'all?'));
    const lobby = await post(node, '/ack-broadcast', { room: 'lobby', event: 'question', args: ['lobby?'], timeout_ms: 4_000 });
    assert.equal(lobby.body.error, null);
    assert.deepEqual(froms(lobby.body.responses), ['ann', 'bob']);
    void rust;
  }));

test("our acknowledged broadcast (emit_with_ack through the RedisAdapter) collects Node and Rust clients' acks", () =>
  withCleanups(async (cleanups) => {
    const { rust } = await mixedFleet(cleanups);
    const started = Date.now();
    const everyone = await post(rust, '/ack-broadcast', { event: 'question', args: [{ n: 1 }], timeout_ms: 4_000 });
    assert.equal(everyone.status, 200);
    assert.equal(everyone.body.timeouts, 0);
    assert.deepEqual(froms(everyone.body.responses), ['ann', 'bob', 'carl', 'dora']);
    assert.deepEqual(everyone.body.responses[0].got, { n: 1 });
    assert.ok(Date.now() - started < 3_000, 'completes once every ack is in, not at the timeout');
    const lobby = await post(rust, '/ack-broadcast', { room: 'lobby', event: 'question', args: [2], timeout_ms: 4_000 });
    assert.deepEqual(froms(lobby.body.responses), ['ann', 'bob']);
    assert.equal(lobby.body.timeouts, 0);
  }));

test('a client that never acknowledges: both sides end at the timeout with the acks that came', () =>
  withCleanups(async (cleanups) => {
    const { rust, node } = await mixedFleet(cleanups);
    await client(node, cleanups, { name: 'mute', room: 'lobby', silent: true });
    await client(rust, cleanups, { name: 'mime', room: 'lobby', silent: true });
    const ours = await post(rust, '/ack-broadcast', { room: 'lobby', event: 'question', args: [3], timeout_ms: 800 });
    assert.deepEqual(froms(ours.body.responses), ['ann', 'bob']);
    assert.equal(ours.body.timeouts, 2, 'the two silent clients, ours and the Node one');
    const theirs = await post(node, '/ack-broadcast', { room: 'lobby', event: 'question', args: [4], timeout_ms: 800 });
    assert.match(theirs.body.error, /timed out/);
    assert.deepEqual(froms(theirs.body.responses), ['ann', 'bob']);
  }));

test('serverSideEmit both ways, with and without an answer', () =>
  withCleanups(async (cleanups) => {
    const { rust, node } = await mixedFleet(cleanups);
    const fromNode = await post(node, '/server-side-emit', { event: 'whoami', args: [{ asker: 'node' }], ack: true });
    assert.equal(fromNode.status, 200, JSON.stringify(fromNode.body));
    assert.deepEqual(fromNode.body.responses, [{ server: 'rust', port: rust.port, arg: { asker: 'node' } }]);
    const fromRust = await post(rust, '/server-side-emit', { event: 'whoami', args: [{ asker: 'rust' }], ack: true });
    assert.equal(fromRust.status, 200, JSON.stringify(fromRust.body));
    assert.deepEqual(fromRust.body.responses, [{ server: 'node', port: node.port, arg: { asker: 'rust' } }]);

    assert.equal((await post(rust, '/server-side-emit', { event: 'whoami', args: ['no answer, rust'] })).status, 204);
    assert.equal((await post(node, '/server-side-emit', { event: 'whoami', args: ['no answer, node'] })).status, 204);
    await eventually(async () => (await get(node, '/server-side-log')).body.includes('no answer, rust'), 'Node got ours');
    await eventually(async () => (await get(rust, '/server-side-log')).body.includes('no answer, node'), 'we got Node\'s');
    // Neither server hears its own.
    assert.ok(!(await get(rust, '/server-side-log')).body.includes('no answer, rust'));
    assert.ok(!(await get(node, '/server-side-log')).body.includes('no answer, node'));
  }));

test('fetch_sockets, rooms and remote joins, leaves and disconnects from Rust see and reach the whole fleet, with data', () =>
  withCleanups(async (cleanups) => {
    const { rust, node, clients } = await mixedFleet(cleanups);
    const all = (await get(rust, '/fetch-sockets')).body;
    assert.deepEqual(all.map((s) => s.data.name).sort(), ['ann', 'bob', 'carl', 'dora']);
    const bob = all.find((s) => s.data.name === 'bob');
    assert.equal(bob.id, clients.bob.id);
    assert.ok(bob.rooms.includes('lobby'));
    assert.equal(bob.handshake.auth.name, 'bob');
    const lobby = (await get(rust, '/fetch-sockets?room=lobby')).body;
    assert.deepEqual(lobby.map((s) => s.id).sort(), [clients.ann.id, clients.bob.id].sort());

    const ids = (await get(rust, '/socket-ids?room=lobby')).body;
    assert.deepEqual(ids.sort(), [clients.ann.id, clients.bob.id].sort());
    for (const path of ['/rooms', '/io-rooms']) {
      const rooms = (await get(rust, path)).body;
      for (const room of ['lobby', 'node-only', clients.ann.id, clients.dora.id]) {
        assert.ok(rooms.includes(room), `${path} lacks ${room}: ${rooms}`);
      }
    }
    // A Node server's fetchSockets sees our sockets with their identity.
    const seenByNode = (await get(node, '/fetch-sockets?room=lobby')).body;
    assert.deepEqual(seenByNode.map((s) => s.data).sort((a, b) => a.name.localeCompare(b.name)), [{ name: 'ann' }, { name: 'bob' }]);

    assert.equal((await post(rust, '/join', { room: 'lobby', rooms: ['vip'] })).status, 204);
    const vip = async (server) => (await get(server, '/fetch-sockets?room=vip')).body.map((s) => s.data.name).sort();
    // Applied here at once; on the Node server once the request has crossed.
    assert.ok((await vip(rust)).includes('ann'));
    await eventually(async () => (await vip(node)).join() === 'ann,bob', 'vip on every server');
    assert.equal((await post(rust, '/leave', { room: 'vip', rooms: ['vip'] })).status, 204);
    await eventually(async () => (await vip(node)).length === 0, 'vip left everywhere');

    const gone = (socket) => new Promise((resolve) => socket.once('disconnect', resolve));
    const bobGone = gone(clients.bob);
    const annGone = gone(clients.ann);
    assert.equal((await post(rust, '/disconnect', { room: 'lobby' })).status, 204);
    await Promise.all([bobGone, annGone]);
    const left = (await get(rust, '/fetch-sockets')).body.map((s) => s.data.name).sort();
    assert.deepEqual(left, ['carl', 'dora']);
  }));

test('a member that stops answering in the middle does not hang the caller past its timeout', () =>
  withCleanups(async (cleanups) => {
    const { redis, rust } = await mixedFleet(cleanups);
    const frozen = await nodeMember(redis, cleanups);
    await fleetOf(rust, 3);
    frozen.signal('SIGSTOP');
    cleanups.push(async () => frozen.signal('SIGCONT'));
    for (const [what, call] of [
      ['fetch', () => get(rust, '/fetch-sockets?timeout_ms=600')],
      ['server-side emit', () => post(rust, '/server-side-emit', { event: 'whoami', args: [1], ack: true, timeout_ms: 600 })],
    ]) {
      const started = Date.now();
      const res = await call();
      const took = Date.now() - started;
      assert.equal(res.status, 504, `${what}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error, /only 1 of 2 servers answered/);
      assert.ok(took >= 500 && took < 3_000, `${what} took ${took} ms`);
    }
    const answered = await post(rust, '/server-side-emit', { event: 'whoami', args: [2], ack: true, timeout_ms: 600 });
    assert.deepEqual(answered.body.responses.map((r) => r.server), ['node'], 'the answer that came is kept');
    const started = Date.now();
    const acks = await post(rust, '/ack-broadcast', { event: 'question', args: [5], timeout_ms: 600 });
    assert.ok(Date.now() - started < 3_000);
    assert.deepEqual(froms(acks.body.responses), ['ann', 'bob', 'carl', 'dora']);
  }));

test('two of our servers and a Node one: each of ours answers the other as a Node member would', () =>
  withCleanups(async (cleanups) => {
    const { redis, rust, clients } = await mixedFleet(cleanups);
    const second = await rustMember(redis, cleanups);
    await fleetOf(rust, 3);
    const eve = await client(second, cleanups, { name: 'eve', room: 'lobby' });
    const acks = await post(rust, '/ack-broadcast', { room: 'lobby', event: 'question', args: [6], timeout_ms: 4_000 });
    assert.deepEqual(froms(acks.body.responses), ['ann', 'bob', 'eve']);
    assert.equal(acks.body.timeouts, 0);
    const lobby = (await get(rust, '/fetch-sockets?room=lobby')).body;
    assert.deepEqual(lobby.map((s) => s.id).sort(), [clients.ann.id, clients.bob.id, eve.id].sort());
    const answers = await post(rust, '/server-side-emit', { event: 'whoami', args: ['both?'], ack: true });
    assert.deepEqual(answers.body.responses.map((r) => r.server).sort(), ['node', 'rust']);
    assert.equal(answers.body.responses.find((r) => r.server === 'rust').port, second.port);
  }));

test('every namespace fans out, a dynamic one\'s instances included, each through the layer stack', () =>
  withCleanups(async (cleanups) => {
    const { redis, rust, node, clients } = await mixedFleet(cleanups);
    // The layers apply to /admin too: no name, no entry.
    const nameless = io(`${rust.url}/admin`, { path: '/io', auth: {}, forceNew: true, reconnection: false });
    cleanups.push(() => nameless.disconnect());
    await next(nameless, 'connect_error');

    const admins = {
      ann: await client(rust, cleanups, { name: 'admin-ann', room: 'lobby', nsp: '/admin' }),
      bob: await client(node, cleanups, { name: 'admin-bob', room: 'lobby', nsp: '/admin' }),
    };
    const tenants = {
      ann: await client(rust, cleanups, { name: 'tenant-ann', nsp: '/tenant/7' }),
      bob: await client(node, cleanups, { name: 'tenant-bob', nsp: '/tenant/7' }),
      other: await client(node, cleanups, { name: 'tenant-other', nsp: '/tenant/8' }),
    };
    // Our dynamic instance subscribes as its first socket comes; wait until Redis counts it.
    const servers = async (nsp) => (await get(rust, `/fetch-sockets?namespace=${encodeURIComponent(nsp)}`)).body;
    await eventually(async () => (await servers('/tenant/7')).length === 2, 'both /tenant/7 sockets fetched');

    for (const [asker, other] of [[node, rust], [rust, node]]) {
      const acks = await post(asker, '/ack-broadcast', { namespace: '/admin', room: 'lobby', event: 'question', args: ['admin?'], timeout_ms: 4_000 });
      assert.deepEqual(froms(acks.body.responses), ['admin-ann', 'admin-bob'], JSON.stringify(acks.body));
      const tenant = await post(asker, '/ack-broadcast', { namespace: '/tenant/7', event: 'question', args: ['t7?'], timeout_ms: 4_000 });
      assert.deepEqual(froms(tenant.body.responses), ['tenant-ann', 'tenant-bob']);
      void other;
    }
    // Plain broadcasts on each namespace's own channels.
    const news = next(admins.ann, 'news');
    assert.equal((await post(node, '/emit', { namespace: '/admin', event: 'news', args: ['from node'] })).status, 204);
    assert.equal(await news, 'from node');
    const t7 = next(tenants.bob, 'news');
    assert.equal((await post(rust, '/emit', { namespace: '/tenant/7', event: 'news', args: ['from rust'] })).status, 204);
    assert.equal(await t7, 'from rust');

    const admin = (await servers('/admin')).map((s) => s.data.name).sort();
    assert.deepEqual(admin, ['admin-ann', 'admin-bob']);
    const main = (await servers('/')).map((s) => s.data.name).sort();
    assert.deepEqual(main, ['ann', 'bob', 'carl', 'dora']);
    assert.deepEqual((await servers('/tenant/8')).map((s) => s.data.name), ['tenant-other']);
    // The emitters address namespaces too: Node's `emitter.of(nsp)` reaches ours, and ours
    // (`Emitter::of`, the emitter example's `--of`) reaches Node's.
    const redisClient = createClient({ url: redis.url });
    await redisClient.connect();
    cleanups.push(() => redisClient.quit());
    const fromNodeEmitter = next(admins.ann, 'memo');
    new Emitter(redisClient).of('/admin').to('lobby').emit('memo', 'from the Node emitter');
    assert.equal(await fromNodeEmitter, 'from the Node emitter');
    const fromOurEmitter = next(tenants.bob, 'memo');
    await promisify(execFile)(emitterBin(), ['--redis', redis.url, '--of', '/tenant/7', 'memo', '"from our emitter"']);
    assert.equal(await fromOurEmitter, 'from our emitter');

    // Remote joins in a namespace reach only its sockets.
    assert.equal((await post(rust, '/join', { namespace: '/admin', rooms: ['ops'] })).status, 204);
    await eventually(async () => (await get(node, '/fetch-sockets?namespace=/admin&room=ops')).body.length === 2, 'ops in /admin');
    assert.deepEqual((await get(node, '/fetch-sockets?room=ops')).body, []);
    void clients;
  }));

test('binary data crosses every fleet operation: acknowledged broadcasts (arguments and acks) and server-side emits, both ways', () =>
  withCleanups(async (cleanups) => {
    const { rust, node } = await mixedFleet(cleanups);
    const bytes = { $hex: '00ff10' };
    for (const asker of [node, rust]) {
      const acks = await post(asker, '/ack-broadcast', { room: 'lobby', event: 'question', args: [{ nested: [bytes] }], timeout_ms: 4_000 });
      assert.deepEqual(froms(acks.body.responses), ['ann', 'bob'], JSON.stringify(acks.body));
      for (const r of acks.body.responses) assert.deepEqual(r.got, { nested: [bytes] }, `${r.from} got the bytes as binary`);
      const reversed = await post(asker, '/ack-broadcast', { event: 'reverse', args: [bytes], timeout_ms: 4_000 });
      assert.deepEqual(reversed.body.responses, Array(4).fill({ $hex: '10ff00' }), 'binary acks, from Node and Rust clients');
    }
    const toNode = await post(rust, '/server-side-emit', { event: 'whoami', args: [{ blob: bytes }], ack: true });
    assert.equal(toNode.status, 200);
    // Ours travels as MessagePack, so Node's listener gets a Buffer; its answer is JSON
    // (the JavaScript adapter's), where a Buffer is what JSON.stringify writes.
    assert.deepEqual((await get(node, '/server-side-log')).body.at(-1), { blob: bytes });
    assert.deepEqual(toNode.body.responses[0].arg, { blob: { type: 'Buffer', data: [0, 255, 16] } });
    const toRust = await post(node, '/server-side-emit', { event: 'whoami', args: [{ blob: bytes }], ack: true });
    // Node writes a server-side emit as JSON: a Buffer travels as JSON.stringify writes it.
    assert.deepEqual(toRust.body.responses[0].arg, { blob: { type: 'Buffer', data: [0, 255, 16] } });
  }));
