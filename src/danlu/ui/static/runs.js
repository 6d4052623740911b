// The runs table (practice E2). By default the training runs, with the columns a reader
// wants first: name, status, the best validation metric and the diagnosis, then when it
// ran, the hyperparameters that vary among the shown runs, tags and the note (one line,
// the full text on hover). Other kinds of runs (checks, audits, LR searches, studies...)
// are one click away; the trials of a study fold into one row that opens. A column
// chooser, remembered per store, shows or hides any column. Filtering and sorting run on
// the server (see danlu/ui/query.py for the filter language); notes and tags are edited inline.

import { api, qs, editRun, POLL_MS } from './api.js';
import { h, append, clear, link, badge, fmtNum, fmtValue, fmtDuration, fmtTime, errorBox } from './dom.js';

const PAGE = 200;
//: Hyperparameter columns shown before the reader chooses: the first few that vary.
export const DEFAULT_HP_COLUMNS = 5;
const KIND_LABEL = { train: 'training', all: 'all' };

export function render(main, params) {
  const state = {
    q: params.get('q') || '', status: params.get('status') || '', tag: params.get('tag') || '',
    kind: params.get('kind') || 'train', sort: params.get('sort') || '-created', limit: PAGE,
    selected: new Set(), expanded: new Set(), editing: 0, data: null, store: '', choosing: false,
  };
  let timer = null, alive = true, seq = 0;

  const filter = h('input', { type: 'search', id: 'filter', value: state.q, 'aria-label': 'filter runs',
    placeholder: 'filter: words, tag:T, status:S, lr:1e-4..1e-2, acc>0.9', size: '40' });
  const kinds = h('div', { class: 'kinds', id: 'kinds', role: 'tablist' });
  const statusSel = h('select', { id: 'status-filter', 'aria-label': 'status' });
  const tagSel = h('select', { id: 'tag-filter', 'aria-label': 'tag' });
  const count = h('span', { class: 'muted', id: 'run-count' });
  const compareBtn = h('button', { type: 'button', id: 'compare', disabled: true, text: 'Compare selected',
    onclick: () => { location.hash = link.compare([...state.selected]); } });
  const parallelBtn = h('button', { type: 'button', id: 'parallel', disabled: true, text: 'Parallel coordinates',
    title: 'hyperparameters against the outcome, for the selected runs',
    onclick: () => { location.hash = link.parallel([...state.selected]); } });
  const chooserBtn = h('button', { type: 'button', id: 'columns', text: 'Columns ▾', 'aria-expanded': 'false',
    onclick: () => { state.choosing = !state.choosing; drawChooser(); } });
  const chooser = h('div', { class: 'chooser', id: 'column-chooser', hidden: true });
  const message = h('div', { class: 'message' });
  const table = h('table', { class: 'runs', id: 'runs' });
  const more = h('button', { type: 'button', class: 'more', hidden: true, text: 'Show more',
    onclick: () => { state.limit += PAGE; load(); } });

  let debounce = null;
  filter.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.q = filter.value; state.limit = PAGE; remember(); load(); }, 200);
  });
  statusSel.addEventListener('change', () => { state.status = statusSel.value; remember(); load(); });
  tagSel.addEventListener('change', () => { state.tag = tagSel.value; remember(); load(); });

  clear(main).append(
    kinds,
    h('div', { class: 'toolbar' }, filter, statusSel, tagSel, chooserBtn, compareBtn, parallelBtn, count),
    chooser, message, h('div', { class: 'table-wrap' }, table), more);

  function remember() {
    const p = new URLSearchParams();
    for (const k of ['q', 'status', 'tag']) if (state[k]) p.set(k, state[k]);
    if (state.kind !== 'train') p.set('kind', state.kind);
    if (state.sort !== '-created') p.set('sort', state.sort);
    const hash = '#/' + (p.toString() ? '?' + p : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  async function load(quiet = false) {
    const mine = ++seq;
    let data;
    try {
      data = await api('/runs' + qs({ q: state.q, status: state.status, tag: state.tag, sort: state.sort,
        kind: state.kind, limit: state.limit }));
    } catch (e) {
      if (mine === seq && alive) clear(message).append(errorBox(e));
      return;
    }
    if (mine !== seq || !alive) return;
    clear(message);
    state.data = data;
    state.store = data.store || '';
    if (!(quiet && (state.editing || state.choosing))) draw();
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    const running = state.data && state.data.runs.some((r) => r.status === 'running');
    if (alive) timer = setTimeout(() => load(true), running ? POLL_MS : POLL_MS * 5);
  }

  function options(sel, values, current, label) {
    append(clear(sel), h('option', { value: '', text: label }),
      values.map(([v, text]) => h('option', { value: v, text })));
    sel.value = current;
  }

  // ------------------------------------------------------------------ columns
  // Every column the table can show; `on` says whether it shows before the reader chooses.
  function allColumns(d) {
    const mixed = state.kind !== 'train' && new Set(d.runs.map((r) => r.kind)).size > 1;
    const cols = [
      { id: 'name', label: 'name', sort: 'name', fixed: true },
      { id: 'kind', label: 'kind', sort: 'kind', on: mixed },
      { id: 'status', label: 'status', sort: 'status', on: true },
      { id: 'best', label: 'best', sort: 'primary', on: true, cls: 'num', title: 'best validation metric (else loss)' },
      { id: 'diagnosis', label: 'diagnosis', sort: 'diagnosis', on: true },
      { id: 'started', label: 'started', sort: 'created', on: true },
      { id: 'duration', label: 'duration', sort: 'duration', on: true, cls: 'num' },
    ];
    d.varying.forEach((k, i) => cols.push({ id: 'hp:' + k, label: k, sort: 'config.' + k, cls: 'hp',
      on: i < DEFAULT_HP_COLUMNS, group: 'hyperparameters' }));
    d.metrics.forEach((k) => cols.push({ id: 'm:' + k, label: k, sort: 'metrics.' + k, cls: 'num', on: false,
      group: 'metrics' }));
    cols.push({ id: 'tags', label: 'tags', on: true }, { id: 'note', label: 'note', sort: 'note', on: true },
      { id: 'id', label: 'id', sort: 'id', on: false });
    return cols;
  }

  function storageKey() { return 'danlu.columns:' + state.store; }

  function choices() {
    try { return JSON.parse(localStorage.getItem(storageKey()) || '{}') || {}; } catch (e) { return {}; }
  }

  function setChoice(id, on) {
    const c = choices();
    c[id] = on;
    try { localStorage.setItem(storageKey(), JSON.stringify(c)); } catch (e) { /* private mode: not remembered */ }
  }

  function visible(cols) {
    const c = choices();
    return cols.filter((col) => col.fixed || (col.id in c ? c[col.id] : col.on));
  }

  function drawChooser() {
    chooserBtn.setAttribute('aria-expanded', String(state.choosing));
    chooser.hidden = !state.choosing;
    if (!state.choosing || !state.data) return;
    const cols = allColumns(state.data).filter((c) => !c.fixed);
    const shown = new Set(visible(cols).map((c) => c.id));
    const box = (col) => h('label', { class: 'choice' },
      h('input', { type: 'checkbox', checked: shown.has(col.id), dataset: { column: col.id },
        onchange: (e) => { setChoice(col.id, e.target.checked); draw(); } }), ' ' + col.label);
    const groups = [['columns', cols.filter((c) => !c.group)],
      ['hyperparameters', cols.filter((c) => c.group === 'hyperparameters')],
      ['metrics', cols.filter((c) => c.group === 'metrics')]];
    append(clear(chooser),
      groups.filter(([, list]) => list.length).map(([title, list]) =>
        h('fieldset', null, h('legend', { text: title }), list.map(box))),
      h('button', { type: 'button', class: 'small', text: 'defaults', onclick: () => {
        try { localStorage.removeItem(storageKey()); } catch (e) { /* nothing remembered */ }
        draw(); drawChooser();
      } }),
      h('span', { class: 'muted', text: ' remembered for this store' }));
  }

  // -------------------------------------------------------------------- table
  function sortHeader(col) {
    if (!col.sort) return h('th', { class: col.cls || '', text: col.label, dataset: { column: col.id } });
    const active = state.sort.replace(/^-/, '') === col.sort;
    const arrow = active ? (state.sort.startsWith('-') ? ' ▼' : ' ▲') : '';
    return h('th', { class: col.cls || '', dataset: { sort: col.sort, column: col.id },
      title: col.title || ('sort by ' + col.label),
      onclick: () => {
        state.sort = active && !state.sort.startsWith('-') ? '-' + col.sort : col.sort;
        remember(); load();
      } }, col.label + arrow);
  }

  function drawKinds(d) {
    const entries = [['train', (d.kinds.train || 0) + (d.kinds.init || 0)],
      ...Object.entries(d.kinds).filter(([k]) => k !== 'train' && k !== 'init'),
      ['all', Object.values(d.kinds).reduce((a, b) => a + b, 0)]];
    append(clear(kinds), entries.filter(([k, n]) => n > 0 || k === 'train').map(([k, n]) =>
      h('button', { type: 'button', role: 'tab', class: 'kind' + (state.kind === k ? ' active' : ''),
        'aria-selected': String(state.kind === k), dataset: { kind: k },
        onclick: () => { state.kind = k; state.limit = PAGE; state.selected.clear(); remember(); load(); } },
      `${KIND_LABEL[k] || k} (${n})`)));
  }

  function draw() {
    const d = state.data;
    drawKinds(d);
    options(statusSel, Object.entries(d.statuses).map(([s, n]) => [s, `${s} (${n})`]), state.status, 'any status');
    options(tagSel, d.tags.map((t) => [t, t]), state.tag, 'any tag');
    count.textContent = `${d.matched} of ${d.total} runs` + (d.matched > d.runs.length ? `, first ${d.runs.length} shown` : '');
    more.hidden = d.matched <= d.runs.length;
    const cols = visible(allColumns(d));
    const head = h('tr', null,
      h('th', { class: 'sel' }, h('input', { type: 'checkbox', 'aria-label': 'select all shown',
        onchange: (e) => { d.runs.forEach((r) => (e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id))); draw(); } })),
      cols.map(sortHeader));
    const body = h('tbody');
    for (const item of grouped(d.runs)) {
      if (item.study) {
        body.append(studyRow(item, cols));
        if (state.expanded.has(item.study)) item.members.forEach((r) => body.append(row(r, cols, true)));
      } else {
        body.append(row(item.run, cols, false));
      }
    }
    if (!d.runs.length) {
      body.append(h('tr', null, h('td', { colspan: String(cols.length + 1), class: 'muted',
        text: d.total ? 'No run matches the filter.' : 'No runs in this store yet. Train one: danlu train examples/digits.py' })));
    }
    clear(table).append(h('thead', null, head), body);
    updateButtons();
    if (state.choosing) drawChooser();
  }

  // Trials of a study ("study:NAME" tag) fold into one row, placed where its first trial sorts.
  function grouped(rows) {
    const out = [], studies = new Map();
    for (const r of rows) {
      if (r.group && state.kind !== 'study') {
        if (!studies.has(r.group)) {
          const item = { study: r.group, members: [] };
          studies.set(r.group, item);
          out.push(item);
        }
        studies.get(r.group).members.push(r);
      } else {
        out.push({ run: r });
      }
    }
    return out.map((item) => (item.study && item.members.length === 1 ? { run: item.members[0] } : item));
  }

  function studyRow(item, cols) {
    const open = state.expanded.has(item.study);
    const best = bestOf(item.members);
    const toggle = h('button', { type: 'button', class: 'small expand', 'aria-expanded': String(open),
      'aria-label': (open ? 'fold ' : 'open ') + item.study, text: open ? '▾' : '▸',
      onclick: () => { open ? state.expanded.delete(item.study) : state.expanded.add(item.study); draw(); } });
    const statuses = {};
    item.members.forEach((r) => { statuses[r.status] = (statuses[r.status] || 0) + 1; });
    const cells = cols.map((col) => {
      if (col.id === 'name') {
        return h('td', { class: 'name' }, toggle, ' ', h('a', { href: link.run(item.study), text: item.study,
          title: 'the study run' }), h('span', { class: 'muted', text: ` ${item.members.length} trials ` }),
        h('a', { href: link.parallel(item.members.map((r) => r.id), item.study), class: 'small-link',
          text: 'parallel coordinates' }));
      }
      if (col.id === 'status') {
        return h('td', { class: 'statuses' }, Object.entries(statuses).map(([s, n]) =>
          h('span', { class: 'badge st-' + s.replace(/[^a-z]/g, ''), text: `${n} ${s}` })));
      }
      if (col.id === 'best') return h('td', { class: 'num best', text: best ? fmtPrimary(best.primary) : '—' });
      if (col.id === 'kind') return h('td', { text: 'study' });
      return h('td');
    });
    return h('tr', { class: 'study', dataset: { study: item.study } }, h('td', { class: 'sel' }), cells);
  }

  function updateButtons() {
    compareBtn.disabled = state.selected.size < 1;
    compareBtn.textContent = `Compare selected (${state.selected.size})`;
    parallelBtn.disabled = state.selected.size < 2;
  }

  function row(r, cols, member) {
    const tr = h('tr', { class: member ? 'member' : '', dataset: { id: r.id, status: r.status, kind: r.kind } });
    const box = h('input', { type: 'checkbox', checked: state.selected.has(r.id), 'aria-label': 'select ' + r.name,
      onchange: () => { box.checked ? state.selected.add(r.id) : state.selected.delete(r.id); updateButtons(); } });
    append(tr, h('td', { class: 'sel' }, box), cols.map((col) => cell(r, col)));
    return tr;
  }

  function cell(r, col) {
    const diag = r.diagnosis;
    switch (col.id) {
      case 'name': return h('td', { class: 'name' }, h('a', { href: link.run(r.id), text: r.name, title: r.name + ' · ' + r.id }));
      case 'kind': return h('td', { class: 'kind', text: r.kind });
      case 'status': return h('td', null, badge(r.status));
      case 'best': return h('td', { class: 'num best', text: fmtPrimary(r.primary) });
      case 'diagnosis':
        return h('td', { class: 'diag', title: diag ? diag.summary : '' }, diag
          ? h('span', { class: 'badge st-' + (diag.status || 'info').replace(/[^a-z]/g, ''), text: diag.label }) : '—');
      case 'started': return h('td', { class: 'time', text: fmtTime(r.created) });
      case 'duration': return h('td', { class: 'num', text: fmtDuration(r.duration) });
      case 'tags': return tagsCell(r);
      case 'note': return noteCell(r);
      case 'id': return h('td', { class: 'time', text: r.id });
      default:
        if (col.id.startsWith('hp:')) return h('td', { class: 'hp', text: fmtValue(r.config[col.label]) });
        return h('td', { class: 'num', text: fmtNum(r.metrics[col.label]) });
    }
  }

  function editor(td, initial, save, describe) {
    state.editing++;
    const input = h('input', { type: 'text', value: initial, class: 'edit', 'aria-label': describe });
    let finished = false;
    const done = async (commit) => {
      if (finished) return;
      finished = true;
      state.editing = Math.max(0, state.editing - 1);
      if (commit && input.value !== initial) {
        try { await save(input.value); } catch (e) { clear(message).append(errorBox(e)); }
      }
      load();
    };
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') done(true);
      if (e.key === 'Escape') done(false);
    });
    input.addEventListener('blur', () => done(true));
    clear(td).append(input);
    input.focus();
  }

  function noteCell(r) {
    const td = h('td', { class: 'note', title: r.note || '' },
      h('span', { class: 'one-line', text: r.note || '' }),
      h('button', { type: 'button', class: 'icon edit-note', title: 'edit note', 'aria-label': 'edit note of ' + r.name, text: '✎',
        onclick: () => editor(td, r.note || '', (v) => editRun(r.id, { note: v }), 'note') }));
    return td;
  }

  function tagsCell(r) {
    const td = h('td', { class: 'tags' },
      r.tags.map((t) => h('a', { class: 'tag', href: '#/?tag=' + encodeURIComponent(t), text: t })),
      h('button', { type: 'button', class: 'icon edit-tags', title: 'edit tags (comma separated)', 'aria-label': 'edit tags of ' + r.name, text: '✎',
        onclick: () => editor(td, r.tags.join(', '), (v) => editRun(r.id, { tags: splitTags(v) }), 'tags') }));
    return td;
  }

  load();
  return () => { alive = false; clearTimeout(timer); clearTimeout(debounce); };
}

export function splitTags(text) {
  return text.split(/[,\s]+/).map((t) => t.trim()).filter(Boolean);
}

export function fmtPrimary(primary) {
  if (!primary) return '—';
  return `${primary[0]} ${fmtNum(primary[1])}`;
}

// The best of several runs by their headline metric: lowest loss, highest anything else.
export function bestOf(runs) {
  const scored = runs.filter((r) => r.primary && Number.isFinite(r.primary[1]));
  if (!scored.length) return null;
  const lower = /loss|error|mae|mse|rmse/i.test(scored[0].primary[0]);
  return scored.reduce((a, b) => ((lower ? b.primary[1] < a.primary[1] : b.primary[1] > a.primary[1]) ? b : a));
}
