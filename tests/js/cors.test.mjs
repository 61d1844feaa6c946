// Browsers on another origin: a page served by the test loads the official socket.io-client
// browser build and connects to the demo with its default transports (long-polling first,
// then the upgrade to WebSocket), in headless Chromium. From an origin in CORS_ORIGINS it
// authenticates, receives a send and ends on WebSocket; from any other origin it cannot
// connect at all, neither by long-polling (no CORS headers) nor by WebSocket alone (refused
// with 403, since CORS does not cover WebSocket).
//
//   DEMO_BIN=… node --test cors.test.mjs   (scripts/test.sh sets it and installs chromium)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { startServer } from './processes.mjs';
import { launchChromium, withCleanups } from './helpers.mjs';

const CLIENT = readFileSync(new URL('./node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url));
const PAGE = '<!doctype html><title>another origin</title><script src="/socket.io.min.js"></script>';

/** The page and the client build, on a free port: `http://127.0.0.1:<port>/`. */
async function servePage(cleanups) {
  const server = createServer((req, res) => {
    if (req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(CLIENT);
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(PAGE);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return server.address().port;
}

/** In the page: connects (with `options`) and resolves with the transport the connection
 * opened on, or rejects with the client's error; the socket is `window.sock`, and
 * `window.upgraded` the transport it upgraded to, once it has. */
const connectInPage = (url, options) =>
  new Promise((resolve, reject) => {
    const sock = window.io(url, { path: '/io', auth: { token: 'demo-token' }, reconnection: false, ...options });
    window.sock = sock;
    window.news = new Promise((got) => sock.on('news', got));
    // The engine opens at once, on its first transport; the upgrade may come before `connect`.
    const opened = sock.io.engine.transport.name;
    sock.io.engine.on('upgrade', (transport) => (window.upgraded = transport.name));
    sock.once('connect', () => resolve(opened));
    sock.once('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
  });

test('a page of an allowed origin connects by long-polling, upgrades to WebSocket, authenticates and receives a send; any other origin cannot connect', { timeout: 60_000 }, () =>
  withCleanups(async (cleanups) => {
    const port = await servePage(cleanups);
    const allowed = `http://127.0.0.1:${port}`;
    // The same page, as another origin (a host name is not its address, to a browser).
    const other = `http://localhost:${port}`;
    const demo = await startServer(process.env.DEMO_BIN, [], { CORS_ORIGINS: `${allowed},https://app.example.com` });
    cleanups.push(demo.stop);
    const browser = await launchChromium(cleanups);

    const page = await browser.newPage();
    await page.goto(`${allowed}/`);
    const first = await page.evaluate(connectInPage, demo.url, {});
    assert.equal(first, 'polling', 'the default transports start with long-polling');
    await page.evaluate(() => new Promise((resolve) => {
      window.sock.once('authenticated', resolve);
      window.sock.emit('authenticate');
    }));
    await page.waitForFunction(() => window.upgraded === 'websocket', { timeout: 10_000 });
    const sent = await fetch(`${demo.url}/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ destination: 'io-default', topic: 'news', data: { n: 1 } }),
    });
    assert.equal(sent.status, 204);
    assert.deepEqual(await page.evaluate(() => window.news), { n: 1 });
    assert.equal(await page.evaluate(() => window.sock.io.engine.transport.name), 'websocket');

    const stranger = await browser.newPage();
    await stranger.goto(`${other}/`);
    for (const options of [{}, { transports: ['websocket'] }]) {
      await assert.rejects(stranger.evaluate(connectInPage, demo.url, options), /connect_error/, JSON.stringify(options));
    }
    const stats = await (await fetch(`${demo.url}/stats`)).json();
    assert.equal(stats.clients, 1, 'only the allowed page is a client');
  }));
