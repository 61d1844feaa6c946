// The official Socket.IO Admin UI (the built web app of the npm package `@socket.io/admin-ui`)
// in a real browser, headless Chromium (Debian's `chromium`, driven by puppeteer-core),
// against two demos on one Redis with ADMIN_UI=1: the UI logs in through its form (basic
// auth, the password checked against the demo's bcrypt hash), then shows both servers and the
// sockets of both, by id.
//
//   DEMO_BIN=… node --test admin-ui.test.mjs   (scripts/test.sh sets it and installs chromium)
//   CHROMIUM_BIN=/path/to/chromium to use another build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedis, startServer } from './processes.mjs';
import { authenticated, launchChromium, withCleanups } from './helpers.mjs';

// `s3cret`, hashed by bcryptjs (`bcrypt.hashSync("s3cret", 4)`), as a user of the JavaScript
// package makes the hash.
const PASSWORD = 's3cret';
const PASSWORD_HASH = '$2b$04$Z0vTp2RgXLCWnafc8K26iOD4syyjktjkDDeW31POMQ2ClyWviXPqS';
const UI_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/@socket.io/admin-ui/ui/dist');
const TYPES = { '.html': 'text/html', '.js': 'application/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** Serves the UI's built files under `/ui/` on a free port. */
async function serveUi(cleanups) {
  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (!pathname.startsWith('/ui/')) {
      res.writeHead(404);
      return res.end();
    }
    let file = path.join(UI_DIR, path.normalize(pathname.slice(4)).replace(/^(\.\.[/\\])+/, ''));
    if (!existsSync(file) || statSync(file).isDirectory()) file = path.join(UI_DIR, 'index.html');
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${server.address().port}/ui/`;
}

/** An authenticated socket.io-client on `server`; its socket id. */
async function member(server, cleanups) {
  return (await authenticated(server, cleanups)).id;
}

/** Polls `probe` until it returns a truthy value, `ms` at most (the UI renders what it gets). */
async function until(probe, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}; last seen: ${JSON.stringify(last.seen)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The cells of every row of the page's data table. */
const rows = (page) =>
  page.$$eval('.v-data-table tbody tr:not(.v-data-table__empty-wrapper)', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim())));

test('the Admin UI in headless Chromium shows both demos of one Redis and their sockets', { timeout: 90_000 }, async () => {
  const { DEMO_BIN } = process.env;
  assert.ok(DEMO_BIN, 'set DEMO_BIN (scripts/test.sh does)');
  await withCleanups(async (cleanups) => {
    const redis = await startRedis();
    cleanups.push(redis.stop);
    const demo = (id) =>
      startServer(DEMO_BIN, [], { REDIS_URL: redis.url, ADMIN_UI: '1', ADMIN_PASSWORD_HASH: PASSWORD_HASH, ADMIN_SERVER_ID: id });
    const a = await demo('demo-a');
    cleanups.push(a.stop);
    const b = await demo('demo-b');
    cleanups.push(b.stop);
    const ids = [await member(a, cleanups), await member(b, cleanups)];
    const ui = await serveUi(cleanups);

    const browser = await launchChromium(cleanups);
    const page = await browser.newPage();
    // Wide enough for the navigation drawer and desktop tables (below 1264 px they change).
    await page.setViewport({ width: 1400, height: 900 });
    // The UI reads its settings from localStorage once at start: the server, our path, the
    // admin namespace, WebSocket only (the UI's origin is not the demo's, and the demo does
    // not answer CORS for long-polling).
    await page.evaluateOnNewDocument((url) => {
      localStorage.setItem('server_url', url);
      localStorage.setItem('path', '/io');
      localStorage.setItem('namespace', '/admin');
      localStorage.setItem('ws_only', 'true');
    }, a.url);
    await page.goto(ui, { waitUntil: 'domcontentloaded' });

    // With no session id the UI's first attempt is refused, and it opens its login form.
    await page.waitForSelector('.v-dialog--active input[type=password]', { timeout: 15_000 });
    const [, username] = await page.$$('.v-dialog--active input[type=text]');
    const password = await page.$('.v-dialog--active input[type=password]');
    await username.click({ clickCount: 3 });
    await username.type('admin');
    await password.type('wrong');
    await page.click('.v-dialog--active button[type=submit]');
    const error = await page.waitForSelector('.v-dialog--active .red--text', { timeout: 10_000 });
    assert.match(await error.evaluate((e) => e.innerText), /Invalid credentials/);
    await password.click({ clickCount: 3 });
    await password.type(PASSWORD);
    await page.click('.v-dialog--active button[type=submit]');
    await until(async () => {
      const header = await page.$eval('header', (e) => e.innerText.replace(/\s+/g, ' '));
      return { ok: header.includes('CONNECTED') && !header.includes('DISCONNECTED'), seen: header };
    }, 'the UI connected');

    await page.goto(`${ui}#/servers/`);
    // Both rows, each healthy (the UI's word for a server whose stats keep coming); other
    // rows (the table re-rendering, say) hold no cells.
    await until(async () => {
      const seen = await rows(page);
      const health = (id) => seen.find((r) => r[0] === id)?.[6];
      return { ok: health('demo-a') === 'HEALTHY' && health('demo-b') === 'HEALTHY', seen };
    }, 'both servers healthy in #/servers/');

    await page.goto(`${ui}#/sockets/`);
    await until(async () => {
      const seen = await rows(page);
      const shown = seen.map((r) => r[0]);
      return { ok: ids.every((id) => shown.includes(id)), seen };
    }, `the sockets ${ids} in #/sockets/`);
  });
});
