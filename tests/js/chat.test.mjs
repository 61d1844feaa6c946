// The chat example (examples/chat.rs) with the official socket.io-client: real HS256 JWTs, the
// seeds' authenticate and join, `chat` relayed to a room's members and acked; alone, and as two
// instances on one Redis.
//
//   CHAT_BIN=… node --test chat.test.mjs   (scripts/test.sh sets it)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { io } from 'socket.io-client';
import { startRedis, startServer } from './processes.mjs';
import { next, withCleanups } from './helpers.mjs';

const SECRET = 'test-secret';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function chatBin() {
  assert.ok(process.env.CHAT_BIN, 'set CHAT_BIN (scripts/test.sh does)');
  return process.env.CHAT_BIN;
}

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** An HS256 JWT, made here with node:crypto: no JWT library on this side either. */
function jwt(claims, secret = SECRET) {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

async function chatServer(cleanups, env = {}) {
  const server = await startServer(chatBin(), [], { JWT_SECRET: SECRET, ...env });
  cleanups.push(server.stop);
  return server;
}

function connect(server, token, cleanups) {
  const socket = io(server.url, { path: '/io', auth: { token }, forceNew: true, reconnection: false });
  cleanups.push(() => socket.disconnect());
  return socket;
}

/** Connected, authenticated as `sub`, and a member of `rooms` (proved by a chat acked ok). */
async function member(server, sub, rooms, cleanups) {
  const socket = connect(server, jwt({ sub, exp: inAnHour() }), cleanups);
  await next(socket, 'connect');
  const authenticated = next(socket, 'authenticated');
  socket.emit('authenticate');
  await authenticated;
  socket.emit('join', { rooms });
  // Events are handled in order: once this is acked ok, the join is done.
  for (const room of rooms) {
    const ack = await socket.timeout(5_000).emitWithAck('chat', { room, text: `${sub} joined` });
    assert.deepEqual(ack, { ok: true }, `${sub} in ${room}`);
  }
  return socket;
}

/** Every `chat` a socket receives, by text. */
function inbox(socket) {
  const got = [];
  socket.on('chat', (m) => got.push(m));
  return got;
}

async function until(what, check) {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, `not within 5 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('chat reaches every member of the room, the sender included, from the authenticated user', () =>
  withCleanups(async (cleanups) => {
    const server = await chatServer(cleanups);
    const ann = await member(server, 'ann', ['chat-a'], cleanups);
    const bob = await member(server, 'bob', ['chat-a'], cleanups);
    const cid = await member(server, 'cid', ['chat-b'], cleanups);
    const [annGot, bobGot, cidGot] = [inbox(ann), inbox(bob), inbox(cid)];

    const ack = await ann.timeout(5_000).emitWithAck('chat', { room: 'chat-a', text: 'hello', from: 'mallory' });
    assert.deepEqual(ack, { ok: true });
    await until('both members got it', () => annGot.some((m) => m.text === 'hello') && bobGot.some((m) => m.text === 'hello'));
    for (const got of [annGot, bobGot]) {
      const message = got.find((m) => m.text === 'hello');
      assert.equal(message.from, 'ann', 'the authenticated user, not the payload');
      assert.equal(message.room, 'chat-a');
      assert.match(message.time, ISO);
      assert.deepEqual(Object.keys(message).sort(), ['from', 'room', 'text', 'time']);
    }
    // Not a member of chat-a: acked with an error and sent to nobody; cid's own room as a barrier.
    const refused = await cid.timeout(5_000).emitWithAck('chat', { room: 'chat-a', text: 'intruder' });
    assert.equal(refused.ok, false);
    assert.match(refused.error, /not a member/);
    await cid.timeout(5_000).emitWithAck('chat', { room: 'chat-b', text: 'barrier' });
    await ann.timeout(5_000).emitWithAck('chat', { room: 'chat-a', text: 'barrier' });
    await until('the barriers arrived', () => bobGot.some((m) => m.text === 'barrier') && cidGot.some((m) => m.text === 'barrier'));
    assert.ok(![...annGot, ...bobGot].some((m) => m.text === 'intruder'));
    assert.ok(!cidGot.some((m) => m.room === 'chat-a'), 'chat-a is not cid\'s');
    assert.equal(annGot.filter((m) => m.text === 'hello').length, 1, 'once each');
  }));

test('malformed chats, and rooms that are not chat-*, are refused and harm nobody', () =>
  withCleanups(async (cleanups) => {
    const server = await chatServer(cleanups);
    const ann = await member(server, 'ann', ['chat-a'], cleanups);
    const got = inbox(ann);
    for (const bad of [[], ['junk'], [{ room: 'chat-a' }], [{ room: 5, text: 'x' }], [{ room: 'chat-a', text: 7 }], [null], [{ room: 'chat-a', text: 'x' }, 'extra']]) {
      const ack = await ann.timeout(5_000).emitWithAck('chat', ...bad);
      assert.equal(ack.ok, false, JSON.stringify(bad));
      assert.equal(typeof ack.error, 'string');
    }
    // A room that is not chat-* cannot be joined, so nothing can be said there.
    ann.emit('join', { rooms: ['general', 'chat-b'] });
    assert.deepEqual(await ann.timeout(5_000).emitWithAck('chat', { room: 'chat-b', text: 'in b' }), { ok: true });
    const general = await ann.timeout(5_000).emitWithAck('chat', { room: 'general', text: 'in general' });
    assert.equal(general.ok, false);
    // The rooms every socket is in (the default rooms, its own id) are not chat rooms.
    for (const room of ['io-default', 'io-notification', ann.id]) {
      const ack = await ann.timeout(5_000).emitWithAck('chat', { room, text: 'to everyone' });
      assert.equal(ack.ok, false, room);
      assert.match(ack.error, /not a chat room/);
    }
    await until('in b arrived', () => got.some((m) => m.text === 'in b'));
    assert.ok(!got.some((m) => ['in general', 'x', 'to everyone'].includes(m.text)));
    assert.ok(ann.connected, 'still connected');
  }));

test('expired, badly signed, unsigned and missing tokens get unauthenticated, then a disconnect', () =>
  withCleanups(async (cleanups) => {
    const server = await chatServer(cleanups);
    const past = Math.floor(Date.now() / 1000) - 60;
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'eve', exp: inAnHour() })}.`;
    for (const token of [jwt({ sub: 'eve', exp: past }), jwt({ sub: 'eve', exp: inAnHour() }, 'wrong-secret'), unsigned, 'junk', undefined, jwt({ sub: '', exp: inAnHour() })]) {
      const socket = connect(server, token, cleanups);
      await next(socket, 'connect');
      const refused = next(socket, 'unauthenticated');
      const gone = next(socket, 'disconnect');
      socket.emit('authenticate');
      const { message } = await refused;
      assert.equal(message, 'Invalid token to authenticate! Please login again!', String(token));
      assert.equal(await gone, 'io server disconnect');
    }
  }));

test('two instances on one Redis carry each other\'s chat', () =>
  withCleanups(async (cleanups) => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    const one = await chatServer(cleanups, { REDIS_URL: redis.url });
    const two = await chatServer(cleanups, { REDIS_URL: redis.url });
    const ann = await member(one, 'ann', ['chat-x'], cleanups);
    const bob = await member(two, 'bob', ['chat-x'], cleanups);
    const [annGot, bobGot] = [inbox(ann), inbox(bob)];
    assert.deepEqual(await ann.timeout(5_000).emitWithAck('chat', { room: 'chat-x', text: 'from one' }), { ok: true });
    assert.deepEqual(await bob.timeout(5_000).emitWithAck('chat', { room: 'chat-x', text: 'from two' }), { ok: true });
    await until('both got both', () => ['from one', 'from two'].every((t) => annGot.some((m) => m.text === t) && bobGot.some((m) => m.text === t)));
    assert.equal(bobGot.find((m) => m.text === 'from one').from, 'ann');
    assert.equal(annGot.find((m) => m.text === 'from two').from, 'bob');
    for (const got of [annGot, bobGot]) {
      assert.equal(got.filter((m) => m.text === 'from one').length, 1, 'once, not once per instance');
    }
  }));

test('a Node server\'s fetchSockets() sees the authenticated user as the socket\'s data', () =>
  withCleanups(async (cleanups) => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    const chat = await chatServer(cleanups, { REDIS_URL: redis.url });
    const node = await startServer(process.execPath, ['seeds-server.mjs'], { REDIS_URL: redis.url });
    cleanups.push(node.stop);
    const ann = await member(chat, 'ann', ['chat-x'], cleanups);
    const sockets = await (await fetch(`${node.url}/sockets`)).json();
    const mine = sockets.find((s) => s.id === ann.id);
    assert.ok(mine, JSON.stringify(sockets));
    assert.deepEqual(mine.data, { sub: 'ann' });
    assert.ok(mine.rooms.includes('chat-x'));
  }));
