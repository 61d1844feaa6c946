// A sharded fleet: our `fleet` example and the demo with REDIS_SHARDED, beside Node socket.io
// servers with createShardedAdapter of @socket.io/redis-adapter (fleet-node-server.mjs), on
// a Redis Cluster of three masters the test starts (sharded pub/sub: SSUBSCRIBE / SPUBLISH,
// each channel on the node owning its slot). Every operation, both ways, in the adapter's
// default subscription mode (`dynamic`: a channel per room) and in `static`.
//
//   FLEET_BIN=… DEMO_BIN=… node --test sharded.test.mjs   (scripts/test.sh sets both)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { io } from 'socket.io-client';
import { startRedisCluster, startServer } from './processes.mjs';
import { client, fourClients, eventually, froms, get, next, post, withCleanups } from './helpers.mjs';

function bin(name) {
  const path = process.env[name];
  assert.ok(path, `set ${name} (scripts/test.sh does)`);
  return path;
}

async function cluster(cleanups) {
  const redis = await startRedisCluster();
  cleanups.push(redis.stop);
  return redis;
}

async function rustMember(redis, cleanups, mode) {
  const server = await startServer(bin('FLEET_BIN'), [], { REDIS_URL: redis.url, REDIS_SHARDED: mode });
  cleanups.push(server.stop);
  return server;
}

async function nodeMember(redis, cleanups, mode) {
  const server = await startServer(process.execPath, ['fleet-node-server.mjs'], {
    REDIS_URL: redis.url,
    REDIS_SHARDED: mode,
    REDIS_CLUSTER: '1',
  });
  cleanups.push(server.stop);
  return server;
}

/** How many connections subscribe to the sharded `channel`, on every node together. */
async function shardSubscribers(redis, channel) {
  let total = 0;
  for (const port of redis.ports) {
    const { stdout } = await promisify(execFile)('redis-cli', ['-p', String(port), 'PUBSUB', 'SHARDNUMSUB', channel]);
    total += Number(stdout.trim().split('\n')[1]);
  }
  return total;
}

/** Resolves once `n` servers subscribe to the channel of `room` (each holds a socket in it). */
async function roomHeldBy(redis, room, n) {
  await eventually(async () => (await shardSubscribers(redis, `socket.io#/#${room}#`)) === n, `${n} servers on ${room}'s channel`);
}

/** A cluster, a Rust member and a Node member in `mode`, two clients on each. */
async function shardedFleet(cleanups, mode) {
  const redis = await cluster(cleanups);
  const rust = await rustMember(redis, cleanups, mode);
  const node = await nodeMember(redis, cleanups, mode);
  await eventually(async () => (await get(rust, '/server-count')).body === 2, '2 servers');
  const clients = await fourClients(rust, node, cleanups);
  return { redis, rust, node, clients };
}

for (const mode of ['dynamic', 'static']) {
  test(`${mode}: broadcasts to everyone and to a room, plain and acknowledged, cross both ways`, () =>
    withCleanups(async (cleanups) => {
      const { redis, rust, node, clients } = await shardedFleet(cleanups, mode);
      // In the dynamic mode a one-room broadcast travels on the room's own channel, which
      // each server subscribes once it holds a socket in the room.
      if (mode === 'dynamic') await roomHeldBy(redis, 'lobby', 2);
      else assert.equal(await shardSubscribers(redis, 'socket.io#/#lobby#'), 0);

      const annGets = next(clients.ann, 'news');
      const bobGets = next(clients.bob, 'news');
      const doraGetsNothing = new Promise((resolve, reject) => {
        clients.dora.once('news', (got) => reject(new Error(`dora got ${JSON.stringify(got)}`)));
        setTimeout(resolve, 300);
      });
      assert.equal((await post(node, '/emit', { room: 'lobby', event: 'news', args: [{ from: 'node' }] })).status, 204);
      assert.deepEqual(await annGets, { from: 'node' });
      assert.deepEqual(await bobGets, { from: 'node' });
      const fromRust = [next(clients.ann, 'news'), next(clients.bob, 'news')];
      assert.equal((await post(rust, '/emit', { room: 'lobby', event: 'news', args: [{ from: 'rust' }] })).status, 204);
      assert.deepEqual(await Promise.all(fromRust), [{ from: 'rust' }, { from: 'rust' }]);
      await doraGetsNothing;

      const everyone = [next(clients.carl, 'all'), next(clients.dora, 'all')];
      assert.equal((await post(node, '/emit', { event: 'all', args: [1] })).status, 204);
      assert.deepEqual(await Promise.all(everyone), [1, 1]);
      const everyoneAgain = [next(clients.carl, 'all'), next(clients.dora, 'all')];
      assert.equal((await post(rust, '/emit', { event: 'all', args: [2] })).status, 204);
      assert.deepEqual(await Promise.all(everyoneAgain), [2, 2]);

      // Acknowledged: the Node server's callback gets ours with its own, and ours Node's.
      const theirs = await post(node, '/ack-broadcast', { event: 'question', args: ['all?'], timeout_ms: 4_000 });
      assert.equal(theirs.body.error, null);
      assert.deepEqual(froms(theirs.body.responses), ['ann', 'bob', 'carl', 'dora']);
      const started = Date.now();
      const ours = await post(rust, '/ack-broadcast', { room: 'lobby', event: 'question', args: [{ $hex: '00ff' }], timeout_ms: 4_000 });
      assert.equal(ours.body.timeouts, 0);
      assert.deepEqual(froms(ours.body.responses), ['ann', 'bob']);
      assert.deepEqual(ours.body.responses[0].got, { $hex: '00ff' });
      assert.ok(Date.now() - started < 3_000, 'completes once every ack is in, not at the timeout');
    }));
}

test('dynamic: fetches, socket ids, rooms, server counts, remote joins and disconnects, server-side emits, both ways', () =>
  withCleanups(async (cleanups) => {
    const { redis, rust, node, clients } = await shardedFleet(cleanups, 'dynamic');
    assert.equal((await get(rust, '/server-count')).body, 2);
    const all = (await get(rust, '/fetch-sockets')).body;
    assert.deepEqual(all.map((s) => s.data.name).sort(), ['ann', 'bob', 'carl', 'dora']);
    const bob = all.find((s) => s.data.name === 'bob');
    assert.equal(bob.id, clients.bob.id);
    assert.equal(bob.handshake.auth.name, 'bob');
    assert.deepEqual((await get(rust, '/socket-ids?room=lobby')).body.sort(), [clients.ann.id, clients.bob.id].sort());
    const rooms = (await get(rust, '/rooms')).body;
    for (const room of ['lobby', 'node-only', clients.ann.id, clients.dora.id]) assert.ok(rooms.includes(room), `${room} in ${rooms}`);
    const seenByNode = (await get(node, '/fetch-sockets?room=lobby')).body;
    assert.deepEqual(seenByNode.map((s) => s.data.name).sort(), ['ann', 'bob']);

    // A Node server's socketsJoin reaches our sockets, whose new room gets its channel here:
    // a Node broadcast to it (on that channel) reaches them.
    assert.equal((await post(node, '/join', { room: 'lobby', rooms: ['vip'] })).status, 204);
    await roomHeldBy(redis, 'vip', 2);
    const annInVip = next(clients.ann, 'vip-news');
    await post(node, '/emit', { room: 'vip', event: 'vip-news', args: ['hi'] });
    assert.equal(await annInVip, 'hi');
    // Ours reaches theirs; leaving empties the room, and its channel is given up.
    assert.equal((await post(rust, '/leave', { room: 'vip', rooms: ['vip'] })).status, 204);
    await roomHeldBy(redis, 'vip', 0);
    assert.equal((await post(rust, '/join', { room: 'node-only', rooms: ['joined-by-rust'] })).status, 204);
    await eventually(async () => (await get(node, '/fetch-sockets?room=joined-by-rust')).body.length === 1, 'dora joined');

    const fromNode = await post(node, '/server-side-emit', { event: 'whoami', args: [{ asker: 'node' }], ack: true });
    assert.equal(fromNode.status, 200, JSON.stringify(fromNode.body));
    assert.deepEqual(fromNode.body.responses, [{ server: 'rust', port: rust.port, arg: { asker: 'node' } }]);
    const fromRust = await post(rust, '/server-side-emit', { event: 'whoami', args: [{ asker: 'rust' }], ack: true });
    assert.equal(fromRust.status, 200, JSON.stringify(fromRust.body));
    assert.deepEqual(fromRust.body.responses, [{ server: 'node', port: node.port, arg: { asker: 'rust' } }]);

    const gone = (socket) => new Promise((resolve) => socket.once('disconnect', resolve));
    const both = [gone(clients.ann), gone(clients.bob)];
    assert.equal((await post(rust, '/disconnect', { room: 'lobby' })).status, 204);
    await Promise.all(both);
    assert.deepEqual((await get(node, '/fetch-sockets')).body.map((s) => s.data.name).sort(), ['carl', 'dora']);
  }));

test("the demo with REDIS_SHARDED=1: its sends reach Node's clients, and a room joined there gets them and Node's", () =>
  withCleanups(async (cleanups) => {
    const redis = await cluster(cleanups);
    const demo = await startServer(bin('DEMO_BIN'), [], { REDIS_URL: redis.url, REDIS_SHARDED: '1', AUTH_AT: 'handshake' });
    cleanups.push(demo.stop);
    const node = await nodeMember(redis, cleanups, 'dynamic');
    const bob = await client(node, cleanups, { name: 'bob', room: 'public-news' });
    const ours = io(demo.url, { path: '/io', auth: { token: 'demo-token' }, forceNew: true, reconnection: false });
    cleanups.push(() => ours.disconnect());
    await next(ours, 'connect');
    const send = (body) =>
      fetch(`${demo.url}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const bobGets = next(bob, 'headline');
    assert.equal((await send({ destination: 'public-news', topic: 'headline', data: { n: 1 } })).status, 204);
    assert.deepEqual(await bobGets, { n: 1 });

    // Joined (once the join has taken effect, the demo's send reaches it; before its sweep
    // has subscribed the room's channel, on the main channel: tests/sharded_fanout.rs).
    ours.emit('join', { rooms: ['public-news'] });
    const got = await eventually(async () => {
      const arrived = next(ours, 'headline', 200).catch(() => null);
      await send({ destination: 'public-news', topic: 'headline', data: { n: 2 } });
      return arrived;
    }, 'the join to take effect');
    assert.deepEqual(got, { n: 2 });
    await roomHeldBy(redis, 'public-news', 2);
    const oursGets = next(ours, 'headline');
    await post(node, '/emit', { room: 'public-news', event: 'headline', args: [{ n: 3 }] });
    assert.deepEqual(await oursGets, { n: 3 });
  }));
