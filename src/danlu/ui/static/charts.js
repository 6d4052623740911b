// Curves with uPlot. The server downsamples (min/max per bucket, so spikes and NaN
// survive) to about 2,000 points per chart; a drag-zoom asks the server again for
// the window, so zooming into a million-point curve shows every point there.
// Double-click or "reset zoom" goes back to the whole run.

import uPlot from './vendor/uplot/uPlot.esm.js';
import { api, qs } from './api.js';
import { h, clear, fmtNum } from './dom.js';

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#17becf',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];

export const POINTS_PER_CHART = 2000;

// Exponential moving average with start-up bias correction (as TensorBoard does),
// skipping the steps a curve did not log (null).
export function smooth(values, weight) {
  if (!(weight > 0)) return values.slice();
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

function fade(color) { return color + '55'; }

// Which series go together in one chart on a run page: every *loss together,
// learning rates together, and train/val of the same metric together.
export function groupSeries(names) {
  const groups = new Map();
  for (const name of names) {
    const last = name.split('/').pop();
    let key;
    if (/^sys\//.test(name)) key = 'resources: ' + last.replace(/_/g, ' ');
    else if (/loss/i.test(last)) key = 'loss';
    else if (/^(lr|learning_rate)$/i.test(last) || /(^|\/)lr(\/|$)/.test(name)) key = 'learning rate';
    else key = last;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(name);
  }
  const order = (k) => (k === 'loss' ? 0 : k === 'learning rate' ? 2 : k.startsWith('resources') ? 3 : 1);
  return [...groups.entries()].sort((a, b) => order(a[0]) - order(b[0]) || a[0].localeCompare(b[0]));
}

// Per-batch series are smoothed; probe points and per-epoch values are drawn as points.
export function styleOf(name) {
  if (/probe/i.test(name)) return 'points';
  if (/^train\//.test(name) || name === 'loss') return 'smooth';
  return 'line';
}

export class Chart {
  // curves: [{run, series, label, color, style}]
  // title: the chart's key (data-title); label: what it shows (the full series names, by default the title).
  constructor(container, { title, label, curves, smoothing = 0, points = POINTS_PER_CHART, onError }) {
    this.curves = curves;
    this.log = false;
    this.smoothing = smoothing;
    this.points = points;
    this.window = null; // {start, end} when zoomed
    this.onError = onError || (() => {});
    this.raw = null;
    this.seq = 0;
    this.el = h('div', { class: 'chart', dataset: { title, curves: String(curves.length) } });
    this.head = h('div', { class: 'chart-head' },
      h('span', { class: 'chart-title', text: label || title }),
      this.caption = h('span', { class: 'chart-caption muted' }),
      this.resetBtn = h('button', { class: 'small', type: 'button', text: 'reset zoom', hidden: true,
        onclick: () => this.zoom(null) }),
      this.logBtn = h('button', { class: 'small log-toggle', type: 'button', text: 'log y', 'aria-pressed': 'false',
        title: 'logarithmic y axis (for losses that fall over decades)', onclick: () => this.setLog(!this.log) }));
    this.plotEl = h('div', { class: 'plot' });
    this.el.append(this.head, this.plotEl);
    container.append(this.el);
    this.resize = new ResizeObserver(() => {
      if (this.u) this.u.setSize({ width: this.width(), height: this.u.height });
    });
    this.resize.observe(this.el);
  }

  width() { return Math.max(300, (this.el.clientWidth || 600) - 8); }

  async load() {
    const seq = ++this.seq;
    const params = { s: this.curves.map((c) => `${c.run}:${c.series}`), points: this.points };
    if (this.window) { params.start = this.window.start; params.end = this.window.end; }
    let data;
    try {
      data = await api('/chart' + qs(params));
    } catch (e) {
      this.onError(e);
      return;
    }
    if (seq !== this.seq) return; // a newer request (zoom) answered first
    this.raw = data;
    this.draw();
  }

  zoom(window) {
    this.window = window;
    this.resetBtn.hidden = !window;
    this.el.dataset.zoomed = window ? `${window.start}..${window.end}` : '';
    return this.load();
  }

  setSmoothing(w) {
    this.smoothing = w;
    if (this.raw) this.draw();
  }

  setLog(on) {
    this.log = on;
    this.logBtn.setAttribute('aria-pressed', String(on));
    this.el.dataset.log = on ? 'true' : '';
    if (this.u) { this.u.destroy(); this.u = null; }
    if (this.raw) this.draw();
  }

  // [x, curve values..., smoothed overlays...] and the matching uPlot series.
  build() {
    const data = [this.raw.x];
    const series = [{ label: 'step', value: (u, v) => (v === null ? '—' : fmtNum(v)) }];
    const overlays = [];
    this.raw.series.forEach((s, i) => {
      const c = this.curves[i];
      const style = c.style || styleOf(c.series);
      const sparse = s.shown < 200;
      data.push(s.values);
      const base = {
        label: c.label, stroke: c.color, width: 1.5, spanGaps: true,
        value: (u, v) => (v === null || v === undefined ? '—' : fmtNum(v)),
      };
      if (style === 'points') {
        series.push({ ...base, paths: () => null, points: { show: true, size: 6, fill: c.color } });
      } else if (style === 'smooth' && this.smoothing > 0) {
        series.push({ ...base, stroke: fade(c.color), width: 1, points: { show: false } });
        overlays.push({ i, c });
      } else {
        series.push({ ...base, points: { show: sparse, size: 5, fill: c.color } });
      }
    });
    for (const { i, c } of overlays) {
      data.push(smooth(this.raw.series[i].values, this.smoothing));
      series.push({ label: `${c.label} (smoothed)`, stroke: c.color, width: 2, spanGaps: true,
        points: { show: false }, value: (u, v) => (v === null ? '—' : fmtNum(v)) });
    }
    return { data, series };
  }

  draw() {
    const { data, series } = this.build();
    const shown = this.raw.x.length;
    const total = this.raw.series.reduce((a, s) => a + s.total, 0);
    const bad = this.raw.series.filter((s) => s.nonfinite > 0);
    this.caption.textContent = `${shown.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} points` +
      (this.window ? ` · steps ${fmtNum(this.window.start)}–${fmtNum(this.window.end)}` : '') +
      (bad.length ? ` · NaN/Inf in ${bad.map((s) => `${s.name} from step ${s.first_nonfinite}`).join(', ')}` : '');
    const positive = this.raw.series.every((s) => s.values.every((v) => v === null || !Number.isFinite(v) || v > 0));
    this.logBtn.disabled = !positive;   // a log axis cannot show values at or below zero
    if (!positive && this.log) { this.log = false; this.el.dataset.log = ''; if (this.u) { this.u.destroy(); this.u = null; } }
    this.el.dataset.points = String(shown);
    this.el.dataset.series = String(series.length - 1);
    this.el.dataset.total = String(total);
    const sameShape = this.u && this.u.series.length === series.length &&
      series.every((s, i) => this.u.series[i].label === s.label);
    if (sameShape) {
      this.u.setData(data);
      return;
    }
    if (this.u) this.u.destroy();
    clear(this.plotEl);
    const self = this;
    this.u = new uPlot({
      width: this.width(),
      height: 240,
      series,
      scales: { x: { time: false }, y: this.log ? { distr: 3 } : {} },
      axes: [{ label: 'step', size: 40 }, { size: 60, values: (u, vals) => vals.map(fmtNum) }],
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks: {
        setSelect: [(u) => {
          const { left, width } = u.select;
          if (width > 4) {
            const a = u.posToVal(left, 'x'), b = u.posToVal(left + width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            self.zoom({ start: Math.floor(a), end: Math.ceil(b) });
          }
        }],
        ready: [(u) => u.over.addEventListener('dblclick', () => self.zoom(null))],
      },
    }, data, this.plotEl);
  }

  destroy() {
    this.seq++;
    this.resize.disconnect();
    if (this.u) this.u.destroy();
    this.u = null;
  }
}

// A row of smoothing controls shared by the charts of a page.
export function smoothingControl(initial, onChange) {
  const out = h('output', { text: initial.toFixed(2) });
  const input = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', value: String(initial),
    id: 'smoothing', 'aria-label': 'smoothing',
    oninput: () => { out.textContent = Number(input.value).toFixed(2); onChange(Number(input.value)); } });
  return h('label', { class: 'smoothing' }, 'smoothing of per-batch curves ', input, ' ', out);
}
