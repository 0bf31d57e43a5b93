// runledger dashboard: reads the read API (same origin), follows the ledger over Server-Sent
// Events. Vanilla JS, no build step. All data goes into the page as text nodes, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const LIMIT = 8;

const state = {
  session: null,
  companies: [],
  company: null,
  issues: [],
  issue: null,
  issueDetail: null,
  rows: [],          // ledger rows, newest first
  total: 0,
  position: 0,       // newest projector position seen by this page
  ledgerPosition: 0, // position of the last full ledger read
  source: null,
  summary: null,
  summaryOpen: false,
  drawerRun: null,
  reloading: null,
  overview: null,
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    method: options.method || 'GET',
    credentials: 'same-origin',
    headers: Object.assign({ Accept: 'application/json' }, options.headers || {}),
  });
  if (response.status === 401 && !options.signingIn) {
    showSignIn();
  }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (body && body.message) || response.statusText);
  }
  const position = response.headers.get('x-runledger-position');
  if (position !== null) notePosition(Number(position));
  return body;
}

// ---------- formatting ----------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function shortId(id) {
  return id ? String(id).slice(0, 8) : '';
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return seconds + 's';
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  if (m < 60) return m + 'm ' + String(s).padStart(2, '0') + 's';
  const h = Math.floor(m / 60);
  if (h < 48) return h + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

function ago(iso) {
  if (!iso) return '';
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (seconds < 0) return 'just now';
  if (seconds < 45) return Math.round(seconds) + 's ago';
  if (seconds < 90 * 60) return Math.round(seconds / 60) + 'm ago';
  if (seconds < 36 * 3600) return Math.round(seconds / 3600) + 'h ago';
  return Math.round(seconds / 86400) + 'd ago';
}

function stamp(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '';
}

function humanize(text) {
  return text ? String(text).replace(/_/g, ' ') : '';
}

// A relative time that keeps itself current (see tick()).
function relative(iso) {
  const node = el('span', 'rel', ago(iso));
  node.dataset.at = iso;
  node.title = stamp(iso);
  return node;
}

function elapsedSeconds(row) {
  if (row.status === 'running' && row.started_at) {
    return (Date.now() - Date.parse(row.started_at)) / 1000;
  }
  return row.elapsed_sec;
}

// ---------- routing ----------

function parseHash() {
  const m = /^#\/c\/([^/]+)(?:\/i\/([^/]+)(?:\/(summary|r\/([^/]+)))?)?/.exec(location.hash);
  if (!m) return {};
  return {
    company: decodeURIComponent(m[1]),
    issue: m[2] && decodeURIComponent(m[2]),
    summary: m[3] === 'summary',
    run: m[4] && decodeURIComponent(m[4]),
  };
}

function issueHash(company, issue, rest) {
  return '#/c/' + company + (issue ? '/i/' + issue + (rest ? '/' + rest : '') : '');
}

async function route() {
  const target = parseHash();
  const company = target.company || state.company || (state.companies[0] && state.companies[0].company_id);
  if (!company) {
    showEmpty('No company has any data yet. Publish events and they appear here.');
    return;
  }
  if (company !== state.company) {
    state.company = company;
    $('company-select').value = company;
    state.issue = null;
    await loadIssues();
    refreshOps();
  }
  const issue = target.issue;
  if (!issue) {
    // The landing page: the company at a glance.
    closeStream();
    closeDrawer();
    state.issue = null;
    renderIssues();
    await showOverview();
    return;
  }
  if (issue !== state.issue) {
    await openIssue(issue);
  }
  if (target.summary) {
    setSummaryOpen(true);
    const card = $('summary-card');
    card.classList.add('focused');
    card.scrollIntoView({ block: 'nearest' });
    card.focus({ preventScroll: true });
  } else {
    $('summary-card').classList.remove('focused');
  }
  if (target.run) {
    openRun(target.run);
  } else {
    closeDrawer();
  }
}

function showEmpty(text) {
  $('issue').hidden = true;
  $('overview').hidden = true;
  $('empty').hidden = false;
  $('empty-text').textContent = text;
}

// ---------- session ----------

function showSignIn(message) {
  closeStream();
  $('signin').hidden = false;
  $('signin-error').hidden = !message;
  $('signin-error').textContent = message || '';
  $('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $('token').value.trim();
  try {
    await api('/v1/session', { method: 'POST', headers: { Authorization: 'Bearer ' + token }, signingIn: true });
  } catch (e) {
    showSignIn(e.status === 401 ? 'That token is not valid here.' : 'Sign-in failed: ' + e.message);
    return;
  }
  $('token').value = '';
  $('signin').hidden = true;
  start();
}

async function signOut() {
  await fetch('/v1/session', { method: 'DELETE', credentials: 'same-origin' });
  location.reload();
}

function renderWho() {
  const s = state.session;
  const who = $('who');
  if (s.role === 'open') {
    who.textContent = 'open access (loopback)';
  } else if (s.role === 'admin') {
    who.textContent = 'admin';
  } else {
    who.textContent = 'company token';
  }
  $('sign-out').hidden = s.role === 'open';
}

// ---------- companies and issues ----------

async function loadCompanies() {
  const list = await api('/v1/companies');
  state.companies = list.companies;
  const select = $('company-select');
  select.textContent = '';
  for (const c of list.companies) {
    const option = el('option', null, shortId(c.company_id) + '…  ·  ' + c.issues + ' issue' + (c.issues === 1 ? '' : 's'));
    option.value = c.company_id;
    option.title = c.company_id;
    select.append(option);
  }
  select.disabled = list.companies.length < 2;
}

async function loadIssues() {
  const list = await api('/v1/companies/' + state.company + '/issues?limit=200');
  state.issues = list.issues;
  renderIssues();
}

function renderIssues() {
  const filter = $('issue-search').value.trim().toLowerCase();
  const ul = $('issue-list');
  ul.textContent = '';
  const overview = $('overview-link');
  overview.href = issueHash(state.company);
  if (state.issue) overview.removeAttribute('aria-current'); else overview.setAttribute('aria-current', 'page');
  const shown = state.issues.filter((i) =>
    !filter || ((i.identifier || '') + ' ' + (i.title || '')).toLowerCase().includes(filter));
  if (!shown.length) {
    ul.append(el('li', 'none', state.issues.length ? 'No issue matches.' : 'No issues yet.'));
  }
  for (const issue of shown) {
    const li = el('li');
    const a = el('a');
    a.href = issueHash(state.company, issue.issue_id);
    if (issue.issue_id === state.issue) a.setAttribute('aria-current', 'page');
    a.append(el('span', 'ident', issue.identifier || shortId(issue.issue_id)));
    const right = el('span', 'right');
    if (issue.live_run_count > 0) {
      const live = el('span', 'pill s-running');
      live.append(el('span', 'live-dot'), document.createTextNode(issue.live_run_count + ' live'));
      right.append(live);
    }
    right.append(el('span', null, issue.run_count + ' run' + (issue.run_count === 1 ? '' : 's')));
    a.append(right);
    a.append(el('span', 'title', issue.title || ''));
    a.title = (issue.identifier ? issue.identifier + ' — ' : '') + (issue.title || '') + ' (' + humanize(issue.status) + ')';
    li.append(a);
    ul.append(li);
  }
}

// ---------- one issue ----------

async function openIssue(issue) {
  closeStream();
  closeDrawer();
  state.issue = issue;
  state.rows = [];
  state.summary = null;
  setSummaryOpen(false);
  renderIssues();
  const base = '/v1/companies/' + state.company + '/issues/' + issue;
  let detail;
  let ledger;
  let summary;
  try {
    [detail, ledger, summary] = await Promise.all([
      api(base),
      api(base + '/runs?limit=' + LIMIT),
      api(base + '/continuation-summary').catch((e) => (e.status === 404 ? null : Promise.reject(e))),
    ]);
  } catch (e) {
    if (e.status === 404) showEmpty('No such issue in this company.');
    else if (e.status !== 401) showEmpty('Could not load the issue: ' + e.message);
    return;
  }
  if (state.issue !== issue) return; // another issue was picked meanwhile
  state.issueDetail = detail.issue;
  applyLedger(ledger);
  state.summary = summary;
  $('empty').hidden = true;
  $('overview').hidden = true;
  document.body.dataset.view = 'issue';
  $('issue').hidden = false;
  renderIssueHead();
  renderLedger([]);
  renderSummary();
  loadWhy();
  connectStream();
  document.body.dataset.ready = 'true';
}

function applyLedger(ledger) {
  state.rows = ledger.rows;
  state.total = ledger.total;
  state.ledgerPosition = ledger.position;
}

async function reloadLedger(changed) {
  // Coalesce bursts of changes into one read.
  if (state.reloading) return state.reloading;
  const issue = state.issue;
  state.reloading = api('/v1/companies/' + state.company + '/issues/' + issue + '/runs?limit=' + LIMIT)
    .then((ledger) => {
      if (state.issue !== issue) return;
      applyLedger(ledger);
      renderLedger(changed);
    })
    .catch(() => {})
    .finally(() => { state.reloading = null; });
  return state.reloading;
}

function renderIssueHead() {
  const issue = state.issueDetail;
  $('issue-identifier').textContent = issue.identifier || shortId(issue.issue_id);
  $('issue-title').textContent = issue.title || '(untitled issue)';
  document.title = (issue.identifier || 'issue') + ' · runledger';
  const meta = $('issue-meta');
  meta.textContent = '';
  meta.append(el('span', 'pill s-' + (issue.status || 'none'), humanize(issue.status) || 'unknown'));
  if (issue.priority) {
    const p = el('span');
    p.append(document.createTextNode('Priority '), el('strong', null, issue.priority));
    meta.append(p);
  }
  const assignee = el('span');
  if (issue.assignee_agent_name || issue.assignee_agent_id) {
    assignee.append(document.createTextNode('Assigned to '), el('strong', null, issue.assignee_agent_name || shortId(issue.assignee_agent_id)));
  } else if (issue.assignee_user_id) {
    assignee.append(document.createTextNode('Assigned to user '), el('strong', null, issue.assignee_user_id));
  } else {
    assignee.textContent = 'Unassigned';
  }
  meta.append(assignee);
  if (issue.children) {
    const c = el('span');
    c.append(document.createTextNode('Children: '), el('strong', null, issue.children.label));
    meta.append(c);
  }
  if (issue.execution_run_id) {
    const lock = el('span');
    lock.append(document.createTextNode('Execution lock: run '), el('code', null, shortId(issue.execution_run_id)));
    meta.append(lock);
  }
  meta.append(el('span', null, 'Updated ' + ago(issue.updated_at)));
}

function renderLedger(changed) {
  const body = $('ledger-body');
  body.textContent = '';
  const flash = new Set(changed || []);
  for (const row of state.rows) {
    body.append(ledgerRow(row, flash.has(row.run_id)));
  }
  if (!state.rows.length) {
    const tr = el('tr');
    const td = el('td', 'fallback', 'No runs yet.');
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  const hidden = Math.max(0, state.total - state.rows.length);
  const older = $('older');
  older.hidden = hidden === 0;
  older.textContent = hidden === 1 ? '1 older run not shown' : hidden + ' older runs not shown';
  $('ledger-meta').textContent = state.total + ' run' + (state.total === 1 ? '' : 's') + ' · newest first';
  renderLiveBanner();
  if (flash.size) {
    setTimeout(() => {
      for (const tr of body.querySelectorAll('tr.changed')) tr.classList.remove('changed');
    }, 1200);
  }
}

function ledgerRow(row, changed) {
  const tr = el('tr', (row.is_live ? 'live' : '') + (changed ? ' changed' : ''));
  tr.dataset.run = row.run_id;
  tr.dataset.status = row.status || 'pending';
  tr.tabIndex = 0;
  if (state.drawerRun === row.run_id) tr.setAttribute('aria-selected', 'true');
  const open = () => { location.hash = issueHash(state.company, state.issue, 'r/' + row.run_id); };
  tr.addEventListener('click', open);
  tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });

  const run = el('td', 'c-run');
  run.append(el('div', 'agent', row.agent_name || 'Unknown agent'));
  const sub = el('div', 'sub');
  sub.append(el('code', null, shortId(row.run_id)));
  const when = row.started_at || row.created_at || row.queued_at;
  if (when) {
    sub.append(document.createTextNode(' · '));
    sub.append(relative(when));
  }
  run.append(sub);

  const status = el('td', 'c-status');
  const pill = el('span', 'pill s-' + (row.status || 'pending'));
  if (row.is_live) pill.append(el('span', 'live-dot'));
  pill.append(document.createTextNode(humanize(row.status) || 'pending'));
  status.append(pill);

  const liveness = el('td', 'c-liveness');
  const flow = el('div', 'flow');
  const kind = row.liveness_state || (row.is_live ? 'pending' : 'none');
  const badge = el('span', 'badge l-' + kind, row.liveness_label);
  if (row.liveness_reason) badge.title = row.liveness_reason;
  flow.append(badge);
  if (row.continuation_attempt > 0) flow.append(el('span', 'chip attempt', 'Continuation attempt ' + row.continuation_attempt));
  if (row.exhausted) flow.append(el('span', 'chip exhausted', 'Exhausted'));
  liveness.append(flow);

  const stop = el('td', 'c-stop', row.stop_label);
  if (row.timeout_source) stop.title = 'timeout source: ' + row.timeout_source + (row.timeout_fired ? ' (fired)' : '');

  const elapsed = el('td', 'c-elapsed num', duration(elapsedSeconds(row)));
  if (row.status === 'running' && row.started_at) elapsed.dataset.since = row.started_at;

  const last = el('td', 'c-last');
  if (row.last_useful_action_at) {
    last.append(relative(row.last_useful_action_at));
  } else {
    last.append(el('span', 'fallback', row.last_useful_action_fallback || 'Unavailable'));
  }

  const next = el('td', 'c-next');
  if (row.next_action) {
    const text = el('div', 'next', row.next_action);
    text.title = row.next_action;
    next.append(text);
  } else {
    next.append(el('span', 'fallback', '—'));
  }

  tr.append(run, status, liveness, stop, elapsed, last, next);
  return tr;
}

function renderLiveBanner() {
  const banner = $('live-banner');
  banner.textContent = '';
  const live = state.rows.filter((r) => r.is_live);
  for (const row of live) {
    const item = el('div', 'item');
    item.append(el('span', 'live-dot'));
    const who = row.agent_name || 'an unknown agent';
    const text = el('span');
    if (row.status === 'running') {
      text.append(el('strong', null, 'Running now by ' + who));
      const since = el('span', 'banner-elapsed', ' · ' + duration(elapsedSeconds(row)));
      since.dataset.since = row.started_at || '';
      text.append(since);
    } else {
      text.append(el('strong', null, (row.status === 'queued' ? 'Queued for ' : 'Starting for ') + who));
    }
    text.append(document.createTextNode(' · run '), el('code', null, shortId(row.run_id)));
    item.append(text);
    banner.append(item);
  }
  banner.hidden = live.length === 0;
}

// ---------- live updates ----------

function closeStream() {
  if (state.source) {
    state.source.close();
    state.source = null;
  }
  setFreshness('connecting');
}

function connectStream() {
  closeStream();
  const issue = state.issue;
  const url = '/v1/companies/' + state.company + '/issues/' + issue + '/runs/stream?since=' + state.ledgerPosition;
  const source = new EventSource(url);
  state.source = source;
  source.addEventListener('ready', () => setFreshness('live'));
  source.addEventListener('ledger', (e) => onLedgerChange(JSON.parse(e.data)));
  source.addEventListener('position', (e) => { notePosition(JSON.parse(e.data).position); refreshOpsSoon(); });
  source.onopen = () => setFreshness('live');
  // The browser reconnects by itself and resumes from the last event id.
  source.onerror = () => setFreshness('lost');
}

function onLedgerChange(change) {
  if (change.issue_id !== state.issue) return;
  notePosition(change.position);
  state.total = change.total;
  const changedIds = change.rows.map((r) => r.run_id);
  let unknown = false;
  for (const row of change.rows) {
    const i = state.rows.findIndex((r) => r.run_id === row.run_id);
    if (i >= 0) {
      row.ledger_rank = state.rows[i].ledger_rank;
      state.rows[i] = row;
    } else {
      unknown = true;
    }
  }
  if (unknown) {
    // A new run: ranks shift, so read the page again.
    reloadLedger(changedIds);
  } else {
    renderLedger(changedIds);
  }
  if (state.drawerRun && changedIds.includes(state.drawerRun)) openRun(state.drawerRun, true);
  // Finishing runs rewrite the handoff document and move the issue list's counts.
  refreshSummary();
  refreshWhySoon();
  refreshIssueList();
  refreshOpsSoon();
}

let summaryTimer = null;
function refreshSummary() {
  clearTimeout(summaryTimer);
  summaryTimer = setTimeout(async () => {
    const issue = state.issue;
    try {
      const summary = await api('/v1/companies/' + state.company + '/issues/' + issue + '/continuation-summary');
      if (state.issue === issue) { state.summary = summary; renderSummary(); }
    } catch (e) {
      /* none yet */
    }
  }, 300);
}

let opsTimer = null;
function refreshOpsSoon() {
  clearTimeout(opsTimer);
  opsTimer = setTimeout(refreshOps, 300);
}

let issuesTimer = null;
function refreshIssueList() {
  clearTimeout(issuesTimer);
  issuesTimer = setTimeout(() => loadIssues().catch(() => {}), 500);
}

function notePosition(position) {
  if (position > state.position) state.position = position;
  renderFreshness();
}

let freshnessState = 'connecting';
function setFreshness(kind) {
  freshnessState = kind;
  document.body.dataset.stream = kind;
  renderFreshness();
}

function renderFreshness() {
  const box = $('freshness');
  box.dataset.state = freshnessState;
  const where = state.position ? 'projected to #' + state.position.toLocaleString() : 'no events projected yet';
  const label = freshnessState === 'live' ? 'live' : freshnessState === 'lost' ? 'reconnecting'
    : freshnessState === 'polled' ? 'refreshed every 5 s' : 'connecting';
  $('freshness-text').textContent = label + ' · ' + where;
}

// ---------- continuation handoff ----------

function setSummaryOpen(open) {
  state.summaryOpen = open;
  $('summary-toggle').setAttribute('aria-expanded', String(open));
  renderSummary();
}

function renderSummary() {
  const s = state.summary;
  const body = $('summary-body');
  const preview = $('summary-preview');
  $('summary-copy').disabled = !s;
  $('summary-link').disabled = !s;
  if (!s) {
    $('summary-meta').textContent = '';
    preview.hidden = false;
    preview.textContent = 'No continuation summary yet: one is written when an issue run finishes.';
    body.hidden = true;
    return;
  }
  $('summary-meta').textContent = 'revision ' + s.revision_number + ' · ' + ago(s.updated_at) +
    (s.created_by_run_id ? ' · by run ' + shortId(s.created_by_run_id) : '');
  const next = /##\s*Next Action\s*\n+([^\n#][^\n]*)/i.exec(s.body);
  const firstLine = s.body.split('\n').find((l) => l.trim() && !l.startsWith('#')) || '';
  preview.textContent = next ? 'Next action: ' + next[1].replace(/^[-*]\s*/, '') : firstLine.replace(/^[-*]\s*/, '');
  preview.hidden = state.summaryOpen;
  body.hidden = !state.summaryOpen;
  if (state.summaryOpen) renderMarkdown(s.body, body);
}

// Headings, bullets, paragraphs, `code` and **bold**: enough for the handoff document.
function renderMarkdown(text, container) {
  container.textContent = '';
  let list = null;
  for (const line of text.split('\n')) {
    const heading = /^(#{1,4})\s+(.*)$/.exec(line);
    if (heading) {
      list = null;
      const h = el('h' + Math.min(6, heading[1].length + 2));
      inline(h, heading[2]);
      container.append(h);
      continue;
    }
    const bullet = /^\s*[-*]\s+(.*)$/.exec(line);
    if (bullet) {
      if (!list) {
        list = el('ul');
        container.append(list);
      }
      const li = el('li');
      inline(li, bullet[1]);
      list.append(li);
      continue;
    }
    list = null;
    if (!line.trim()) continue;
    const p = el('p');
    inline(p, line);
    container.append(p);
  }
}

function inline(node, text) {
  const pattern = /(`[^`]+`|\*\*[^*]+\*\*)/g;
  let last = 0;
  let m;
  while ((m = pattern.exec(text))) {
    if (m.index > last) node.append(text.slice(last, m.index));
    const token = m[0];
    node.append(token[0] === '`' ? el('code', null, token.slice(1, -1)) : el('strong', null, token.slice(2, -2)));
    last = m.index + token.length;
  }
  if (last < text.length) node.append(text.slice(last));
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    const area = el('textarea');
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  const label = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = label; }, 1200);
}

// ---------- run drawer ----------

function closeDrawer() {
  state.drawerRun = null;
  $('drawer').hidden = true;
  for (const tr of document.querySelectorAll('#ledger-body tr[aria-selected]')) tr.removeAttribute('aria-selected');
}

function fact(dl, name, value) {
  if (value === null || value === undefined || value === '') return;
  dl.append(el('dt', null, name));
  const dd = el('dd');
  if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
  dl.append(dd);
}

async function openRun(runId, quiet) {
  state.drawerRun = runId;
  for (const tr of document.querySelectorAll('#ledger-body tr')) {
    if (tr.dataset.run === runId) tr.setAttribute('aria-selected', 'true'); else tr.removeAttribute('aria-selected');
  }
  const drawer = $('drawer');
  if (!quiet) {
    drawer.hidden = false;
    $('drawer-title').textContent = 'Run ' + shortId(runId);
    $('drawer-sub').textContent = 'loading…';
  }
  const base = '/v1/companies/' + state.company + '/runs/' + runId;
  let detail;
  let timeline;
  try {
    [detail, timeline] = await Promise.all([api(base), api(base + '/events?limit=500')]);
  } catch (e) {
    $('drawer-sub').textContent = e.status === 404 ? 'No such run.' : 'Could not load: ' + e.message;
    return;
  }
  if (state.drawerRun !== runId) return;
  const run = detail.run;
  drawer.hidden = false;
  $('drawer-title').textContent = (run.agent_name || 'Run') + ' · ' + shortId(run.run_id);
  $('drawer-sub').textContent = humanize(run.status) || 'pending';
  const facts = $('run-facts');
  facts.textContent = '';
  const status = el('span', 'pill s-' + (run.status || 'pending'), humanize(run.status) || 'pending');
  fact(facts, 'Status', status);
  fact(facts, 'Run id', el('code', null, run.run_id));
  fact(facts, 'Agent', (run.agent_name || '') + (run.adapter_type ? ' (' + run.adapter_type + ')' : ''));
  fact(facts, 'Source', humanize(run.invocation_source) + (run.trigger_detail ? ' / ' + humanize(run.trigger_detail) : ''));
  fact(facts, 'Started', stamp(run.started_at));
  fact(facts, 'Finished', stamp(run.finished_at));
  fact(facts, 'Elapsed', duration(elapsedSeconds(run)));
  fact(facts, 'Stop', run.stop_label + (run.timeout_source ? ' · timeout from ' + run.timeout_source : ''));
  fact(facts, 'Liveness', run.liveness_label + (run.liveness_reason ? ': ' + run.liveness_reason : ''));
  if (run.continuation_attempt > 0) fact(facts, 'Continuation', 'attempt ' + run.continuation_attempt + (run.exhausted ? ' · exhausted' : ''));
  fact(facts, 'Last useful action', run.last_useful_action_at ? stamp(run.last_useful_action_at) : run.last_useful_action_fallback);
  fact(facts, 'Next action', run.next_action);
  fact(facts, 'Process', run.host ? run.host + (run.pid ? ' · pid ' + run.pid : '') : null);
  fact(facts, 'Error', run.error_code ? run.error_code + (run.error ? ': ' + run.error : '') : run.error);
  fact(facts, 'Retry of', run.retry_of_run_id ? el('code', null, run.retry_of_run_id) : null);
  fact(facts, 'Result', run.result_summary !== null && run.result_summary !== undefined ? String(run.result_summary) : null);
  const list = $('timeline');
  list.textContent = '';
  const entries = timeline.events.concat(followUps(run));
  entries.sort((a, b) => (a.seq - b.seq) || ((a.ordinal || 0) - (b.ordinal || 0)));
  for (const entry of entries) {
    const decision = DECISIONS[entry.type] || (entry.actor_id === RECONCILER ? humanize(entry.type.split('.').pop()) : null);
    const li = el('li', (entry.level === 'error' ? 'error' : entry.level === 'warn' ? 'warn' : '') + (decision ? ' decision' : ''));
    const head = el('div');
    const when = el('span', 'when', clock(entry.at));
    when.title = stamp(entry.at) + ' · seq ' + entry.seq;
    head.append(when);
    if (decision) head.append(el('span', 'decision-tag', 'Decision · ' + decision));
    head.append(el('span', 'type', entry.type));
    li.append(head, el('div', 'msg', entry.message));
    if (entry.link) {
      const a = el('a', 'follow', 'Open run ' + shortId(entry.link));
      a.href = issueHash(state.company, state.issue, 'r/' + entry.link);
      li.append(a);
    }
    list.append(li);
  }
  if (!entries.length) list.append(el('li', null, 'No timeline entries.'));
  loadRunWhy(runId);
}

// The source of the reconciler's events: its writes on a run's timeline are decisions too.
const RECONCILER = 'runledger-reconciler';

// The reconciler's decisions about a run, as they appear on its timeline.
const DECISIONS = {
  'run.retried': 'retry',
  'follow_up.refused': 'refused',
  'run.liveness_classified': 'liveness verdict',
  'run.cancel_requested': 'stop requested',
  'run.continued': 'continuation',
};

// What followed a finished run in its issue's ledger: the next continuation, queued after it.
function followUps(run) {
  if (!run.finished_at) return [];
  const next = state.rows
    .filter((r) => r.run_id !== run.run_id && r.continuation_attempt > run.continuation_attempt
      && r.queued_at && Date.parse(r.queued_at) >= Date.parse(run.finished_at))
    .sort((a, b) => Date.parse(a.queued_at) - Date.parse(b.queued_at))[0];
  if (!next) return [];
  return [{
    seq: next.last_seq, ordinal: 0, type: 'run.continued', level: 'info', at: next.queued_at,
    message: 'Continued as run ' + shortId(next.run_id) + ' (continuation attempt ' + next.continuation_attempt + ')',
    link: next.run_id,
  }];
}

// ---------- company overview ----------

async function showOverview() {
  const company = state.company;
  let overview;
  try {
    overview = await api('/v1/companies/' + company + '/overview');
  } catch (e) {
    if (e.status !== 401) showEmpty('Could not load the overview: ' + e.message);
    return;
  }
  if (state.company !== company || state.issue) return; // navigated away meanwhile
  state.overview = overview;
  $('empty').hidden = true;
  $('issue').hidden = true;
  $('overview').hidden = false;
  renderOverview();
  setFreshness('polled');
  document.body.dataset.view = 'overview';
  document.body.dataset.ready = 'true';
}

function tile(id, value, bad) {
  $(id).textContent = value === null || value === undefined ? '–' : Number(value).toLocaleString();
  $(id).parentElement.classList.toggle('bad', Boolean(bad));
}

function renderOverview() {
  const o = state.overview;
  $('overview-company').textContent = shortId(o.company_id) + '…';
  $('overview-company').title = o.company_id;
  const meta = $('overview-meta');
  meta.textContent = '';
  meta.append(el('span', null, o.issues + ' issue' + (o.issues === 1 ? '' : 's')));
  meta.append(el('span', null, 'as of projector position #' + o.position.toLocaleString()));
  const attention = o.blocked_count + o.stranded_count;
  tile('ov-live', o.live_run_count, false);
  $('tile-live').classList.toggle('live', o.live_run_count > 0);
  tile('ov-attention', attention, attention > 0);
  $('ov-attention-label').textContent = (attention === 1 ? 'issue needs' : 'issues need') + ' a person'
    + (attention ? ' (' + o.blocked_count + ' blocked, ' + o.stranded_count + ' stranded)' : '');
  tile('ov-dead', o.dead_letters, o.dead_letters > 0);
  tile('ov-lag', o.lag, o.lag > 1000);

  const ul = $('attention-list');
  ul.textContent = '';
  $('attention-meta').textContent = attention > o.attention.length ? o.attention.length + ' of ' + attention : '';
  for (const a of o.attention) {
    const li = el('li');
    const link = el('a', 'row-link');
    link.href = issueHash(state.company, a.issue_id, a.last_run ? 'r/' + a.last_run.run_id : undefined);
    const top = el('div', 'row-top');
    top.append(el('span', 'pill s-' + a.reason, a.reason));
    top.append(el('span', 'ident', a.identifier || shortId(a.issue_id)));
    top.append(el('span', 'row-title', a.title || ''));
    const when = relative(a.updated_at);
    when.classList.add('row-when');
    top.append(when);
    link.append(top);
    const detail = el('div', 'row-detail');
    if (a.last_run) {
      const r = a.last_run;
      detail.append(el('span', null, 'Last run ' + shortId(r.run_id) + ' by ' + (r.agent_name || 'unknown agent') + ': '));
      detail.append(el('strong', null, humanize(r.status) || 'pending'));
      const code = r.error_code && humanize(r.error_code) !== r.stop_label ? ' · ' + r.error_code : '';
      detail.append(el('span', null, ' · ' + r.stop_label + code));
    } else {
      detail.append(el('span', null, 'No run yet.'));
    }
    link.append(detail);
    if (a.last_decision) {
      const d = a.last_decision;
      const why = el('div', 'row-decision');
      why.append(el('span', 'decision-tag', 'Decision · ' + (DECISIONS[d.type] || d.type)));
      why.append(el('span', null, d.message));
      link.append(why);
    }
    li.append(link);
    ul.append(li);
  }
  if (!o.attention.length) ul.append(el('li', 'none', 'Nothing is blocked or stranded.'));

  const live = $('live-list');
  live.textContent = '';
  $('live-meta').textContent = o.live_run_count > o.live_runs.length ? o.live_runs.length + ' of ' + o.live_run_count : '';
  for (const r of o.live_runs) {
    const li = el('li');
    const link = el('a', 'row-link');
    if (r.issue_id) link.href = issueHash(state.company, r.issue_id, 'r/' + r.run_id);
    const top = el('div', 'row-top');
    const pill = el('span', 'pill s-' + (r.status || 'pending'));
    pill.append(el('span', 'live-dot'), document.createTextNode(humanize(r.status) || 'pending'));
    top.append(pill);
    top.append(el('span', 'ident', r.issue_identifier || 'no issue'));
    top.append(el('span', 'row-title', r.issue_title || ''));
    const elapsed = el('span', 'row-when c-elapsed', duration(elapsedSeconds(r)));
    if (r.status === 'running' && r.started_at) elapsed.dataset.since = r.started_at;
    top.append(elapsed);
    link.append(top);
    const detail = el('div', 'row-detail');
    detail.append(el('span', null, (r.agent_name || 'Unknown agent') + ' · run ' + shortId(r.run_id) + ' · '));
    detail.append(el('span', null, r.last_useful_action_at ? 'last useful action ' + ago(r.last_useful_action_at) : r.last_useful_action_fallback));
    if (r.continuation_attempt > 0) detail.append(el('span', 'chip attempt', 'Continuation attempt ' + r.continuation_attempt));
    link.append(detail);
    li.append(link);
    live.append(li);
  }
  if (!o.live_runs.length) live.append(el('li', 'none', 'No run is queued or running.'));
}

// ---------- operations ----------

async function refreshOps() {
  try {
    const response = await fetch('/healthz', { credentials: 'same-origin' });
    const health = await response.json();
    const p = health.projector;
    $('ops-position').textContent = p ? '#' + p.position.toLocaleString() : '–';
    $('ops-stream').textContent = p && p.stream_last_seq !== null ? '#' + p.stream_last_seq.toLocaleString() : (health.nats.configured ? 'unreachable' : 'n/a');
    $('ops-lag').textContent = p && p.lag !== null ? p.lag.toLocaleString() : '–';
    $('ops-lag').className = p && p.lag > 1000 ? 'bad' : '';
    if (p) notePosition(p.position);
  } catch (e) {
    $('ops-position').textContent = 'down';
  }
  if (!state.company) return;
  try {
    const dead = await api('/v1/companies/' + state.company + '/dead-letters?limit=20');
    $('ops-dead').textContent = dead.total.toLocaleString();
    $('ops-dead').className = dead.total ? 'bad' : '';
    const count = $('dead-count');
    count.textContent = dead.total;
    count.className = 'count' + (dead.total ? ' bad' : '');
    const ul = $('dead-list');
    ul.textContent = '';
    for (const d of dead.dead_letters) {
      const li = el('li');
      const head = el('div');
      head.append(el('code', null, '#' + d.seq), document.createTextNode(' · ' + ago(d.at)));
      li.append(head, el('div', 'reason', d.reason));
      li.title = d.subject;
      ul.append(li);
    }
    if (!dead.dead_letters.length) ul.append(el('li', 'muted', 'None.'));
  } catch (e) {
    /* shown next time */
  }
}

// Relative times and running clocks.
function tick() {
  for (const node of document.querySelectorAll('.rel[data-at]')) node.textContent = ago(node.dataset.at);
  for (const node of document.querySelectorAll('.c-elapsed[data-since]')) {
    node.textContent = duration((Date.now() - Date.parse(node.dataset.since)) / 1000);
  }
  for (const node of document.querySelectorAll('.banner-elapsed[data-since]')) {
    if (node.dataset.since) node.textContent = ' · ' + duration((Date.now() - Date.parse(node.dataset.since)) / 1000);
  }
}

// ---------- start ----------

let started = false;
async function start() {
  try {
    state.session = await api('/v1/session');
  } catch (e) {
    if (e.status !== 401) showEmpty('The read API is not answering: ' + e.message);
    return;
  }
  renderWho();
  try {
    await loadCompanies();
  } catch (e) {
    showEmpty('Could not list companies: ' + e.message);
    return;
  }
  if (!started) {
    started = true;
    window.addEventListener('hashchange', route);
    setInterval(tick, 1000);
    setInterval(refreshOps, 5000);
    setInterval(() => { if (state.company && !state.issue && !$('overview').hidden) showOverview(); }, 5000);
    setInterval(() => { if (state.company) loadIssues().catch(() => {}); }, 15000);
  }
  await route();
  refreshOps();
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('company-select').addEventListener('change', (e) => { location.hash = issueHash(e.target.value); });
  $('issue-search').addEventListener('input', renderIssues);
  $('summary-toggle').addEventListener('click', () => setSummaryOpen(!state.summaryOpen));
  $('summary-copy').addEventListener('click', (e) => { if (state.summary) copyText(state.summary.body, e.currentTarget); });
  $('summary-link').addEventListener('click', (e) => {
    copyText(location.origin + location.pathname + issueHash(state.company, state.issue, 'summary'), e.currentTarget);
  });
  $('drawer-close').addEventListener('click', () => { location.hash = issueHash(state.company, state.issue); });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && state.drawerRun) location.hash = issueHash(state.company, state.issue);
  });
  start();
});

// The "Why" panel: the reconciler's explained decisions on the issue, newest first
// (GET .../issues/{issue}/decisions).
async function loadWhy() {
  const issue = state.issue;
  try {
    const reply = await api('/v1/companies/' + state.company + '/issues/' + issue + '/decisions?limit=20');
    if (state.issue === issue) renderWhy(reply.decisions);
  } catch (e) {
    /* keep what is shown */
  }
}

let whyTimer = null;
function refreshWhySoon() {
  clearTimeout(whyTimer);
  whyTimer = setTimeout(loadWhy, 300);
}

function renderWhy(decisions) {
  $('why-meta').textContent = decisions.length
    ? 'the reconciler\'s latest decisions on this issue'
    : 'The reconciler has not acted on this issue.';
  renderWhyList($('why-list'), decisions);
}

// The run drawer's "Why": decisions about the run (the run a rule looked at, or queued).
async function loadRunWhy(runId) {
  const list = $('run-why');
  try {
    const reply = await api('/v1/companies/' + state.company + '/issues/' + state.issue +
      '/decisions?limit=20&run=' + runId);
    if (state.drawerRun !== runId) return;
    renderWhyList(list, reply.decisions);
    if (!reply.decisions.length) list.append(el('li', 'muted', 'The reconciler has not acted on this run.'));
  } catch (e) {
    list.replaceChildren();
  }
}

function renderWhyList(list, decisions) {
  list.replaceChildren();
  for (const d of decisions) {
    const item = el('li', 'why-item');
    item.dataset.rule = d.rule;
    item.append(el('div', 'why-sentence', d.sentence));
    const cause = d.cause.type + (d.cause.seq ? ' #' + d.cause.seq : '');
    const facts = [humanize(d.rule), d.event_type, 'caused by ' + cause, clock(d.at)];
    if (d.run_id) facts.push('run ' + shortId(d.run_id));
    item.append(el('div', 'why-facts muted', facts.join(' · ')));
    list.append(item);
  }
}
