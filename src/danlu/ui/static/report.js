// Reports: the one report model (danlu/report.py, Report.to_dict()) drawn by one
// generic view, whatever produced it (doctor checks, diagnosis, audits, case
// studies, LR finder): findings with status, practice ID, summary, evidence,
// cause and fix; tables; images from the run's folder.

import { api } from './api.js';
import { h, clear, link, badge, fmtTime, fmtValue, errorBox, kvTable } from './dom.js';
import { valueView } from './views.js';

const ORDER = { fail: 0, warn: 1, skip: 2, info: 3, pass: 4 };

export function reportView(report, runId) {
  const r = report || {};
  const findings = [...(r.findings || [])].sort((a, b) => (ORDER[a.status] ?? 5) - (ORDER[b.status] ?? 5));
  const counts = Object.entries(r.counts || {}).filter(([, n]) => n > 0);
  return h('article', { class: 'report', dataset: { kind: r.kind || '' } },
    h('header', { class: 'report-head' },
      h('h2', null, badge(r.status), ' ', h('span', { class: 'report-title', text: r.title || r.kind || 'report' })),
      h('p', { class: 'muted' }, `${r.kind || ''} · ${fmtTime(r.created)}`,
        counts.length ? ' · ' + counts.map(([s, n]) => `${n} ${s}`).join(', ') : '')),
    findings.length ? h('div', { class: 'findings' }, findings.map(findingView)) : null,
    (r.tables || []).map(tableView),
    (r.images || []).length ? h('div', { class: 'images' }, r.images.map((img) => imageView(img, runId))) : null,
    r.meta && Object.keys(r.meta).length ? h('details', { class: 'meta' }, h('summary', { text: 'details' }),
      kvTable(r.meta, valueView)) : null);
}

export function findingView(f) {
  const open = f.status === 'fail' || f.status === 'warn';
  const evidence = f.evidence && Object.keys(f.evidence).length ? kvTable(f.evidence, valueView, 'kv evidence') : null;
  return h('details', { class: 'finding st-' + String(f.status || '').replace(/[^a-z]/g, ''), open },
    h('summary', null, badge(f.status), ' ', h('code', { class: 'fid', text: f.id || '' }), ' ',
      h('strong', { text: f.name || '' }), ' ', h('span', { class: 'fsum', text: f.summary || '' }),
      f.seconds ? h('span', { class: 'muted', text: ` (${Number(f.seconds).toFixed(2)} s)` }) : null),
    h('div', { class: 'finding-body' },
      f.cause ? h('p', null, h('b', { text: 'Cause: ' }), f.cause) : null,
      f.fix ? h('p', null, h('b', { text: 'Fix: ' }), f.fix) : null,
      evidence ? h('div', null, h('b', { text: 'Evidence' }), evidence) : null,
      f.details ? h('pre', { class: 'text', text: f.details }) : null));
}

export function tableView(t) {
  return h('div', { class: 'report-table' }, h('h3', { text: t.title || '' }),
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
      h('thead', null, h('tr', null, (t.columns || []).map((c) => h('th', { text: c })))),
      h('tbody', null, (t.rows || []).map((row) => h('tr', null, row.map((v) => h('td', { text: fmtValue(v) }))))))));
}

function imageView(path, runId) {
  if (!runId) return h('p', { class: 'muted', text: `image ${path} (no run folder)` });
  const src = link.file(`${runId}/${path}`);
  return h('figure', null, h('a', { href: src }, h('img', { src, alt: path, loading: 'lazy' })),
    h('figcaption', { text: path }));
}

// #/reports: every report in the store.
export function renderList(main) {
  clear(main).append(h('h1', { text: 'Reports' }));
  const box = h('div');
  main.append(box);
  api('/reports').then((d) => {
    if (!d.reports.length) {
      box.append(h('p', { class: 'muted', text: 'No reports yet. `danlu check RECIPE` writes the first.' }));
      return;
    }
    box.append(h('table', { class: 'grid', id: 'reports' },
      h('thead', null, h('tr', null, ['#', 'status', 'kind', 'title', 'run', 'created'].map((c) => h('th', { text: c })))),
      h('tbody', null, d.reports.map((r) => h('tr', null,
        h('td', null, h('a', { href: link.report(r.id), text: String(r.id) })),
        h('td', null, badge(r.status)),
        h('td', { text: r.kind }),
        h('td', null, h('a', { href: link.report(r.id), text: r.title })),
        h('td', null, r.run_id ? h('a', { href: link.run(r.run_id), text: r.run_name || r.run_id }) : '—'),
        h('td', { text: fmtTime(r.created) }))))));
  }).catch((e) => box.append(errorBox(e)));
  return () => {};
}

// #/report/N: one report.
export function renderOne(main, id) {
  clear(main).append(h('p', { class: 'muted', text: 'Loading report…' }));
  api('/reports/' + encodeURIComponent(id)).then((d) => {
    clear(main).append(
      h('p', { class: 'crumbs' }, h('a', { href: link.reports(), text: 'Reports' }), ' / ',
        d.run_id ? h('a', { href: link.run(d.run_id), text: d.run_name || d.run_id }) : 'no run', ' / ', `#${d.id}`),
      reportView(d.report, d.run_id));
  }).catch((e) => clear(main).append(errorBox(e)));
  return () => {};
}
