// Several runs side by side: their curves overlaid (one chart per series, one
// colour per run) and a table of what differs between them: hyperparameters,
// code, environment, data and outcome (E1, H2).

import { api, qs } from './api.js';
import { h, clear, link, badge, fmtValue, errorBox, section } from './dom.js';
import { Chart, PALETTE, groupSeries, styleOf, smoothingControl } from './charts.js';

export function render(main, ids) {
  let charts = [], smoothing = 0.6;
  clear(main).append(h('p', { class: 'muted', text: 'Loading comparison…' }));
  api('/compare' + qs({ ids: ids.join(',') })).then((d) => {
    const color = {};
    d.runs.forEach((r, i) => { color[r.id] = PALETTE[i % PALETTE.length]; });
    const chartBox = h('div', { class: 'charts', id: 'charts' });
    clear(main).append(
      h('p', { class: 'crumbs' }, h('a', { href: link.runs(), text: 'Runs' }), ' / compare'),
      h('h1', { text: `Comparing ${d.runs.length} runs` }),
      h('ul', { class: 'legend' }, d.runs.map((r) => h('li', null,
        h('span', { class: 'swatch', style: { background: color[r.id] } }),
        h('a', { href: link.run(r.id), text: r.name }), ' ', badge(r.status),
        r.note ? h('span', { class: 'muted', text: ' — ' + r.note }) : null))),
      section('What differs', differencesTable(d.runs, d.differences)),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', { text: 'Curves' }),
        smoothingControl(smoothing, (w) => { smoothing = w; charts.forEach((c) => c.setSmoothing(w)); }),
        h('span', { class: 'muted', text: 'drag to zoom, double-click to reset' })), chartBox));
    const names = Object.keys(d.series).filter((n) => !/^(epoch|step|global_step)$/.test(n)).sort();
    const message = h('div');
    main.append(message);
    for (const [, group] of groupSeries(names)) {
      for (const name of group) {
        const curves = d.series[name].map((runId) => {
          const r = d.runs.find((x) => x.id === runId);
          return { run: runId, series: name, label: r ? r.name : runId, color: color[runId], style: styleOf(name) };
        });
        const chart = new Chart(chartBox, { title: name, curves, smoothing,
          onError: (e) => clear(message).append(errorBox(e)) });
        charts.push(chart);
        chart.load();
      }
    }
  }).catch((e) => clear(main).append(errorBox(e)));
  return () => charts.forEach((c) => c.destroy());
}

function differencesTable(runs, diffs) {
  if (!diffs.length) return h('p', { class: 'muted', text: 'These runs agree on every recorded setting.' });
  const body = h('tbody');
  let current = null;
  for (const d of diffs) {
    if (d.section !== current) {
      current = d.section;
      body.append(h('tr', { class: 'group' }, h('th', { colspan: String(runs.length + 1), text: current })));
    }
    body.append(h('tr', { dataset: { section: d.section, key: d.key } }, h('th', { text: d.key }),
      d.values.map((v) => h('td', { class: typeof v === 'string' && v.length > 60 ? 'wrap' : '', text: fmtValue(v) }))));
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'grid diff-table', id: 'differences' },
    h('thead', null, h('tr', null, h('th', { text: '' }), runs.map((r) => h('th', null, h('a', { href: link.run(r.id), text: r.name }))))),
    body));
}
