// oncehook console: a small single-page client of the admin API (/api/v1).
//
// Everything shown comes from the API, which masks payloads, headers and errors; the page adds
// nothing of its own. Elements are built with createElement and textContent only, so data from
// the API is never parsed as HTML. The admin token lives in sessionStorage (this tab only) and
// is sent as `Authorization: Bearer`.
'use strict';

const TOKEN_KEY = 'oncehook.adminToken';
const REQUESTED_BY_KEY = 'oncehook.requestedBy';
const WINDOWS = [['15m', '15 minutes'], ['1h', '1 hour'], ['24h', '24 hours']];
const EVENT_STATUSES = ['received', 'processing', 'completed', 'failed_retryable', 'failed_terminal'];
const OUTCOME_COLORS = {
  accepted: '#2563eb',
  duplicate: '#7c3aed',
  conflict: '#db2777',
  invalid_signature: '#dc2626',
  invalid_body: '#ea580c',
  rate_limited: '#ca8a04',
  too_large: '#0891b2',
  unavailable: '#4b5563',
};
const PAGE_SIZE = 25;
const OVERVIEW_REFRESH_MS = 15000;
const RUNBOOK = 'https://github.com/oncehook/oncehook/blob/main/RUNBOOK.md';
// The end-to-end objective the alert rules use: 95% within 2 s.
const SLO_P95_MS = 2000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// What the views remember while the tab is open (never written to the page or the URL).
const state = {
  window: '15m',
  events: { query: {}, cursors: [null], page: 0 },
  deadLetters: { cursors: [null], page: 0, selected: new Map() },
};
let renderSeq = 0;
let timers = [];

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'value') el.value = value; // a property: never serialized into the HTML
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// Replaces an element's children (arrays are flattened, null and false skipped).
function fill(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  appendAll(el, children);
  return el;
}

function announce(text) {
  const announcer = document.getElementById('announcer');
  announcer.textContent = '';
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  const hintEl = hint ? h('span', { class: 'muted', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

function badge(status) {
  const tone = {
    completed: 'ok', delivered: 'ok',
    failed_terminal: 'bad', dead: 'bad',
    failed_retryable: 'warn', retrying: 'warn',
    processing: 'info', in_flight: 'info', pending: 'info', received: 'info',
    active: 'ok', paused: 'warn', open: 'bad', half_open: 'warn',
  }[status] || '';
  return h('span', { class: `badge ${tone}` }, String(status || 'unknown').replace(/_/g, ' '));
}

function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  return h('time', { datetime: iso, title: iso }, formatLocal(date));
}

function formatLocal(date) {
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

function formatSeconds(seconds) {
  if (seconds >= 3600) return `${+(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${+(seconds / 60).toFixed(1)} min`;
  return `${seconds} s`;
}

function formatPercent(rate) {
  if (rate === null || rate === undefined) return '–';
  return `${(rate * 100).toFixed(rate < 0.1 && rate > 0 ? 1 : 0)}%`;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// Ids are UUIDv7: the first digits are a timestamp shared by events of the same minute, so the
// short form keeps the random end.
function shortId(id) {
  return `…${String(id).slice(-12)}`;
}

function eventLink(id, text) {
  return h('a', { href: `#/events/${encodeURIComponent(id)}`, class: 'mono' }, text || id);
}

function table(caption, headers, rows, options = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', options.attrs || {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((head) => {
        const [label, cls] = Array.isArray(head) ? head : [head, ''];
        return h('th', { scope: 'col', class: cls || null }, label);
      }))),
      h('tbody', {}, rows)));
}

// ---------------------------------------------------------------------------------------------
// The admin API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && String(value).trim() !== '') {
      search.set(name, String(value).trim());
    }
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function call(path, options = {}, token = sessionStorage.getItem(TOKEN_KEY)) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token || ''}` };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method: options.method || 'GET',
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (error) {
    throw new ApiError(0, 'The gateway cannot be reached; is it running?');
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = (body && typeof body.error === 'string') ? body.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

// An API call from a signed-in view: a refused token ends the session.
async function api(path, options) {
  try {
    return await call(path, options);
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      renderSignIn(`The gateway refused the token (${error.message}). Sign in again.`);
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Routing

function clearTimers() {
  for (const timer of timers) window.clearInterval(timer);
  timers = [];
}

function mainEl() {
  return document.getElementById('main');
}

function setView(title, section, ...content) {
  const main = mainEl();
  fill(main, ...content);
  document.title = `${title} · oncehook console`;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function focusHeading() {
  const heading = mainEl().querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

function route() {
  clearTimers();
  const signedIn = Boolean(sessionStorage.getItem(TOKEN_KEY));
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('sign-out').hidden = !signedIn;
  if (!signedIn) {
    renderSignIn();
    return;
  }
  const hash = window.location.hash || '#/overview';
  const parts = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const seq = ++renderSeq;
  let view;
  if (parts[0] === 'events' && parts[1]) view = renderEvent(seq, parts[1]);
  else if (parts[0] === 'events') view = renderEvents(seq);
  else if (parts[0] === 'dead-letters') view = renderDeadLetters(seq);
  else if (parts[0] === 'destinations') view = renderDestinations(seq);
  else view = renderOverview(seq);
  view.then(() => {
    if (current(seq)) focusHeading();
  }, (error) => showFailure(seq, error));
}

function current(seq) {
  return seq === renderSeq;
}

function showFailure(seq, error) {
  if (!current(seq) || (error && error.status === 401)) return;
  setView('Error', '', h('h1', {}, 'Something went wrong'),
    h('p', { class: 'error', role: 'alert' }, error && error.message ? error.message : String(error)),
    h('p', {}, h('button', { type: 'button', onclick: route }, 'Try again')));
}

// ---------------------------------------------------------------------------------------------
// Sign-in

function renderSignIn(message, tone = 'error') {
  clearTimers();
  renderSeq++;
  document.getElementById('nav').hidden = true;
  document.getElementById('sign-out').hidden = true;
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    spellcheck: 'false',
  });
  const error = h('p', { class: tone, id: 'signin-error', role: 'alert', hidden: !message }, message || '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { 'aria-labelledby': 'signin-title', novalidate: true },
    field('Admin token', input, 'The admin.token of the gateway’s config. It is kept in this browser tab only.'),
    error, h('div', {}, button));
  form.addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = 'Enter the admin token.';
      error.hidden = false;
      input.focus();
      return;
    }
    button.disabled = true;
    error.hidden = true;
    error.className = 'error';
    try {
      await call('/stats?window=15m', {}, token);
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = '';
      if (!window.location.hash.startsWith('#/')) window.location.hash = '#/overview';
      route();
      announce('Signed in.');
    } catch (failure) {
      error.textContent = failure.status === 401
        ? `Sign-in failed: the gateway refused this token (${failure.message}).`
        : `Sign-in failed: ${failure.message}`;
      error.hidden = false;
      button.disabled = false;
      input.focus();
      input.select();
    }
  });
  setView('Sign in', '', h('section', { class: 'signin card', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'), form));
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Charts (hand-drawn SVG)

const CHART = { width: 640, height: 220, left: 60, right: 12, top: 12, bottom: 26 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function axisLabel(value, unit) {
  if (value === 0) return '0';
  if (unit === 'ms') return formatMs(value);
  if (unit === '%') return `${Math.round(value * 100)}%`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function chartFrame(max, unit, points, stepSeconds) {
  const { width, height, left, right, top, bottom } = CHART;
  const plotHeight = height - top - bottom;
  const grid = [0, 0.5, 1].map((f) => {
    const y = top + plotHeight * (1 - f);
    return [
      s('line', { class: 'grid', x1: left, x2: width - right, y1: y, y2: y }),
      s('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, axisLabel(max * f, unit)),
    ];
  });
  const span = points * stepSeconds;
  const labels = [
    s('text', { x: left, y: height - 8, 'text-anchor': 'start' }, `−${formatSeconds(span)}`),
    s('text', { x: left + (width - left - right) / 2, y: height - 8, 'text-anchor': 'middle' },
      `−${formatSeconds(Math.round(span / 2))}`),
    s('text', { x: width - right, y: height - 8, 'text-anchor': 'end' }, 'now'),
  ];
  return [grid, labels, s('line', {
    class: 'axis', x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight,
  })];
}

function chartSvg(label, children) {
  return s('svg', {
    viewBox: `0 0 ${CHART.width} ${CHART.height}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet',
  }, children);
}

function pointTime(index, points, stepSeconds) {
  const ago = (points - index) * stepSeconds;
  return `−${formatSeconds(ago)} to −${formatSeconds(Math.max(ago - stepSeconds, 0))}`;
}

// Stacked bars: series is [[name, color, counts[]]].
function stackedBars(label, series, stepSeconds) {
  const points = series.length ? series[0][2].length : 0;
  const totals = Array.from({ length: points }, (_, i) => series.reduce((sum, [, , c]) => sum + (c[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const { width, height, left, right, top, bottom } = CHART;
  const plotHeight = height - top - bottom;
  const slot = (width - left - right) / Math.max(points, 1);
  const bars = [];
  for (let i = 0; i < points; i++) {
    let base = top + plotHeight;
    for (const [name, color, counts] of series) {
      const count = counts[i] || 0;
      if (!count) continue;
      const barHeight = (count / max) * plotHeight;
      base -= barHeight;
      bars.push(s('rect', {
        class: 'bar', 'data-series': name, x: left + i * slot + slot * 0.12, y: base,
        width: slot * 0.76, height: barHeight, fill: color,
      }, s('title', {}, `${pointTime(i, points, stepSeconds)}: ${plural(count, 'request', 'requests')} ${name.replace(/_/g, ' ')}`)));
    }
  }
  return chartSvg(label, [chartFrame(max, '', points, stepSeconds), bars]);
}

// Lines with gaps where a value is null: series is [[name, color, values[]]].
function lineChart(label, series, stepSeconds, unit) {
  const points = series.length ? series[0][2].length : 0;
  const all = series.flatMap(([, , values]) => values.filter((v) => v !== null && v !== undefined));
  const max = unit === '%' ? 1 : niceMax(Math.max(0, ...all));
  const { width, height, left, right, top, bottom } = CHART;
  const plotHeight = height - top - bottom;
  const slot = (width - left - right) / Math.max(points, 1);
  const drawn = [];
  for (const [name, color, values] of series) {
    let path = '';
    let pen = false;
    values.forEach((value, i) => {
      if (value === null || value === undefined) {
        pen = false;
        return;
      }
      const x = left + slot * (i + 0.5);
      const y = top + plotHeight * (1 - Math.min(value / max, 1));
      path += `${pen ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
      pen = true;
      drawn.push(s('circle', { class: 'point', 'data-series': name, cx: x, cy: y, r: 3.5, fill: color },
        s('title', {}, `${pointTime(i, points, stepSeconds)}: ${name} ${axisLabel(value, unit === '%' ? '%' : unit)}`)));
    });
    if (path) drawn.unshift(s('path', { d: path, fill: 'none', stroke: color, 'stroke-width': 2.5 }));
  }
  return chartSvg(label, [chartFrame(max, unit, points, stepSeconds), drawn]);
}

// Horizontal bars for a current state: rows is [[label, value, title]].
function horizontalBars(label, rows, color) {
  const rowHeight = 30;
  const labelWidth = 190;
  const width = CHART.width;
  const height = Math.max(rows.length, 1) * rowHeight + 8;
  const max = niceMax(Math.max(0, ...rows.map(([, value]) => value)));
  const barSpace = width - labelWidth - 60;
  const bars = rows.map(([name, value, title], i) => {
    const y = 4 + i * rowHeight;
    const barWidth = value > 0 ? Math.max((value / max) * barSpace, 3) : 0;
    return s('g', {},
      s('text', { class: 'bar-label', x: labelWidth - 8, y: y + 18, 'text-anchor': 'end' },
        name.length > 28 ? `${name.slice(0, 27)}…` : name),
      s('rect', { class: 'bar', x: labelWidth, y: y + 5, width: barWidth, height: rowHeight - 10, rx: 3, fill: color },
        s('title', {}, title || `${name}: ${value}`)),
      s('text', { x: labelWidth + barWidth + 6, y: y + 18 }, String(value)));
  });
  return s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label }, bars);
}

function chartCard(id, title, summary, body, legend, dataTable, total) {
  return h('figure', { class: 'chart card', 'data-chart': id, 'data-total': total, 'aria-labelledby': `${id}-title` },
    h('figcaption', {}, h('h2', { id: `${id}-title` }, title), h('span', { class: 'muted' }, summary)),
    body, legend || null,
    dataTable ? h('details', {}, h('summary', {}, 'Show the numbers'), dataTable) : null);
}

function legendList(items) {
  return h('ul', { class: 'legend' }, items.map(([name, color]) => h('li', {},
    h('span', { class: 'swatch', 'aria-hidden': 'true', 'data-color': color }), name)));
}

// The legend swatches get their colour through the CSSOM (allowed by the policy, unlike a
// style attribute in markup).
function paintSwatches(root) {
  for (const swatch of root.querySelectorAll('.swatch[data-color]')) {
    swatch.style.background = swatch.dataset.color;
  }
}

function seriesTable(caption, stepSeconds, columns) {
  const points = columns.length ? columns[0][1].length : 0;
  const rows = [];
  for (let i = 0; i < points; i++) {
    rows.push(h('tr', {}, h('th', { scope: 'row' }, pointTime(i, points, stepSeconds)),
      columns.map(([, values, format]) => h('td', { class: 'num' }, format(values[i])))));
  }
  return table(caption, ['When', ...columns.map(([name]) => [name, 'num'])], rows);
}

// ---------------------------------------------------------------------------------------------
// Overview

async function renderOverview(seq) {
  const windowButtons = WINDOWS.map(([value, label]) => h('button', {
    type: 'button', 'aria-pressed': String(state.window === value), 'data-window': value,
    onclick: () => {
      state.window = value;
      for (const b of windowButtons) b.setAttribute('aria-pressed', String(b.dataset.window === value));
      refresh();
    },
  }, label));
  const updated = h('span', { class: 'muted', id: 'overview-updated' });
  const body = h('div', { id: 'overview-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const refreshButton = h('button', { type: 'button', class: 'quiet', onclick: () => refresh() }, 'Refresh');
  setView('Overview', 'overview',
    h('div', { class: 'page-head' },
      h('h1', {}, 'Overview'),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time window' }, windowButtons),
      h('span', { class: 'spacer' }), updated, refreshButton),
    body);

  async function refresh() {
    const wanted = state.window;
    body.setAttribute('aria-busy', 'true');
    const [stats, dlq, destinations, recent, day] = await Promise.all([
      api(`/stats${query({ window: wanted })}`),
      api('/dlq?group_by=reason'),
      api('/destinations'),
      api('/stats?window=15m'),
      api('/stats?window=24h'),
    ]);
    if (!current(seq) || wanted !== state.window) return;
    fill(body, attentionList(dlq, destinations, recent, day), ...overviewContent(stats, dlq));
    paintSwatches(body);
    body.setAttribute('aria-busy', 'false');
    updated.textContent = `Updated ${formatLocal(new Date()).slice(11)}`;
  }

  await refresh();
  if (!current(seq)) return;
  timers.push(window.setInterval(() => {
    if (!document.hidden) refresh().catch(() => {});
  }, OVERVIEW_REFRESH_MS));
}

// What needs someone now, each with its runbook section: the same conditions the alert rules
// watch, read from this gateway's API.
function attentionList(dlq, destinations, recent, day) {
  const items = [];
  const add = (id, text, anchor) => items.push(h('li', { 'data-attention': id }, text, ' ',
    h('a', { href: `${RUNBOOK}#${anchor}`, target: '_blank', rel: 'noopener noreferrer' }, 'Runbook')));
  const hourAgo = Date.now() - 3600 * 1000;
  for (const group of dlq.groups || []) {
    if (Date.parse(group.last_at) >= hourAgo) {
      add(`dead-${group.destination}-${group.reason}`,
        `Dead letters to ${group.destination} in the last hour (${String(group.reason || 'unknown').replace(/_/g, ' ')}, ${group.count} in all).`,
        'dead-deliveries');
    }
  }
  for (const d of destinations.destinations || []) {
    if (d.state === 'open' || d.state === 'half_open') {
      add(`circuit-${d.name}`, `The circuit of ${d.name} is open: ${plural(d.queue_depth, 'delivery waits', 'deliveries wait')}.`,
        'circuit-open');
    } else if (d.state === 'paused') {
      add(`paused-${d.name}`, `${d.name} is paused (${d.paused_reason || 'no reason given'}): ${plural(d.queue_depth, 'delivery waits', 'deliveries wait')}.`,
        'paused-destination');
    }
  }
  const now = recent.intake.dedupe_hit_rate;
  const usual = day.intake.dedupe_hit_rate;
  if (now !== null && now > 0.1 && (usual === null || now > 3 * usual)) {
    add('dedupe-jump', `Repeats are ${formatPercent(now)} of requests over 15 minutes (usually ${formatPercent(usual)}): a provider is retrying.`,
      'dedupe-storm');
  }
  const p95 = recent.delivery.end_to_end_ms.p95;
  if (p95 !== null && p95 > SLO_P95_MS) {
    add('slo', `End-to-end p95 is ${formatMs(p95)} over 15 minutes (objective: 2 s).`, 'end-to-end-slow');
  }
  return h('section', { class: 'attention', 'aria-labelledby': 'attention-title', id: 'attention' },
    h('h2', { id: 'attention-title' }, 'Needs attention'),
    items.length ? h('ul', {}, items) : h('p', { class: 'muted' }, 'Nothing needs attention now.'));
}

function overviewContent(stats, dlq) {
  const intake = stats.intake;
  const step = intake.series.step_seconds;
  const byOutcome = intake.series.by_outcome || {};
  const outcomes = Object.keys(byOutcome).filter((name) => byOutcome[name].some((n) => n > 0));
  const queueTotal = Object.values(stats.queue_depth).reduce((a, b) => a + b, 0);
  const groups = dlq.groups || [];
  const deadTotal = groups.reduce((sum, g) => sum + g.count, 0);
  const ack = intake.ack_latency_ms;
  const endToEnd = stats.delivery.end_to_end_ms;
  const replays = stats.delivery.replays || { delivered: 0, dead: 0, success_rate: null };
  const windowLabel = formatSeconds(stats.window_seconds);

  const kpi = (id, label, value, note) => h('li', { class: 'kpi', 'data-kpi': id },
    h('span', { class: 'label' }, label), h('span', { class: 'value' }, value),
    note ? h('span', { class: 'note' }, note) : null);
  const kpis = h('ul', { class: 'kpis', 'aria-label': `Figures over the last ${windowLabel}` },
    kpi('requests', 'Requests', String(intake.total), `${intake.rate_per_second} per second`),
    kpi('dedupe', 'Dedupe hit rate', formatPercent(intake.dedupe_hit_rate), 'duplicates among keyed requests'),
    kpi('ack-p95', 'Ack p95', formatMs(ack.p95), `${plural(ack.count, 'request', 'requests')}`),
    kpi('e2e-p95', 'End-to-end p95', formatMs(endToEnd.p95), `${plural(endToEnd.count, 'delivery', 'deliveries')}`),
    kpi('queue', 'Open deliveries', String(queueTotal), 'pending, in flight or retrying'),
    kpi('dead', 'Dead letters', String(deadTotal), 'waiting for a replay'),
    kpi('replays', 'Replay success', formatPercent(replays.success_rate),
      `${replays.delivered} delivered, ${replays.dead} dead after a replay`));

  // Intake by outcome.
  const intakeSeries = outcomes.map((name) => [name, OUTCOME_COLORS[name] || '#6b7280', byOutcome[name]]);
  const intakeChart = chartCard('intake', 'Intake by outcome',
    `requests per ${formatSeconds(step)}`,
    outcomes.length
      ? stackedBars(`Requests per ${formatSeconds(step)} over the last ${windowLabel}, by outcome: ${
        outcomes.map((o) => `${o.replace(/_/g, ' ')} ${byOutcome[o].reduce((a, b) => a + b, 0)}`).join(', ')}`,
      intakeSeries, step)
      : h('p', { class: 'chart-empty' }, 'No requests in this window.'),
    legendList(intakeSeries.map(([name, color, counts]) => [
      `${name.replace(/_/g, ' ')} (${counts.reduce((a, b) => a + b, 0)})`, color])),
    outcomes.length ? seriesTable('Requests per interval', step,
      outcomes.map((name) => [name.replace(/_/g, ' '), byOutcome[name], String])) : null,
    intake.total);

  // Dedupe hit rate per point: repeats among the requests that reached the dedupe step.
  const zeros = intake.series.counts.map(() => 0);
  const accepted = byOutcome.accepted || zeros;
  const repeats = (byOutcome.duplicate || zeros).map((n, i) => n + ((byOutcome.conflict || zeros)[i] || 0));
  const hitRates = accepted.map((n, i) => (n + repeats[i] > 0 ? repeats[i] / (n + repeats[i]) : null));
  const dedupeChart = chartCard('dedupe', 'Dedupe hit rate',
    `${formatPercent(intake.dedupe_hit_rate)} over ${windowLabel}`,
    hitRates.some((v) => v !== null)
      ? lineChart(`Dedupe hit rate over the last ${windowLabel}: ${formatPercent(intake.dedupe_hit_rate)}`,
        [['hit rate', '#7c3aed', hitRates]], step, '%')
      : h('p', { class: 'chart-empty' }, 'No keyed requests in this window.'),
    null,
    seriesTable('Dedupe hit rate per interval', step, [['hit rate', hitRates, formatPercent]]),
    repeats.reduce((a, b) => a + b, 0));

  const latencyCard = (id, title, stats95, color, what) => chartCard(id, title,
    `p95 ${formatMs(stats95.p95)} · p50 ${formatMs(stats95.p50)} · p99 ${formatMs(stats95.p99)}`,
    stats95.count
      ? lineChart(`${title} over the last ${windowLabel}: p95 ${formatMs(stats95.p95)}`,
        [['p95', color, stats95.p95_series]], step, 'ms')
      : h('p', { class: 'chart-empty' }, `No ${what} in this window.`),
    null,
    seriesTable(`${title} per interval`, step, [['p95', stats95.p95_series, formatMs]]),
    stats95.count);
  const ackChart = latencyCard('ack', 'Ack latency (p95)', ack, '#2563eb', 'requests');
  const endToEndChart = latencyCard('e2e', 'End-to-end latency (p95)', endToEnd, '#0891b2', 'deliveries');

  const queueRows = Object.entries(stats.queue_depth).map(([name, depth]) => [name, depth]);
  const queueChart = chartCard('queue', 'Queue depth by destination', 'open deliveries now',
    queueRows.length
      ? horizontalBars(`Open deliveries per destination: ${queueRows.map(([n, d]) => `${n} ${d}`).join(', ')}`,
        queueRows, '#2563eb')
      : h('p', { class: 'chart-empty' }, 'No destinations configured.'),
    null, null, queueTotal);

  const deadRows = groups.map((g) => [`${g.destination} · ${g.reason || 'unknown'}`, g.count,
    `${g.destination}, ${g.reason || 'unknown'}: ${g.count}; last error: ${g.last_error || '–'}`]);
  const deadChart = chartCard('dead', 'Dead deliveries by reason', 'in the dead-letter queue now',
    deadRows.length
      ? horizontalBars(`Dead deliveries: ${deadRows.map(([n, c]) => `${n} ${c}`).join(', ')}`, deadRows, '#dc2626')
      : h('p', { class: 'chart-empty' }, 'The dead-letter queue is empty.'),
    deadRows.length ? h('p', { class: 'muted' }, h('a', { href: '#/dead-letters' }, 'Open the dead letters')) : null,
    deadRows.length ? table(null, ['Destination', 'Reason', ['Count', 'num'], 'Last error'],
      groups.map((g) => h('tr', {}, h('td', {}, g.destination), h('td', {}, g.reason || 'unknown'),
        h('td', { class: 'num' }, String(g.count)), h('td', { class: 'error-text' }, g.last_error || '–')))) : null,
    deadTotal);

  const sources = Object.entries(intake.sources || {});
  const sourcesTable = h('section', { class: 'card', 'aria-labelledby': 'sources-title', id: 'sources' },
    h('h2', { id: 'sources-title' }, 'Intake by source'),
    sources.length
      ? table(null, ['Source', ['Requests', 'num'], ['Accepted', 'num'], ['Duplicates', 'num'], ['Rejected', 'num'], ['Dedupe hit rate', 'num']],
        sources.map(([name, figures]) => {
          const o = figures.outcomes;
          const repeated = (o.duplicate || 0) + (o.conflict || 0);
          const rejected = figures.total - (o.accepted || 0) - repeated;
          return h('tr', { 'data-source': name },
            h('th', { scope: 'row' }, name),
            h('td', { class: 'num' }, String(figures.total)),
            h('td', { class: 'num' }, String(o.accepted || 0)),
            h('td', { class: 'num' }, String(repeated)),
            h('td', { class: 'num' }, String(rejected)),
            h('td', { class: 'num' }, formatPercent(figures.dedupe_hit_rate)));
        }))
      : h('p', { class: 'chart-empty' }, 'No requests in this window.'));

  const scope = h('p', { class: 'muted' },
    `Intake and latency figures are ${stats.nodes > 1 ? `the ${stats.nodes} nodes’` : 'this node’s'} over the last ${windowLabel}` +
    (stats.covered_seconds < stats.window_seconds ? ` (it has been running for ${formatSeconds(stats.covered_seconds)})` : '') +
    '; queue depth and dead letters cover the whole store.');
  return [kpis, h('div', { class: 'charts' }, intakeChart, dedupeChart, ackChart, endToEndChart, queueChart, deadChart),
    sourcesTable, scope];
}

// ---------------------------------------------------------------------------------------------
// Events

async function renderEvents(seq) {
  const q = state.events.query;
  const input = (name, props = {}) => h('input', { id: `search-${name}`, name, value: q[name] || '', ...props });
  const status = h('select', { id: 'search-status', name: 'status' },
    h('option', { value: '' }, 'any'),
    EVENT_STATUSES.map((value) => h('option', { value }, value.replace(/_/g, ' '))));
  status.value = q.status || '';
  const controls = {
    event_id: input('event_id', { autocomplete: 'off', spellcheck: 'false' }),
    email: input('email', { type: 'email', autocomplete: 'off' }),
    contact: input('contact', { autocomplete: 'off' }),
    key: input('key', { autocomplete: 'off', spellcheck: 'false' }),
    source: input('source', { autocomplete: 'off' }),
    status,
    since: input('since', { type: 'datetime-local', step: 1 }),
    until: input('until', { type: 'datetime-local', step: 1 }),
  };
  const formError = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h('form', { role: 'search', 'aria-label': 'Search events', class: 'card' },
    h('div', { class: 'form-grid' },
      field('Event id', controls.event_id),
      field('Email', controls.email),
      field('Contact', controls.contact),
      field('Idempotency key', controls.key),
      field('Source', controls.source),
      field('Status', controls.status),
      field('Received from', controls.since),
      field('Received until', controls.until)),
    formError,
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'button', class: 'quiet', onclick: () => {
        state.events = { query: {}, cursors: [null], page: 0 };
        route();
      } }, 'Clear')));
  const results = h('section', { 'aria-labelledby': 'results-title', id: 'event-results' },
    h('h2', { id: 'results-title' }, 'Results'), h('p', { class: 'muted' }, 'Loading…'));
  form.addEventListener('submit', (submit) => {
    submit.preventDefault();
    const next = {};
    for (const [name, control] of Object.entries(controls)) next[name] = control.value.trim();
    if (next.event_id) {
      if (!UUID_RE.test(next.event_id)) {
        formError.textContent = 'An event id looks like 0190f0c2-6a3e-7cc1-9f0e-2b1d7c9e4a10.';
        formError.hidden = false;
        controls.event_id.focus();
        return;
      }
      window.location.hash = `#/events/${next.event_id.toLowerCase()}`;
      return;
    }
    state.events = { query: next, cursors: [null], page: 0 };
    loadPage(true);
  });
  setView('Events', 'events', h('div', { class: 'page-head' }, h('h1', {}, 'Events')), form, results);

  async function loadPage(announceIt) {
    const { query: wanted, cursors, page } = state.events;
    const params = {
      email: wanted.email, contact: wanted.contact, key: wanted.key, source: wanted.source,
      status: wanted.status, since: toIso(wanted.since), until: toIso(wanted.until),
      limit: PAGE_SIZE, cursor: cursors[page],
    };
    results.setAttribute('aria-busy', 'true');
    let list;
    try {
      list = await api(`/events${query(params)}`);
    } catch (error) {
      if (error.status === 401 || !current(seq)) return;
      fill(results, h('h2', { id: 'results-title' }, 'Results'),
        h('p', { class: 'error', role: 'alert' }, error.message));
      results.setAttribute('aria-busy', 'false');
      return;
    }
    if (!current(seq)) return;
    if (list.next_cursor) cursors[page + 1] = list.next_cursor;
    else cursors.length = page + 1;
    const rows = list.events.map((event) => h('tr', { 'data-event-id': event.event_id },
      h('td', {}, timeEl(event.received_at)),
      h('td', {}, eventLink(event.event_id)),
      h('td', {}, event.source),
      h('td', { class: 'key mono', title: event.idempotency_key }, event.idempotency_key),
      h('td', {}, badge(event.status)),
      h('td', { class: 'num' }, String(event.deliveries))));
    const filtered = Object.values(wanted).some((v) => v);
    const caption = list.events.length
      ? `${plural(list.events.length, 'event', 'events')} on page ${page + 1}, newest first${filtered ? ', matching the search' : ''}`
      : (filtered ? 'No event matches the search.' : 'No events yet.');
    fill(results,
      h('h2', { id: 'results-title' }, 'Results'),
      table(caption, ['Received', 'Event id', 'Source', 'Idempotency key', 'Status', ['Deliveries', 'num']], rows,
        { attrs: { id: 'events-table' } }),
      pager(page, Boolean(list.next_cursor), (delta) => {
        state.events.page += delta;
        loadPage(true);
      }));
    results.setAttribute('aria-busy', 'false');
    if (announceIt) announce(caption);
  }

  await loadPage(false);
}

function toIso(localValue) {
  if (!localValue) return undefined;
  const date = new Date(localValue);
  return Number.isNaN(date.getTime()) ? localValue : date.toISOString();
}

function pager(page, hasNext, go) {
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'quiet', disabled: page === 0, onclick: () => go(-1) }, '← Previous'),
    h('span', { class: 'muted' }, `Page ${page + 1}`),
    h('button', { type: 'button', class: 'quiet', disabled: !hasNext, onclick: () => go(1) }, 'Next →'));
}

// ---------------------------------------------------------------------------------------------
// One event

async function renderEvent(seq, id) {
  if (!UUID_RE.test(id)) throw new Error(`“${id}” is not an event id.`);
  const event = await api(`/events/${encodeURIComponent(id)}`);
  if (!current(seq)) return;
  setView(`Event ${shortId(id)}`, 'events', ...eventContent(seq, event));
  pollWhileOpen(seq, id, event);
}

// After a replay (or while deliveries are under way) the page follows the event until every
// delivery has settled, so the operator sees the outcome without reloading.
function pollWhileOpen(seq, id, event, deadline = Date.now() + 60000) {
  const open = event.deliveries.some((d) => ['pending', 'in_flight', 'retrying'].includes(d.state));
  if (!open || Date.now() > deadline) return;
  window.setTimeout(async () => {
    if (!current(seq)) return;
    let next;
    try {
      next = await api(`/events/${encodeURIComponent(id)}`);
    } catch (error) {
      return;
    }
    if (!current(seq)) return;
    const focused = document.activeElement && document.activeElement.id;
    setView(`Event ${shortId(id)}`, 'events', ...eventContent(seq, next));
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    const settled = !next.deliveries.some((d) => ['pending', 'in_flight', 'retrying'].includes(d.state));
    if (settled) announce(`Event status: ${next.status.replace(/_/g, ' ')}.`);
    pollWhileOpen(seq, id, next, deadline);
  }, 1000);
}

function eventContent(seq, event) {
  const id = event.event_id;
  const reload = () => {
    if (!current(seq)) return;
    renderEvent(++renderSeq, id).catch((error) => showFailure(renderSeq, error));
  };
  const dead = event.deliveries.filter((d) => d.state === 'dead');
  const head = h('div', { class: 'page-head' },
    h('h1', {}, 'Event ', h('span', { class: 'mono' }, id)),
    h('span', { class: 'spacer' }),
    dead.length ? h('button', {
      type: 'button', id: 'replay-dead',
      onclick: () => openReplay({
        title: `Replay the dead deliveries of event ${shortId(id)}`,
        description: `Every dead delivery of event ${id} (${dead.map((d) => d.destination).join(', ')}).`,
        filter: { event_ids: [id], status: 'dead' },
        onDone: reload,
      }),
    }, `Replay ${plural(dead.length, 'dead delivery', 'dead deliveries')}…`) : null);

  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Status'), h('dd', { id: 'event-status' }, badge(event.status)),
    h('dt', {}, 'Source'), h('dd', {}, event.source),
    h('dt', {}, 'Received'), h('dd', {}, timeEl(event.received_at)),
    h('dt', {}, 'Idempotency key'), h('dd', { class: 'mono' }, event.idempotency_key),
    h('dt', {}, 'Content type'), h('dd', {}, event.content_type || '–'));

  const deliveries = event.deliveries.map((delivery) => deliveryCard(event, delivery, reload));

  const payloadText = typeof event.payload === 'string' ? event.payload : JSON.stringify(event.payload, null, 2);
  const headerRows = Object.entries(event.headers).map(([name, value]) => h('tr', {},
    h('th', { scope: 'row', class: 'mono' }, name), h('td', { class: 'mono' }, value)));
  const replayRows = event.replays.map((replay) => h('tr', {},
    h('td', {}, timeEl(replay.created_at)),
    h('td', {}, replay.destination),
    h('td', {}, replay.requested_by),
    h('td', {}, replay.reason),
    h('td', { class: 'mono', title: replay.replay_id }, shortId(replay.replay_id))));

  return [
    h('p', {}, h('a', { href: '#/events' }, '← All events')),
    head,
    h('section', { class: 'card', 'aria-label': 'Summary' }, facts),
    h('section', { 'aria-labelledby': 'deliveries-title', id: 'deliveries' },
      h('h2', { id: 'deliveries-title' }, `Deliveries (${event.deliveries.length})`),
      deliveries.length ? deliveries : h('p', { class: 'muted' }, 'No route matched this event: nothing to deliver.')),
    h('div', { class: 'detail-grid' },
      h('section', { 'aria-labelledby': 'payload-title' },
        h('h2', { id: 'payload-title' }, 'Payload ', h('span', { class: 'muted' }, '(masked fields hidden)')),
        h('pre', { class: 'payload', id: 'payload', tabindex: '0', 'aria-labelledby': 'payload-title' }, payloadText)),
      h('section', { 'aria-labelledby': 'headers-title' },
        h('h2', { id: 'headers-title' }, 'Headers'),
        headerRows.length ? table(null, ['Name', 'Value'], headerRows) : h('p', { class: 'muted' }, 'None kept.'))),
    h('section', { 'aria-labelledby': 'replays-title' },
      h('h2', { id: 'replays-title' }, 'Replay history'),
      replayRows.length
        ? table(null, ['When', 'Destination', 'Requested by', 'Reason', 'Replay'], replayRows, { attrs: { id: 'replay-history' } })
        : h('p', { class: 'muted' }, 'Never replayed.')),
  ];
}

// A line in the attempts timeline where a replay re-queued the delivery.
function replayMarker(replay) {
  return h('li', { class: 'replay-marker' },
    h('div', { class: 'attempt-line' },
      h('strong', {}, 'Replayed'), timeEl(replay.created_at),
      h('span', {}, `by ${replay.requested_by}: ${replay.reason}`)));
}

function deliveryCard(event, delivery, reload) {
  const longest = Math.max(1, ...delivery.attempts.map((a) => a.duration_ms));
  // This delivery's replays, oldest first; each one's marker goes before its first attempt.
  const replays = event.replays.filter((r) => r.delivery_id === delivery.delivery_id).reverse();
  const marked = new Set();
  const timeline = [];
  for (const attempt of delivery.attempts) {
    if (attempt.replay_id && !marked.has(attempt.replay_id)) {
      const replay = replays.find((r) => r.replay_id === attempt.replay_id);
      if (replay) timeline.push(replayMarker(replay));
      marked.add(attempt.replay_id);
    }
    timeline.push(attempt);
  }
  // A replay whose attempt has not started yet.
  for (const replay of replays) {
    if (!marked.has(replay.replay_id)) timeline.push(replayMarker(replay));
  }
  const attempts = timeline.map((attempt) => {
    if (attempt instanceof Node) return attempt;
    const bar = h('span', { class: 'duration-bar', 'aria-hidden': 'true' });
    bar.style.width = `${Math.max(2, Math.round((attempt.duration_ms / longest) * 140))}px`;
    return h('li', { class: attempt.outcome },
      h('div', { class: 'attempt-line' },
        h('strong', {}, `Attempt ${attempt.number}`),
        timeEl(attempt.started_at),
        h('span', {}, attempt.status_code ? `HTTP ${attempt.status_code}` : 'no response'),
        h('span', { class: 'duration' }, bar, `${attempt.duration_ms} ms`),
        badge(attempt.outcome === 'retry' ? 'retrying' : attempt.outcome),
        attempt.replay_id ? h('span', { class: 'muted' }, `replay ${shortId(attempt.replay_id)}`) : null),
      attempt.error ? h('div', { class: 'attempt-error' }, attempt.error) : null);
  });
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Attempts'), h('dd', {}, String(delivery.attempt_count)),
    delivery.dead_reason ? [h('dt', {}, 'Dead reason'), h('dd', { class: 'dead-reason' }, delivery.dead_reason)] : null,
    delivery.last_error ? [h('dt', {}, 'Last error'), h('dd', { class: 'last-error' }, delivery.last_error)] : null,
    delivery.next_attempt_at ? [h('dt', {}, 'Next attempt'), h('dd', {}, timeEl(delivery.next_attempt_at))] : null,
    delivery.delivered_at ? [h('dt', {}, 'Delivered'), h('dd', {}, timeEl(delivery.delivered_at))] : null,
    delivery.ordering_key ? [h('dt', {}, 'Ordering key'), h('dd', { class: 'mono' }, delivery.ordering_key)] : null);
  const titleId = `delivery-${delivery.delivery_id}`;
  return h('article', { class: 'card delivery', 'aria-labelledby': titleId, 'data-destination': delivery.destination, 'data-state': delivery.state },
    h('div', { class: 'delivery-head' },
      h('h3', { id: titleId }, `To ${delivery.destination}`),
      badge(delivery.state),
      h('span', { class: 'spacer' }),
      delivery.state === 'in_flight' ? null : h('button', {
        type: 'button', class: 'quiet small', 'aria-label': `Replay the delivery to ${delivery.destination}`,
        onclick: () => openReplay({
          title: `Replay to ${delivery.destination}`,
          description: `The delivery of event ${event.event_id} to ${delivery.destination} (now ${delivery.state.replace(/_/g, ' ')}).`,
          filter: { event_ids: [event.event_id], destination: delivery.destination },
          onDone: reload,
        }),
      }, 'Replay…')),
    facts,
    attempts.length
      ? h('ol', { class: 'timeline', 'aria-label': `Attempts to ${delivery.destination}` }, attempts)
      : h('p', { class: 'muted' }, 'Not attempted yet.'));
}

// ---------------------------------------------------------------------------------------------
// Replays: always a dry run first, then the real one, with a required reason.

function openReplay({ title, description, filter, onDone }) {
  const reason = h('textarea', { id: 'replay-reason', name: 'reason', required: true, maxlength: 1000 });
  const who = h('input', {
    id: 'replay-requested-by', name: 'requested_by', required: true, maxlength: 1000, autocomplete: 'off',
    value: sessionStorage.getItem(REQUESTED_BY_KEY) || '',
  });
  const message = h('div', { id: 'replay-message', 'aria-live': 'polite' });
  const previewButton = h('button', { type: 'submit', id: 'replay-preview' }, 'Preview (dry run)');
  const confirmButton = h('button', { type: 'button', id: 'replay-confirm', class: 'danger', disabled: true }, 'Replay');
  const cancelButton = h('button', { type: 'button', class: 'quiet', id: 'replay-cancel' }, 'Cancel');
  const form = h('form', { novalidate: true },
    h('p', {}, description),
    field('Reason (required)', reason, 'Why these deliveries are sent again; kept with the replay.'),
    field('Requested by (required)', who),
    message,
    h('div', { class: 'form-actions' }, previewButton, confirmButton, cancelButton));
  const dialog = h('dialog', { 'aria-labelledby': 'replay-title', id: 'replay-dialog' },
    h('h2', { id: 'replay-title' }, title), form);
  let previewed = null;
  let done = false;

  const inputs = () => {
    const text = { reason: reason.value.trim(), requested_by: who.value.trim() };
    if (!text.reason || !text.requested_by) {
      fill(message, h('p', { class: 'error', role: 'alert' },
        !text.reason ? 'Give a reason for the replay.' : 'Say who is asking for the replay.'));
      (!text.reason ? reason : who).focus();
      return null;
    }
    sessionStorage.setItem(REQUESTED_BY_KEY, text.requested_by);
    return text;
  };
  // Editing the reason after a preview is fine; the filter cannot change inside the dialog.
  form.addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const text = inputs();
    if (!text) return;
    previewButton.disabled = true;
    fill(message, h('p', { class: 'muted' }, 'Counting what would be replayed…'));
    try {
      const answer = await api('/replays', { method: 'POST', body: { filter, dry_run: true, ...text } });
      previewed = answer;
      const sample = answer.sample.map((item) => h('tr', {},
        h('td', {}, h('span', { class: 'mono' }, item.event_id)),
        h('td', {}, item.destination), h('td', {}, badge(item.state))));
      fill(message, h('div', { class: 'preview', id: 'replay-preview-result' },
        h('p', {}, h('strong', {}, answer.matched === 0
          ? 'Nothing matches: no delivery would be sent.'
          : `${plural(answer.matched, 'delivery', 'deliveries')} would be sent.`),
        answer.skipped_in_flight ? ` ${answer.skipped_in_flight} in flight would be left alone.` : ''),
        sample.length ? table(answer.matched > sample.length ? `The first ${sample.length}` : null,
          ['Event', 'Destination', 'State now'], sample) : null));
      confirmButton.textContent = `Replay ${plural(answer.matched, 'delivery', 'deliveries')}`;
      confirmButton.disabled = answer.matched === 0;
      previewButton.textContent = 'Preview again';
      if (answer.matched > 0) confirmButton.focus();
    } catch (error) {
      if (error.status === 401) return dialog.close();
      fill(message, h('p', { class: 'error', role: 'alert' }, error.message));
    } finally {
      previewButton.disabled = false;
    }
  });
  confirmButton.addEventListener('click', async () => {
    if (!previewed) return;
    const text = inputs();
    if (!text) return;
    confirmButton.disabled = true;
    previewButton.disabled = true;
    try {
      const answer = await api('/replays', { method: 'POST', body: { filter, dry_run: false, ...text } });
      done = true;
      fill(message, h('p', { class: 'success', role: 'status', id: 'replay-done' },
        `Replay ${shortId(answer.replay_id)} queued ${plural(answer.matched, 'delivery', 'deliveries')}.`));
      previewButton.hidden = true;
      confirmButton.hidden = true;
      cancelButton.textContent = 'Close';
      cancelButton.focus();
    } catch (error) {
      if (error.status === 401) return dialog.close();
      fill(message, h('p', { class: 'error', role: 'alert' }, error.message));
      confirmButton.disabled = false;
      previewButton.disabled = false;
    }
  });
  cancelButton.addEventListener('click', () => dialog.close());
  const opener = document.activeElement;
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (done && onDone) onDone();
    else if (opener && document.body.contains(opener)) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

// ---------------------------------------------------------------------------------------------
// Destinations

async function renderDestinations(seq) {
  const answer = await api('/destinations');
  if (!current(seq)) return;
  const rows = answer.destinations.map((d) => {
    const note = d.state === 'paused'
      ? `Paused by ${d.paused_by || 'someone'}: ${d.paused_reason || 'no reason given'}`
      : d.state === 'open' ? 'Circuit open: one probe per cooldown' : d.state === 'half_open' ? 'Probing' : '';
    const action = d.state === 'paused'
      ? h('button', { type: 'button', id: `resume-${d.name}`, onclick: () => resumeDestination(d.name) },
        `Resume ${d.name}`)
      : h('button', { type: 'button', class: 'quiet', id: `pause-${d.name}`, onclick: () => openPause(d.name) },
        `Pause ${d.name}…`);
    return h('tr', { 'data-destination': d.name },
      h('th', { scope: 'row' }, d.name),
      h('td', {}, badge(d.state), note ? h('div', { class: 'muted' }, note) : null),
      h('td', { class: 'num' }, String(d.queue_depth)),
      h('td', { class: 'num' }, d.oldest_pending_age_s === null ? '–' : formatSeconds(Math.round(d.oldest_pending_age_s))),
      h('td', {}, d.rate_limit ? `${d.rate_limit.per_second}/s (burst ${d.rate_limit.burst})` : '–'),
      h('td', { class: 'num' }, String(d.delivered_5m)),
      h('td', { class: 'num' }, String(d.failed_5m)),
      h('td', {}, action));
  });
  setView('Destinations', 'destinations',
    h('div', { class: 'page-head' }, h('h1', {}, 'Destinations')),
    h('p', { class: 'muted' }, 'A paused destination receives nothing and spends no attempts, on every node, ' +
      'until it is resumed; its backlog then drains in order. An open circuit holds deliveries the same way ' +
      'and lets one probe out per cooldown.'),
    rows.length
      ? table('Each destination, its queue and its last 5 minutes',
        ['Destination', 'State', ['Queue', 'num'], ['Oldest pending', 'num'], 'Pace',
          ['Delivered (5 min)', 'num'], ['Failed (5 min)', 'num'], 'Action'],
        rows, { attrs: { id: 'destinations-table' } })
      : h('p', { class: 'muted' }, 'No destinations are configured.'),
    h('div', { id: 'destinations-message', 'aria-live': 'polite' }));
  timers.push(window.setInterval(() => {
    if (current(seq) && !document.querySelector('dialog[open]')) route();
  }, OVERVIEW_REFRESH_MS));
}

async function resumeDestination(name) {
  const message = document.getElementById('destinations-message');
  try {
    await api(`/destinations/${encodeURIComponent(name)}/resume`, {
      method: 'POST', body: { requested_by: sessionStorage.getItem(REQUESTED_BY_KEY) || 'console' },
    });
    announce(`${name} resumed.`);
    route();
  } catch (error) {
    if (message && error.status !== 401) fill(message, h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

function openPause(name) {
  const reason = h('textarea', { id: 'pause-reason', name: 'reason', required: true, maxlength: 1000 });
  const who = h('input', {
    id: 'pause-requested-by', name: 'requested_by', required: true, maxlength: 1000, autocomplete: 'off',
    value: sessionStorage.getItem(REQUESTED_BY_KEY) || '',
  });
  const message = h('div', { id: 'pause-message', 'aria-live': 'polite' });
  const cancelButton = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
  const form = h('form', { novalidate: true },
    h('p', {}, `Nothing is sent to ${name} until it is resumed; its deliveries wait without spending attempts.`),
    field('Reason (required)', reason, 'Why, e.g. the deploy or incident; shown with the destination.'),
    field('Requested by (required)', who),
    message,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'danger' }, `Pause ${name}`), cancelButton));
  const dialog = h('dialog', { 'aria-labelledby': 'pause-title', id: 'pause-dialog' },
    h('h2', { id: 'pause-title' }, `Pause ${name}`), form);
  let done = false;
  form.addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const text = { reason: reason.value.trim(), requested_by: who.value.trim() };
    if (!text.reason || !text.requested_by) {
      fill(message, h('p', { class: 'error', role: 'alert' },
        !text.reason ? 'Give a reason for the pause.' : 'Say who is pausing it.'));
      (!text.reason ? reason : who).focus();
      return;
    }
    sessionStorage.setItem(REQUESTED_BY_KEY, text.requested_by);
    try {
      await api(`/destinations/${encodeURIComponent(name)}/pause`, { method: 'POST', body: text });
      done = true;
      dialog.close();
    } catch (error) {
      if (error.status === 401) return dialog.close();
      fill(message, h('p', { class: 'error', role: 'alert' }, error.message));
    }
  });
  cancelButton.addEventListener('click', () => dialog.close());
  const opener = document.activeElement;
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (done) {
      announce(`${name} paused.`);
      route();
    } else if (opener && document.body.contains(opener)) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

// ---------------------------------------------------------------------------------------------
// Dead letters

async function renderDeadLetters(seq) {
  const dl = state.deadLetters;
  const groupsSection = h('section', { 'aria-labelledby': 'groups-title' },
    h('h2', { id: 'groups-title' }, 'By destination and reason'), h('p', { class: 'muted' }, 'Loading…'));
  const listSection = h('section', { 'aria-labelledby': 'dead-list-title' },
    h('h2', { id: 'dead-list-title' }, 'Dead deliveries'), h('p', { class: 'muted' }, 'Loading…'));
  const filterForm = replayFilterForm();
  setView('Dead letters', 'dead-letters',
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters')),
    h('p', { class: 'muted' }, 'Deliveries that failed for good: a 4xx answer, or every attempt used up. ' +
      'A replay sends them again with the same Idempotency-Key, after a dry run that counts them.'),
    groupsSection, listSection, filterForm);

  const reload = () => {
    if (!current(seq)) return;
    dl.selected.clear();
    route();
  };

  const [groupsAnswer, page] = await Promise.all([
    api('/dlq?group_by=reason'),
    api(`/dlq${query({ limit: PAGE_SIZE, cursor: dl.cursors[dl.page] })}`),
  ]);
  if (!current(seq)) return;

  const groupRows = groupsAnswer.groups.map((group) => h('tr', {},
    h('td', {}, group.destination),
    h('td', {}, h('span', { class: 'badge bad' }, group.reason || 'unknown')),
    h('td', { class: 'num' }, String(group.count)),
    h('td', { class: 'error-text' }, group.last_error || '–'),
    h('td', {}, timeEl(group.last_at)),
    h('td', {}, h('button', {
      type: 'button', class: 'quiet small',
      'aria-label': `Replay the ${group.count} dead deliveries to ${group.destination} (${group.reason || 'unknown'})`,
      onclick: async (click) => {
        const button = click.currentTarget;
        button.disabled = true;
        try {
          const ids = await groupEventIds(group);
          openReplay({
            title: `Replay ${group.destination} · ${group.reason || 'unknown'}`,
            description: `The dead deliveries to ${group.destination} whose reason is ${group.reason || 'unknown'}` +
              (ids.length >= 1000 ? ' (the 1000 most recent).' : '.'),
            filter: { event_ids: ids, destination: group.destination, status: 'dead' },
            onDone: reload,
          });
        } finally {
          button.disabled = false;
        }
      },
    }, 'Replay group…'))));
  fill(groupsSection, h('h2', { id: 'groups-title' }, 'By destination and reason'),
    groupRows.length
      ? table(null, ['Destination', 'Reason', ['Count', 'num'], 'Last error', 'Last death', 'Action'], groupRows,
        { attrs: { id: 'dead-groups' } })
      : h('p', { class: 'success' }, 'The dead-letter queue is empty.'));

  if (page.next_cursor) dl.cursors[dl.page + 1] = page.next_cursor;
  else dl.cursors.length = dl.page + 1;
  const selectedCount = h('span', { class: 'muted', id: 'selected-count' });
  const replaySelected = h('button', { type: 'button', id: 'replay-selected', disabled: true }, 'Replay selected…');
  const updateSelection = () => {
    selectedCount.textContent = `${dl.selected.size} selected`;
    replaySelected.disabled = dl.selected.size === 0;
  };
  const checkboxes = [];
  const rows = page.deliveries.map((item) => {
    const box = h('input', {
      type: 'checkbox', 'aria-label': `Select the delivery of event ${shortId(item.event_id)} to ${item.destination}`,
    });
    box.checked = dl.selected.has(item.delivery_id);
    checkboxes.push([box, item]);
    const row = h('tr', { class: box.checked ? 'selected' : null, 'data-delivery-id': item.delivery_id },
      h('td', {}, box),
      h('td', {}, eventLink(item.event_id)),
      h('td', {}, item.source),
      h('td', {}, item.destination),
      h('td', {}, h('span', { class: 'badge bad' }, item.reason || 'unknown')),
      h('td', { class: 'error-text' }, item.last_error || '–'),
      h('td', { class: 'num' }, String(item.attempts)),
      h('td', {}, timeEl(item.died_at)),
      h('td', {}, h('button', {
        type: 'button', class: 'quiet small', 'aria-label': `Replay the delivery of event ${shortId(item.event_id)} to ${item.destination}`,
        onclick: () => openReplay({
          title: `Replay to ${item.destination}`,
          description: `The dead delivery of event ${item.event_id} to ${item.destination}.`,
          filter: { event_ids: [item.event_id], destination: item.destination, status: 'dead' },
          onDone: reload,
        }),
      }, 'Replay…')));
    box.addEventListener('change', () => {
      if (box.checked) dl.selected.set(item.delivery_id, item);
      else dl.selected.delete(item.delivery_id);
      row.classList.toggle('selected', box.checked);
      updateSelection();
    });
    return row;
  });
  const selectAll = h('input', { type: 'checkbox', id: 'select-page', 'aria-label': 'Select every delivery on this page' });
  selectAll.addEventListener('change', () => {
    for (const [box, item] of checkboxes) {
      box.checked = selectAll.checked;
      if (box.checked) dl.selected.set(item.delivery_id, item);
      else dl.selected.delete(item.delivery_id);
      box.closest('tr').classList.toggle('selected', box.checked);
    }
    updateSelection();
  });
  replaySelected.addEventListener('click', () => {
    const items = [...dl.selected.values()];
    const destinations = [...new Set(items.map((i) => i.destination))];
    const filter = { event_ids: [...new Set(items.map((i) => i.event_id))], status: 'dead' };
    if (destinations.length === 1) filter.destination = destinations[0];
    openReplay({
      title: `Replay ${plural(items.length, 'selected delivery', 'selected deliveries')}`,
      description: `The dead deliveries of the selected events${destinations.length === 1 ? ` to ${destinations[0]}` : ''}.`,
      filter,
      onDone: reload,
    });
  });
  updateSelection();
  fill(listSection, h('h2', { id: 'dead-list-title' }, 'Dead deliveries'),
    ...(rows.length ? [
      h('div', { class: 'form-actions' }, replaySelected, selectedCount),
      table(`Newest death first, page ${dl.page + 1}`,
        [h('span', {}, selectAll), 'Event', 'Source', 'Destination', 'Reason', 'Last error', ['Attempts', 'num'], 'Died', 'Action'],
        rows, { attrs: { id: 'dead-table' } }),
      pager(dl.page, Boolean(page.next_cursor), (delta) => {
        dl.page += delta;
        route();
      }),
    ] : [h('p', { class: 'muted' }, 'No dead deliveries.')]));
}

// The event ids of one group's dead deliveries (the list endpoint does not filter by reason).
async function groupEventIds(group) {
  const ids = new Set();
  let cursor = null;
  do {
    const page = await api(`/dlq${query({ destination: group.destination, limit: 1000, cursor })}`);
    for (const item of page.deliveries) {
      if ((item.reason || null) === (group.reason || null)) ids.add(item.event_id);
      if (ids.size >= 1000) return [...ids];
    }
    cursor = page.next_cursor;
  } while (cursor);
  return [...ids];
}

function replayFilterForm() {
  const controls = {
    source: h('input', { id: 'filter-source', autocomplete: 'off' }),
    destination: h('input', { id: 'filter-destination', autocomplete: 'off' }),
    since: h('input', { id: 'filter-since', type: 'datetime-local', step: 1 }),
    until: h('input', { id: 'filter-until', type: 'datetime-local', step: 1 }),
  };
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h('form', { class: 'card', 'aria-labelledby': 'filter-title' },
    h('h2', { id: 'filter-title' }, 'Replay by filter'),
    h('p', { class: 'muted' }, 'Every dead delivery that matches all the fields given.'),
    h('div', { class: 'form-grid' },
      field('Source', controls.source), field('Destination', controls.destination),
      field('Received from', controls.since), field('Received until', controls.until)),
    error,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, 'Preview and replay…')));
  form.addEventListener('submit', (submit) => {
    submit.preventDefault();
    const filter = { status: 'dead' };
    const parts = [];
    for (const [name, control] of Object.entries(controls)) {
      const value = control.value.trim();
      if (!value) continue;
      filter[name] = name === 'since' || name === 'until' ? toIso(value) : value;
      parts.push(`${name} ${value}`);
    }
    error.hidden = true;
    openReplay({
      title: 'Replay by filter',
      description: parts.length ? `Dead deliveries with ${parts.join(', ')}.` : 'Every dead delivery.',
      filter,
      onDone: () => route(),
    });
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Start

function start() {
  document.getElementById('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.events = { query: {}, cursors: [null], page: 0 };
    state.deadLetters = { cursors: [null], page: 0, selected: new Map() };
    renderSignIn('Signed out.', 'notice');
  });
  document.getElementById('skip-link').addEventListener('click', (click) => {
    click.preventDefault();
    mainEl().focus();
  });
  window.addEventListener('hashchange', () => {
    if (window.location.hash.startsWith('#/') || window.location.hash === '') route();
  });
  route();
}

start();
