// One run: curves of every series (T1), live while running; the diagnosis (T2);
// hyperparameters; the reproducibility record (E1); checkpoints (T3); the
// reports linked to it; note and tags (E2) editable.

import { api, editRun, POLL_MS } from './api.js';
import { h, clear, link, badge, fmtNum, fmtDuration, fmtTime, fmtBytes, errorBox, section, kvTable } from './dom.js';
import { Chart, PALETTE, groupSeries, styleOf, smoothingControl } from './charts.js';
import { valueView, reproView } from './views.js';
import { splitTags } from './runs.js';


//: Series that are bookkeeping, not curves.
const NOT_A_CURVE = /^(epoch|step|global_step)$/;

export function render(main, id) {
  let alive = true, timer = null, charts = [], smoothing = 0.6, seriesKey = '', lastStatus = null;
  const head = h('div', { class: 'run-head' });
  const message = h('div', { class: 'message' });
  const diagBox = h('div');
  const chartBox = h('div', { class: 'charts', id: 'charts' });
  const details = h('div', { class: 'run-details' });
  clear(main).append(head, message, diagBox,
    h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', { text: 'Curves' }),
      smoothingControl(smoothing, (w) => { smoothing = w; charts.forEach((c) => c.setSmoothing(w)); }),
      h('span', { class: 'muted', text: 'drag to zoom, double-click to reset' })), chartBox),
    details);

  async function load(first) {
    let run;
    try {
      run = await api('/runs/' + encodeURIComponent(id));
    } catch (e) {
      if (alive) clear(message).append(errorBox(e));
      return;
    }
    if (!alive) return;
    clear(message);
    drawHead(run);
    drawDiagnosis(run);
    const key = run.series.join('\n');
    if (first || key !== seriesKey) {
      seriesKey = key;
      drawCharts(run);
    } else {
      charts.forEach((c) => c.load());
    }
    if (first || run.status !== lastStatus) drawDetails(run);
    lastStatus = run.status;
    clearTimeout(timer);
    if (run.status === 'running' && alive) timer = setTimeout(() => load(false), POLL_MS);
    main.dataset.status = run.status;
  }

  function drawHead(run) {
    const note = h('input', { type: 'text', id: 'note', value: run.note || '', 'aria-label': 'note',
      placeholder: 'strategy note: what this run tries' });
    const tags = h('input', { type: 'text', id: 'tags', value: (run.tags || []).join(', '), 'aria-label': 'tags',
      placeholder: 'tags, comma separated' });
    const saved = h('span', { class: 'muted', id: 'saved' });
    const save = h('button', { type: 'button', id: 'save', text: 'Save',
      onclick: async () => {
        try {
          await editRun(run.id, { note: note.value, tags: splitTags(tags.value) });
          saved.textContent = 'saved';
        } catch (e) { saved.textContent = ''; clear(message).append(errorBox(e)); }
      } });
    if (head.firstChild && head.contains(document.activeElement)) {
      // keep what is being typed; refresh only the status line
      const st = head.querySelector('.status-line');
      if (st) st.replaceWith(statusLine(run));
      return;
    }
    clear(head).append(
      h('p', { class: 'crumbs' }, h('a', { href: link.runs(), text: 'Runs' }), ' / ', run.name),
      h('h1', null, h('span', { class: 'run-name', text: run.name }), ' ', badge(run.status)),
      statusLine(run),
      h('div', { class: 'edit-row' }, note, tags, save, saved));
  }

  function statusLine(run) {
    return h('p', { class: 'status-line muted' },
      `id ${run.id} · ${run.kind} · started ${fmtTime(run.created)} · duration ${fmtDuration(run.duration)}`,
      run.status === 'running' ? ' · live' : '',
      run.parent ? [' · from ', h('a', { href: link.run(run.parent), text: run.parent })] : '',
      run.recipe ? [' · ', h('code', { text: run.recipe })] : '');
  }

  function drawDiagnosis(run) {
    clear(diagBox);
    const d = run.diagnosis;
    if (!d) return;
    diagBox.append(h('section', { class: 'panel diagnosis', id: 'diagnosis' },
      h('h2', null, 'Diagnosis: ', h('span', { class: 'badge st-' + (d.status || 'info').replace(/[^a-z]/g, ''), text: d.label }),
        d.id ? h('code', { class: 'fid', text: ' ' + d.id }) : null),
      d.summary ? h('p', { text: d.summary }) : null,
      d.cause ? h('p', null, h('b', { text: 'Cause: ' }), d.cause) : null,
      d.fix ? h('p', null, h('b', { text: 'Fix: ' }), d.fix) : null,
      d.report_id ? h('p', null, h('a', { href: link.report(d.report_id), text: 'full diagnosis report' })) : null));
  }

  function drawCharts(run) {
    charts.forEach((c) => c.destroy());
    charts = [];
    clear(chartBox);
    const plotted = run.series.filter((n) => !NOT_A_CURVE.test(n));  // "epoch" against step says nothing
    if (!plotted.length) {
      chartBox.append(h('p', { class: 'muted', text: 'No curves logged yet.' }));
      return;
    }
    let color = 0;
    const colors = {};
    for (const name of plotted) colors[name] = PALETTE[color++ % PALETTE.length];
    for (const [title, names] of groupSeries(plotted)) {
      const chart = new Chart(chartBox, {
        title,
        label: names.join(' · '),
        curves: names.map((n) => ({ run: run.id, series: n, label: n, color: colors[n], style: styleOf(n) })),
        smoothing,
        onError: (e) => clear(message).append(errorBox(e)),
      });
      charts.push(chart);
      chart.load();
    }
  }

  function drawDetails(run) {
    const metrics = run.metrics || {};
    clear(details).append(
      h('div', { class: 'two' },
        section('Summary', Object.keys(metrics).length ? kvTable(metrics, (v) => h('span', { text: fmtNum(v) })) : h('p', { class: 'muted', text: 'No summary yet.' })),
        section('Hyperparameters', h('div', { id: 'hyperparameters' }, kvTable(run.config, valueView)))),
      section('Reports', reportsList(run.reports)),
      section('Checkpoints', h('div', { id: 'checkpoints' }, filesTable(run.checkpoints, 'No checkpoints in this run\'s folder.'))),
      section('Reproducibility', run.command ? h('p', null, 'command: ', h('code', { text: run.command })) : null,
        h('div', { id: 'repro' }, reproView(run.repro))),
      section('Artefacts', h('details', null, h('summary', { text: `${run.artefacts.length} files in the run's folder` }),
        filesTable(run.artefacts, 'No files.'))));
  }

  load(true);
  return () => { alive = false; clearTimeout(timer); charts.forEach((c) => c.destroy()); };
}

function reportsList(reports) {
  if (!reports || !reports.length) return h('p', { class: 'muted', text: 'No reports for this run.' });
  return h('ul', { class: 'reports-list' }, reports.map((r) => h('li', null, badge(r.status), ' ',
    h('a', { href: link.report(r.id), text: r.title }), h('span', { class: 'muted', text: ` ${r.kind} · ${fmtTime(r.created)}` }))));
}

function filesTable(files, empty) {
  if (!files || !files.length) return h('p', { class: 'muted', text: empty });
  return h('table', { class: 'grid files' },
    h('thead', null, h('tr', null, ['file', 'size', 'modified'].map((c) => h('th', { text: c })))),
    h('tbody', null, files.map((f) => h('tr', null,
      h('td', null, h('a', { href: link.file(f.path), text: f.name })),
      h('td', { class: 'num', text: fmtBytes(f.size) }),
      h('td', { text: fmtTime(f.modified) })))));
}
