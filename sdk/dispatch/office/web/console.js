// The dispatch office's console: orders, the fleet on a map, trucks and proofs of delivery, live over the
// office's event stream (/api/events). Every request is authorised by the HttpOnly cookie the login form
// set; requests that change something carry the X-Waybill-Console header.
'use strict';

const $ = s => document.querySelector(s);
const meta = n => (document.querySelector('meta[name="' + n + '"]') || {}).content || '';
const CLOSED = new Set(['delivered', 'failed', 'cancelled', 'expired', 'conflict']);

const wb = {
  orders: new Map(),  // "truck/id" -> orderView
  fleet: new Map(),   // truck -> fleetItem
  trucks: [],         // /api/trucks
  changed: new Map(), // "truck/id" -> {at: ms, via: "event"|"poll"} when its state last changed on this page
  publicURL: '',
  es: null,
  maps: {},
  view: '',
};
window.wb = wb;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

async function api(method, path, body) {
  const opt = {method, headers: {'X-Waybill-Console': '1'}, credentials: 'same-origin'};
  if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
  const r = await fetch(path, opt);
  if (r.status === 401) { showLogin(); throw new Error('signed out'); }
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch (e) { v = text; }
  if (!r.ok) throw new Error((v && v.error) || (r.status + ' ' + r.statusText));
  return v;
}

function flash(msg, isError) {
  const f = $('#flash');
  f.textContent = msg; f.hidden = !msg; f.className = 'flash' + (isError ? ' error' : '');
  clearTimeout(flash.t);
  if (msg && !isError) flash.t = setTimeout(() => { f.hidden = true; }, 5000);
}

const fmtTime = t => { if (!t) return ''; const d = new Date(t); return isNaN(d) || d.getFullYear() < 1980 ? '' : d.toLocaleString(); };
const fmtAge = s => s === undefined || s === null ? '' : s < 90 ? Math.round(s) + ' s' : s < 5400 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h';
const key = (truck, id) => truck + '/' + id;
const stateSpan = (state, text) => el('span', {class: 'state ' + state, text: text || state});
const fixOf = v => v && v.lat !== undefined ? v : null;
const toLocalInput = d => { const p = n => String(n).padStart(2, '0'); return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()); };

// ---- login ----

function showLogin() {
  if (wb.es) { wb.es.close(); wb.es = null; }
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#login-failed').hidden = !new URLSearchParams(location.search).has('login');
  $('#login-token').focus();
}

async function start() {
  try {
    const s = await api('GET', '/api/session');
    wb.publicURL = s.public_url || '';
  } catch (e) { return; }
  if (location.search) history.replaceState(null, '', '/' + location.hash);
  $('#login').hidden = true;
  $('#app').hidden = false;
  connect();
  window.addEventListener('hashchange', route);
  route();
  // A fallback for changes another office process made (PostgreSQL: several share the work).
  setInterval(() => refreshOrders('poll').catch(() => {}), 30000);
}

// ---- the event stream ----

function connect() {
  const es = new EventSource('/api/events');
  wb.es = es;
  const conn = $('#conn');
  es.onopen = () => { conn.textContent = 'live'; conn.className = 'conn live'; };
  es.onerror = () => {
    conn.textContent = 'reconnecting'; conn.className = 'conn';
    if (es.readyState === EventSource.CLOSED) {
      // refused (401: signed out, 503: too many streams): ask once, then try again later
      fetch('/api/session', {credentials: 'same-origin'}).then(r => {
        if (r.status === 401) showLogin();
        else { conn.textContent = 'offline: too many consoles open? retrying'; setTimeout(connect, 30000); }
      }).catch(() => setTimeout(connect, 5000));
    }
  };
  const on = (name, fn) => es.addEventListener(name, m => fn(JSON.parse(m.data)));
  on('orders', list => setOrders(list, 'event'));
  on('order', v => { upsertOrder(v, 'event'); renderSoon(); });
  on('fleet', list => { wb.fleet = new Map(list.map(f => [f.truck, f])); renderSoon(); });
  on('fix', f => {
    const cur = wb.fleet.get(f.truck) || {truck: f.truck, online: true};
    wb.fleet.set(f.truck, Object.assign(cur, {lat: f.lat, lon: f.lon, time: f.time, speed: f.speed, course: f.course}));
    renderSoon();
  });
  on('status', s => {
    const cur = wb.fleet.get(s.truck) || {truck: s.truck};
    cur.online = s.online;
    wb.fleet.set(s.truck, cur);
    renderSoon();
  });
}

function upsertOrder(v, via) {
  const k = key(v.order.truck, v.order.id);
  const old = wb.orders.get(k);
  // An answer to this page's own request may arrive after the stream told a newer state: keep the newer.
  if (old && new Date(v.updated) < new Date(old.updated)) return;
  if (!old || old.state !== v.state || old.order.revision !== v.order.revision) wb.changed.set(k, {at: Date.now(), via});
  wb.orders.set(k, v);
}

function setOrders(list, via) {
  const seen = new Set();
  for (const v of list) { upsertOrder(v, via); seen.add(key(v.order.truck, v.order.id)); }
  for (const k of [...wb.orders.keys()]) if (!seen.has(k)) wb.orders.delete(k);
  renderSoon();
}

async function refreshOrders(via) { setOrders(await api('GET', '/api/orders'), via); }

let renderPending = false;
function renderSoon() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; render(); });
}

// ---- routing ----

function route() {
  const h = decodeURIComponent(location.hash.slice(1)) || 'orders';
  const [view, ...rest] = h.split('/');
  const known = ['orders', 'order', 'map', 'trucks', 'truck', 'proofs'];
  wb.view = known.includes(view) ? view : 'orders';
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + wb.view;
  for (const a of document.querySelectorAll('header nav a')) {
    const v = a.dataset.view;
    a.classList.toggle('active', v === wb.view || (v === 'orders' && wb.view === 'order') || (v === 'trucks' && wb.view === 'truck'));
  }
  wb.arg = rest;
  if (wb.view === 'order') openOrder(rest[0], rest.slice(1).join('/'));
  if (wb.view === 'truck') openTruck(rest.join('/'));
  if (wb.view === 'trucks' || wb.view === 'map') loadTrucks();
  if (wb.view === 'proofs') loadProofs();
  render();
}

function render() {
  renderTruckNames();
  if (wb.view === 'orders') renderOrders();
  if (wb.view === 'map') renderMap();
  if (wb.view === 'trucks') renderTrucks();
  if (wb.view === 'truck') renderTruckLive();
  if (wb.view === 'order') renderOrderLive();
}

// ---- orders ----

function renderTruckNames() {
  const names = new Set([...wb.fleet.keys(), ...[...wb.orders.values()].map(v => v.order.truck)]);
  const dl = $('#truck-names');
  if (dl.childElementCount === names.size) return;
  dl.replaceChildren(...[...names].sort().map(n => el('option', {value: n})));
}

function renderOrders() {
  const showClosed = $('#show-closed').checked;
  const rows = [...wb.orders.values()]
    .filter(v => showClosed || !CLOSED.has(v.state))
    .sort((a, b) => new Date(b.order.created) - new Date(a.order.created));
  $('#orders tbody').replaceChildren(...rows.map(v => {
    const k = key(v.order.truck, v.order.id), ch = wb.changed.get(k) || {};
    return el('tr', {'data-key': k, 'data-state': v.state, 'data-changed-at': ch.at, 'data-via': ch.via,
      onclick: () => { location.hash = '#order/' + k; }},
    el('td', {text: v.order.id}), el('td', {text: v.order.truck}), el('td', {text: v.order.recipient || ''}),
    el('td', {class: 'wrap', text: v.order.address || ''}), el('td', {}, stateSpan(v.state, v.state_text)),
    el('td', {text: fmtTime(v.updated)}));
  }));
}

let formMode = null; // null: create; {truck, id}: revise

function openOrderForm(v) {
  const f = $('#order-form');
  formMode = v ? {truck: v.order.truck, id: v.order.id} : null;
  f.reset();
  $('#order-form-title').textContent = v ? 'Revise ' + v.order.id : 'New order';
  $('#order-submit').textContent = v ? 'Send revision' : 'Create';
  f.elements.truck.readOnly = f.elements.id.readOnly = !!v;
  if (v) {
    const o = v.order;
    for (const n of ['truck', 'id', 'recipient', 'address', 'lat', 'lon', 'radius_m', 'notes']) f.elements[n].value = o[n] === undefined ? '' : o[n];
    f.elements.expires.value = toLocalInput(new Date(o.expires));
  }
  if (v && wb.view !== 'orders') location.hash = '#orders';
  f.hidden = false;
  f.scrollIntoView({block: 'nearest'});
}

async function submitOrder(e) {
  e.preventDefault();
  const f = e.target.elements;
  const body = {recipient: f.recipient.value, address: f.address.value, lat: Number(f.lat.value), lon: Number(f.lon.value),
    radius_m: Number(f.radius_m.value) || 0, notes: f.notes.value};
  if (f.expires.value) body.expires = new Date(f.expires.value).toISOString();
  try {
    let v;
    if (formMode) {
      v = await api('PUT', '/api/orders/' + encodeURIComponent(formMode.truck) + '/' + encodeURIComponent(formMode.id), body);
      flash('Revision ' + v.order.revision + ' of ' + v.order.id + ' is on its way to ' + v.order.truck + '.');
    } else {
      body.truck = f.truck.value.trim(); body.id = f.id.value.trim();
      v = await api('POST', '/api/orders', body);
      flash('Order ' + v.order.id + ' created for ' + v.order.truck + '.');
    }
    upsertOrder(v, 'api');
    $('#order-form').hidden = true;
    renderSoon();
  } catch (err) { flash(err.message, true); }
}

let current = null; // the order on the order page
let opening = 0;     // the latest openOrder: an older answer arriving late is dropped

async function openOrder(truck, id) {
  // Another order: its actions stay hidden until it is shown (renderOrderPage). The same one (a live
  // update): it stays, with an open cancel form, until the new answer is in, so a click acts on it.
  if (!current || current.order.truck !== truck || current.order.id !== id) {
    current = null;
    $('#od-actions').hidden = $('#od-cancel-form').hidden = true;
  }
  const mine = ++opening;
  let v;
  try {
    v = await api('GET', '/api/orders/' + encodeURIComponent(truck) + '/' + encodeURIComponent(id));
  } catch (e) { flash(e.message, true); return; }
  if (mine !== opening) return;
  current = v;
  renderOrderPage(current);
}

function renderOrderLive() {
  if (!current) return;
  const v = wb.orders.get(key(current.order.truck, current.order.id));
  if (v && (v.state !== current.state || v.order.revision !== current.order.revision)) openOrder(current.order.truck, current.order.id);
}

function renderOrderPage(v) {
  const o = v.order;
  $('#od-title').textContent = 'Order ' + o.id;
  const rows = [['Truck', el('a', {href: '#truck/' + o.truck, text: o.truck})], ['State', stateSpan(v.state, v.state_text)],
    ['Revision', String(o.revision) + (v.confirmed ? ' (truck confirmed ' + v.confirmed + ')' : '')],
    ['Recipient', o.recipient || ''], ['Address', o.address || ''],
    ['Destination', o.lat.toFixed(6) + ', ' + o.lon.toFixed(6) + ' (radius ' + o.radius_m + ' m)'],
    ['Notes', o.notes || ''], ['Created', fmtTime(o.created)], ['Expires', fmtTime(o.expires)],
    ['Updated', fmtTime(v.updated)]];
  if (v.note) rows.push(['Note', v.note]);
  if (v.last_error) rows.push(['Last send error', v.last_error]);
  $('#od-fields').replaceChildren(...rows.flatMap(([k, val]) => [el('dt', {text: k}), el('dd', {}, val)]));
  const link = $('#od-tracking');
  if (v.tracking) {
    const url = /^https?:/.test(v.tracking.url) ? v.tracking.url : location.origin + v.tracking.url;
    link.href = url; link.textContent = url;
  }
  const closed = CLOSED.has(v.state) || o.status === 'cancelled';
  $('#od-revise').disabled = $('#od-cancel').disabled = closed;
  $('#od-actions').hidden = false;
  $('#od-history tbody').replaceChildren(...(v.history || []).map(ev => el('tr', {},
    el('td', {text: fmtTime(ev.event.time)}), el('td', {text: ev.event.kind}), el('td', {text: ev.event.revision}),
    el('td', {text: ev.event.via}), el('td', {class: 'wrap', text: ev.event.reason || ''}))));
}

async function cancelCurrent(e) {
  e.preventDefault();
  if (!current) return; // still loading
  const o = current.order;
  const reason = e.target.elements.reason.value;
  try {
    const v = await api('DELETE', '/api/orders/' + encodeURIComponent(o.truck) + '/' + encodeURIComponent(o.id) + '?reason=' + encodeURIComponent(reason));
    upsertOrder(v, 'api');
    flash('The cancellation of ' + o.id + ' is on its way to ' + o.truck + '.');
    $('#od-cancel-form').hidden = true;
    openOrder(o.truck, o.id);
    renderSoon();
  } catch (err) { flash(err.message, true); }
}

// ---- the map ----

function ensureMap(id) {
  if (wb.maps[id]) return wb.maps[id];
  const canvas = $('#' + id);
  const m = new WMap(canvas, {tileURL: meta('waybill-tile-url'), attribution: meta('waybill-tile-attribution'),
    onPick: (kind, mid) => { location.hash = kind === 'trucks' ? '#truck/' + mid : '#order/' + mid; }});
  for (const b of canvas.parentElement.querySelectorAll('[data-zoom]')) b.addEventListener('click', () => m.zoomBy(Number(b.dataset.zoom)));
  wb.maps[id] = m;
  return m;
}

function truckMarkers(only) {
  const out = [];
  for (const f of wb.fleet.values()) {
    if (!fixOf(f) || (only && f.truck !== only)) continue;
    out.push({id: f.truck, lat: f.lat, lon: f.lon, label: f.truck, online: !!f.online});
  }
  return out;
}

function destMarkers(only) {
  const out = [];
  for (const v of wb.orders.values()) {
    if (CLOSED.has(v.state) || v.order.status === 'cancelled' || (only && v.order.truck !== only)) continue;
    out.push({id: key(v.order.truck, v.order.id), lat: v.order.lat, lon: v.order.lon, label: v.order.id});
  }
  return out;
}

function renderMap() {
  const m = ensureMap('fleet-map');
  const trucks = truckMarkers(), dests = destMarkers();
  m.trucks = trucks; m.dests = dests;
  if (!m.fitted && trucks.length + dests.length) m.fit([...trucks, ...dests].map(p => [p.lat, p.lon]), 15);
  m.redraw();
  const now = Date.now();
  $('#fleet-list').replaceChildren(...[...wb.fleet.values()].sort((a, b) => a.truck.localeCompare(b.truck)).map(f =>
    el('li', {'data-truck': f.truck, onclick: () => { location.hash = '#truck/' + f.truck; }},
      el('strong', {text: f.truck}), ' ', el('span', {class: 'badge' + (f.online ? ' online' : ''), text: f.online ? 'online' : 'offline'}),
      el('span', {class: 'sub', text: fixOf(f) ? f.lat.toFixed(5) + ', ' + f.lon.toFixed(5) + ' · ' + fmtAge((now - new Date(f.time)) / 1000) + ' ago' : 'no fix yet'}))));
}

// ---- trucks ----

async function loadTrucks() {
  try { wb.trucks = await api('GET', '/api/trucks'); } catch (e) { flash(e.message, true); return; }
  renderSoon();
}

function renderTrucks() {
  $('#trucks tbody').replaceChildren(...wb.trucks.map(t => {
    const f = wb.fleet.get(t.name) || {};
    const online = f.online !== undefined ? f.online : t.online;
    const fix = fixOf(f) ? f : (t.last_fix ? {lat: t.last_fix.fix.lat, lon: t.last_fix.fix.lon, time: t.last_fix.fix.time} : null);
    return el('tr', {'data-truck': t.name, onclick: () => { location.hash = '#truck/' + t.name; }},
      el('td', {}, t.name, storeLost(t) ? el('span', {class: 'badge warn', title: storeText(t), text: 'store ' + t.store_origin}) : ''),
      el('td', {text: online ? 'online' : 'offline'}),
      el('td', {text: fix ? fix.lat.toFixed(5) + ', ' + fix.lon.toFixed(5) : ''}),
      el('td', {text: fix ? fmtAge((Date.now() - new Date(fix.time)) / 1000) : ''}),
      el('td', {text: t.queue_depth ?? ''}), el('td', {text: t.cert_days_left ?? ''}), el('td', {text: t.open_orders}));
  }));
}

let truckName = '';

async function openTruck(name) {
  truckName = name;
  $('#tk-title').textContent = name;
  const f = $('#tk-track-form');
  if (!f.elements.from.value) {
    const now = new Date();
    f.elements.from.value = toLocalInput(new Date(now - 2 * 3600e3));
    f.elements.to.value = toLocalInput(new Date(now.getTime() + 60e3));
  }
  const m = ensureMap('truck-map');
  m.track = []; m.fitted = false;
  $('#tk-track-count').textContent = '';
  exportLinks();
  await loadTrucks();
  try {
    const evs = await api('GET', '/api/trucks/' + encodeURIComponent(name) + '/events');
    $('#tk-events tbody').replaceChildren(...evs.reverse().map(ev => el('tr', {'data-kind': ev.event.kind},
      el('td', {text: fmtTime(ev.event.time)}), el('td', {text: ev.event.kind}), el('td', {text: ev.event.order_id || ''}),
      el('td', {text: ev.event.via}), el('td', {class: 'wrap', text: ev.event.reason || ''}))));
  } catch (e) { flash(e.message, true); }
}

// storeText says how the truck's store began: created (first start, or a new SD card), recreated (the old
// one was unreadable) or salvaged (damaged; what could be read was kept), and since when.
function storeText(t) {
  const why = {created: 'created (first start or a new SD card)', recreated: 'recreated (the old one was unreadable)',
    salvaged: 'salvaged (damaged; what could be read was kept)'}[t.store_origin] || t.store_origin;
  return why + (t.store_since ? ' ' + fmtTime(t.store_since) : '') + (t.store_epoch ? ', epoch ' + t.store_epoch.slice(0, 8) : '');
}

// storeLost: the truck's store was recreated or salvaged: the unit lost what it held and the office had not
// received. (A swapped SD card looks like a first start, "created", to the truck: the truck page shows when.)
function storeLost(t) {
  return t.store_origin === 'recreated' || t.store_origin === 'salvaged';
}

function renderTruckLive() {
  const t = wb.trucks.find(x => x.name === truckName) || {name: truckName};
  const f = wb.fleet.get(truckName) || {};
  const online = f.online !== undefined ? f.online : t.online;
  const b = $('#tk-online');
  b.textContent = online ? 'online' : 'offline'; b.className = 'badge' + (online ? ' online' : '');
  const rows = [['Status since', fmtTime(t.status_time)]];
  if (fixOf(f)) {
    rows.push(['Last fix', f.lat.toFixed(6) + ', ' + f.lon.toFixed(6)], ['Fix time', fmtTime(f.time) + ' (' + fmtAge((Date.now() - new Date(f.time)) / 1000) + ' ago)']);
    if (f.speed !== undefined) rows.push(['Speed', (f.speed * 3.6).toFixed(0) + ' km/h']);
  } else rows.push(['Last fix', 'none yet']);
  rows.push(['Queue on the truck', t.queue_depth !== undefined ? t.queue_depth + ' records' : 'unknown'],
    ['Certificate', t.cert_days_left !== undefined ? t.cert_days_left + ' days left' : 'unknown']);
  if (t.store_origin) rows.push(['Store', storeText(t)]);
  $('#tk-fields').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {text: k}), el('dd', {text: v})]));
  const sb = $('#tk-store');
  const lost = storeLost(t);
  sb.hidden = !lost;
  sb.textContent = lost ? 'store ' + t.store_origin + ' ' + fmtTime(t.store_since) + ': the unit lost data' : '';
  const open = [...wb.orders.values()].filter(v => v.order.truck === truckName && !CLOSED.has(v.state) && v.order.status !== 'cancelled');
  $('#tk-orders').replaceChildren(...(open.length ? open.map(v => el('li', {onclick: () => { location.hash = '#order/' + key(v.order.truck, v.order.id); }},
    el('strong', {text: v.order.id}), ' ', stateSpan(v.state, v.state_text), el('span', {class: 'sub', text: (v.order.recipient || '') + ' · ' + (v.order.address || '')})))
    : [el('li', {class: 'sub', text: 'none'})]));
  const m = ensureMap('truck-map');
  m.trucks = truckMarkers(truckName); m.dests = destMarkers(truckName);
  if (!m.fitted && m.trucks.length + m.dests.length) m.fit([...m.trucks, ...m.dests].map(p => [p.lat, p.lon]), 15);
  m.redraw();
}

function trackQuery() {
  const f = $('#tk-track-form').elements;
  return 'from=' + encodeURIComponent(new Date(f.from.value).toISOString()) + '&to=' + encodeURIComponent(new Date(f.to.value).toISOString());
}

function exportLinks() {
  const base = '/api/trucks/' + encodeURIComponent(truckName) + '/track?' + trackQuery() + '&format=';
  $('#tk-gpx').href = base + 'gpx'; $('#tk-csv').href = base + 'csv'; $('#tk-geojson').href = base + 'geojson';
}

async function showTrack(e) {
  e.preventDefault();
  exportLinks();
  try {
    const fc = await api('GET', '/api/trucks/' + encodeURIComponent(truckName) + '/track?' + trackQuery());
    const pts = fc.features.filter(x => x.geometry.type === 'Point').map(x => [x.geometry.coordinates[1], x.geometry.coordinates[0]]);
    const m = ensureMap('truck-map');
    m.set('track', pts);
    if (pts.length) m.fit(pts, 17);
    const c = $('#tk-track-count');
    c.textContent = pts.length + ' fixes'; c.dataset.count = pts.length;
  } catch (err) { flash(err.message, true); }
}

// ---- proofs ----

async function loadProofs() {
  let list;
  try { list = await api('GET', '/api/proofs'); } catch (e) { flash(e.message, true); return; }
  const yes = b => b ? '✓ verified' : '✗ no';
  const rows = [];
  for (const p of list.reverse()) {
    const v = p.verified;
    const dist = v.distance_m !== undefined ? fmtDistance(v.distance_m) + (v.within_radius ? ' (inside radius)' : ' (outside radius)') : 'no fix';
    const details = el('tr', {class: 'details', hidden: ''}, el('td', {colspan: 8},
      el('dl', {class: 'fields'}, ...[['Event', p.event.id ? JSON.stringify(p.event.id) : ''], ['Revision', String(p.revision)],
        ['Reason', p.reason || ''], ['Fix', p.fix ? p.fix.lat.toFixed(6) + ', ' + p.fix.lon.toFixed(6) + ' at ' + fmtTime(p.fix.time) : 'none'],
        ['Driver said off site', v.off_site ? 'yes' : 'no'], ['Signed at', fmtTime(p.event.sent)]].flatMap(([k, x]) => [el('dt', {text: k}), el('dd', {text: x})]))));
    rows.push(el('tr', {'data-order': p.order, 'data-kind': p.kind, onclick: () => { details.hidden = !details.hidden; }},
      el('td', {text: fmtTime(p.time)}), el('td', {text: p.truck}), el('td', {text: p.order}),
      el('td', {}, stateSpan(p.kind)), el('td', {text: p.via}), el('td', {text: yes(v.signature)}),
      el('td', {text: yes(v.order_hash)}), el('td', {text: dist})), details);
  }
  $('#proofs tbody').replaceChildren(...rows);
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  $('#new-order-btn').addEventListener('click', () => openOrderForm(null));
  $('#order-form-close').addEventListener('click', () => { $('#order-form').hidden = true; });
  $('#order-form').addEventListener('submit', submitOrder);
  $('#show-closed').addEventListener('change', renderSoon);
  $('#od-revise').addEventListener('click', () => { if (current) openOrderForm(current); });
  $('#od-cancel').addEventListener('click', () => { $('#od-cancel-form').hidden = false; });
  $('#od-cancel-back').addEventListener('click', () => { $('#od-cancel-form').hidden = true; });
  $('#od-cancel-form').addEventListener('submit', cancelCurrent);
  $('#tk-track-form').addEventListener('submit', showTrack);
  start();
});
