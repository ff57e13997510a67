// WMap: a small Web Mercator map drawn on a canvas, shared by the console and the tracking page.
// Tiles come from a URL template ({z}/{x}/{y}) when one is configured; without them the map draws a
// graticule with degree labels and a scale bar, so positions stay readable offline.
'use strict';

const TILE = 256;
const MAXLAT = 85.05112878;

class WMap {
  constructor(canvas, opts) {
    opts = opts || {};
    this.canvas = canvas;
    this.tileURL = opts.tileURL || '';
    this.attribution = opts.attribution || '';
    this.onPick = opts.onPick || null;
    this.lat = 51.5; this.lon = 0; this.z = 3;
    this.trucks = []; // {id, lat, lon, label, online}
    this.dests = [];  // {id, lat, lon, label}
    this.track = [];  // [[lat, lon], ...]
    this.tiles = new Map();
    this.pending = false;
    this.fitted = false;
    this.drawn = 0; // frames drawn, for tests
    this.bind();
    new ResizeObserver(() => this.redraw()).observe(canvas);
  }

  // world pixel coordinates at zoom z
  project(lat, lon, z) {
    const s = TILE * Math.pow(2, z);
    lat = Math.max(-MAXLAT, Math.min(MAXLAT, lat));
    const r = lat * Math.PI / 180;
    return {x: (lon + 180) / 360 * s, y: (1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2 * s};
  }

  unproject(x, y, z) {
    const s = TILE * Math.pow(2, z);
    const lon = x / s * 360 - 180;
    const n = Math.PI - 2 * Math.PI * y / s;
    return {lat: 180 / Math.PI * Math.atan(Math.sinh(n)), lon: lon};
  }

  size() { return {w: this.canvas.clientWidth, h: this.canvas.clientHeight}; }

  // screenOf is a position in CSS pixels from the canvas's top left.
  screenOf(lat, lon) {
    const c = this.project(this.lat, this.lon, this.z), p = this.project(lat, lon, this.z), sz = this.size();
    return {x: p.x - c.x + sz.w / 2, y: p.y - c.y + sz.h / 2};
  }

  setView(lat, lon, z) {
    this.lat = lat; this.lon = lon;
    if (z !== undefined) this.z = Math.max(1, Math.min(19, Math.round(z)));
    this.redraw();
  }

  zoomBy(d, sx, sy) {
    const sz = this.size();
    if (sx === undefined) { sx = sz.w / 2; sy = sz.h / 2; }
    const nz = Math.max(1, Math.min(19, this.z + d));
    if (nz === this.z) return;
    // keep the point under (sx, sy) where it is
    const c = this.project(this.lat, this.lon, this.z);
    const at = this.unproject(c.x + sx - sz.w / 2, c.y + sy - sz.h / 2, this.z);
    const p = this.project(at.lat, at.lon, nz);
    const nc = this.unproject(p.x - sx + sz.w / 2, p.y - sy + sz.h / 2, nz);
    this.z = nz; this.lat = nc.lat; this.lon = nc.lon;
    this.redraw();
  }

  // fit shows every point (with a margin), at most zoom maxZ.
  fit(points, maxZ) {
    if (!points.length) return;
    const sz = this.size();
    let lo = {lat: 90, lon: 180}, hi = {lat: -90, lon: -180};
    for (const [la, lo2] of points) {
      lo.lat = Math.min(lo.lat, la); lo.lon = Math.min(lo.lon, lo2);
      hi.lat = Math.max(hi.lat, la); hi.lon = Math.max(hi.lon, lo2);
    }
    let z = maxZ || 16;
    for (; z > 1; z--) {
      const a = this.project(hi.lat, lo.lon, z), b = this.project(lo.lat, hi.lon, z);
      if (b.x - a.x < sz.w * 0.8 && b.y - a.y < sz.h * 0.8) break;
    }
    const a = this.project(hi.lat, lo.lon, z), b = this.project(lo.lat, hi.lon, z);
    const c = this.unproject((a.x + b.x) / 2, (a.y + b.y) / 2, z);
    this.fitted = true;
    this.setView(c.lat, c.lon, z);
  }

  set(layer, v) { this[layer] = v; this.redraw(); }

  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  bind() {
    const cv = this.canvas;
    let drag = null, moved = false;
    const pointers = new Map();
    let pinch = null;
    cv.addEventListener('pointerdown', e => {
      cv.setPointerCapture(e.pointerId);
      pointers.set(e.pointerId, {x: e.offsetX, y: e.offsetY});
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        pinch = Math.hypot(a.x - b.x, a.y - b.y);
      }
      drag = {x: e.offsetX, y: e.offsetY}; moved = false;
    });
    cv.addEventListener('pointermove', e => {
      if (!pointers.has(e.pointerId)) return;
      pointers.set(e.pointerId, {x: e.offsetX, y: e.offsetY});
      if (pointers.size === 2 && pinch) {
        const [a, b] = [...pointers.values()];
        const d = Math.hypot(a.x - b.x, a.y - b.y);
        if (d > pinch * 1.6) { this.zoomBy(1, (a.x + b.x) / 2, (a.y + b.y) / 2); pinch = d; }
        else if (d < pinch / 1.6) { this.zoomBy(-1, (a.x + b.x) / 2, (a.y + b.y) / 2); pinch = d; }
        moved = true;
        return;
      }
      if (!drag) return;
      const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      if (!moved) return;
      const c = this.project(this.lat, this.lon, this.z);
      const n = this.unproject(c.x - dx, c.y - dy, this.z);
      this.lat = n.lat; this.lon = ((n.lon + 540) % 360) - 180;
      drag = {x: e.offsetX, y: e.offsetY};
      this.redraw();
    });
    const up = e => {
      pointers.delete(e.pointerId);
      if (pointers.size < 2) pinch = null;
      if (drag && !moved && this.onPick && pointers.size === 0) this.pick(e.offsetX, e.offsetY);
      if (pointers.size === 0) drag = null;
    };
    cv.addEventListener('pointerup', up);
    cv.addEventListener('pointercancel', e => { pointers.delete(e.pointerId); drag = null; pinch = null; });
    cv.addEventListener('wheel', e => {
      e.preventDefault();
      this.zoomBy(e.deltaY < 0 ? 1 : -1, e.offsetX, e.offsetY);
    }, {passive: false});
    cv.addEventListener('dblclick', e => this.zoomBy(1, e.offsetX, e.offsetY));
  }

  pick(x, y) {
    for (const kind of ['trucks', 'dests']) {
      for (const m of this[kind]) {
        const p = this.screenOf(m.lat, m.lon);
        if (Math.hypot(p.x - x, p.y - y) < 14) { this.onPick(kind, m.id); return; }
      }
    }
  }

  tile(z, x, y) {
    const key = z + '/' + x + '/' + y;
    let t = this.tiles.get(key);
    if (!t) {
      if (this.tiles.size > 300) this.tiles.delete(this.tiles.keys().next().value);
      t = new Image();
      t.referrerPolicy = 'no-referrer';
      t.onload = () => this.redraw();
      t.src = this.tileURL.replace('{z}', z).replace('{x}', x).replace('{y}', y);
      this.tiles.set(key, t);
    }
    return t.complete && t.naturalWidth ? t : null;
  }

  draw() {
    const cv = this.canvas, dpr = window.devicePixelRatio || 1, sz = this.size();
    if (!sz.w || !sz.h) return;
    if (cv.width !== Math.round(sz.w * dpr) || cv.height !== Math.round(sz.h * dpr)) {
      cv.width = Math.round(sz.w * dpr); cv.height = Math.round(sz.h * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = '#eef2f5';
    g.fillRect(0, 0, sz.w, sz.h);
    const c = this.project(this.lat, this.lon, this.z);
    const ox = c.x - sz.w / 2, oy = c.y - sz.h / 2;
    const n = Math.pow(2, this.z);
    if (this.tileURL) {
      for (let ty = Math.floor(oy / TILE); ty * TILE < oy + sz.h; ty++) {
        if (ty < 0 || ty >= n) continue;
        for (let tx = Math.floor(ox / TILE); tx * TILE < ox + sz.w; tx++) {
          const img = this.tile(this.z, ((tx % n) + n) % n, ty);
          if (img) g.drawImage(img, Math.round(tx * TILE - ox), Math.round(ty * TILE - oy), TILE, TILE);
        }
      }
    }
    this.graticule(g, sz, ox, oy);
    // the track
    if (this.track.length > 1) {
      g.strokeStyle = '#1f5fbf'; g.lineWidth = 3; g.lineJoin = 'round';
      g.beginPath();
      this.track.forEach(([la, lo], i) => {
        const p = this.project(la, lo, this.z);
        if (i === 0) g.moveTo(p.x - ox, p.y - oy); else g.lineTo(p.x - ox, p.y - oy);
      });
      g.stroke();
    }
    g.font = '13px system-ui, sans-serif';
    g.textBaseline = 'middle';
    for (const d of this.dests) {
      const p = this.screenOf(d.lat, d.lon);
      g.fillStyle = '#d9822b'; g.strokeStyle = '#fff'; g.lineWidth = 2;
      g.beginPath(); g.moveTo(p.x, p.y - 8); g.lineTo(p.x + 7, p.y); g.lineTo(p.x, p.y + 8); g.lineTo(p.x - 7, p.y); g.closePath();
      g.fill(); g.stroke();
      if (d.label) this.label(g, d.label, p.x + 10, p.y);
    }
    for (const t of this.trucks) {
      const p = this.screenOf(t.lat, t.lon);
      g.fillStyle = t.online ? '#0a7d32' : '#7a7a7a'; g.strokeStyle = '#fff'; g.lineWidth = 2;
      g.beginPath(); g.arc(p.x, p.y, 8, 0, 2 * Math.PI); g.fill(); g.stroke();
      if (t.label) this.label(g, t.label, p.x + 12, p.y);
    }
    this.scale(g, sz);
    if (this.tileURL && this.attribution) {
      g.font = '11px system-ui, sans-serif';
      const w = g.measureText(this.attribution).width;
      g.fillStyle = 'rgba(255,255,255,.8)'; g.fillRect(sz.w - w - 8, sz.h - 16, w + 8, 16);
      g.fillStyle = '#333'; g.fillText(this.attribution, sz.w - w - 4, sz.h - 8);
    }
    this.drawn++;
  }

  label(g, text, x, y) {
    const w = g.measureText(text).width;
    g.fillStyle = 'rgba(255,255,255,.85)'; g.fillRect(x - 2, y - 9, w + 4, 18);
    g.fillStyle = '#111'; g.fillText(text, x, y);
  }

  // graticule: lines every "nice" step of degrees, about 120 px apart, labelled.
  graticule(g, sz, ox, oy) {
    const degPerPx = 360 / (TILE * Math.pow(2, this.z));
    const steps = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30];
    const step = steps.find(s => s / degPerPx >= 100) || 30;
    const nw = this.unproject(ox, oy, this.z), se = this.unproject(ox + sz.w, oy + sz.h, this.z);
    const dec = Math.max(0, -Math.floor(Math.log10(step)));
    g.strokeStyle = this.tileURL ? 'rgba(0,0,0,.12)' : 'rgba(0,0,0,.2)'; g.lineWidth = 1;
    g.fillStyle = '#555'; g.font = '11px system-ui, sans-serif'; g.textBaseline = 'top';
    for (let lon = Math.ceil(nw.lon / step) * step; lon <= se.lon; lon += step) {
      const x = Math.round(this.project(0, lon, this.z).x - ox) + 0.5;
      g.beginPath(); g.moveTo(x, 0); g.lineTo(x, sz.h); g.stroke();
      g.fillText(lon.toFixed(dec) + '°', x + 3, 3);
    }
    for (let lat = Math.ceil(se.lat / step) * step; lat <= nw.lat; lat += step) {
      const y = Math.round(this.project(lat, 0, this.z).y - oy) + 0.5;
      g.beginPath(); g.moveTo(0, y); g.lineTo(sz.w, y); g.stroke();
      g.fillText(lat.toFixed(dec) + '°', 3, y + 3);
    }
    g.textBaseline = 'middle';
  }

  scale(g, sz) {
    const mPerPx = 156543.03392 * Math.cos(this.lat * Math.PI / 180) / Math.pow(2, this.z);
    const nice = [1, 2, 5];
    let m = 1;
    for (let e = 0; e < 8; e++) for (const k of nice) if (k * Math.pow(10, e) / mPerPx <= 120) m = k * Math.pow(10, e);
    const px = m / mPerPx, text = m >= 1000 ? (m / 1000) + ' km' : m + ' m';
    g.fillStyle = 'rgba(255,255,255,.8)'; g.fillRect(6, sz.h - 24, px + 50, 18);
    g.strokeStyle = '#222'; g.lineWidth = 2;
    g.beginPath(); g.moveTo(10, sz.h - 12); g.lineTo(10, sz.h - 8); g.lineTo(10 + px, sz.h - 8); g.lineTo(10 + px, sz.h - 12); g.stroke();
    g.fillStyle = '#222'; g.font = '11px system-ui, sans-serif'; g.fillText(text, 14 + px, sz.h - 12);
  }
}

// distanceM is the great-circle distance in metres.
function distanceM(lat1, lon1, lat2, lon2) {
  const r = 6371008.8, rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad, dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.min(1, Math.sqrt(a)));
}

function fmtDistance(m) {
  return m >= 10000 ? (m / 1000).toFixed(0) + ' km' : m >= 1000 ? (m / 1000).toFixed(1) + ' km' : Math.round(m) + ' m';
}
