// The dashboard's entry point: a hash router over its pages. Plain ES modules,
// no build step; uPlot is vendored under ./vendor/uplot (MIT, see its LICENSE).

import { api } from './api.js';
import { h, clear, errorBox } from './dom.js';
import * as runs from './runs.js';
import * as run from './run.js';
import * as compare from './compare.js';
import * as parallel from './parallel.js';
import * as reports from './report.js';

const main = document.getElementById('main');
let cleanup = () => {};

// The token came in the URL once (?token=...); the server set a cookie from it,
// so take it out of the address bar (and out of history and screenshots).
const search = new URLSearchParams(location.search);
if (search.has('token')) {
  search.delete('token');
  history.replaceState(null, '', location.pathname + (search.toString() ? '?' + search : '') + location.hash);
}

function route() {
  cleanup();
  cleanup = () => {};
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  try {
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active',
      a.dataset.nav === (parts[0] === 'report' || parts[0] === 'reports' ? 'reports' : 'runs')));
    if (!parts.length || parts[0] === 'runs') { document.title = 'danlu · runs'; cleanup = runs.render(main, params); }
    else if (parts[0] === 'run' && parts[1]) { document.title = 'danlu · ' + parts[1]; cleanup = run.render(main, parts[1]); }
    else if (parts[0] === 'parallel' && parts[1]) { document.title = 'danlu · parallel coordinates'; cleanup = parallel.render(main, parts[1].split(',').filter(Boolean), params); }
    else if (parts[0] === 'compare' && parts[1]) { document.title = 'danlu · compare'; cleanup = compare.render(main, parts[1].split(',').filter(Boolean)); }
    else if (parts[0] === 'reports') { document.title = 'danlu · reports'; cleanup = reports.renderList(main); }
    else if (parts[0] === 'report' && parts[1]) { document.title = 'danlu · report ' + parts[1]; cleanup = reports.renderOne(main, parts[1]); }
    else clear(main).append(h('h1', { text: 'Not found' }), h('p', null, h('a', { href: '#/', text: 'Back to the runs' })));
  } catch (e) {
    clear(main).append(errorBox(e));
  }
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', route);
route();
api('/info').then((d) => { document.getElementById('store').textContent = `store: ${d.store}`; }).catch(() => {});
