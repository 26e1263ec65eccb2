/* app.js — the node dashboard: polls /swarm/status (same origin) every second and renders
 * readiness (with the reasons), shards, nodes, this node and the network. Every string from
 * the status is untrusted (node records carry strings chosen by other nodes, e.g. "api" and
 * "listen"): it only ever reaches the page as a text node (textContent / createTextNode),
 * never as markup, and class names come from fixed lists. No framework, no external fetch. */
'use strict';

(function () {
  const POLL_MS = 1000;
  const PHASES = ['none', 'waiting', 'fetching', 'verifying', 'loading', 'loaded', 'failed', 'drained'];
  let lastReasons = null;

  /* ------------------------------------------------------------ DOM helpers */

  /* el('td', {cls: 'num'}, 'text', childNode, ...): strings become text nodes. */
  function el(tag, opts, ...children) {
    const e = document.createElement(tag);
    if (opts && opts.cls) e.className = opts.cls;
    if (opts && opts.title) e.title = String(opts.title);
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(id, text) {
    document.getElementById(id).textContent = String(text);
  }

  function replaceChildren(node, kids) {
    while (node.firstChild) node.removeChild(node.firstChild);
    for (const k of kids) node.appendChild(k);
  }

  /* ------------------------------------------------------------ formatting */

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  function str(v) {
    return v === null || v === undefined ? '' : String(v);
  }

  function fmtBytes(n) {
    n = num(n);
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }

  function fmtDuration(ms) {
    let s = Math.round(num(ms) / 1000);
    if (s < 60) return s + 's';
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    s %= 60;
    return h ? h + 'h' + String(m).padStart(2, '0') + 'm' : m + 'm' + String(s).padStart(2, '0') + 's';
  }

  function fmtRtt(us) {
    us = num(us);
    if (!us) return '—';
    return us < 1000 ? us.toFixed(0) + ' µs' : (us / 1000).toFixed(1) + ' ms';
  }

  /* "3ef4…" short id from a node's JSON (the node's own "short", else the hex). */
  function shortId(hex, byId) {
    const n = byId && byId.get(str(hex));
    if (n && n.short) return str(n.short);
    return str(hex).slice(0, 8) + (str(hex).length > 8 ? '…' : '');
  }

  function tag(text, kind) {
    return el('span', { cls: 'tag ' + (kind === 'ok' || kind === 'bad' || kind === 'warn' ? kind : '') }, text);
  }

  /* ------------------------------------------------------------ sections */

  function renderReadiness(st) {
    const ready = st.ready === true;
    const state = document.getElementById('ready-state');
    state.textContent = ready ? 'ready' : 'not ready';
    state.className = 'state ' + (ready ? 'ready' : 'not-ready');
    const n = num(st.n_shards);
    let summary = '';
    if (st.n_shards !== undefined) {
      const loaded = (Array.isArray(st.shards) ? st.shards : []).filter(s => num(s.loaded) > 0).length;
      summary = 'Shards loaded ' + loaded + '/' + n + ' · discovered ' + num(st.discovered) + '/' + n +
        ' · peers ' + num(st.peers);
    }
    setText('ready-summary', summary);
    const reasons = Array.isArray(st.reasons) ? st.reasons : [];
    const box = document.getElementById('reasons-box');
    box.hidden = ready || reasons.length === 0;
    /* the list is a live region: rebuild it only when the reasons change, so a screen reader
       announces a change, not every poll */
    const key = JSON.stringify(reasons.map(str));
    if (key !== lastReasons) {
      lastReasons = key;
      replaceChildren(document.getElementById('reasons'), reasons.map(r => el('li', null, str(r))));
    }
  }

  function renderSelf(st, byId) {
    const self = st.self || {};
    const me = (Array.isArray(st.nodes) ? st.nodes : []).find(x => x && x.self === true) || {};
    const rows = [];
    const add = (k, v) => { rows.push(el('dt', null, k), el('dd', null, v)); };
    add('Node id', el('span', { cls: 'mono' }, str(st.node_id)));
    add('Shard', self.shard === undefined ? '—' : (num(self.shard) < 0 ? 'none' : String(num(self.shard))) +
        (self.auto === true ? ' (auto)' : '') + (self.seed_all === true ? ' (seeds every shard)' : ''));
    add('Phase', phaseCell(str(self.phase), me));
    const vf = self.verify;
    if (vf && typeof vf === 'object') { /* hashing a shard file found on disk */
      const total = num(vf.bytes_total), done = num(vf.bytes_done);
      add('Verifying', el('span', { cls: 'mono' }, str(vf.path) + ': ' +
          (total ? (done * 100 / total).toFixed(0) : '0') + '% of ' + fmtBytes(total) + ' · ' +
          fmtBytes(vf.rate_bps) + '/s' + (num(vf.eta_ms) > 0 ? ' · ETA ' + fmtDuration(vf.eta_ms) : '')));
    }
    const er = self.error;
    if (er && typeof er === 'object') { /* the shard cannot be written (disk full, read-only, gone) */
      add('Error', el('span', null, tag('failed', 'bad'), ' ', str(er.message) +
          (er.bytes_needed !== undefined ? ' · needs ' + fmtBytes(er.bytes_needed) + ', ' + fmtBytes(er.bytes_free) +
           ' free' : '') + (er.retry ? ' · ' + str(er.retry) : '')));
    }
    add('Tokens/s (measured)', num(self.tokens_per_s).toFixed(1));
    add('Sessions on this stage', String(num(self.queue)));
    if (me.threads !== undefined) add('Threads', String(num(me.threads)));
    const cl = self.core_lease;
    if (cl && typeof cl === 'object') {
      add('Core lease', num(cl.budget) + ' cores shared · ' + num(cl.waits) + ' waits · ' +
          num(cl.wait_ms).toFixed(1) + ' ms waited');
    }
    const pl = st.pipeline;
    if (pl && typeof pl === 'object') {
      add('Pipeline', num(pl.sessions_opened) + ' sessions opened · ' + num(pl.sessions_refused) + ' refused · ' +
          num(pl.failovers) + ' failovers · ' + num(pl.entry_sessions) + ' open as entry');
      add('Compute', num(pl.compute_steps) + ' steps (' + num(pl.batched_steps) + ' batched) · ' +
          num(pl.compute_seconds).toFixed(2) + ' s · ' + num(pl.tokens_computed) + ' token positions' +
          (pl.kv_bytes !== undefined ? ' · KV cache ' + fmtBytes(pl.kv_bytes) : ''));
      if (num(pl.tokens_generated) > 0) add('As entry', num(pl.tokens_generated) + ' tokens delivered');
      const sp = pl.spot;
      if (sp && typeof sp === 'object') {
        add('Spot checks', (num(sp.rate) > 0 ? 'rate 1/' + Math.round(1 / num(sp.rate)) : 'off') + ' · ' +
            num(sp.checks) + ' asked · ' + num(sp.passed) + ' passed · ' + num(sp.failed) + ' failed · ' +
            num(sp.inconclusive) + ' inconclusive · ' + num(sp.audits_served) + ' recomputed for others');
        const bad = Array.isArray(sp.distrusted) ? sp.distrusted : [];
        for (const d of bad) {
          add('Excluded node', el('span', {}, tag(d.what ? str(d.what) : 'wrong hidden states', 'bad'), ' ',
            el('span', { cls: 'mono' }, str(d.node).slice(0, 12) + '…'), ' ' + str(d.evidence)));
        }
      }
    }
    if (self.path !== undefined) add('Shard file', el('span', { cls: 'mono' }, str(self.path)));
    replaceChildren(document.getElementById('self'), rows);
  }

  /* Phase as text, plus a progress bar with rate and ETA while fetching. */
  function phaseCell(phase, node) {
    const known = PHASES.includes(phase) ? phase : 'unknown';
    const kind = known === 'loaded' ? 'ok' : known === 'failed' ? 'bad' : known === 'none' ? '' : 'warn';
    return tag(phase || 'unknown', kind);
  }

  function progressCell(n) {
    const total = num(n.bytes_total);
    const done = num(n.bytes_done);
    if (!total) return el('span', null, '—');
    const frac = Math.min(1, Math.max(0, num(n.progress) || done / total));
    const bar = el('progress');
    bar.max = 1;
    bar.value = frac;
    const pct = (frac * 100).toFixed(frac < 1 ? 1 : 0) + '%';
    bar.setAttribute('aria-label', 'shard file ' + pct);
    let text = pct + ' of ' + fmtBytes(total);
    if (str(n.phase) === 'fetching') {
      text += ' · ' + fmtBytes(n.rate_bps) + '/s';
      if (num(n.eta_ms) > 0) text += ' · ETA ' + fmtDuration(n.eta_ms);
    }
    return el('span', null, bar, el('span', { cls: 'progress-text' }, text));
  }

  function renderShards(st, byId) {
    const rows = (Array.isArray(st.shards) ? st.shards : []).map(s => {
      const loaded = num(s.loaded);
      const layers = num(s.layer_first) >= 0 ? num(s.layer_first) + '–' + num(s.layer_last) : '?';
      const best = s.best ? el('span', { cls: 'mono', title: str(s.best) }, shortId(s.best, byId)) : '—';
      const status = loaded > 0 ? tag('ready', 'ok') : el('span', null, tag('blocking', 'bad'), ' ', str(s.reason));
      return el('tr', null,
        el('th', { cls: 'num' }, String(num(s.shard))),
        el('td', null, layers),
        el('td', { cls: 'num' }, fmtBytes(s.bytes)),
        el('td', { cls: 'num' }, String(loaded)),
        el('td', { cls: 'num' }, String(num(s.announced))),
        el('td', { cls: 'num' }, String(num(s.seeders))),
        el('td', null, best),
        el('td', null, status));
    });
    for (const r of rows) r.firstChild.setAttribute('scope', 'row');
    replaceChildren(document.querySelector('#shards tbody'), rows);
  }

  function renderNodes(st, byId) {
    const nodes = Array.isArray(st.nodes) ? st.nodes.slice() : [];
    nodes.sort((a, b) => (b.live === true) - (a.live === true) || num(a.shard) - num(b.shard) ||
      str(a.id).localeCompare(str(b.id)));
    const rows = nodes.map(n => {
      const conn = [];
      conn.push(n.live === true ? tag('live', 'ok') : tag('departed', 'bad'));
      if (n.self === true) conn.push(' ', tag('this node'));
      else if (n.direct === true) conn.push(' ', tag('direct'));
      else if (n.live === true) conn.push(' ', tag('relayed'));
      const shard = n.seed_all === true ? 'all (seeder)' : num(n.shard) < 0 ? 'none' : String(num(n.shard));
      const tr = el('tr', { cls: n.live === true ? '' : 'departed' },
        el('th', { cls: 'mono', title: str(n.id) }, str(n.short) || shortId(n.id)),
        el('td', null, shard),
        el('td', null, phaseCell(str(n.phase), n)),
        el('td', null, progressCell(n)),
        el('td', null, ...conn),
        el('td', { cls: 'num' }, n.self === true ? '—' : fmtRtt(n.rtt_us)),
        el('td', { cls: 'num' }, num(n.tokens_per_s) ? num(n.tokens_per_s).toFixed(1) : '—'),
        el('td', { cls: 'num' }, String(num(n.queue))),
        el('td', { cls: 'num' }, String(num(n.threads))),
        el('td', { cls: 'mono' }, str(n.api) || '—'));
      tr.firstChild.setAttribute('scope', 'row');
      return tr;
    });
    replaceChildren(document.querySelector('#nodes tbody'), rows);
  }

  function renderNet(st) {
    const rows = [];
    const add = (k, v) => { rows.push(el('dt', null, k), el('dd', null, v)); };
    add('Model (info-hash)', el('span', { cls: 'mono' }, str(st.info_hash)));
    add('Model metadata', st.model_ready === true ? 'known' : 'not known yet');
    add('BitTorrent / DHT port', num(st.listen_port) + ' / ' + num(st.dht_port));
    add('Peers', String(num(st.peers)));
    const live = (Array.isArray(st.nodes) ? st.nodes : []).filter(n => n && n.live === true).length;
    add('Nodes known', live + ' live of ' + (Array.isArray(st.nodes) ? st.nodes.length : 0));
    const d = st.dht;
    if (d && typeof d === 'object')
      add('DHT', num(d.nodes) + ' nodes (' + num(d.good_nodes) + ' good) · ' + num(d.packets_in) + ' packets in');
    const s = st.stats;
    if (s && typeof s === 'object') {
      add('Records', num(s.records_accepted) + ' accepted · ' + num(s.records_stale) + ' stale · ' +
          num(s.records_malformed) + ' malformed · ' + num(s.records_unsigned_or_bad_sig) + ' bad signature · ' +
          num(s.records_wrong_model) + ' wrong model');
      add('Departures', String(num(s.departures)));
    }
    const b = st.bt;
    if (b && typeof b === 'object')
      add('BitTorrent', fmtBytes(num(b.downloaded_bytes)) + ' down · ' + fmtBytes(num(b.uploaded_bytes)) + ' up · ' +
          fmtBytes(num(b.download_bps)) + '/s in · ' + fmtBytes(num(b.upload_bps)) + '/s out · ' +
          num(b.peers) + ' peers');
    replaceChildren(document.getElementById('net'), rows);
  }

  /* The whole page from one status document. */
  function render(st) {
    if (!st || typeof st !== 'object') throw new Error('status is not an object');
    const byId = new Map();
    for (const n of Array.isArray(st.nodes) ? st.nodes : []) if (n && n.id) byId.set(str(n.id), n);
    renderReadiness(st);
    renderSelf(st, byId);
    renderShards(st, byId);
    renderNodes(st, byId);
    renderNet(st);
    setText('updated', new Date().toLocaleTimeString());
  }

  /* ------------------------------------------------------------ polling */

  function setConn(ok, msg) {
    const c = document.getElementById('conn');
    const text = ok ? 'Live: updated every second' : 'Node unreachable: ' + msg + ' (retrying)';
    if (c.textContent !== text) c.textContent = text; /* a status region: only changes */
    c.className = ok ? '' : 'down';
  }

  /* A node started with an API key (--api-key-file) wants it on /swarm/status too: the page
     takes it from the address's fragment (#key=...), which browsers never send to a server. */
  function apiKey() {
    const m = /(?:^|[#&])key=([^&]*)/.exec(window.location.hash || '');
    return m ? decodeURIComponent(m[1]) : '';
  }

  let timer = null;
  async function poll() {
    timer = null;
    try {
      const key = apiKey();
      const r = await fetch('/swarm/status', { cache: 'no-store',
                                                headers: key ? { Authorization: 'Bearer ' + key } : {} });
      if (r.status === 401) throw new Error('this node wants its API key: open this page as …/#key=YOUR_KEY');
      if (!r.ok) throw new Error('HTTP ' + r.status);
      render(await r.json());
      setConn(true);
    } catch (e) {
      setConn(false, e && e.message ? e.message : String(e));
    } finally {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  window.swDashboard = { render, fmtBytes, fmtDuration, fmtRtt };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', poll);
  else poll();
}());
