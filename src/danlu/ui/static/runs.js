// The runs table (practice E2): name, status (live), note, tags, the
// hyperparameters that vary among the shown runs, best val loss and metrics,
// diagnosis, duration and start time. Filtering and sorting run on the server
// (see danlu/ui/query.py for the filter language); notes and tags are edited inline.

import { api, qs, editRun, POLL_MS } from './api.js';
import { h, append, clear, link, badge, fmtNum, fmtValue, fmtDuration, fmtTime, errorBox } from './dom.js';

const PAGE = 200;
const MAX_METRICS = 6;

export function render(main, params) {
  const state = {
    q: params.get('q') || '', status: params.get('status') || '', tag: params.get('tag') || '',
    sort: params.get('sort') || '-created', limit: PAGE, selected: new Set(), editing: 0, data: null,
  };
  let timer = null, alive = true, seq = 0;

  const filter = h('input', { type: 'search', id: 'filter', value: state.q, 'aria-label': 'filter runs',
    placeholder: 'filter: words, tag:T, status:S, lr:1e-4..1e-2, acc>0.9', size: '48' });
  const statusSel = h('select', { id: 'status-filter', 'aria-label': 'status' });
  const tagSel = h('select', { id: 'tag-filter', 'aria-label': 'tag' });
  const count = h('span', { class: 'muted', id: 'run-count' });
  const compareBtn = h('button', { type: 'button', id: 'compare', disabled: true, text: 'Compare selected',
    onclick: () => { location.hash = link.compare([...state.selected]); } });
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
    h('div', { class: 'toolbar' }, filter, statusSel, tagSel, compareBtn, count),
    message, h('div', { class: 'table-wrap' }, table), more);

  function remember() {
    const p = new URLSearchParams();
    for (const k of ['q', 'status', 'tag']) if (state[k]) p.set(k, state[k]);
    if (state.sort !== '-created') p.set('sort', state.sort);
    const hash = '#/' + (p.toString() ? '?' + p : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  async function load(quiet = false) {
    const mine = ++seq;
    let data;
    try {
      data = await api('/runs' + qs({ q: state.q, status: state.status, tag: state.tag, sort: state.sort,
        limit: state.limit }));
    } catch (e) {
      if (mine === seq && alive) clear(message).append(errorBox(e));
      return;
    }
    if (mine !== seq || !alive) return;
    clear(message);
    state.data = data;
    if (!(quiet && state.editing)) draw();
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

  function sortHeader(text, key, cls) {
    const active = state.sort.replace(/^-/, '') === key;
    const arrow = active ? (state.sort.startsWith('-') ? ' ▼' : ' ▲') : '';
    return h('th', { class: cls, dataset: { sort: key }, title: 'sort by ' + text,
      onclick: () => {
        state.sort = active && !state.sort.startsWith('-') ? '-' + key : key;
        remember(); load();
      } }, text + arrow);
  }

  function draw() {
    const d = state.data;
    options(statusSel, Object.entries(d.statuses).map(([s, n]) => [s, `${s} (${n})`]), state.status, 'any status');
    options(tagSel, d.tags.map((t) => [t, t]), state.tag, 'any tag');
    count.textContent = `${d.matched} of ${d.total} runs` + (d.matched > d.runs.length ? `, first ${d.runs.length} shown` : '');
    more.hidden = d.matched <= d.runs.length;
    const hps = d.varying;
    const metrics = pickMetrics(d.metrics);
    const head = h('tr', null,
      h('th', { class: 'sel' }, h('input', { type: 'checkbox', 'aria-label': 'select all shown',
        onchange: (e) => { d.runs.forEach((r) => (e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id))); draw(); } })),
      sortHeader('name', 'name'), sortHeader('status', 'status'), sortHeader('note', 'note'),
      h('th', { text: 'tags' }),
      hps.map((k) => sortHeader(k, 'config.' + k, 'hp')),
      metrics.map((k) => sortHeader(k, 'metrics.' + k, 'num')),
      sortHeader('diagnosis', 'diagnosis'), sortHeader('duration', 'duration', 'num'),
      sortHeader('started', 'created'));
    const body = h('tbody', null, d.runs.map((r) => row(r, hps, metrics)));
    if (!d.runs.length) {
      body.append(h('tr', null, h('td', { colspan: String(9 + hps.length + metrics.length), class: 'muted',
        text: d.total ? 'No run matches the filter.' : 'No runs in this store yet. Train one: danlu train examples/digits.py' })));
    }
    clear(table).append(h('thead', null, head), body);
    updateCompare();
  }

  function updateCompare() {
    compareBtn.disabled = state.selected.size < 1;
    compareBtn.textContent = `Compare selected (${state.selected.size})`;
  }

  function row(r, hps, metrics) {
    const tr = h('tr', { dataset: { id: r.id, status: r.status } });
    const box = h('input', { type: 'checkbox', checked: state.selected.has(r.id), 'aria-label': 'select ' + r.name,
      onchange: () => { box.checked ? state.selected.add(r.id) : state.selected.delete(r.id); updateCompare(); } });
    const diag = r.diagnosis;
    append(tr,
      h('td', { class: 'sel' }, box),
      h('td', { class: 'name' }, h('a', { href: link.run(r.id), text: r.name, title: r.id })),
      h('td', null, badge(r.status)),
      noteCell(r),
      tagsCell(r),
      hps.map((k) => h('td', { class: 'hp', text: fmtValue(r.config[k]) })),
      metrics.map((k) => h('td', { class: 'num', text: fmtNum(r.metrics[k]) })),
      h('td', { class: 'diag', title: diag ? diag.summary : '' }, diag ? h('span', { class: 'badge st-' + (diag.status || 'info').replace(/[^a-z]/g, ''), text: diag.label }) : '—'),
      h('td', { class: 'num', text: fmtDuration(r.duration) }),
      h('td', { class: 'time', text: fmtTime(r.created) }));
    return tr;
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
    const td = h('td', { class: 'note' },
      h('span', { text: r.note || '' }),
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

// Best val loss first, then validation metrics, then the rest; a few columns only.
function pickMetrics(keys) {
  const score = (k) => (/best.*loss|loss.*best/i.test(k) ? 0 : /^val|val[/_.]/i.test(k) ? 1 : /epoch/i.test(k) ? 3 : 2);
  return [...keys].sort((a, b) => score(a) - score(b) || a.localeCompare(b)).slice(0, MAX_METRICS);
}
