// Records what `createShardedAdapter` of @socket.io/redis-adapter publishes, operation by
// operation, so that src/fanout/sharded_wire.rs can test its codec against the real bytes.
//
//   node sharded-capture.mjs > captures.jsonl
//
// Two socket.io servers, A and B, share a redis-server of their own (7.0 or later: SPUBLISH
// works on a standalone server too) through the sharded adapter, one real client on B. Each
// line of the output is `{mode, label, server, op, channel, hex}`: `op` is `spublish` (what
// a server published, as the Redis client was handed it) or `ssubscribe` / `sunsubscribe`
// (a channel a server's subscriber took or left). Uids, request ids and socket ids are random,
// so two runs differ in those only.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { io as connect } from 'socket.io-client';
import { createClient } from 'redis';
import { createShardedAdapter } from '@socket.io/redis-adapter';
import { startRedis } from './processes.mjs';

const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');
let label = 'start';

/** A Redis client whose sharded publishes and subscriptions are written out as they go. */
async function tapped(url, mode, server) {
  const client = createClient({ url });
  await client.connect();
  const { sPublish, sSubscribe, sUnsubscribe } = client;
  client.sPublish = (channel, message) => {
    const bytes = Buffer.isBuffer(message) ? message : Buffer.from(message);
    out({ mode, label, server, op: 'spublish', channel, hex: bytes.toString('hex') });
    return sPublish.call(client, channel, message);
  };
  client.sSubscribe = (channel, ...rest) => {
    out({ mode, label, server, op: 'ssubscribe', channel });
    return sSubscribe.call(client, channel, ...rest);
  };
  client.sUnsubscribe = (channel, ...rest) => {
    out({ mode, label, server, op: 'sunsubscribe', channel });
    return sUnsubscribe.call(client, channel, ...rest);
  };
  return client;
}

async function server(url, mode, name) {
  const pub = await tapped(url, mode, name);
  const sub = await tapped(url, mode, name);
  const http = createServer();
  const io = new Server(http, { adapter: createShardedAdapter(pub, sub, { subscriptionMode: mode }) });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    io.close();
    await Promise.all([pub.quit(), sub.quit()]);
  };
  return { io, port: http.address().port, close };
}

/** Until `check()` holds, polling every 10 ms (the adapter has no event for "published"). */
async function until(check, what) {
  const deadline = Date.now() + 5_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function run(url, mode) {
  label = 'start';
  const a = await server(url, mode, 'A');
  const b = await server(url, mode, 'B');
  const seen = [];
  b.io.on('connection', (socket) => {
    socket.data = { user: 'u1', avatar: Buffer.from([1, 2, 3]) };
    socket.join('room1');
  });
  b.io.on('hello', (...args) => seen.push(['hello', ...args]));
  b.io.on('question', (arg, callback) => callback({ answer: arg * 2 }));
  label = 'connect';
  const client = connect(`http://127.0.0.1:${b.port}`, { transports: ['websocket'] });
  client.onAny((event, ...args) => seen.push([event, ...args]));
  client.on('ack-event', (arg, callback) => callback(`ack:${arg}`));
  await new Promise((resolve) => client.once('connect', resolve));
  await until(async () => (await b.io.local.in('room1').fetchSockets()).length === 1, 'the client in room1');

  const step = async (name, action, expect) => {
    label = name;
    const before = seen.length;
    await action();
    if (expect) await until(() => seen.length >= before + expect, name);
  };
  await step('broadcast', () => a.io.emit('ev', 1, 'two', { three: [3] }), 1);
  await step('broadcast-room-binary', () => a.io.to('room1').emit('ev', Buffer.from([0xde, 0xad])), 1);
  await step('broadcast-rooms-except', () => a.io.to(['room1', 'room2']).except('room3').emit('ev', 2.5), 1);
  await step('broadcast-socket-id', () => a.io.to(client.id).emit('ev', null), 1);
  await step('broadcast-volatile-uncompressed', () => a.io.volatile.compress(false).emit('ev', true), 1);
  await step('broadcast-with-ack', () => a.io.to('room1').timeout(2_000).emitWithAck('ack-event', 'x'));
  await step('sockets-join', async () => {
    a.io.in('room1').socketsJoin(['room4', 'room5']);
    await until(async () => (await b.io.local.in('room4').fetchSockets()).length === 1, 'the join');
  });
  await step('sockets-leave', async () => {
    a.io.socketsLeave('room4');
    await until(async () => (await b.io.local.in('room4').fetchSockets()).length === 0, 'the leave');
  });
  await step('fetch-sockets', () => a.io.in('room1').except('room9').fetchSockets());
  await step('server-side-emit', () => a.io.serverSideEmit('hello', 'world', 7), 1);
  await step('server-side-emit-binary', () => a.io.serverSideEmit('hello', Buffer.from('bin')), 1);
  await step('server-side-emit-with-ack', () => a.io.serverSideEmitWithAck('question', 21));
  await step('namespace', () => a.io.of('/admin').emit('ev', 'admin'));
  await step('disconnect-sockets', async () => {
    const gone = new Promise((resolve) => client.once('disconnect', resolve));
    a.io.in('room1').disconnectSockets(true);
    await gone;
  });
  label = 'close';
  client.close();
  await a.close();
  await b.close();
}

const redis = await startRedis();
try {
  for (const mode of ['dynamic', 'dynamic-private', 'static']) await run(redis.url, mode);
} finally {
  await redis.stop();
}
process.exit(0);
