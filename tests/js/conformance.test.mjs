// The protocol test suite's reference server (examples/protocol_conformance.rs), driven by the
// OFFICIAL socket.io-client v4 over each transport: every argument and every attachment of
// an event reaches the stack and comes back as sent, through an emit and through an ack.
// The raw-frame side of the same suite is tests/protocol_conformance.rs.
//
// Run (Node >= 20), after building the example:
//   CONFORMANCE_BIN=../../target/debug/examples/protocol_conformance node --test conformance.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer } from './processes.mjs';

const BIN = process.env.CONFORMANCE_BIN ?? '../../target/debug/examples/protocol_conformance';
const server = await startServer(BIN);
after(() => server.stop());

const TRANSPORTS = {
  polling: { transports: ['polling'] },
  websocket: { transports: ['websocket'] },
  'polling then websocket': { transports: ['polling', 'websocket'] },
};

function connect(opts = {}, nsp = '/') {
  const socket = io(server.url + nsp, { path: '/socket.io', forceNew: true, reconnection: false, ...opts });
  return socket;
}

function once(socket, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/** Connected, its `auth` event read: what the suite's reference server sends at connect. */
async function ready(opts, nsp) {
  const socket = connect(opts, nsp);
  const [auth] = await once(socket, 'auth');
  return { socket, auth };
}

// Binary data wherever it sits: top level, nested in objects and arrays, mixed with text.
const ARGS = () => [
  1,
  '2',
  { 3: [true] },
  Buffer.from([1, 2, 3]),
  { file: Buffer.from([0, 255]), list: [null, { deep: Buffer.from('x') }] },
  [Buffer.alloc(0), 'text'],
];

function assertArgs(got) {
  assert.equal(got.length, 6);
  assert.deepEqual(got.slice(0, 3), [1, '2', { 3: [true] }]);
  assert.deepEqual(Buffer.from(got[3]), Buffer.from([1, 2, 3]));
  assert.deepEqual(Buffer.from(got[4].file), Buffer.from([0, 255]));
  assert.equal(got[4].list[0], null);
  assert.deepEqual(Buffer.from(got[4].list[1].deep), Buffer.from('x'));
  assert.deepEqual(Buffer.from(got[5][0]), Buffer.alloc(0));
  assert.equal(got[5][1], 'text');
}

for (const [name, opts] of Object.entries(TRANSPORTS)) {
  test(`${name}: at connect, auth is the handshake's auth, {} when there is none`, async () => {
    const plain = await ready(opts);
    assert.deepEqual(plain.auth, {});
    const withAuth = await ready({ ...opts, auth: { token: '123' } });
    assert.deepEqual(withAuth.auth, { token: '123' });
    const custom = await ready({ ...opts, auth: { token: 'abc' } }, '/custom');
    assert.deepEqual(custom.auth, { token: 'abc' });
    for (const s of [plain, withAuth, custom]) s.socket.close();
  });

  test(`${name}: message comes back as message-back with every argument, binary included`, async () => {
    const { socket } = await ready(opts);
    const back = once(socket, 'message-back');
    socket.emit('message', ...ARGS());
    assertArgs(await back);
    socket.close();
  });

  test(`${name}: message-with-ack is acknowledged with every argument, binary included`, async () => {
    const { socket } = await ready(opts);
    const acked = new Promise((resolve) => socket.emit('message-with-ack', ...ARGS(), (...a) => resolve(a)));
    assertArgs(await acked);
    // Text only, as the suite's case.
    const text = await new Promise((resolve) => socket.emit('message-with-ack', 1, '2', { 3: [false] }, (...a) => resolve(a)));
    assert.deepEqual(text, [1, '2', { 3: [false] }]);
    socket.close();
  });

  test(`${name}: a 600 kB binary argument comes back whole (800 kB as base64 over polling, under maxPayload)`, async () => {
    const { socket } = await ready(opts);
    const big = Buffer.alloc(600_000, 7);
    const back = once(socket, 'message-back');
    socket.emit('message', 'big', big);
    const [label, data] = await back;
    assert.equal(label, 'big');
    assert.ok(Buffer.from(data).equals(big));
    socket.close();
  });
}

test('an unknown namespace is refused with "Invalid namespace"', async () => {
  const socket = connect({}, '/random');
  const [err] = await once(socket, 'connect_error');
  assert.equal(err.message, 'Invalid namespace');
  socket.close();
});
