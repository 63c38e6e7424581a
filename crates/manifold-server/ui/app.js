// Manifold operator dashboard. Vanilla JS, no build step, no dependencies.
// Every value from the server is rendered as text nodes, never parsed as HTML.
'use strict';

// The admin API endpoints the page reads and the fields it reads from each item. The page checks
// every answer against this list (and says so when the server is older than the page); the server's
// route tests read this same block and check that every endpoint returns these fields.
// BEGIN API
const API = {
  "destinations": {
    "path": "/admin/destinations", "list": "destinations",
    "fields": ["name", "type", "disabled", "disabled_reason", "health", "retrying",
      "queue.pending", "queue.due", "queue.oldest_due_ms", "queue.delivered", "queue.dead",
      "recent.attempts", "recent.failures", "recent.avg_ms", "recent.last_error",
      "recent.last_status_code", "recent.last_class", "recent.last_failure_at"]
  },
  "deliveries": {
    "path": "/admin/deliveries", "list": "deliveries",
    "fields": ["id", "payload_id", "destination", "status", "attempts", "next_attempt_at",
      "last_error", "dead_reason", "event_type", "user_id", "reference_id", "version",
      "created_at", "updated_at"]
  },
  "attempts": {
    "path": "/admin/deliveries/{id}/attempts", "list": "attempts",
    "fields": ["delivery_id", "destination", "node", "attempt", "started_at", "duration_ms",
      "status_code", "class", "error", "response", "response_truncated"]
  },
  "users": {
    "path": "/admin/users", "list": "users",
    "fields": ["user_id", "reference_id", "status", "active", "paused_reason", "connected_at",
      "last_webhook_at"]
  }
};
// END API

const REFRESH_MS = 5000;
const KEY_STORE = 'manifold.apiKey';
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers (text nodes only)

const ATTRS = new Set(['type', 'value', 'title', 'colspan', 'disabled', 'aria-label', 'id']);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith('data-') || ATTRS.has(k)) e.setAttribute(k, v === true ? '' : String(v));
    else throw new Error('attribute not allowed: ' + k);
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(node, ...kids) {
  node.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined));
}

function has(obj, path) {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts) {
    if (o === null || typeof o !== 'object' || !(p in o)) return false;
    o = o[p];
  }
  return true;
}

// ---------------------------------------------------------------- formatting

function ago(iso) {
  if (!iso) return '–';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < -1) return 'in ' + span(-s);
  if (s <= 1) return 'now';
  return span(s) + ' ago';
}

function span(s) {
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}

function time(iso) {
  return el('time', { title: iso || '' }, ago(iso));
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v < 10 ? v.toFixed(1) + ' ms' : Math.round(v) + ' ms';
}

function clip(s, n) {
  s = s === null || s === undefined ? '' : String(s);
  return s.length > n ? s.slice(0, n) + '…' : s;
}

function badge(text, kind) {
  return el('span', { class: 'badge ' + kind }, text);
}

function userCell(d) {
  return el('span', { title: d.user_id || '' },
    d.reference_id ? d.reference_id : clip(d.user_id || '–', 14));
}

// ---------------------------------------------------------------- state

const state = {
  tab: 'destinations',
  filters: { status: '', destination: '', user: '', type: '', limit: '100' },
  delivery: null, // the id whose attempts are shown
  rows: new Map(), // delivery id -> row last seen in a list
  seen: new Map(), // view -> JSON last rendered (skip re-rendering unchanged data)
  destinations: [],
  busy: false,
};

function key() {
  return sessionStorage.getItem(KEY_STORE);
}

// The URL fragment carries the view (#tab=deliveries&status=dead&delivery=…) so a view can be
// bookmarked; `key=` is accepted once (for scripted logins), stored, and removed from the URL.
function readHash() {
  const h = new URLSearchParams(location.hash.replace(/^#\/?/, ''));
  if (h.has('key')) {
    sessionStorage.setItem(KEY_STORE, h.get('key'));
    h.delete('key');
  }
  const tab = h.get('tab');
  if (tab && ['destinations', 'deliveries', 'dead', 'users'].includes(tab)) state.tab = tab;
  for (const f of Object.keys(state.filters)) if (h.has(f)) state.filters[f] = h.get(f);
  state.delivery = h.get('delivery') || null;
  writeHash();
}

function writeHash() {
  const h = new URLSearchParams();
  h.set('tab', state.tab);
  if (state.tab === 'deliveries') {
    for (const [k, v] of Object.entries(state.filters)) if (v && !(k === 'limit' && v === '100')) h.set(k, v);
  }
  if (state.delivery) h.set('delivery', state.delivery);
  history.replaceState(null, '', '#' + h.toString());
}

// ---------------------------------------------------------------- API

class AuthError extends Error {}

async function api(path, method) {
  const k = key();
  if (!k) throw new AuthError('no key');
  const res = await fetch(path, {
    method: method || 'GET',
    headers: { 'x-api-key': k, 'accept': 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
  });
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (res.status === 401) throw new AuthError((body && body.detail) || 'unauthorized');
  if (!res.ok) {
    throw new Error((body && body.detail) || ('HTTP ' + res.status + ' from ' + path));
  }
  return body;
}

// Fetch one of the API entries and check the fields the page reads.
async function load(name, query, id) {
  const spec = API[name];
  let path = spec.path.replace('{id}', encodeURIComponent(id || ''));
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
    const s = q.toString();
    if (s) path += '?' + s;
  }
  const body = await api(path);
  const items = body && body[spec.list];
  if (!Array.isArray(items)) throw new Error(spec.path + ' answered without `' + spec.list + '`');
  for (const item of items) {
    for (const f of spec.fields) {
      if (!has(item, f)) {
        throw new Error(spec.path + ' does not return `' + f + '`: the server is older than this page');
      }
    }
  }
  return { body, items };
}

let bannerTimer = null;

function banner(msg, kind) {
  const b = $('banner');
  clearTimeout(bannerTimer);
  if (!msg) { b.hidden = true; b.className = ''; fill(b); return; }
  b.className = kind || 'error';
  fill(b, msg);
  b.hidden = false;
  if (b.className === 'ok') bannerTimer = setTimeout(() => banner(null), 8000);
}

// ---------------------------------------------------------------- views

function changed(view, data) {
  const json = JSON.stringify(data);
  if (state.seen.get(view) === json) return false;
  state.seen.set(view, json);
  return true;
}

async function action(label, path, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    const r = await api(path, 'POST');
    banner(label + ': ' + describe(r), 'ok');
    state.seen.clear();
    await refresh();
  } catch (e) {
    handle(e);
  }
}

function describe(r) {
  if (!r) return 'done';
  if (r.replayed !== undefined) return r.replayed + ' deliveries replayed';
  if (r.disabled !== undefined) return r.destination + (r.disabled ? ' disabled' : ' enabled');
  return r.status || 'done';
}

function renderDestinations(items) {
  state.destinations = items;
  const names = JSON.stringify(items.map((d) => d.name));
  if (state.seen.get('destination-names') !== names) {
    state.seen.set('destination-names', names);
    const sel = $('f-destination');
    fill(sel, el('option', { value: '' }, 'any'),
      items.map((d) => el('option', { value: d.name }, d.name)));
    sel.value = state.filters.destination;
  }
  const dead = items.reduce((n, d) => n + (d.queue.dead || 0), 0);
  fill($('dead-count'), dead ? String(dead) : '');
  if (!changed('destinations', items)) return;
  fill($('destinations-body'), items.length === 0
    ? el('tr', {}, el('td', { colspan: 12, class: 'muted' }, 'No destinations are configured.'))
    : items.map((d) => {
      const enc = encodeURIComponent(d.name);
      const r = d.recent;
      return el('tr', { 'data-destination': d.name },
        el('td', {}, el('strong', {}, d.name)),
        el('td', {}, d.type),
        el('td', {}, badge(d.health, 'h-' + d.health),
          d.disabled_reason ? el('div', { class: 'muted small' }, d.disabled_reason) : null),
        el('td', { class: 'num' }, d.queue.pending),
        el('td', { class: 'num' }, d.queue.due),
        el('td', { class: 'num' }, d.retrying),
        el('td', {}, d.queue.oldest_due_ms ? span(Math.round(d.queue.oldest_due_ms / 1000)) : '–'),
        el('td', { class: 'num' }, d.queue.delivered),
        el('td', { class: 'num' + (d.queue.dead ? ' bad' : '') }, d.queue.dead),
        el('td', {}, r.attempts
          ? (r.attempts - r.failures) + '/' + r.attempts + ' ok, avg ' + ms(r.avg_ms)
          : '–'),
        el('td', { class: 'small' }, r.last_error || r.last_status_code
          ? [el('span', {}, (r.last_class || '') + (r.last_status_code ? ' ' + r.last_status_code : '') + ' '),
            el('span', { class: 'muted' }, clip(r.last_error || '', 160) + ' '), time(r.last_failure_at)]
          : '–'),
        el('td', { class: 'actions' },
          d.disabled
            ? el('button', { type: 'button', on: { click: () => action('Enable', '/admin/destinations/' + enc + '/enable') } }, 'Enable')
            : el('button', { type: 'button', on: { click: () => action('Disable', '/admin/destinations/' + enc + '/disable', 'Disable ' + d.name + '? Deliveries to it wait until it is enabled again.') } }, 'Disable'),
          el('button', {
            type: 'button', disabled: !d.queue.dead,
            on: { click: () => action('Replay dead', '/admin/destinations/' + enc + '/replay?status=dead', 'Replay the ' + d.queue.dead + ' dead deliveries of ' + d.name + '?') },
          }, 'Replay dead'),
          el('button', {
            type: 'button', on: {
              click: () => {
                state.filters = { status: '', destination: d.name, user: '', type: '', limit: '100' };
                show('deliveries');
              },
            },
          }, 'Deliveries')));
    }));
}

function deliveryRow(d) {
  state.rows.set(d.id, d);
  const statusKind = d.status === 'dead' ? 'bad' : d.status === 'delivered' ? 'good' : (d.attempts > 0 ? 'warn' : 'neutral');
  return el('tr', {
    class: 'clickable' + (state.delivery === d.id ? ' selected' : ''),
    'data-delivery': d.id, 'data-status': d.status,
    on: { click: () => openDelivery(d.id) },
  },
  el('td', {}, time(d.created_at)),
  el('td', {}, d.event_type),
  el('td', {}, userCell(d)),
  el('td', {}, d.destination),
  el('td', {}, badge(d.status, statusKind)),
  el('td', { class: 'num' }, d.attempts),
  el('td', { class: 'small' }, d.status === 'pending'
    ? [time(d.next_attempt_at), d.last_error ? el('span', { class: 'muted' }, ' · ' + clip(d.last_error, 120)) : null]
    : clip(d.dead_reason || d.last_error || '', 140)));
}

function renderDeliveries(items) {
  if (!changed('deliveries', items)) return;
  fill($('deliveries-body'), items.length === 0
    ? el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No deliveries match.'))
    : items.map(deliveryRow));
}

function renderDead(items) {
  if (!changed('dead', items)) return;
  fill($('dead-body'), items.length === 0
    ? el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No dead letters.'))
    : items.map((d) => {
      state.rows.set(d.id, d);
      return el('tr', {
        class: 'clickable' + (state.delivery === d.id ? ' selected' : ''),
        'data-delivery': d.id, 'data-status': d.status,
        on: { click: () => openDelivery(d.id) },
      },
      el('td', {}, time(d.updated_at)),
      el('td', {}, d.event_type),
      el('td', {}, userCell(d)),
      el('td', {}, d.destination),
      el('td', { class: 'num' }, d.attempts),
      el('td', { class: 'reason' }, clip(d.dead_reason || d.last_error || '', 300)),
      el('td', { class: 'actions' }, el('button', {
        type: 'button',
        on: {
          click: (ev) => {
            ev.stopPropagation();
            action('Replay', '/admin/deliveries/' + encodeURIComponent(d.id) + '/replay');
          },
        },
      }, 'Replay')));
    }));
}

function renderUsers(body, items) {
  if (!changed('users', items)) return;
  let rows;
  if (body.oura === false) {
    rows = el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'The Oura connector is not configured ([oura] in the config).'));
  } else if (items.length === 0) {
    rows = el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No users have connected yet.'));
  } else {
    rows = items.map((u) => el('tr', { 'data-user': u.user_id },
      el('td', {}, el('code', {}, u.user_id)),
      el('td', {}, u.reference_id || '–'),
      el('td', {}, badge(u.status, u.status === 'connected' ? 'good' : 'warn')),
      el('td', {}, u.active ? 'yes' : 'no'),
      el('td', {}, time(u.connected_at)),
      el('td', {}, time(u.last_webhook_at)),
      el('td', { class: 'small' }, u.paused_reason || '–'),
      el('td', { class: 'actions' }, el('button', {
        type: 'button',
        on: {
          click: () => {
            state.filters = { status: '', destination: '', user: u.user_id, type: '', limit: '100' };
            show('deliveries');
          },
        },
      }, 'Deliveries'))));
  }
  fill($('users-body'), rows);
}

// ---------------------------------------------------------------- delivery detail

function openDelivery(id) {
  state.delivery = id;
  state.seen.delete('attempts');
  $('payload').hidden = true;
  fill($('payload'));
  writeHash();
  for (const tr of document.querySelectorAll('tr[data-delivery]')) {
    tr.classList.toggle('selected', tr.getAttribute('data-delivery') === id);
  }
  loadDetail().catch(handle);
}

function closeDelivery() {
  state.delivery = null;
  $('detail').hidden = true;
  document.body.classList.remove('has-detail');
  for (const tr of document.querySelectorAll('tr.selected')) tr.classList.remove('selected');
  writeHash();
}

async function loadDetail() {
  const id = state.delivery;
  if (!id) { $('detail').hidden = true; document.body.classList.remove('has-detail'); return; }
  const { items } = await load('attempts', null, id);
  if (state.delivery !== id) return;
  const d = state.rows.get(id);
  fill($('detail-id'), id);
  fill($('detail-facts'), d ? [
    el('dt', {}, 'Status'), el('dd', {}, d.status + (d.dead_reason ? ' — ' + d.dead_reason : '')),
    el('dt', {}, 'Destination'), el('dd', {}, d.destination),
    el('dt', {}, 'Type'), el('dd', {}, d.event_type + ' (version ' + d.version + ')'),
    el('dt', {}, 'User'), el('dd', {}, (d.user_id || '–') + (d.reference_id ? ' · reference ' + d.reference_id : '')),
    el('dt', {}, 'Created'), el('dd', {}, d.created_at),
    d.status === 'pending' ? [el('dt', {}, 'Next attempt'), el('dd', {}, d.next_attempt_at)] : null,
  ] : [el('dt', {}, 'Destination'), el('dd', {}, items.length ? items[0].destination : '–')]);
  $('detail-payload').disabled = !d;
  $('detail').hidden = false;
  document.body.classList.add('has-detail');
  if (!changed('attempts', items)) return;
  fill($('timeline'), items.length === 0
    ? el('li', { class: 'muted' }, 'No attempts yet.')
    : items.map((a) => el('li', { class: 'attempt c-' + a.class, 'data-attempt': a.attempt },
      el('div', { class: 'attempt-head' },
        el('strong', {}, '#' + a.attempt), ' ',
        badge(a.class, a.class === 'delivered' ? 'good' : a.class === 'retryable' ? 'warn' : 'bad'), ' ',
        a.status_code ? el('span', {}, 'HTTP ' + a.status_code + ' ') : null,
        el('span', { class: 'muted' }, ms(a.duration_ms) + ' · ' + a.started_at + ' · ' + a.node)),
      a.error ? el('div', { class: 'error small' }, a.error) : null,
      a.response ? el('pre', { class: 'response' }, a.response + (a.response_truncated ? '\n… (truncated)' : '')) : null)));
}

async function showPayload() {
  const d = state.rows.get(state.delivery);
  if (!d) return;
  try {
    const k = key();
    const res = await fetch('/admin/payloads/' + encodeURIComponent(d.payload_id), {
      headers: { 'x-api-key': k }, cache: 'no-store', credentials: 'omit',
    });
    const text = await res.text();
    if (!res.ok) throw new Error('HTTP ' + res.status + ': ' + clip(text, 300));
    let pretty = text;
    try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* keep the text */ }
    const p = $('payload');
    fill(p, clip(pretty, 200000));
    p.hidden = false;
  } catch (e) {
    handle(e);
  }
}

// ---------------------------------------------------------------- refresh loop

function show(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('#tabs button')) {
    b.classList.toggle('active', b.getAttribute('data-tab') === tab);
  }
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + tab;
  $('f-status').value = state.filters.status;
  $('f-destination').value = state.filters.destination;
  $('f-user').value = state.filters.user;
  $('f-type').value = state.filters.type;
  $('f-limit').value = state.filters.limit;
  state.seen.delete(tab);
  writeHash();
  refresh();
}

async function refresh() {
  if (state.busy || !key()) return;
  state.busy = true;
  try {
    const dest = await load('destinations');
    renderDestinations(dest.items);
    if (state.tab === 'deliveries') {
      const f = state.filters;
      const r = await load('deliveries', {
        status: f.status, destination: f.destination, user: f.user, type: f.type, limit: f.limit,
      });
      renderDeliveries(r.items);
    } else if (state.tab === 'dead') {
      const r = await load('deliveries', { status: 'dead', limit: '500' });
      renderDead(r.items);
    } else if (state.tab === 'users') {
      const r = await load('users');
      renderUsers(r.body, r.items);
    }
    if (state.delivery) await loadDetail();
    // Unchanged rows are not re-rendered; their relative times still move on.
    for (const t of document.querySelectorAll('time[title]')) {
      const text = ago(t.getAttribute('title'));
      if (t.textContent !== text) t.textContent = text;
    }
    fill($('updated'), 'updated ' + new Date().toLocaleTimeString());
    if ($('banner').className === 'error') banner(null);
  } catch (e) {
    handle(e);
  } finally {
    state.busy = false;
  }
}

function handle(e) {
  if (e instanceof AuthError) {
    sessionStorage.removeItem(KEY_STORE);
    login(e.message === 'no key' ? '' : e.message);
    return;
  }
  banner(e && e.message ? e.message : String(e), 'error');
}

function login(error) {
  $('tabs').hidden = true;
  $('bar').hidden = true;
  $('detail').hidden = true;
  document.body.classList.remove('has-detail');
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  for (const id of ['destinations-body', 'deliveries-body', 'dead-body', 'users-body', 'timeline']) fill($(id));
  state.seen.clear();
  state.rows.clear();
  banner(null);
  fill($('login-error'), error || '');
  $('login').hidden = false;
  $('key').focus();
}

function enter() {
  $('login').hidden = true;
  $('tabs').hidden = false;
  $('bar').hidden = false;
  show(state.tab);
}

function init() {
  readHash();
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = $('key').value.trim();
    if (!k) return;
    sessionStorage.setItem(KEY_STORE, k);
    $('key').value = '';
    enter();
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORE);
    login('');
  });
  $('refresh').addEventListener('click', () => { state.seen.clear(); refresh(); });
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => show(b.getAttribute('data-tab')));
  }
  $('filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.filters = {
      status: $('f-status').value, destination: $('f-destination').value,
      user: $('f-user').value.trim(), type: $('f-type').value.trim(), limit: $('f-limit').value,
    };
    show('deliveries');
  });
  $('f-clear').addEventListener('click', () => {
    state.filters = { status: '', destination: '', user: '', type: '', limit: '100' };
    show('deliveries');
  });
  $('detail-close').addEventListener('click', closeDelivery);
  $('detail-payload').addEventListener('click', showPayload);
  $('detail-replay').addEventListener('click', () => {
    if (state.delivery) action('Replay', '/admin/deliveries/' + encodeURIComponent(state.delivery) + '/replay');
  });
  window.addEventListener('hashchange', () => {
    readHash();
    if (key()) enter(); else login('');
  });
  setInterval(() => {
    if ($('auto').checked && !document.hidden && !$('tabs').hidden) refresh();
  }, REFRESH_MS);
  if (key()) enter(); else login('');
}

document.addEventListener('DOMContentLoaded', init);
