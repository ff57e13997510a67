// The customer's tracking page: this order's state and, while the truck is on its way, its position and
// straight-line distance. It polls /t/TOKEN/status (no account, no cookie).
'use strict';

const meta = n => (document.querySelector('meta[name="' + n + '"]') || {}).content || '';
const statusURL = location.pathname.replace(/\/$/, '') + '/status';
let map = null;
window.trackState = null;

async function poll() {
  try {
    const r = await fetch(statusURL, {cache: 'no-store', credentials: 'omit'});
    if (r.ok) show(await r.json());
    else if (r.status === 404) document.getElementById('t-state').textContent = 'This tracking link is not valid.';
  } catch (e) { /* offline: try again */ }
  setTimeout(poll, 15000);
}

function show(s) {
  window.trackState = s;
  document.getElementById('t-order').textContent = s.order;
  const st = document.getElementById('t-state');
  st.textContent = s.state_text; st.className = 'state big ' + s.state; st.dataset.state = s.state;
  document.getElementById('t-address').textContent = s.address || '';
  document.getElementById('t-updated').textContent = 'Updated ' + new Date(s.updated).toLocaleString();
  const d = document.getElementById('t-distance');
  if (s.truck) {
    d.hidden = false;
    d.textContent = 'The truck is ' + fmtDistance(s.truck.distance_m) + ' away (straight line), as of ' + new Date(s.truck.time).toLocaleTimeString() + '.';
  } else d.hidden = true;
  map.dests = [{id: 'dest', lat: s.destination.lat, lon: s.destination.lon, label: ''}];
  map.trucks = s.truck ? [{id: 'truck', lat: s.truck.lat, lon: s.truck.lon, label: '', online: true}] : [];
  map.fit([...map.dests, ...map.trucks].map(p => [p.lat, p.lon]), 16);
}

document.addEventListener('DOMContentLoaded', () => {
  const canvas = document.getElementById('t-map');
  map = new WMap(canvas, {tileURL: meta('waybill-tile-url'), attribution: meta('waybill-tile-attribution')});
  for (const b of document.querySelectorAll('[data-zoom]')) b.addEventListener('click', () => map.zoomBy(Number(b.dataset.zoom)));
  poll();
});
