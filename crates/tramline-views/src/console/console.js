// tramline console: one module, no dependencies, no build step.
//
// Everything the server sends (rows, payloads, headers, reasons, metric labels) is untrusted:
// it is only ever rendered as text (textContent, text nodes, attribute values), never as HTML.
// The page runs under a strict Content-Security-Policy: no inline code, no style attributes.

const PAGE_SIZE = 50;
const PARKED_PAGE_SIZE = 50;
const HEALTH_INTERVAL_MS = 2000;
const LATENCY_POINTS = 60;
const FLASH_MS = 1500;
const TOKEN_KEY = 'tramline.console.token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const KNOWN_STATUSES = new Set([
  'PENDING', 'APPROVED', 'REJECTED', 'CANCELLED', 'CANCELED', 'COMPLETED', 'SHIPPED',
  'FAILED', 'DELIVERED', 'CREATED', 'ACTIVE', 'PAID', 'REFUNDED',
]);

const app = {
  config: null,
  view: null,
  es: null,
  liveHadError: false,
  lastRowsHash: '#/',
  announce: { count: 0, last: 0, timer: 0 },
};

// ---------------------------------------------------------------------------------------------
// DOM helpers (text only)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.setAttribute('class', v);
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'style') throw new Error('no style attributes (CSP)');
    else node.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
}

const $ = (sel, root = document) => root.querySelector(sel);

function errorRegion(id) {
  const node = el('div', { class: 'error', role: 'alert', id });
  return {
    node,
    show(message) { node.textContent = message; },
    clear() { node.textContent = ''; },
  };
}

function tableWrap(table) {
  return el('div', { class: 'table-wrap' }, table);
}

function emptyRow(colspan, text) {
  return el('tr', { class: 'empty' }, el('td', { colspan }, text));
}

const flashTimers = new WeakMap();
function flash(node) {
  node.classList.remove('changed');
  void node.offsetWidth; // restart the animation
  node.classList.add('changed');
  clearTimeout(flashTimers.get(node));
  flashTimers.set(node, setTimeout(() => node.classList.remove('changed'), FLASH_MS));
}

// ---------------------------------------------------------------------------------------------
// Values

function valueText(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function isStatus(field, v) {
  if (typeof v !== 'string' || !/^[A-Z][A-Z_]{2,30}$/.test(v)) return false;
  return KNOWN_STATUSES.has(v) || /status|state/i.test(field || '');
}

function valueNode(v, field) {
  if (v === null || v === undefined) return el('span', { class: 'none' }, '—');
  if (isStatus(field, v)) {
    return el('span', { class: `badge badge-${v.toLowerCase().replace(/[^a-z0-9_-]/g, '')}` }, v);
  }
  return document.createTextNode(valueText(v));
}

const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

function timeNode(ms, format = dateFormat) {
  if (ms === null || ms === undefined) return el('span', { class: 'none' }, '—');
  const d = new Date(typeof ms === 'number' ? ms : Number.isFinite(Number(ms)) ? Number(ms) : ms);
  if (Number.isNaN(d.getTime())) return document.createTextNode(valueText(ms));
  const iso = d.toISOString();
  return el('time', { datetime: iso, title: iso.replace('T', ' ').replace('Z', ' UTC') }, format.format(d));
}

function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  if (!Number.isFinite(n)) return n > 0 ? '∞' : '−∞';
  const rounded = Number.isInteger(n) ? n : Number(n.toFixed(digits));
  return rounded.toLocaleString('en-US', { useGrouping: false, maximumFractionDigits: digits });
}

function fmtRate(r) {
  if (r === null || r === undefined) return '—';
  return `${fmtNum(r, r < 10 ? 2 : 1)}/s`;
}

function fmtSeconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '—';
  if (!Number.isFinite(s)) return '∞';
  if (s < 1) return `${fmtNum(s * 1000, s < 0.01 ? 2 : 0)} ms`;
  if (s < 120) return `${fmtNum(s, 1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${fmtNum(s / 3600, 1)} h`;
}

function fmtMs(ms) {
  if (ms >= 1000) return `${Number((ms / 1000).toPrecision(3))} s`;
  return `${Number(ms.toPrecision(3))} ms`;
}

// ---------------------------------------------------------------------------------------------
// HTTP

class HttpError extends Error {
  constructor(message, status, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

async function request(url, options) {
  let res;
  try {
    res = await fetch(url, { credentials: 'same-origin', cache: 'no-store', ...options });
  } catch (err) {
    throw new HttpError(`Could not reach the server (${err && err.message ? err.message : 'network error'}).`, 0, null);
  }
  if (!res.ok) {
    let problem = null;
    try {
      const text = await res.text();
      problem = text ? JSON.parse(text) : null;
    } catch (_) { /* not a problem document */ }
    const message = (problem && typeof problem === 'object' && (problem.detail || problem.title))
      || `${res.status} ${res.statusText || 'error'}`;
    throw new HttpError(String(message), res.status, problem);
  }
  return res;
}

async function getJSON(url, options) {
  const res = await request(url, { headers: { Accept: 'application/json' }, ...options });
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (_) {
    throw new HttpError('The server sent something that is not JSON.', res.status, null);
  }
}

// ---------------------------------------------------------------------------------------------
// Routing

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function parseRoute() {
  let h = location.hash.slice(1);
  if (!h.startsWith('/')) h = `/${h}`;
  const qi = h.indexOf('?');
  const path = qi < 0 ? h : h.slice(0, qi);
  const query = new URLSearchParams(qi < 0 ? '' : h.slice(qi + 1));
  let m;
  if ((m = /^\/row\/(.+)$/.exec(path))) return { page: 'row', key: safeDecode(m[1]), query };
  if (path === '/health') return { page: 'health', query };
  if (app.config.parked && path === '/parked') return { page: 'parked', query };
  if (app.config.parked && (m = /^\/parked\/([^/]+)$/.exec(path))) {
    return { page: 'parked-message', id: safeDecode(m[1]), query };
  }
  return { page: 'rows', query };
}

function hashWith(base, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') qs.set(k, v);
  const s = qs.toString();
  return s ? `${base}?${s}` : base;
}

function go(hash) {
  if (location.hash === hash || (hash === '#/' && location.hash === '')) onHashChange();
  else location.hash = hash;
}

const VIEWS = {
  rows: RowsView,
  row: RowView,
  health: HealthView,
  parked: ParkedView,
  'parked-message': ParkedMessageView,
};

function onHashChange() {
  const route = parseRoute();
  if (route.page === 'rows') app.lastRowsHash = location.hash || '#/';
  if (app.view && app.view.page === 'rows' && route.page === 'rows') {
    app.view.update(route);
    return;
  }
  mount(route, true);
}

function mount(route, focus) {
  if (app.view && app.view.destroy) app.view.destroy();
  delete document.body.dataset.loaded;
  document.body.dataset.page = route.page;
  updateNav(route.page);
  const main = $('#main');
  main.replaceChildren();
  const ctx = {
    alive: true,
    loaded() { if (ctx.alive) document.body.dataset.loaded = 'true'; },
    title(sub) {
      document.title = sub ? `${sub} · ${app.config.title} — tramline console` : `${app.config.title} — tramline console`;
    },
  };
  const view = VIEWS[route.page](route, main, ctx);
  view.page = route.page;
  const destroy = view.destroy;
  view.destroy = () => { ctx.alive = false; if (destroy) destroy(); };
  app.view = view;
  if (focus) {
    const h = main.querySelector('h1');
    if (h) h.focus();
  }
}

function updateNav(page) {
  const current = { rows: 'nav-rows', row: 'nav-rows', health: 'nav-health', parked: 'nav-parked', 'parked-message': 'nav-parked' }[page];
  for (const a of document.querySelectorAll('#site-nav a')) {
    if (a.id === current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------------------------------------
// Config helpers

function columnLabel(field) {
  const c = (app.config.columns || []).find((col) => col.field === field);
  return c ? c.label : field;
}

function keyOf(row) {
  const k = row ? row[app.config.key] : undefined;
  return k === null || k === undefined ? null : String(k);
}

function rowLink(key, text) {
  return el('a', { href: `#/row/${encodeURIComponent(key)}` }, text);
}

function heading(text) {
  return el('h1', { tabindex: '-1' }, text);
}

// ---------------------------------------------------------------------------------------------
// Rows page: #/?param=value&after=cursor

function RowsView(route, main, ctx) {
  const cfg = app.config;
  const keyField = cfg.key;
  const keyLabel = columnLabel(keyField);
  const filters = cfg.filters || [];
  const columns = cfg.columns && cfg.columns.length ? cfg.columns : [{ field: keyField, label: keyField }];
  const keyInColumns = columns.some((c) => c.field === keyField);
  const st = { filters: {}, after: null, items: [], next: null, seq: 0, rows: new Map() };
  ctx.title('');

  // Filters
  const form = el('form', { id: 'filters', class: 'filters', 'aria-label': 'Filter rows', novalidate: true });
  const controls = {};
  const fields = el('div', { class: 'filter-fields' });
  for (const f of filters) {
    const id = `filter-${f.param}`;
    let control;
    if (Array.isArray(f.options)) {
      control = el('select', { id, name: f.param },
        el('option', { value: '' }, 'any'),
        f.options.map((o) => el('option', { value: String(o) }, String(o))));
      control.addEventListener('change', applyFilters);
    } else {
      control = el('input', { id, name: f.param, type: 'text', autocomplete: 'off', spellcheck: 'false' });
    }
    controls[f.param] = control;
    fields.append(el('div', { class: 'field' }, el('label', { for: id }, f.label || f.param), control));
  }
  const actions = el('div', { class: 'form-actions' },
    el('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
    el('button', { type: 'button', id: 'clear-filters', class: 'secondary' }, 'Clear'));
  form.append(fields, actions);
  form.addEventListener('submit', (e) => { e.preventDefault(); applyFilters(); });
  $('#clear-filters', form).addEventListener('click', () => {
    for (const c of Object.values(controls)) c.value = '';
    applyFilters();
  });

  // Find by key
  const findLabel = /\b(id|key)$/i.test(keyLabel) ? keyLabel : `${keyLabel} id`;
  const findInput = el('input', { id: 'find-key', name: 'key', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const find = el('form', { id: 'find', class: 'find', role: 'search', 'aria-label': `Find by ${keyLabel.toLowerCase()}` },
    el('div', { class: 'field' }, el('label', { for: 'find-key' }, findLabel), findInput),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', id: 'find-submit' }, 'Open')));
  find.addEventListener('submit', (e) => {
    e.preventDefault();
    const key = findInput.value.trim();
    if (key) go(`#/row/${encodeURIComponent(key)}`);
  });

  // Table
  const caption = el('caption');
  const tbody = el('tbody');
  const table = el('table', { id: 'rows', class: 'data' }, caption,
    el('thead', null, el('tr', null, columns.map((c) => el('th', { scope: 'col' }, c.label || c.field)))),
    tbody);
  const first = el('button', { type: 'button', id: 'first-page', class: 'secondary' }, 'First page');
  const next = el('button', { type: 'button', id: 'next-page' }, 'Next page');
  const pageInfo = el('p', { class: 'page-info', id: 'page-info' });
  first.addEventListener('click', () => go(hashWith('#/', st.filters)));
  next.addEventListener('click', () => { if (st.next !== null) go(hashWith('#/', { ...st.filters, after: st.next })); });
  const err = errorRegion('rows-error');

  main.append(
    heading(cfg.title),
    el('div', { class: 'toolbar' }, form, find),
    err.node,
    tableWrap(table),
    el('nav', { class: 'pager', 'aria-label': 'Pages' }, first, next, pageInfo),
  );

  function applyFilters() {
    const values = {};
    for (const f of filters) {
      const v = controls[f.param].value.trim();
      if (v !== '') values[f.param] = v;
    }
    go(hashWith('#/', values));
  }

  function describeFilters() {
    const parts = filters.filter((f) => st.filters[f.param] !== undefined)
      .map((f) => `${f.label || f.param} = ${st.filters[f.param]}`);
    return parts.join(', ');
  }

  function matches(row) {
    for (const [param, value] of Object.entries(st.filters)) {
      const v = row[param];
      if (v === null || v === undefined) return false;
      if ((typeof v === 'string' ? v : JSON.stringify(v)) !== value && String(v) !== value) return false;
    }
    return true;
  }

  function cell(col, row, key) {
    const isKey = col.field === keyField;
    const td = el('td', { dataset: { field: col.field }, class: isKey ? 'key nowrap' : null });
    if (isKey) td.append(rowLink(key, valueText(row[keyField])));
    else td.append(valueNode(row[col.field], col.field));
    return td;
  }

  function fillRow(tr, row) {
    const key = keyOf(row);
    const cells = columns.map((c) => cell(c, row, key));
    if (!keyInColumns && cells.length) {
      const link = rowLink(key, cells[0].textContent);
      cells[0].replaceChildren(link);
    }
    tr.replaceChildren(...cells);
  }

  function buildRow(row) {
    const tr = el('tr', { dataset: { key: keyOf(row) } });
    fillRow(tr, row);
    st.rows.set(keyOf(row), tr);
    return tr;
  }

  function renderMeta() {
    const desc = describeFilters();
    caption.textContent = `${cfg.title}${desc ? ` — filtered by ${desc}` : ''}${st.after !== null ? ` — after ${st.after}` : ''}`;
    first.disabled = st.after === null;
    next.disabled = st.next === null;
    const n = st.items.length;
    pageInfo.textContent = n === 0 ? '' : `${n} ${n === 1 ? 'row' : 'rows'} on this page${st.next !== null ? '; more follow' : ''}.`;
    if (n === 0 && !tbody.querySelector('tr.empty')) {
      tbody.replaceChildren(emptyRow(columns.length, desc || st.after !== null ? 'No rows match on this page.' : 'No rows yet.'));
    } else if (n > 0) {
      const empty = tbody.querySelector('tr.empty');
      if (empty) empty.remove();
    }
  }

  function render() {
    st.rows.clear();
    tbody.replaceChildren(...st.items.map(buildRow));
    renderMeta();
  }

  async function load() {
    const seq = ++st.seq;
    delete document.body.dataset.loaded;
    table.setAttribute('aria-busy', 'true');
    const qs = new URLSearchParams();
    for (const [p, v] of Object.entries(st.filters)) qs.set(p, v);
    if (st.after !== null) qs.set('after', st.after);
    qs.set('limit', String(PAGE_SIZE));
    try {
      const data = await getJSON(`${cfg.collection}?${qs}`);
      if (!ctx.alive || seq !== st.seq) return;
      st.items = data && Array.isArray(data.items) ? data.items.filter((r) => keyOf(r) !== null) : [];
      st.next = data && data.next !== undefined && data.next !== null ? String(data.next) : null;
      err.clear();
      render();
    } catch (e) {
      if (!ctx.alive || seq !== st.seq) return;
      err.show(`Could not load the rows: ${e.message}`);
      renderMeta();
    }
    table.removeAttribute('aria-busy');
    ctx.loaded();
  }

  function update(r) {
    st.filters = {};
    for (const f of filters) {
      const v = r.query.get(f.param);
      const control = controls[f.param];
      if (v !== null && v !== '') {
        st.filters[f.param] = v;
        if (control.tagName === 'SELECT' && ![...control.options].some((o) => o.value === v)) {
          control.append(el('option', { value: v }, v));
        }
        control.value = v;
      } else {
        control.value = '';
      }
    }
    const after = r.query.get('after');
    st.after = after !== null && after !== '' ? after : null;
    load();
  }

  function onRows(rows) {
    let touched = false;
    let shown = 0;
    for (const row of rows) {
      const key = keyOf(row);
      if (key === null) continue;
      const tr = st.rows.get(key);
      if (tr) {
        const i = st.items.findIndex((it) => keyOf(it) === key);
        if (i >= 0) st.items[i] = row;
        fillRow(tr, row);
        flash(tr);
        shown++;
        continue;
      }
      if (!matches(row)) continue;
      if (st.after !== null && !(key > st.after)) continue;
      const last = st.items.length ? keyOf(st.items[st.items.length - 1]) : null;
      if (st.next !== null && !(last !== null && key < last)) continue;
      let i = st.items.findIndex((it) => keyOf(it) > key);
      if (i < 0) i = st.items.length;
      const before = i < st.items.length ? st.rows.get(keyOf(st.items[i])) : null;
      st.items.splice(i, 0, row);
      const newTr = buildRow(row);
      const empty = tbody.querySelector('tr.empty');
      if (empty) empty.remove();
      tbody.insertBefore(newTr, before || null);
      flash(newTr);
      if (st.items.length > PAGE_SIZE) {
        const dropped = st.items.pop();
        const droppedTr = st.rows.get(keyOf(dropped));
        if (droppedTr) droppedTr.remove();
        st.rows.delete(keyOf(dropped));
        st.next = keyOf(st.items[st.items.length - 1]);
      }
      touched = true;
      shown++;
    }
    if (touched) renderMeta();
    return shown;
  }

  update(route);
  return { update, onRows, onResync: load };
}

// ---------------------------------------------------------------------------------------------
// One row: #/row/<key>

function RowView(route, main, ctx) {
  const cfg = app.config;
  const key = route.key;
  const keyLabel = columnLabel(cfg.key);
  const groups = cfg.groups || [];
  let seq = 0;
  let previous = null;
  ctx.title(`${keyLabel} ${key}`);

  const err = errorRegion('row-error');
  const body = el('div', { class: 'detail-body' });
  const section = el('section', { id: 'detail', dataset: { key }, 'aria-labelledby': 'detail-heading' },
    el('h1', { id: 'detail-heading', tabindex: '-1' }, `${keyLabel} `, el('span', { class: 'key' }, key)),
    err.node, body);
  main.append(el('p', { class: 'back' }, el('a', { href: app.lastRowsHash }, '← All rows')), section);

  function groupValues(g, row) {
    const vals = (g.fields || []).map((f) => row[f.field]);
    if (g.version) vals.push(row[g.version]);
    if (g.changedAt) vals.push(row[g.changedAt]);
    return JSON.stringify(vals);
  }

  function render(row) {
    const used = new Set([cfg.key]);
    const sections = [];
    const changedGroups = [];
    for (const g of groups) {
      const dl = el('dl');
      for (const f of g.fields || []) {
        used.add(f.field);
        dl.append(el('div', { class: 'pair' },
          el('dt', null, f.label || f.field),
          el('dd', { dataset: { field: f.field } }, valueNode(row[f.field], f.field))));
      }
      if (g.version) {
        used.add(g.version);
        dl.append(el('div', { class: 'pair' }, el('dt', null, 'Version'),
          el('dd', { dataset: { field: g.version } }, valueText(row[g.version]))));
      }
      if (g.changedAt) {
        used.add(g.changedAt);
        dl.append(el('div', { class: 'pair' }, el('dt', null, 'Last changed'),
          el('dd', { dataset: { field: g.changedAt } }, timeNode(row[g.changedAt]))));
      }
      const s = el('section', { class: 'group', dataset: { group: g.name } }, el('h2', null, g.label || g.name), dl);
      if (previous && groupValues(g, previous) !== groupValues(g, row)) changedGroups.push(s);
      sections.push(s);
    }
    const rest = Object.keys(row).filter((k) => !used.has(k));
    if (rest.length) {
      const dl = el('dl');
      for (const k of rest) {
        dl.append(el('div', { class: 'pair' }, el('dt', null, columnLabel(k)),
          el('dd', { dataset: { field: k } }, valueNode(row[k], k))));
      }
      sections.push(el('section', { class: 'group', dataset: { group: 'other' } }, el('h2', null, 'Other'), dl));
    }
    body.replaceChildren(...sections);
    for (const s of changedGroups) flash(s);
    previous = row;
    section.removeAttribute('data-missing');
  }

  function renderMissing() {
    section.dataset.missing = 'true';
    body.replaceChildren(el('p', { class: 'notice', id: 'row-missing' },
      'No row for this key (yet). If it arrives, it will show here.'));
  }

  async function load() {
    const s = ++seq;
    try {
      const row = await getJSON(`${cfg.collection}/${encodeURIComponent(key)}`);
      if (!ctx.alive || s !== seq) return;
      err.clear();
      if (row && typeof row === 'object') render(row);
      else renderMissing();
    } catch (e) {
      if (!ctx.alive || s !== seq) return;
      if (e.status === 404) { err.clear(); renderMissing(); } else err.show(`Could not load this row: ${e.message}`);
    }
    ctx.loaded();
  }

  function onRows(rows) {
    let shown = 0;
    for (const row of rows) {
      if (keyOf(row) === key) {
        shown++;
        seq++; // a newer state than any load in flight
        const wasMissing = !previous;
        render(row);
        if (wasMissing) flash(section);
        err.clear();
        ctx.loaded();
      }
    }
    return shown;
  }

  load();
  return { onRows, onResync: load };
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition

function parseValue(s) {
  if (s === undefined) return undefined;
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const n = Number(s);
  return s !== '' && !Number.isNaN(n) ? n : undefined;
}

function parseMetrics(text) {
  const out = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line[0] === '#') continue;
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) continue;
    const name = nm[0];
    let i = name.length;
    const labels = {};
    let ok = true;
    if (line[i] === '{') {
      i++;
      for (;;) {
        while (line[i] === ' ' || line[i] === ',') i++;
        if (i >= line.length) { ok = false; break; }
        if (line[i] === '}') { i++; break; }
        const lm = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
        if (!lm) { ok = false; break; }
        i += lm[0].length;
        while (line[i] === ' ') i++;
        if (line[i] !== '=') { ok = false; break; }
        i++;
        while (line[i] === ' ') i++;
        if (line[i] !== '"') { ok = false; break; }
        i++;
        let v = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const c = line[i + 1];
            v += c === 'n' ? '\n' : c;
            i += 2;
          } else {
            v += line[i++];
          }
        }
        if (line[i] !== '"') { ok = false; break; }
        i++;
        labels[lm[0]] = v;
      }
    }
    if (!ok) continue;
    const value = parseValue(line.slice(i).trim().split(/\s+/)[0]);
    if (value === undefined) continue;
    if (!out.has(name)) out.set(name, []);
    out.get(name).push({ labels, value });
  }
  return out;
}

// Sums of `name` by the value of `label` (series without it are skipped).
function sumBy(m, name, label, filter) {
  const out = new Map();
  for (const s of m.get(name) || []) {
    if (filter && !filter(s.labels)) continue;
    const k = s.labels[label];
    if (k === undefined) continue;
    out.set(k, (out.get(k) || 0) + s.value);
  }
  return out;
}

function seriesId(labels) {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

function rate(cur, prev, dt) {
  if (cur === undefined || prev === undefined || !(dt > 0)) return null;
  const d = cur - prev;
  return d >= 0 ? d / dt : null;
}

// ---------------------------------------------------------------------------------------------
// Pipeline health: #/health

function HealthView(route, main, ctx) {
  const cfg = app.config;
  let prev = null;
  let inflight = false;
  const points = [];
  ctx.title('Pipeline health');

  const err = errorRegion('health-error');
  const updated = el('p', { id: 'health-updated', class: 'muted' }, 'Reading /metrics…');

  const mkTable = (id, caption, heads) => {
    const tbody = el('tbody');
    const table = el('table', { id, class: 'data numeric' }, el('caption', null, caption),
      el('thead', null, el('tr', null, heads.map((h) => el('th', { scope: 'col' }, h)))), tbody);
    return { table, tbody, cols: heads.length };
  };
  const outboxes = mkTable('health-outboxes', 'Outboxes and relays',
    ['Outbox', 'Backlog', 'Oldest unpublished', 'Publish rate', 'Role']);
  const consumers = mkTable('health-consumers', 'Consumers',
    ['Group', 'Applied', 'Applied total', 'Duplicates skipped', 'Parked', 'Held', 'Failed', 'Total lag']);
  const lag = mkTable('health-lag', 'Lag per partition', ['Group', 'Topic', 'Partition', 'Lag']);
  const retries = mkTable('health-retries', 'Retries', ['Component', 'Cause', 'Total', 'Rate']);

  const chartBox = el('div', { class: 'chart' });
  const summary = el('p', { id: 'latency-summary' }, 'Waiting for two scrapes to measure latency…');
  const legend = el('ul', { class: 'legend', 'aria-hidden': 'true' },
    el('li', null, el('span', { class: 'swatch p50' }), 'p50'),
    el('li', null, el('span', { class: 'swatch p99' }), 'p99'));

  main.append(
    heading('Pipeline health'),
    updated,
    err.node,
    el('section', { 'aria-labelledby': 'h-latency', class: 'panel' },
      el('h2', { id: 'h-latency' }, 'Commit → view latency'),
      el('p', { class: 'muted' }, `Consumer group `, el('code', null, cfg.group), ', from each scrape’s new records.'),
      summary, chartBox, legend),
    el('section', { 'aria-labelledby': 'h-consumers', class: 'panel' },
      el('h2', { id: 'h-consumers' }, 'Consumers'), tableWrap(consumers.table), tableWrap(lag.table)),
    el('section', { 'aria-labelledby': 'h-outboxes', class: 'panel' },
      el('h2', { id: 'h-outboxes' }, 'Relays'), tableWrap(outboxes.table)),
    el('section', { 'aria-labelledby': 'h-retries', class: 'panel' },
      el('h2', { id: 'h-retries' }, 'Retries'), tableWrap(retries.table)),
  );
  chartBox.append(drawChart([], '', chartBox.clientWidth));

  function fill(t, rows, emptyText) {
    if (!rows.length) {
      t.tbody.replaceChildren(emptyRow(t.cols, emptyText));
      return;
    }
    t.tbody.replaceChildren(...rows.map((cells) => el('tr', null, cells.map((c, i) => (i === 0
      ? el('th', { scope: 'row' }, c)
      : el('td', null, c))))));
  }

  function render(cur) {
    const m = cur.m;
    const pm = prev ? prev.m : new Map();
    const dt = prev ? (cur.t - prev.t) / 1000 : 0;

    // Outboxes
    const backlog = sumBy(m, 'tramline_outbox_backlog', 'outbox');
    const age = new Map();
    for (const s of m.get('tramline_outbox_oldest_age_seconds') || []) {
      const k = s.labels.outbox;
      if (k !== undefined) age.set(k, Math.max(age.get(k) || 0, s.value));
    }
    const published = sumBy(m, 'tramline_relay_published_total', 'outbox');
    const prevPublished = sumBy(pm, 'tramline_relay_published_total', 'outbox');
    const leader = new Map();
    for (const s of m.get('tramline_relay_leader') || []) {
      const k = s.labels.outbox;
      if (k !== undefined) leader.set(k, Math.max(leader.get(k) || 0, s.value));
    }
    const names = [...new Set([...backlog.keys(), ...age.keys(), ...published.keys(), ...leader.keys()])].sort();
    fill(outboxes, names.map((o) => [
      o,
      fmtNum(backlog.get(o)),
      fmtSeconds(age.get(o)),
      fmtRate(rate(published.get(o), prevPublished.get(o), dt)),
      leader.has(o) ? el('span', { class: `badge ${leader.get(o) >= 1 ? 'badge-leader' : 'badge-standby'}` },
        leader.get(o) >= 1 ? 'leader' : 'standby') : '—',
    ]), "No relay runs in this process; its figures are on the relay's own /metrics.");

    // Consumers
    const applied = sumBy(m, 'tramline_consumer_applied_total', 'group');
    const prevApplied = sumBy(pm, 'tramline_consumer_applied_total', 'group');
    const dups = sumBy(m, 'tramline_consumer_duplicates_total', 'group');
    const parked = sumBy(m, 'tramline_consumer_parked_total', 'group');
    const held = sumBy(m, 'tramline_consumer_held_total', 'group');
    const failed = sumBy(m, 'tramline_consumer_failed_total', 'group');
    const lagSum = sumBy(m, 'tramline_consumer_lag', 'group');
    const groups = [...new Set([...applied.keys(), ...dups.keys(), ...parked.keys(), ...held.keys(),
      ...failed.keys(), ...lagSum.keys()])].sort();
    const count = (map, g) => fmtNum(map.get(g) || 0);
    fill(consumers, groups.map((g) => [
      g,
      fmtRate(rate(applied.get(g), prevApplied.get(g), dt)),
      count(applied, g), count(dups, g), count(parked, g), count(held, g),
      (failed.get(g) || 0) > 0 ? el('span', { class: 'warn' }, count(failed, g)) : count(failed, g),
      count(lagSum, g),
    ]), 'No consumer runs in this process.');

    // Lag per partition
    const lags = (m.get('tramline_consumer_lag') || []).slice().sort((a, b) => (
      (a.labels.group || '').localeCompare(b.labels.group || '')
      || (a.labels.topic || '').localeCompare(b.labels.topic || '')
      || (Number(a.labels.partition) - Number(b.labels.partition))
      || String(a.labels.partition).localeCompare(String(b.labels.partition))));
    fill(lag, lags.map((s) => [s.labels.group || '—', s.labels.topic || '—', s.labels.partition ?? '—', fmtNum(s.value)]),
      'No partitions assigned.');

    // Retries
    const prevRetries = new Map((pm.get('tramline_retries_total') || []).map((s) => [seriesId(s.labels), s.value]));
    const rs = (m.get('tramline_retries_total') || []).filter((s) => s.value > 0).sort((a, b) => (
      (a.labels.component || '').localeCompare(b.labels.component || '')
      || (a.labels.cause || '').localeCompare(b.labels.cause || '')));
    fill(retries, rs.map((s) => [s.labels.component || '—', s.labels.cause || '—', fmtNum(s.value),
      fmtRate(rate(s.value, prevRetries.get(seriesId(s.labels)), dt))]), 'No retries');

    // Latency
    renderLatency(cur, dt);

    updated.replaceChildren('Last scrape: ', timeNode(cur.t, clockFormat), ' · refreshed every 2 s');
  }

  function buckets(m) {
    const out = new Map();
    for (const s of m.get('tramline_consumer_commit_latency_seconds_bucket') || []) {
      if (s.labels.group !== cfg.group) continue;
      const le = parseValue(s.labels.le);
      if (le === undefined || Number.isNaN(le)) continue;
      out.set(le, (out.get(le) || 0) + s.value);
    }
    return out;
  }

  function renderLatency(cur, dt) {
    const b = buckets(cur.m);
    if (!b.size) {
      summary.textContent = `No commit latency recorded for group “${cfg.group}” in this process.`;
      return;
    }
    if (!prev) return;
    const pb = buckets(prev.m);
    const les = [...b.keys()].sort((x, y) => x - y);
    const finite = les.filter((le) => Number.isFinite(le));
    const maxLe = finite.length ? finite[finite.length - 1] : 0;
    const deltas = les.map((le) => ({ le, d: b.get(le) - (pb.get(le) || 0) }));
    const total = deltas[deltas.length - 1].d;
    const secs = Math.max(1, Math.round(dt));
    let point = { t: cur.t, p50: null, p99: null };
    if (deltas.some((x) => x.d < 0)) {
      summary.textContent = 'The histogram was reset; measuring again from the next scrape.';
    } else if (!(total > 0)) {
      summary.textContent = `no records applied in the last ${secs} s`;
    } else {
      const q = (qq) => {
        const hit = deltas.find((x) => x.d >= qq * total);
        return hit ? hit.le : Infinity;
      };
      point = { t: cur.t, p50: q(0.5), p99: q(0.99) };
      const txt = (le) => (Number.isFinite(le) ? `≤ ${fmtMs(le * 1000)}` : `> ${fmtMs(maxLe * 1000)}`);
      summary.textContent = `p50 ${txt(point.p50)}, p99 ${txt(point.p99)} over the last ${secs} s`;
      summary.title = `${fmtNum(total)} records applied between the last two scrapes`;
    }
    point.maxLe = maxLe;
    points.push(point);
    while (points.length > LATENCY_POINTS) points.shift();
    chartBox.replaceChildren(drawChart(points, summary.textContent, chartBox.clientWidth));
  }

  async function scrape() {
    if (inflight || !ctx.alive) return;
    inflight = true;
    try {
      const res = await request('/metrics', { headers: { Accept: 'text/plain' } });
      const text = await res.text();
      if (!ctx.alive) return;
      const cur = { t: Date.now(), m: parseMetrics(text) };
      render(cur);
      prev = cur;
      err.clear();
    } catch (e) {
      if (!ctx.alive) return;
      err.show(`The last scrape of /metrics failed (${e.message}); showing the previous figures, retrying in 2 s.`);
    } finally {
      inflight = false;
      ctx.loaded();
    }
  }

  scrape();
  const timer = setInterval(scrape, HEALTH_INTERVAL_MS);
  return { destroy() { clearInterval(timer); } };
}

function drawChart(points, summaryText, boxWidth) {
  const W = Math.round(Math.min(760, Math.max(300, boxWidth || 640)));
  const H = 220;
  const L = 64;
  const R = 16;
  const T = 14;
  const B = 30;
  const pw = W - L - R;
  const ph = H - T - B;
  const maxLeMs = Math.max(0, ...points.map((p) => (p.maxLe || 0) * 1000));
  const toMs = (v) => (v === null ? null : Number.isFinite(v) ? v * 1000 : maxLeMs || null);
  const values = [];
  for (const p of points) for (const v of [toMs(p.p50), toMs(p.p99)]) if (v !== null && v > 0) values.push(v);
  let lo = values.length ? 10 ** Math.floor(Math.log10(Math.min(...values))) : 1;
  let hi = values.length ? 10 ** Math.ceil(Math.log10(Math.max(...values))) : 1000;
  if (hi <= lo) hi = lo * 10;
  if (hi / lo < 100) { lo = Math.max(lo / 10, 1e-3); }
  const y = (v) => T + (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
  const tEnd = points.length ? points[points.length - 1].t : Date.now();
  const span = LATENCY_POINTS * HEALTH_INTERVAL_MS;
  const x = (t) => L + (1 - (tEnd - t) / span) * pw;
  const label = `Commit to view latency, p50 and p99 in milliseconds (log scale), over the last 2 minutes. ${summaryText || 'No data yet.'}`;

  const root = svg('svg', { id: 'latency-chart', role: 'img', 'aria-label': label, viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMidYMid meet' },
    svg('title', null, label));
  const grid = svg('g', { class: 'grid' });
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    const yy = y(v).toFixed(1);
    grid.append(svg('line', { x1: L, x2: W - R, y1: yy, y2: yy }),
      svg('text', { x: L - 6, y: yy, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'tick' }, fmtMs(v)));
  }
  for (const [frac, text] of (W < 420 ? [[0, '−2 min'], [0.5, '−1 min'], [1, 'now']] : [[0, '2 min ago'], [0.5, '1 min ago'], [1, 'now']])) {
    const xx = (L + frac * pw).toFixed(1);
    grid.append(svg('line', { x1: xx, x2: xx, y1: T, y2: T + ph, class: 'vgrid' }),
      svg('text', { x: xx, y: H - 8, 'text-anchor': frac === 0 ? 'start' : frac === 1 ? 'end' : 'middle', class: 'tick' }, text));
  }
  root.append(grid);
  for (const q of ['p99', 'p50']) {
    const pts = points.filter((p) => toMs(p[q]) !== null && toMs(p[q]) > 0)
      .map((p) => `${x(p.t).toFixed(1)},${y(toMs(p[q])).toFixed(1)}`);
    root.append(svg('polyline', { class: `line ${q}`, points: pts.join(' '), fill: 'none' }));
    if (pts.length) {
      const [cx, cy] = pts[pts.length - 1].split(',');
      root.append(svg('circle', { class: `dot ${q}`, cx, cy, r: 3 }));
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// Bearer token (sessionStorage)

function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
}

function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage unavailable */ }
}

function authHeaders() {
  const t = getToken();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function actionsBlocked() {
  return Boolean(app.config.auth) && !getToken();
}

function tokenForm(onChange) {
  const input = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', spellcheck: 'false' });
  const status = el('p', { id: 'token-status', class: 'muted', role: 'status' });
  const forget = el('button', { type: 'button', id: 'token-forget', class: 'secondary' }, 'Forget');
  const form = el('form', { id: 'token-form', class: 'token-form', 'aria-label': 'Bearer token' },
    el('div', { class: 'field' }, el('label', { for: 'token' }, 'Bearer token'), input),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', id: 'token-save' }, 'Save'), forget),
    status);
  const refresh = (msg) => {
    const has = Boolean(getToken());
    forget.disabled = !has;
    status.textContent = msg || (has
      ? 'A token is saved for this browser tab.'
      : app.config.auth ? 'No token saved. Actions need the bearer token.' : 'The server needs no token for actions.');
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) { refresh('Enter a token first.'); return; }
    setToken(t);
    input.value = '';
    refresh('Token saved for this browser tab.');
    onChange();
  });
  forget.addEventListener('click', () => {
    setToken('');
    input.value = '';
    refresh('Token forgotten.');
    onChange();
    input.focus();
  });
  refresh();
  return form;
}

function authNote() {
  return el('p', { class: 'auth-note', id: 'auth-note' }, 'Actions need the bearer token. Save it in the token form; it is kept only in this browser tab.');
}

// ---------------------------------------------------------------------------------------------
// Parked messages: #/parked?after=id

function parkedQuery(query) {
  const q = {};
  for (const k of ['consumer', 'key', 'after']) {
    const v = query.get(k);
    if (v !== null && v !== '') q[k] = v;
  }
  return q;
}

function ParkedView(route, main, ctx) {
  const q = parkedQuery(route.query);
  ctx.title('Parked messages');
  const err = errorRegion('parked-error');
  const note = authNote();
  const syncAuth = () => { note.hidden = !actionsBlocked(); };

  const consumer = el('input', { id: 'parked-consumer', name: 'consumer', type: 'text', autocomplete: 'off', value: q.consumer || '' });
  const keyInput = el('input', { id: 'parked-key', name: 'key', type: 'text', autocomplete: 'off', value: q.key || '' });
  const filterForm = el('form', { id: 'parked-filters', class: 'filters', 'aria-label': 'Filter parked messages' },
    el('div', { class: 'filter-fields' },
      el('div', { class: 'field' }, el('label', { for: 'parked-consumer' }, 'Consumer'), consumer),
      el('div', { class: 'field' }, el('label', { for: 'parked-key' }, 'Key'), keyInput)),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', id: 'parked-apply' }, 'Apply'),
      el('button', { type: 'button', id: 'parked-clear', class: 'secondary' }, 'Clear')));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    go(hashWith('#/parked', { consumer: consumer.value.trim(), key: keyInput.value.trim() }));
  });
  $('#parked-clear', filterForm).addEventListener('click', () => go('#/parked'));

  const tbody = el('tbody');
  const heads = ['Id', 'Consumer', 'Topic / partition / offset', 'Key', 'Reason', 'Parked at', 'Held', 'Details'];
  const table = el('table', { id: 'parked', class: 'data' },
    el('caption', null, q.after ? `Parked messages after id ${q.after}` : 'Parked messages, oldest first'),
    el('thead', null, el('tr', null, heads.map((h) => el('th', { scope: 'col' }, h)))), tbody);
  const first = el('button', { type: 'button', id: 'parked-first', class: 'secondary', disabled: !q.after }, 'First page');
  const next = el('button', { type: 'button', id: 'parked-next', disabled: true }, 'Next page');
  let nextId = null;
  first.addEventListener('click', () => go(hashWith('#/parked', { ...q, after: null })));
  next.addEventListener('click', () => { if (nextId !== null) go(hashWith('#/parked', { ...q, after: nextId })); });

  main.append(heading('Parked messages'),
    el('div', { class: 'toolbar' }, tokenForm(syncAuth), filterForm),
    note, err.node, tableWrap(table),
    el('nav', { class: 'pager', 'aria-label': 'Pages' }, first, next));
  syncAuth();

  async function load() {
    const qs = new URLSearchParams({ limit: String(PARKED_PAGE_SIZE) });
    for (const [k, v] of Object.entries(q)) qs.set(k, v);
    try {
      const data = await getJSON(`/admin/parked?${qs}`);
      if (!ctx.alive) return;
      const items = data && Array.isArray(data.items) ? data.items : [];
      nextId = data && data.next !== undefined && data.next !== null ? String(data.next) : null;
      next.disabled = nextId === null;
      tbody.replaceChildren(...(items.length ? items.map(parkedRow) : [emptyRow(heads.length, 'Nothing is parked')]));
      err.clear();
    } catch (e) {
      if (!ctx.alive) return;
      err.show(e.status === 401 ? 'The bearer token was refused.' : `Could not load the parked messages: ${e.message}`);
    }
    ctx.loaded();
  }

  function parkedRow(p) {
    const id = String(p.id);
    const reason = valueText(p.reason);
    const reasonTd = el('td', { class: 'reason', dataset: { field: 'reason' } }, el('span', { class: 'truncate' }, reason));
    reasonTd.setAttribute('title', reason);
    const keyTd = el('td', { dataset: { field: 'key' } }, el('span', { class: 'truncate' }, valueText(p.key)));
    keyTd.setAttribute('title', valueText(p.key));
    return el('tr', { dataset: { id } },
      el('td', { dataset: { field: 'id' }, class: 'nowrap' }, id),
      el('td', { dataset: { field: 'consumer' }, class: 'nowrap' }, valueText(p.consumer)),
      el('td', { dataset: { field: 'position' }, class: 'nowrap' }, `${valueText(p.topic)} / ${valueText(p.partition)} / ${valueText(p.offset)}`),
      keyTd,
      reasonTd,
      el('td', { dataset: { field: 'parkedAt' } }, timeNode(p.parkedAt)),
      el('td', { dataset: { field: 'held' }, class: 'nowrap' }, p.held ? el('span', { class: 'badge badge-held', title: 'Waits behind an earlier parked message of its key' }, 'held') : 'no'),
      el('td', { class: 'nowrap' }, el('a', { href: `#/parked/${encodeURIComponent(id)}`, 'aria-label': `Inspect parked message ${id}` }, 'Inspect')));
  }

  load();
  return {};
}

// ---------------------------------------------------------------------------------------------
// One parked message: #/parked/<id>

function prettyJSON(text) {
  if (typeof text !== 'string') return valueText(text);
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (_) {
    return text;
  }
}

function idList(ids) {
  return ids.map(String).join(', ');
}

function describeOutcome(out, id) {
  const applied = Array.isArray(out.applied) ? out.applied : [];
  const dups = Array.isArray(out.duplicates) ? out.duplicates : [];
  const parts = [];
  if (out.skipped !== undefined && out.skipped !== null) {
    parts.push(`Skipped ${out.skipped}${applied.length ? `; applied ${idList(applied)}` : ''}.`);
  } else if (applied.length) {
    parts.push(`Applied ${applied.length} ${applied.length === 1 ? 'message' : 'messages'} (${applied.length === 1 ? 'id' : 'ids'} ${idList(applied)}).`);
  }
  if (dups.length) parts.push(`Already applied before (duplicates): ${dups.length === 1 ? 'id' : 'ids'} ${idList(dups)}.`);
  if (out.stillParked !== undefined && out.stillParked !== null) {
    const reason = out.reason ? String(out.reason) : 'no reason given';
    parts.push(String(out.stillParked) === String(id) ? `Still parked: ${reason}` : `Still parked (id ${out.stillParked}): ${reason}`);
  } else if (!parts.length && out.reason) {
    parts.push(String(out.reason));
  }
  if (!parts.length) parts.push('Done; nothing changed.');
  const same = (x) => String(x) === String(id);
  const released = applied.some(same) || dups.some(same) || (out.skipped !== undefined && out.skipped !== null && same(out.skipped));
  return { text: parts.join(' '), released };
}

function ParkedMessageView(route, main, ctx) {
  const id = route.id;
  ctx.title(`Parked message ${id}`);
  const err = errorRegion('parked-detail-error');
  const body = el('div', { class: 'detail-body' });
  const result = el('p', { id: 'action-result', role: 'status' });
  const released = el('div', { class: 'released', id: 'released' });
  const retry = el('button', { type: 'button', id: 'retry' }, 'Retry');
  const skip = el('button', { type: 'button', id: 'skip', class: 'danger' }, 'Skip');
  const note = authNote();
  let done = false;
  let busy = false;
  const sync = () => {
    const blocked = actionsBlocked();
    note.hidden = !blocked;
    retry.disabled = skip.disabled = blocked || done || busy;
  };
  const section = el('section', { id: 'parked-detail', dataset: { id }, 'aria-labelledby': 'parked-heading' },
    el('h1', { id: 'parked-heading', tabindex: '-1' }, `Parked message ${id}`),
    err.node,
    el('div', { class: 'panel actions' },
      el('h2', null, 'Release'),
      el('p', { class: 'muted' }, 'Retry applies it again (and what waits behind it). Skip drops it for good; only the key’s first parked message can be skipped.'),
      el('div', { class: 'form-actions' }, retry, skip),
      note, result, released,
      el('details', { open: actionsBlocked() }, el('summary', null, 'Bearer token'), tokenForm(sync))),
    body);
  main.append(el('p', { class: 'back' }, el('a', { href: '#/parked' }, '← All parked messages')), section);
  sync();

  function render(p) {
    const pair = (label, field, value) => el('div', { class: 'pair' }, el('dt', null, label),
      el('dd', { dataset: { field } }, value instanceof Node ? value : valueText(value)));
    body.replaceChildren(
      el('dl', { class: 'meta' },
        pair('Id', 'id', p.id),
        pair('Consumer', 'consumer', p.consumer),
        pair('Message id', 'messageId', p.messageId),
        pair('Topic', 'topic', p.topic),
        pair('Partition', 'partition', p.partition),
        pair('Offset', 'offset', p.offset),
        pair('Key', 'key', p.key),
        pair('Parked at', 'parkedAt', timeNode(p.parkedAt)),
        pair('Held', 'held', p.held ? 'yes — it waits behind an earlier parked message of its key' : 'no')),
      el('h2', null, 'Reason'),
      el('p', { dataset: { field: 'reason' }, class: 'reason-full' }, valueText(p.reason)),
      el('h2', null, 'Headers'),
      el('pre', { dataset: { field: 'headers' }, tabindex: '0' }, prettyJSON(p.headers)),
      el('h2', null, 'Payload'),
      el('pre', { dataset: { field: 'payload' }, tabindex: '0' }, prettyJSON(p.payload)));
  }

  async function load() {
    if (!/^\d+$/.test(id)) {
      err.show('This is not a parked message id.');
      done = true;
      sync();
      ctx.loaded();
      return;
    }
    try {
      const p = await getJSON(`/admin/parked/${encodeURIComponent(id)}`);
      if (!ctx.alive) return;
      err.clear();
      render(p || {});
    } catch (e) {
      if (!ctx.alive) return;
      if (e.status === 404) {
        done = true;
        sync();
        body.replaceChildren(el('p', { class: 'notice' }, `Message ${id} is not parked (any more): it was released, or never parked.`));
      } else {
        err.show(e.status === 401 ? 'The bearer token was refused.' : `Could not load this message: ${e.message}`);
      }
    }
    ctx.loaded();
  }

  async function act(kind) {
    if (busy) return;
    busy = true;
    sync();
    result.classList.remove('failed');
    result.textContent = kind === 'retry' ? 'Retrying…' : 'Skipping…';
    try {
      const res = await request(`/admin/parked/${encodeURIComponent(id)}/${kind}`, {
        method: 'POST',
        headers: { Accept: 'application/json', ...authHeaders() },
      });
      const text = await res.text();
      let out = {};
      try { out = text ? JSON.parse(text) : {}; } catch (_) { out = {}; }
      if (!ctx.alive) return;
      const o = describeOutcome(out || {}, id);
      result.textContent = o.text;
      if (o.released) {
        done = true;
        section.dataset.released = 'true';
        released.replaceChildren(el('p', null, `Message ${id} was released. `,
          el('a', { href: '#/parked', id: 'back-to-parked' }, 'Back to the parked messages')));
      } else if (out && out.stillParked !== undefined && String(out.stillParked) === String(id)) {
        load();
      }
    } catch (e) {
      if (!ctx.alive) return;
      result.classList.add('failed');
      result.textContent = e.status === 401 ? 'The bearer token was refused.' : e.message;
      if (e.status === 404) done = true;
    } finally {
      busy = false;
      if (ctx.alive) sync();
    }
  }

  retry.addEventListener('click', () => act('retry'));
  skip.addEventListener('click', () => act('skip'));
  load();
  return {};
}

// ---------------------------------------------------------------------------------------------
// Live rows (server-sent events), one EventSource for the whole app

function setLive(text, state) {
  const s = $('#live-status');
  if (s) s.textContent = text;
  const box = $('#live');
  if (box) box.dataset.state = state;
}

function resync() {
  if (app.view && app.view.onResync) app.view.onResync();
}

function connectLive() {
  if (typeof EventSource === 'undefined') {
    setLive('unavailable', 'error');
    return;
  }
  const es = new EventSource('/console/live');
  app.es = es;
  es.addEventListener('open', () => {
    setLive('live', 'open');
    if (app.liveHadError) {
      app.liveHadError = false;
      resync(); // changes may have been missed while disconnected
    }
  });
  es.addEventListener('error', () => {
    app.liveHadError = true;
    setLive('reconnecting…', 'error');
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an error status): try again ourselves, still one at a time.
      es.close();
      setTimeout(() => { if (app.es === es) connectLive(); }, 5000);
    }
  });
  es.addEventListener('rows', (e) => {
    let rows;
    try { rows = JSON.parse(e.data); } catch (_) { return; }
    if (!Array.isArray(rows)) return;
    rows = rows.filter((r) => r && typeof r === 'object');
    if (!rows.length) return;
    if (app.view && app.view.onRows) {
      const shown = app.view.onRows(rows);
      if (shown > 0) announceRows(shown);
    }
  });
  es.addEventListener('resync', () => resync());
}

function announceRows(n) {
  const a = app.announce;
  a.count += n;
  if (a.timer) return;
  const wait = Math.max(0, 1000 - (Date.now() - a.last));
  a.timer = setTimeout(() => {
    a.timer = 0;
    a.last = Date.now();
    const c = a.count;
    a.count = 0;
    const region = $('#announcer');
    if (region) region.textContent = `${c} ${c === 1 ? 'row' : 'rows'} updated`;
  }, wait);
}

// ---------------------------------------------------------------------------------------------
// Start

function normalizeConfig(c) {
  const cfg = c && typeof c === 'object' ? c : {};
  return {
    title: typeof cfg.title === 'string' && cfg.title ? cfg.title : 'View',
    collection: typeof cfg.collection === 'string' ? cfg.collection.replace(/\/+$/, '') : '',
    key: typeof cfg.key === 'string' ? cfg.key : 'id',
    columns: Array.isArray(cfg.columns) ? cfg.columns.filter((x) => x && typeof x.field === 'string') : [],
    filters: Array.isArray(cfg.filters) ? cfg.filters.filter((x) => x && typeof x.param === 'string') : [],
    groups: Array.isArray(cfg.groups) ? cfg.groups.filter((x) => x && typeof x.name === 'string') : [],
    group: typeof cfg.group === 'string' ? cfg.group : '',
    parked: Boolean(cfg.parked),
    auth: Boolean(cfg.auth),
  };
}

function wireSkipLink() {
  const skip = $('#skip-link');
  if (!skip) return;
  skip.addEventListener('click', (e) => {
    e.preventDefault(); // the hash is the router's
    const main = $('#main');
    const h = main.querySelector('h1');
    (h || main).focus();
  });
}

async function boot() {
  wireSkipLink();
  try {
    app.config = normalizeConfig(await getJSON('/console/config.json'));
  } catch (e) {
    document.body.dataset.page = 'error';
    const retryBtn = el('button', { type: 'button', id: 'reload-config' }, 'Try again');
    retryBtn.addEventListener('click', () => location.reload());
    $('#main').replaceChildren(heading('tramline console'),
      el('div', { class: 'error', role: 'alert' }, `Could not load the console’s configuration: ${e.message}`), retryBtn);
    setLive('offline', 'error');
    document.body.dataset.loaded = 'true';
    return;
  }
  const cfg = app.config;
  $('#app-title').textContent = cfg.title;
  document.title = `${cfg.title} — tramline console`;
  $('#nav-rows').textContent = cfg.title;
  const parkedItem = $('#nav-parked-item');
  if (parkedItem) parkedItem.hidden = !cfg.parked;
  connectLive();
  window.addEventListener('hashchange', onHashChange);
  const route = parseRoute();
  if (route.page === 'rows') app.lastRowsHash = location.hash || '#/';
  mount(route, false);
}

boot();
