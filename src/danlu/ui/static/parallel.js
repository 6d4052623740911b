// Parallel coordinates (H1, H2): one vertical axis per hyperparameter that varies among the
// runs, the outcome last; one line per run, coloured by its outcome (dark = best). For a
// study, the importance it computed (fANOVA share of explained variance) sits beside it and
// orders the axes, most important first. Interactive: hover a line to read the run, click
// it to open the run, drag along an axis to keep only the runs in that range (double-click
// the axis to clear), which is how one reads "good runs have lr in here".

import { api, qs } from './api.js';
import { h, clear, link, fmtNum, fmtValue, errorBox, section } from './dom.js';
import { bestOf, fmtPrimary } from './runs.js';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 360, PAD_TOP = 34, PAD_BOTTOM = 28, PAD_X = 60;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function render(main, ids, params) {
  const study = params.get('study') || '';
  clear(main).append(h('p', { class: 'muted', text: 'Loading runs…' }));
  let alive = true, plot = null;
  Promise.all([api('/runs' + qs({ ids: ids.join(','), limit: 10000, kind: 'all' })), importanceOf(study)])
    .then(([d, importance]) => {
      if (!alive) return;
      const runs = d.runs;
      const box = h('div', { class: 'parallel-box' });
      const info = h('div', { class: 'parallel-info muted', id: 'parallel-info', text: 'hover a line to read its run' });
      clear(main).append(
        h('p', { class: 'crumbs' }, h('a', { href: link.runs(), text: 'Runs' }), ' / ',
          study ? h('a', { href: link.run(study), text: study }) : 'selection', ' / parallel coordinates'),
        h('h1', { text: study ? `Study ${study}: ${runs.length} trials` : `${runs.length} runs` }),
        h('div', { class: 'parallel-layout' },
          h('section', { class: 'panel parallel-panel' }, h('h2', { text: 'Hyperparameters → outcome' }), info, box),
          importance ? section('Importance (the study\'s fANOVA)', importanceTable(importance)) : null));
      plot = new ParallelPlot(box, runs, d.varying, importance, info);
      plot.draw();
    })
    .catch((e) => { if (alive) clear(main).append(errorBox(e)); });
  return () => { alive = false; if (plot) plot.resize.disconnect(); };
}

async function importanceOf(study) {
  if (!study) return null;
  try {
    const list = await api('/reports' + qs({ run: study, kind: 'study' }));
    if (!list.reports.length) return null;
    const rep = await api('/reports/' + list.reports[0].id);
    const finding = (rep.report.findings || []).find((f) => f.name === 'importance');
    return finding && finding.evidence && finding.evidence.importance ? finding.evidence.importance : null;
  } catch (e) {
    return null;   // no report yet (a running study): the plot stands alone
  }
}

function importanceTable(importance) {
  const rows = Object.entries(importance).sort((a, b) => (b[1].share || 0) - (a[1].share || 0));
  return h('table', { class: 'grid importance', id: 'importance' }, h('tbody', null, rows.map(([name, v]) =>
    h('tr', null, h('th', { text: name }),
      h('td', { class: 'bar-cell' }, h('span', { class: 'bar', style: { width: `${Math.round(100 * (v.share || 0))}%` } })),
      h('td', { class: 'num', text: `${Math.round(100 * (v.share || 0))}%` })))));
}

// One axis: how a value maps to a height, and back (for brushing).
function makeAxis(name, values, label) {
  const present = values.filter((v) => v !== null && v !== undefined && v !== '');
  const numeric = present.length && present.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (numeric) {
    let lo = Math.min(...present), hi = Math.max(...present);
    const log = lo > 0 && hi / lo >= 20;
    const t = (v) => (log ? Math.log10(v) : v);
    let a = t(lo), b = t(hi);
    if (a === b) { a -= 1; b += 1; }
    return { name, label, numeric: true, log, lo, hi,
      pos: (v) => (typeof v === 'number' && Number.isFinite(v) ? (t(v) - a) / (b - a) : null),
      ticks: () => [lo, hi].map((v) => [v, (t(v) - a) / (b - a)]) };
  }
  const cats = [...new Set(present.map((v) => fmtValue(v)))].sort();
  return { name, label, numeric: false, cats,
    pos: (v) => (v === null || v === undefined || v === '' ? null : cats.length === 1 ? 0.5 : cats.indexOf(fmtValue(v)) / (cats.length - 1)),
    ticks: () => cats.map((c, i) => [c, cats.length === 1 ? 0.5 : i / (cats.length - 1)]) };
}

class ParallelPlot {
  constructor(container, runs, varying, importance, info) {
    this.container = container;
    this.runs = runs;
    this.info = info;
    this.brushes = new Map();   // axis name -> [lo, hi] in 0..1 (0 = bottom)
    const order = importance
      ? [...varying].sort((a, b) => ((importance[b] || {}).share || 0) - ((importance[a] || {}).share || 0))
      : varying;
    this.axes = order.map((k) => makeAxis(k, runs.map((r) => r.config[k]), k));
    const best = bestOf(runs);
    this.metric = best ? best.primary[0] : (runs.find((r) => r.primary) || { primary: ['loss'] }).primary[0];
    this.lowerIsBetter = /loss|error|mae|mse|rmse/i.test(this.metric);
    const outcome = makeAxis('outcome', runs.map((r) => (r.primary && r.primary[0] === this.metric ? r.primary[1] : null)),
      'best ' + this.metric);
    this.axes.push(outcome);
    this.outcome = outcome;
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(container);
  }

  value(run, axis) {
    if (axis === this.outcome) return run.primary && run.primary[0] === this.metric ? run.primary[1] : null;
    return run.config[axis.name];
  }

  // Dark blue for the best outcome, light orange for the worst, grey without one.
  colour(run) {
    const p = this.outcome.pos(this.value(run, this.outcome));
    if (p === null) return '#bbb';
    const good = this.lowerIsBetter ? 1 - p : p;
    const mix = (a, b) => Math.round(a + (b - a) * good);
    return `rgb(${mix(240, 31)},${mix(170, 78)},${mix(90, 160)})`;
  }

  kept(run) {
    for (const [name, [lo, hi]] of this.brushes) {
      const axis = this.axes.find((a) => a.name === name);
      const p = axis ? axis.pos(this.value(run, axis)) : null;
      if (p === null || p < lo || p > hi) return false;
    }
    return true;
  }

  draw() {
    const width = Math.max(480, this.container.clientWidth || 800);
    const n = this.axes.length;
    const x = (i) => PAD_X + (n === 1 ? 0 : (i * (width - 2 * PAD_X)) / (n - 1));
    const y = (p) => PAD_TOP + (1 - p) * (HEIGHT - PAD_TOP - PAD_BOTTOM);
    const root = svg('svg', { width, height: HEIGHT, class: 'parallel', id: 'parallel-plot', role: 'img',
      'aria-label': `parallel coordinates of ${this.runs.length} runs` });
    const lines = svg('g', { class: 'lines' });
    const sorted = [...this.runs].sort((a, b) => (this.kept(a) - this.kept(b)));
    let shown = 0;
    for (const run of sorted) {
      const pts = this.axes.map((axis, i) => {
        const p = axis.pos(this.value(run, axis));
        return p === null ? null : `${x(i).toFixed(1)},${y(p).toFixed(1)}`;
      }).filter(Boolean);
      const kept = this.kept(run);
      shown += kept ? 1 : 0;
      const line = svg('polyline', { points: pts.join(' '), fill: 'none', stroke: kept ? this.colour(run) : '#ddd',
        'stroke-width': kept ? 2 : 1, class: kept ? 'run kept' : 'run faded', 'data-id': run.id });
      line.append(svg('title', {}, `${run.name}: ${fmtPrimary(run.primary)}`));
      line.addEventListener('mouseenter', () => {
        line.setAttribute('stroke-width', '4');
        this.info.textContent = `${run.name} · ${fmtPrimary(run.primary)} · ` +
          this.axes.slice(0, -1).map((a) => `${a.name}=${fmtValue(run.config[a.name])}`).join(' ');
      });
      line.addEventListener('mouseleave', () => line.setAttribute('stroke-width', kept ? '2' : '1'));
      line.addEventListener('click', () => { location.hash = link.run(run.id); });
      lines.append(line);
    }
    root.append(lines);
    this.axes.forEach((axis, i) => root.append(this.axisGroup(axis, x(i), y)));
    root.dataset.shown = String(shown);
    root.dataset.total = String(this.runs.length);
    clear(this.container).append(root,
      h('p', { class: 'muted small', id: 'parallel-count',
        text: `${shown} of ${this.runs.length} runs in the brushed ranges` +
          (this.brushes.size ? ' · double-click an axis to clear its range' : ' · drag along an axis to keep a range') }));
  }

  axisGroup(axis, ax, y) {
    const g = svg('g', { class: 'axis', 'data-axis': axis.name });
    g.append(svg('line', { x1: ax, x2: ax, y1: y(1), y2: y(0), stroke: '#555' }));
    g.append(svg('text', { x: ax, y: PAD_TOP - 14, 'text-anchor': 'middle', class: 'axis-label' },
      axis.label + (axis.log ? ' (log)' : '')));
    for (const [value, p] of axis.ticks()) {
      g.append(svg('text', { x: ax + 6, y: y(p) + 4, class: 'tick' }, typeof value === 'number' ? fmtNum(value) : value));
    }
    const brush = this.brushes.get(axis.name);
    if (brush) {
      g.append(svg('rect', { x: ax - 7, y: y(brush[1]), width: 14, height: Math.max(2, y(brush[0]) - y(brush[1])),
        class: 'brush' }));
    }
    // The hit area for brushing: a band around the axis.
    const hit = svg('rect', { x: ax - 12, y: y(1), width: 24, height: y(0) - y(1), class: 'axis-hit', fill: 'transparent' });
    const toP = (ev) => {
      const rect = hit.getBoundingClientRect();
      return Math.min(1, Math.max(0, 1 - (ev.clientY - rect.top) / rect.height));
    };
    hit.addEventListener('mousedown', (ev) => {
      ev.preventDefault();
      const start = toP(ev);
      const move = (e) => { const p = toP(e); this.brushes.set(axis.name, [Math.min(start, p), Math.max(start, p)]); };
      const up = (e) => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        const p = toP(e);
        if (Math.abs(p - start) < 0.01) this.brushes.delete(axis.name);
        else this.brushes.set(axis.name, [Math.min(start, p), Math.max(start, p)]);
        this.draw();
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    hit.addEventListener('dblclick', () => { this.brushes.delete(axis.name); this.draw(); });
    g.append(hit);
    return g;
  }
}
