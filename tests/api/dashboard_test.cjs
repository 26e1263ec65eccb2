// dashboard_test.cjs — the node dashboard in a real browser (Debian's chromium through
// playwright-core), driven by web_it.py browser, which starts a 2-node swarm and passes:
//   SW_DASHBOARD_URL  http://127.0.0.1:PORT/ of node a (shard 0)
//   SW_NPM_DIR        the folder where playwright-core is installed (<build>/npm/playwright)
//   SW_CHROMIUM       the browser binary
// Protocol on stdio: prints "KILL" when the swarm should lose the node of shard 1; web_it.py
// kills it by PID and answers "KILLED". Exit 0 pass, 1 fail, 77 browser unavailable.
'use strict';

const path = require('path');
const readline = require('readline');

const URL_ = process.env.SW_DASHBOARD_URL;
const STEP_MS = 15000; // every wait is bounded

function fail(msg) {
  console.log('FAIL: ' + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

// A status document whose node-supplied strings carry markup: a node's record can put any
// printable text in "api" and "listen" (src/swarm/record.c); the other strings are made here
// but are treated the same way.
const EVIL_IMG = '<img src=x onerror="window.__pwned=1">';
const EVIL_SCRIPT = '<script>window.__pwned=2</script>';
function evilStatus() {
  const node = {
    id: 'ab'.repeat(32), short: EVIL_SCRIPT, self: false, live: true, direct: true, rtt_us: 250, shard: 0,
    phase: EVIL_IMG, loaded: false, seed_all: false, auto: false, bytes_done: 50, bytes_total: 100,
    progress: 0.5, rate_bps: 1000, eta_ms: 50000, layer_first: 0, layer_last: 0, mem_free: 1, threads: 1,
    tokens_per_s: 0, queue: 0, api: EVIL_IMG, listen: EVIL_SCRIPT, seq: 1, age_ms: 0,
  };
  const fetching = Object.assign({}, node, { id: 'cd'.repeat(32), short: 'cdcd…', phase: 'fetching', api: '',
                                             listen: '', bytes_done: 400000, bytes_total: 1000000, progress: 0.4,
                                             rate_bps: 2500000, eta_ms: 130000 });
  return {
    node_id: EVIL_SCRIPT, info_hash: EVIL_IMG, model_ready: true, listen_port: 1, dht_port: 1,
    n_shards: 1, ready: false, discovered: 1, peers: 1,
    self: { shard: 0, phase: 'loaded', auto: false, seed_all: false, tokens_per_s: 1, queue: 0, path: EVIL_IMG },
    reasons: ['shard 0: ' + EVIL_IMG + EVIL_SCRIPT],
    shards: [{ shard: 0, layer_first: 0, layer_last: 0, bytes: 10, ready: false, announced: 1, loaded: 0,
               seeders: 0, best: EVIL_SCRIPT, reason: EVIL_IMG, nodes: [node] }],
    nodes: [node, fetching],
    stats: { records_accepted: 1 }, dht: { nodes: 0, good_nodes: 0, packets_in: 0 },
  };
}

async function main() {
  let chromium;
  try {
    ({ chromium } = require(path.join(process.env.SW_NPM_DIR, 'node_modules', 'playwright-core')));
  } catch (e) {
    console.log('SKIP: playwright-core not loadable: ' + e.message);
    process.exit(77);
  }
  let browser;
  try {
    browser = await chromium.launch({ executablePath: process.env.SW_CHROMIUM, headless: true,
                                      args: ['--no-sandbox'], timeout: 60000 });
  } catch (e) {
    console.log('SKIP: chromium does not start: ' + e.message.split('\n')[0]);
    process.exit(77);
  }
  const lines = readline.createInterface({ input: process.stdin });
  const killed = new Promise(resolve => lines.on('line', l => { if (l.trim() === 'KILLED') resolve(); }));
  try {
    // 1. the escaping check first, on a page whose /swarm/status is a crafted document
    {
      const page = await browser.newPage();
      await page.route('**/swarm/status', route => route.fulfill({
        status: 200, contentType: 'application/json', body: JSON.stringify(evilStatus()) }));
      await page.goto(URL_, { timeout: STEP_MS });
      await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length === 2, null,
                                 { timeout: STEP_MS });
      const r = await page.evaluate(() => ({
        pwned: window.__pwned,
        imgs: document.querySelectorAll('img').length,
        scripts: document.querySelectorAll('script').length,
        nodes: document.querySelector('#nodes tbody').textContent,
        reasons: document.getElementById('reasons').textContent,
        shards: document.querySelector('#shards tbody').textContent,
        self: document.getElementById('self').textContent,
        progress: Array.from(document.querySelectorAll('#nodes tbody tr')).map(tr => tr.textContent)
          .find(t => t.includes('cdcd')),
        bar: (document.querySelector('#nodes progress[aria-label="shard file 40.0%"]') || {}).value,
      }));
      check(r.pwned === undefined, 'markup from the status ran: __pwned=' + r.pwned);
      check(r.imgs === 0, r.imgs + ' <img> elements injected');
      check(r.scripts === 1, r.scripts + ' <script> elements (want only app.js)');
      check(r.nodes.includes(EVIL_IMG) && r.nodes.includes(EVIL_SCRIPT), 'node strings shown as text: ' + r.nodes);
      check(r.reasons.includes(EVIL_IMG + EVIL_SCRIPT), 'reason shown as text: ' + r.reasons);
      check(r.shards.includes(EVIL_IMG), 'shard reason shown as text: ' + r.shards);
      check(r.self.includes(EVIL_IMG), 'self path shown as text: ' + r.self);
      // a fetching node: a progress bar with percent, rate and ETA
      check(r.progress && r.progress.includes('40.0% of 1.0 MB · 2.5 MB/s · ETA 2m10s'), 'fetching row: ' + r.progress);
      check(Math.abs(r.bar - 0.4) < 1e-9, 'progress bar value ' + r.bar);
      await page.close();
      console.log('escaping: markup in node strings rendered as text; progress/rate/ETA of a fetching node');
    }
    // 2. the live dashboard of the real swarm
    const page = await browser.newPage();
    const errors = [];
    page.on('console', m => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
    page.on('pageerror', e => errors.push('page error: ' + e.message));
    page.on('requestfailed', r => errors.push('request failed: ' + r.url()));
    page.on('request', r => { if (!r.url().startsWith(URL_)) errors.push('external request: ' + r.url()); });
    await page.goto(URL_, { timeout: STEP_MS });
    await page.waitForFunction(() => document.getElementById('ready-state').textContent === 'ready', null,
                               { timeout: STEP_MS });
    const live = await page.evaluate(() => ({
      shardRows: Array.from(document.querySelectorAll('#shards tbody tr')).map(tr => tr.textContent),
      nodeRows: Array.from(document.querySelectorAll('#nodes tbody tr')).map(tr => tr.textContent),
      reasonsHidden: document.getElementById('reasons-box').hidden,
      conn: document.getElementById('conn').textContent,
      self: document.getElementById('self').textContent,
    }));
    check(live.shardRows.length === 2, 'shard rows: ' + JSON.stringify(live.shardRows));
    check(live.shardRows.every(t => t.includes('ready')), 'every shard ready: ' + JSON.stringify(live.shardRows));
    check(live.nodeRows.length === 2, 'node rows: ' + JSON.stringify(live.nodeRows));
    check(live.nodeRows.every(t => t.includes('live') && t.includes('loaded')), 'nodes live and loaded: ' +
          JSON.stringify(live.nodeRows));
    check(live.nodeRows.some(t => t.includes('this node')), 'this node marked: ' + JSON.stringify(live.nodeRows));
    check(live.reasonsHidden, 'no reasons shown while ready');
    check(live.conn.startsWith('Live'), 'connection line: ' + live.conn);
    check(live.self.includes('loaded'), 'this node loaded: ' + live.self);
    console.log('ready: 2 shard rows, 2 node rows');
    // 3. the node of shard 1 dies: within a few seconds "not ready", and why
    console.log('KILL');
    await Promise.race([killed, new Promise((_, rej) => setTimeout(() => rej(new Error('no KILLED')), STEP_MS))]);
    const t0 = Date.now();
    await page.waitForFunction(() => document.getElementById('ready-state').textContent === 'not ready' &&
                               /shard 1/.test(document.getElementById('reasons').textContent), null,
                               { timeout: 10000 });
    const after = await page.evaluate(() => ({
      reasons: document.getElementById('reasons').textContent,
      hidden: document.getElementById('reasons-box').hidden,
      rows: Array.from(document.querySelectorAll('#shards tbody tr')).map(tr => tr.textContent),
    }));
    check(!after.hidden, 'reasons visible');
    check(after.rows[1].includes('blocking'), 'shard 1 row says blocking: ' + after.rows[1]);
    console.log('not ready after ' + (Date.now() - t0) + ' ms: ' + after.reasons);
    check(errors.length === 0, 'browser errors: ' + errors.join(' | '));
    console.log('PASS');
  } finally {
    lines.close();
    await browser.close();
  }
}

main().catch(e => {
  if (!process.exitCode) console.log('FAIL: ' + (e && e.stack ? e.stack : e));
  process.exitCode = 1;
});
