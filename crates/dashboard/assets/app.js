// IdleHands dashboard. Vanilla JS on purpose: the assets are embedded in the gateway binary and
// must build without a JS toolchain. All data comes from the gateway's LiteLLM-compatible JSON
// API, authenticated by the HttpOnly session cookie that POST /ui/login set.
'use strict';
(function () {
  const UI = '/ui';
  const PALETTE = ['#2f5bd3', '#e07b39', '#2a9d8f', '#c0417a', '#8a63d2', '#d4a72c', '#4f8f3a', '#7b8494'];
  const MAX_SERIES = 7; // the rest is folded into "Other" so colours stay distinguishable
  const LOG_PAGE_SIZE = 50;

  const $ = (id) => document.getElementById(id);

  // Builds DOM nodes; text always goes through textContent so logged prompts can't inject markup.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
    for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
    return el;
  }

  // ---- formatting -------------------------------------------------------------------------
  const num = new Intl.NumberFormat('en-US');
  function usd(v) {
    const n = Number(v) || 0;
    if (n !== 0 && Math.abs(n) < 0.01) return '$' + n.toFixed(4);
    return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function compact(n) {
    n = Number(n) || 0;
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
    return num.format(n);
  }
  function isoDate(d) {
    return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
  }
  function parseDay(str) {
    const [y, m, d] = str.split('-').map(Number);
    return new Date(y, m - 1, d);
  }
  function fmtTime(v) {
    if (!v) return '–';
    const d = new Date(v);
    if (isNaN(d)) return String(v);
    return d.toLocaleString('en-US', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }
  function fmtDate(v) {
    const d = new Date(v);
    return isNaN(d) ? String(v) : d.toLocaleDateString('en-US', { year: 'numeric', month: 'short', day: 'numeric' });
  }
  function shortId(id) {
    id = String(id || '');
    return id.length > 18 ? id.slice(0, 10) + '…' + id.slice(-6) : id;
  }

  // ---- API --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, opts) {
    const init = { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (opts && opts.body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'Cannot reach the gateway.');
    }
    if (res.status === 401) {
      location.replace(UI + '/login');
      throw new ApiError(401, 'Signed out.');
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
    if (!res.ok) {
      const e = body && body.error;
      const msg = (e && (e.message || (typeof e === 'string' && e))) || (body && body.detail) || ('HTTP ' + res.status);
      throw new ApiError(res.status, typeof msg === 'string' ? msg : JSON.stringify(msg));
    }
    return body;
  }
  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) u.set(k, v);
    return u.toString();
  }

  let toastTimer = null;
  function toast(text, bad) {
    const t = $('toast');
    t.textContent = text;
    t.className = 'toast' + (bad ? ' bad' : '');
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 6000 : 3000);
  }
  function fail(err) {
    if (err && err.status === 401) return;
    toast((err && err.message) || String(err), true);
  }

  // ---- shared state -----------------------------------------------------------------------
  const state = {
    keys: [],          // full key objects from /key/list
    keysLoaded: null,  // promise while loading
    logsPage: 1,
  };
  function keyLabel(token) {
    const k = state.keys.find((x) => x.token === token);
    if (!k) return token ? shortId(token) : '–';
    return k.key_alias || k.key_name || shortId(k.token);
  }
  async function loadKeys() {
    const out = [];
    for (let page = 1; page <= 50; page++) {
      const r = await api('/key/list?' + qs({ page, size: 100, return_full_object: 'true' }));
      const keys = (r && r.keys) || [];
      out.push(...keys.filter((k) => k && typeof k === 'object'));
      if (!r || !r.total_pages || page >= r.total_pages) break;
    }
    state.keys = out;
    return out;
  }

  // ---- overview: spend chart ----------------------------------------------------------------
  const GROUP_LABEL = { key: 'Key', model: 'Model', user: 'User' };

  function overviewParams() {
    const f = $('overview-form');
    return {
      group_by: f.elements.group_by.value,
      style: f.elements.style.value,
      start_date: f.elements.start_date.value,
      end_date: f.elements.end_date.value,
    };
  }

  async function renderOverview() {
    const p = overviewParams();
    if (!p.start_date || !p.end_date) return;
    const rows = await api('/global/spend/report?' + qs({ start_date: p.start_date, end_date: p.end_date, group_by: p.group_by }));
    const data = Array.isArray(rows) ? rows : [];
    const days = [];
    for (let d = parseDay(p.start_date); d <= parseDay(p.end_date) && days.length < 400; d.setDate(d.getDate() + 1)) days.push(isoDate(d));

    // Totals per group decide the series order and which groups fold into "Other".
    const totals = new Map();
    for (const r of data) {
      const g = r.group === null || r.group === undefined || r.group === '' ? '(none)' : String(r.group);
      const t = totals.get(g) || { spend: 0, requests: 0, tokens: 0 };
      t.spend += Number(r.spend) || 0;
      t.requests += Number(r.requests) || 0;
      t.tokens += Number(r.total_tokens) || 0;
      totals.set(g, t);
    }
    const ranked = [...totals.entries()].sort((a, b) => b[1].spend - a[1].spend);
    const shown = ranked.slice(0, ranked.length > MAX_SERIES + 1 ? MAX_SERIES : MAX_SERIES + 1).map(([g]) => g);
    const series = shown.slice();
    if (ranked.length > shown.length) series.push('Other');
    const color = (i) => PALETTE[i % PALETTE.length];
    const dayIndex = new Map(days.map((d, i) => [d, i]));
    const values = series.map(() => days.map(() => 0));
    for (const r of data) {
      const i = dayIndex.get(String(r.date).slice(0, 10));
      if (i === undefined) continue;
      const g = r.group === null || r.group === undefined || r.group === '' ? '(none)' : String(r.group);
      let si = series.indexOf(g);
      if (si < 0) si = series.length - 1;
      values[si][i] += Number(r.spend) || 0;
    }

    let spend = 0, requests = 0, tokens = 0;
    for (const t of totals.values()) { spend += t.spend; requests += t.requests; tokens += t.tokens; }
    $('total-spend').textContent = usd(spend);
    $('total-requests').textContent = num.format(requests);
    $('total-tokens').textContent = compact(tokens);
    $('total-avg').textContent = requests ? usd(spend / requests) : '–';

    drawChart($('chart'), { days, series, values, color, style: p.style, groupLabel: GROUP_LABEL[p.group_by] });

    const legend = $('legend');
    legend.replaceChildren(...series.map((name, i) => h('li', null, swatch(color(i)), name)));

    $('breakdown-group').textContent = GROUP_LABEL[p.group_by];
    const body = $('breakdown');
    if (!ranked.length) {
      body.replaceChildren(h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No spend in this period.')));
      return;
    }
    body.replaceChildren(...ranked.map(([g, t]) => {
      const si = series.indexOf(g);
      const share = spend > 0 ? t.spend / spend : 0;
      const bar = h('div', { class: 'bar', role: 'presentation' }, h('span'));
      bar.firstChild.style.width = (share * 100).toFixed(1) + '%';
      bar.firstChild.style.background = color(si < 0 ? series.length - 1 : si);
      bar.style.flex = '1';
      return h('tr', null,
        h('td', null, h('span', { class: 'share' }, swatch(color(si < 0 ? series.length - 1 : si)), g)),
        h('td', { class: 'num' }, usd(t.spend)),
        h('td', { class: 'num' }, num.format(t.requests)),
        h('td', { class: 'num' }, compact(t.tokens)),
        h('td', null, h('div', { class: 'share' }, bar, h('span', { class: 'sub' }, (share * 100).toFixed(1) + '%'))));
    }));
  }
  function swatch(c) {
    const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    sw.style.background = c;
    return sw;
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * exp) return m * exp;
    return 10 * exp;
  }

  function drawChart(host, c) {
    const W = 960, H = 300, L = 64, R = 16, T = 14, B = 34;
    const pw = W - L - R, ph = H - T - B;
    const n = c.days.length;
    const stacked = c.style !== 'lines';
    let max = 0;
    for (let i = 0; i < n; i++) {
      if (stacked) max = Math.max(max, c.values.reduce((a, v) => a + v[i], 0));
      else for (const v of c.values) max = Math.max(max, v[i]);
    }
    const top = niceMax(max);
    const y = (v) => T + ph - (v / top) * ph;
    const step = pw / Math.max(n, 1);
    const x = (i) => L + step * i + step / 2;
    const total = c.values.reduce((a, v) => a + v.reduce((p, q) => p + q, 0), 0);

    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc',
      'data-series': c.series.length, 'data-style': stacked ? 'stacked' : 'lines',
    });
    svg.append(
      s('title', { id: 'chart-title' }, `Spend per day by ${c.groupLabel.toLowerCase()}`),
      s('desc', { id: 'chart-desc' }, `${usd(total)} over ${n} days from ${c.days[0]} to ${c.days[n - 1]}, ${c.series.length} series. The table below lists the same totals.`),
    );
    const grid = s('g', { class: 'grid axis' });
    for (let k = 0; k <= 4; k++) {
      const v = (top / 4) * k;
      grid.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        s('text', { x: L - 8, y: y(v) + 4, 'text-anchor': 'end' }, usd(v).replace(/\.00$/, '')));
    }
    const every = Math.max(1, Math.ceil(n / 10));
    for (let i = 0; i < n; i += every) {
      const d = parseDay(c.days[i]);
      grid.append(s('text', { x: x(i), y: H - 12, 'text-anchor': 'middle' }, d.toLocaleDateString('en-US', { month: 'short', day: 'numeric' })));
    }
    svg.append(grid);

    if (total <= 0) {
      svg.append(s('text', { x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle', class: 'empty-text' }, 'No spend in this period'));
    } else if (stacked) {
      const bw = Math.max(2, Math.min(28, step * 0.7));
      const bars = s('g', { class: 'bars' });
      for (let i = 0; i < n; i++) {
        let acc = 0;
        c.series.forEach((name, si) => {
          const v = c.values[si][i];
          if (v <= 0) return;
          const y0 = y(acc), y1 = y(acc + v);
          acc += v;
          bars.append(s('rect', {
            class: 'seg-bar', x: x(i) - bw / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1), fill: c.color(si),
            'data-group': name, 'data-date': c.days[i],
          }, s('title', null, `${c.days[i]} · ${name}: ${usd(v)}`)));
        });
      }
      svg.append(bars);
    } else {
      const lines = s('g', { class: 'lines' });
      c.series.forEach((name, si) => {
        const pts = c.values[si].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
        lines.append(s('polyline', { points: pts, fill: 'none', stroke: c.color(si), 'stroke-width': 2, 'stroke-linejoin': 'round', 'data-group': name }));
        c.values[si].forEach((v, i) => {
          if (v > 0) lines.append(s('circle', { cx: x(i), cy: y(v), r: 3, fill: c.color(si) }, s('title', null, `${c.days[i]} · ${name}: ${usd(v)}`)));
        });
      });
      svg.append(lines);
    }
    svg.append(s('line', { x1: L, x2: W - R, y1: T + ph, y2: T + ph, stroke: 'currentColor', 'stroke-opacity': '.35' }));
    host.replaceChildren(svg);
  }

  // ---- keys -------------------------------------------------------------------------------
  function keyStatus(k) {
    if (k.blocked) return ['Blocked', 'bad'];
    if (k.expires && new Date(k.expires) < new Date()) return ['Expired', 'warn'];
    if (k.max_budget !== null && k.max_budget !== undefined && Number(k.spend) >= Number(k.max_budget)) return ['Over budget', 'warn'];
    return ['Active', 'ok'];
  }

  function budgetCell(k) {
    const spend = Number(k.spend) || 0;
    const hasMax = k.max_budget !== null && k.max_budget !== undefined;
    if (!hasMax) {
      return h('td', { class: 'budget' }, h('div', null, usd(spend), h('span', { class: 'sub' }, ' · no budget')));
    }
    const max = Number(k.max_budget);
    const ratio = max > 0 ? spend / max : 1;
    const bar = h('div', {
      class: 'bar' + (ratio >= 1 ? ' over' : ratio >= 0.8 ? ' warn' : ''), role: 'progressbar',
      'aria-label': `Budget used by ${k.key_alias || k.key_name || 'key'}`,
      'aria-valuemin': '0', 'aria-valuemax': String(max), 'aria-valuenow': String(Math.min(spend, max)),
      'aria-valuetext': `${usd(spend)} of ${usd(max)}`,
    }, h('span'));
    bar.firstChild.style.width = Math.min(100, ratio * 100).toFixed(1) + '%';
    let reset = null;
    if (k.budget_duration) {
      reset = 'resets every ' + k.budget_duration + (k.budget_reset_at ? ' · next ' + fmtDate(k.budget_reset_at) : '');
    }
    return h('td', { class: 'budget' },
      h('div', null, h('strong', null, usd(spend)), h('span', { class: 'sub' }, ' of ' + usd(max))),
      bar,
      reset && h('div', { class: 'sub' }, reset));
  }

  function limitsCell(k) {
    const parts = [];
    if (k.rpm_limit) parts.push(num.format(k.rpm_limit) + ' rpm');
    if (k.tpm_limit) parts.push(compact(k.tpm_limit) + ' tpm');
    if (k.max_parallel_requests) parts.push(k.max_parallel_requests + ' parallel');
    return h('td', { class: 'limits' }, parts.length ? parts.join(' · ') : 'none');
  }

  function renderKeys() {
    const q = $('key-search').value.trim().toLowerCase();
    const keys = state.keys.filter((k) => !q || [k.key_alias, k.key_name, k.user_id, k.team_id, k.token]
      .some((f) => f && String(f).toLowerCase().includes(q)));
    $('keys-empty').hidden = keys.length > 0;
    $('keys-body').replaceChildren(...keys.map((k) => {
      const [label, cls] = keyStatus(k);
      const name = k.key_alias || k.key_name || shortId(k.token);
      const models = Array.isArray(k.models) && k.models.length ? k.models : null;
      let expires = 'never';
      if (k.expires) expires = fmtDate(k.expires) + (new Date(k.expires) < new Date() ? ' (expired)' : '');
      return h('tr', { dataset: { token: k.token } },
        h('td', null,
          h('div', { class: 'key-alias' }, name),
          h('div', { class: 'sub mono' }, k.key_name || shortId(k.token)),
          (k.user_id || k.team_id) && h('div', { class: 'sub' }, [k.user_id && 'user ' + k.user_id, k.team_id && 'team ' + k.team_id].filter(Boolean).join(' · '))),
        budgetCell(k),
        limitsCell(k),
        h('td', null, models ? h('div', { class: 'chips' }, models.map((m) => h('span', { class: 'chip' }, m))) : h('span', { class: 'sub' }, 'all models')),
        h('td', { class: 'limits' }, expires),
        h('td', null, h('span', { class: 'badge ' + cls }, label)),
        h('td', null, h('div', { class: 'actions' },
          h('button', {
            type: 'button', class: 'ghost small-btn', 'data-action': k.blocked ? 'unblock' : 'block',
            'aria-label': (k.blocked ? 'Unblock ' : 'Block ') + name, onclick: () => setBlocked(k, !k.blocked),
          }, k.blocked ? 'Unblock' : 'Block'),
          h('button', {
            type: 'button', class: 'ghost small-btn', 'data-action': 'delete', 'aria-label': 'Delete ' + name,
            onclick: () => confirmDelete(k),
          }, 'Delete'))));
    }));
  }

  async function refreshKeys() {
    await loadKeys();
    renderKeys();
    fillKeyFilter();
  }

  async function setBlocked(k, blocked) {
    try {
      await api(blocked ? '/key/block' : '/key/unblock', { body: { key: k.token } });
      toast((blocked ? 'Blocked ' : 'Unblocked ') + (k.key_alias || k.key_name));
      await refreshKeys();
    } catch (e) { fail(e); }
  }

  function confirmDelete(k) {
    const d = $('confirm-dialog');
    $('confirm-text').textContent = `Delete “${k.key_alias || k.key_name}”? Clients using it get 401 at once. Its spend logs stay.`;
    d.returnValue = '';
    d.onclose = async () => {
      if (d.returnValue !== 'confirm') return;
      try {
        await api('/key/delete', { body: { keys: [k.token] } });
        toast('Deleted ' + (k.key_alias || k.key_name));
        await refreshKeys();
      } catch (e) { fail(e); }
    };
    d.showModal();
  }

  function openCreate() {
    const f = $('create-form');
    f.reset();
    $('create-error').hidden = true;
    $('create-dialog').showModal();
  }

  async function submitCreate(ev) {
    ev.preventDefault();
    const f = ev.target;
    if (!f.reportValidity()) return;
    const v = (n) => f.elements[n].value.trim();
    const body = {};
    if (v('key_alias')) body.key_alias = v('key_alias');
    if (v('max_budget')) body.max_budget = Number(v('max_budget'));
    if (v('budget_duration')) body.budget_duration = v('budget_duration');
    if (v('duration')) body.duration = v('duration');
    const models = v('models').split(',').map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    if (v('rpm_limit')) body.rpm_limit = Number(v('rpm_limit'));
    if (v('tpm_limit')) body.tpm_limit = Number(v('tpm_limit'));
    const submit = f.querySelector('[type=submit]');
    submit.disabled = true;
    try {
      const r = await api('/key/generate', { body });
      $('create-dialog').close();
      showSecret(r && r.key);
      await refreshKeys();
    } catch (e) {
      if (e.status === 401) return;
      $('create-error').textContent = e.message;
      $('create-error').hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  // The plaintext key lives only in this dialog and is wiped on close.
  function showSecret(key) {
    const d = $('secret-dialog');
    $('secret-value').textContent = key || '(the gateway returned no key)';
    $('secret-copy').textContent = 'Copy';
    d.onclose = () => { $('secret-value').textContent = ''; };
    d.showModal();
  }

  // ---- teams and users ----------------------------------------------------------------------
  const ROLE_LABEL = {
    proxy_admin: 'Admin', proxy_admin_viewer: 'Admin (view only)',
    internal_user: 'Internal user', internal_user_viewer: 'Internal user (view only)',
  };
  const csv = (v) => v.split(',').map((m) => m.trim()).filter(Boolean);
  function chips(items, none) {
    return items && items.length
      ? h('div', { class: 'chips' }, items.map((m) => h('span', { class: 'chip' }, m)))
      : h('span', { class: 'sub' }, none);
  }

  async function refreshTeams() {
    const teams = (await api('/team/list')) || [];
    $('teams-empty').hidden = teams.length > 0;
    $('teams-body').replaceChildren(...teams.map((t) => {
      const name = t.team_alias || t.team_id;
      const members = (t.members_with_roles || []).map((m) => (m.user_id || m.user_email) + (m.role === 'admin' ? ' (admin)' : ''));
      const [label, cls] = keyStatus(t);
      return h('tr', { dataset: { team: t.team_id } },
        h('td', null, h('div', { class: 'key-alias' }, name), h('div', { class: 'sub mono' }, t.team_id)),
        budgetCell({ ...t, key_alias: name }),
        limitsCell(t),
        h('td', null, chips(t.models, 'all models')),
        h('td', null, chips(members, 'none')),
        h('td', null, h('span', { class: 'badge ' + cls }, label)),
        h('td', null, h('div', { class: 'actions' },
          h('button', {
            type: 'button', class: 'ghost small-btn', 'data-action': 'budget', 'aria-label': 'Edit budget of ' + name,
            onclick: () => editBudget('/team/update', { team_id: t.team_id }, t, name, refreshTeams),
          }, 'Edit budget'),
          h('button', {
            type: 'button', class: 'ghost small-btn', 'data-action': t.blocked ? 'unblock' : 'block',
            'aria-label': (t.blocked ? 'Unblock ' : 'Block ') + name, onclick: () => setTeamBlocked(t, !t.blocked),
          }, t.blocked ? 'Unblock' : 'Block'))));
    }));
  }

  async function setTeamBlocked(t, blocked) {
    try {
      await api(blocked ? '/team/block' : '/team/unblock', { body: { team_id: t.team_id } });
      toast((blocked ? 'Blocked team ' : 'Unblocked team ') + (t.team_alias || t.team_id));
      await refreshTeams();
    } catch (e) { fail(e); }
  }

  async function refreshUsers() {
    const r = await api('/user/list?' + qs({ page_size: 100 }));
    const users = (r && r.users) || [];
    $('users-empty').hidden = users.length > 0;
    $('users-body').replaceChildren(...users.map((u) => {
      const name = u.user_alias || u.user_id;
      return h('tr', { dataset: { user: u.user_id } },
        h('td', null, h('div', { class: 'key-alias' }, name),
          h('div', { class: 'sub' }, [u.user_id !== name && u.user_id, u.user_email].filter(Boolean).join(' · '))),
        h('td', null, ROLE_LABEL[u.user_role] || u.user_role),
        budgetCell({ ...u, key_alias: name }),
        limitsCell(u),
        h('td', null, chips(u.teams, 'none')),
        h('td', null, h('div', { class: 'actions' },
          h('button', {
            type: 'button', class: 'ghost small-btn', 'data-action': 'budget', 'aria-label': 'Edit budget of ' + name,
            onclick: () => editBudget('/user/update', { user_id: u.user_id }, u, name, refreshUsers),
          }, 'Edit budget'))));
    }));
  }

  // One dialog edits the budget and limits of a team or a user; an emptied field clears it.
  function editBudget(path, id, current, name, after) {
    const f = $('budget-form');
    f.reset();
    $('budget-h').textContent = 'Budget and limits of ' + name;
    for (const n of ['max_budget', 'budget_duration', 'rpm_limit', 'tpm_limit']) {
      const v = current[n];
      f.elements[n].value = v === null || v === undefined ? '' : String(v);
    }
    $('budget-error').hidden = true;
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      if (!f.reportValidity()) return;
      const v = (n) => f.elements[n].value.trim();
      const numOrNull = (n) => (v(n) === '' ? null : Number(v(n)));
      const body = {
        ...id,
        max_budget: numOrNull('max_budget'),
        budget_duration: v('budget_duration') || null,
        rpm_limit: numOrNull('rpm_limit'),
        tpm_limit: numOrNull('tpm_limit'),
      };
      try {
        await api(path, { body });
        $('budget-dialog').close();
        toast('Saved ' + name);
        await after();
      } catch (e) {
        if (e.status === 401) return;
        $('budget-error').textContent = e.message;
        $('budget-error').hidden = false;
      }
    };
    $('budget-dialog').showModal();
  }

  function openDialog(form, error, dialog) {
    $(form).reset();
    $(error).hidden = true;
    $(dialog).showModal();
  }

  async function submitTeam(ev) {
    ev.preventDefault();
    const f = ev.target;
    const v = (n) => f.elements[n].value.trim();
    const body = {};
    if (v('team_id')) body.team_id = v('team_id');
    if (v('team_alias')) body.team_alias = v('team_alias');
    if (csv(v('models')).length) body.models = csv(v('models'));
    if (csv(v('members')).length) body.members_with_roles = csv(v('members')).map((u) => ({ user_id: u, role: 'user' }));
    try {
      const t = await api('/team/new', { body });
      $('team-dialog').close();
      toast('Created team ' + ((t && (t.team_alias || t.team_id)) || ''));
      await refreshTeams();
    } catch (e) {
      if (e.status === 401) return;
      $('team-error').textContent = e.message;
      $('team-error').hidden = false;
    }
  }

  async function submitUser(ev) {
    ev.preventDefault();
    const f = ev.target;
    if (!f.reportValidity()) return;
    const v = (n) => f.elements[n].value.trim();
    const body = { user_role: v('user_role') };
    if (v('user_id')) body.user_id = v('user_id');
    if (v('user_email')) body.user_email = v('user_email');
    if (csv(v('teams')).length) body.teams = csv(v('teams'));
    try {
      const r = await api('/user/new', { body });
      $('user-dialog').close();
      showSecret(r && r.key);
      await refreshUsers();
    } catch (e) {
      if (e.status === 401) return;
      $('user-error').textContent = e.message;
      $('user-error').hidden = false;
    }
  }

  // ---- request log ------------------------------------------------------------------------
  function logFilters() {
    const f = $('log-filters').elements;
    return {
      api_key: f.api_key.value, user_id: f.user_id.value.trim(), model: f.model.value, status: f.status.value,
      start_date: f.start_date.value, end_date: f.end_date.value,
    };
  }

  function fillKeyFilter() {
    const sel = $('log-filters').elements.api_key;
    const cur = sel.value;
    sel.replaceChildren(h('option', { value: '' }, 'All keys'),
      ...state.keys.map((k) => h('option', { value: k.token }, k.key_alias || k.key_name || shortId(k.token))));
    sel.value = cur;
  }
  const seenModels = new Set();
  function fillModelFilter(rows) {
    let added = false;
    for (const r of rows) {
      const m = r.model_group || r.model;
      if (m && !seenModels.has(m)) { seenModels.add(m); added = true; }
    }
    if (!added) return;
    const sel = $('log-filters').elements.model;
    const cur = sel.value;
    sel.replaceChildren(h('option', { value: '' }, 'All models'), ...[...seenModels].sort().map((m) => h('option', { value: m }, m)));
    sel.value = cur;
  }

  async function renderLogs() {
    const f = logFilters();
    // model and status narrow the fetched page in the browser; /spend/logs has no such params.
    const rows = await api('/spend/logs?' + qs({
      api_key: f.api_key, user_id: f.user_id, start_date: f.start_date, end_date: f.end_date,
      page: state.logsPage, page_size: LOG_PAGE_SIZE,
    }));
    const all = Array.isArray(rows) ? rows : [];
    fillModelFilter(all);
    const shown = all.filter((r) => (!f.model || r.model_group === f.model || r.model === f.model)
      && (!f.status || (r.status || 'success') === f.status));
    $('logs-empty').hidden = shown.length > 0;
    $('logs-page').textContent = 'Page ' + state.logsPage;
    $('logs-prev').disabled = state.logsPage <= 1;
    $('logs-next').disabled = all.length < LOG_PAGE_SIZE;
    $('logs-body').replaceChildren(...shown.map((r) => {
      const status = r.status || 'success';
      const alias = (r.metadata && r.metadata.user_api_key_alias) || keyLabel(r.api_key);
      return h('tr', { dataset: { requestId: r.request_id } },
        h('td', { class: 'limits' }, fmtTime(r.startTime)),
        h('td', null, h('button', {
          type: 'button', class: 'row-link', 'aria-label': 'Show details of request ' + r.request_id,
          onclick: () => openLog(r),
        }, shortId(r.request_id))),
        h('td', null, alias),
        h('td', null, r.model_group || r.model || '–'),
        h('td', null, r.user || h('span', { class: 'sub' }, '–')),
        h('td', { class: 'num' }, num.format(Number(r.total_tokens) || 0)),
        h('td', { class: 'num' }, usd(r.spend)),
        h('td', { class: 'num' }, latency(r)),
        h('td', null, h('span', { class: 'badge ' + (status === 'success' ? 'ok' : 'bad') }, status)));
    }));
  }
  function latency(r) {
    const ms = r.request_duration_ms !== undefined && r.request_duration_ms !== null
      ? Number(r.request_duration_ms) : new Date(r.endTime) - new Date(r.startTime);
    if (!isFinite(ms) || ms < 0) return '–';
    return ms >= 1000 ? (ms / 1000).toFixed(2) + ' s' : Math.round(ms) + ' ms';
  }

  function messageText(content) {
    if (typeof content === 'string') return content;
    if (Array.isArray(content)) {
      return content.map((p) => (p && typeof p === 'object' ? (p.text !== undefined ? p.text : '[' + (p.type || 'part') + ']') : String(p))).join('\n');
    }
    if (content === null || content === undefined) return '';
    return JSON.stringify(content, null, 2);
  }
  function messageList(msgs) {
    return msgs.map((m) => h('div', { class: 'msg' },
      h('div', { class: 'msg-role' }, (m && m.role) || 'message'),
      h('pre', { class: 'msg-content' }, messageText(m && m.content !== undefined ? m.content : m)),
      m && m.tool_calls ? h('pre', { class: 'json' }, JSON.stringify(m.tool_calls, null, 2)) : null));
  }
  function isEmpty(v) {
    return v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length)
      || (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length);
  }
  function responseView(resp) {
    if (typeof resp === 'string') return [h('pre', { class: 'msg-content msg' }, resp)];
    const choices = resp && Array.isArray(resp.choices) ? resp.choices : null;
    if (choices) return messageList(choices.map((c) => c.message || { role: 'assistant', content: c.text }));
    return [h('pre', { class: 'json' }, JSON.stringify(resp, null, 2))];
  }

  function openLog(r) {
    const status = r.status || 'success';
    const md = r.metadata && typeof r.metadata === 'object' ? r.metadata : {};
    const kv = (pairs) => h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
    $('drawer-h').textContent = 'Request ' + shortId(r.request_id);
    const body = [
      kv([
        ['Request ID', h('code', null, r.request_id)],
        ['Status', h('span', { class: 'badge ' + (status === 'success' ? 'ok' : 'bad') }, status)],
        ['Call type', r.call_type],
        ['Model', r.model_group && r.model && r.model_group !== r.model ? `${r.model_group} → ${r.model}` : (r.model_group || r.model)],
        ['API base', r.api_base],
        ['Key', `${md.user_api_key_alias || keyLabel(r.api_key)} (${shortId(r.api_key)})`],
        ['User', r.user],
        ['Started', fmtTime(r.startTime)],
        ['Latency', latency(r)],
        ['Tokens', `${num.format(Number(r.prompt_tokens) || 0)} prompt + ${num.format(Number(r.completion_tokens) || 0)} completion = ${num.format(Number(r.total_tokens) || 0)}`],
        ['Spend', usd(r.spend)],
      ]),
    ];
    const err = md.error_information;
    if (err && !isEmpty(err)) body.push(h('h3', null, 'Error'), h('pre', { class: 'json' }, JSON.stringify(err, null, 2)));
    const hasPrompt = !isEmpty(r.messages);
    const hasResponse = !isEmpty(r.response);
    if (hasPrompt || hasResponse) {
      if (hasPrompt) body.push(h('h3', null, 'Prompt'), ...(Array.isArray(r.messages) ? messageList(r.messages) : responseView(r.messages)));
      if (hasResponse) body.push(h('h3', null, 'Response'), ...responseView(r.response));
    } else {
      body.push(h('h3', null, 'Prompt and response'),
        h('p', { class: 'notice', 'data-testid': 'no-prompts' }, 'Not stored. Set general_settings.store_prompts_in_spend_logs: true to keep prompts and responses in the spend log.'));
    }
    if (!isEmpty(md)) body.push(h('h3', null, 'Metadata'), h('pre', { class: 'json' }, JSON.stringify(md, null, 2)));
    $('drawer-body').replaceChildren(...body);
    $('log-drawer').showModal();
  }

  // ---- routing and wiring -----------------------------------------------------------------
  const VIEWS = ['overview', 'keys', 'teams', 'users', 'logs', 'models', 'tags'];
  function currentView() {
    const v = location.hash.replace(/^#\/?/, '');
    return VIEWS.includes(v) ? v : 'overview';
  }
  async function show(view) {
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    for (const a of document.querySelectorAll('.topbar nav a')) {
      if (a.dataset.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = { overview: 'Spend', keys: 'Keys', teams: 'Teams', users: 'Users', logs: 'Requests', models: 'Models', tags: 'Tags' }[view] + ' · IdleHands gateway';
    const main = $('main');
    main.setAttribute('aria-busy', 'true');
    try {
      if (view === 'overview') await renderOverview();
      else if (view === 'keys') await refreshKeys();
      else if (view === 'models') await window.IdleHandsModels.render({ api, h, $, toast, fail });
      else if (view === 'tags') await window.IdleHandsTags.render({ api, h, $, toast, fail });
      else if (view === 'teams') await refreshTeams();
      else if (view === 'users') await refreshUsers();
      else {
        if (!state.keys.length) await loadKeys().then(fillKeyFilter);
        await renderLogs();
      }
    } catch (e) {
      fail(e);
    } finally {
      main.setAttribute('aria-busy', 'false');
    }
  }

  function wire() {
    const end = new Date();
    const start = new Date();
    start.setDate(end.getDate() - 29);
    const of = $('overview-form');
    of.elements.start_date.value = isoDate(start);
    of.elements.end_date.value = isoDate(end);
    of.addEventListener('change', () => renderOverview().catch(fail));
    of.addEventListener('submit', (e) => e.preventDefault());

    $('key-search').addEventListener('input', renderKeys);
    $('new-key').addEventListener('click', openCreate);
    $('create-form').addEventListener('submit', submitCreate);
    $('new-team').addEventListener('click', () => openDialog('team-form', 'team-error', 'team-dialog'));
    $('team-form').addEventListener('submit', submitTeam);
    $('new-user').addEventListener('click', () => openDialog('user-form', 'user-error', 'user-dialog'));
    $('user-form').addEventListener('submit', submitUser);
    $('secret-copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('secret-value').textContent);
        $('secret-copy').textContent = 'Copied';
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents($('secret-value'));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        $('secret-copy').textContent = 'Selected: press Ctrl+C';
      }
    });
    for (const b of document.querySelectorAll('dialog [data-close]')) {
      b.addEventListener('click', () => b.closest('dialog').close());
    }
    // A click on the drawer's backdrop (outside its box) closes it.
    $('log-drawer').addEventListener('click', (e) => {
      const r = e.currentTarget.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) e.currentTarget.close();
    });

    const lf = $('log-filters');
    lf.addEventListener('submit', (e) => { e.preventDefault(); state.logsPage = 1; renderLogs().catch(fail); });
    lf.addEventListener('reset', () => setTimeout(() => { state.logsPage = 1; renderLogs().catch(fail); }));
    lf.elements.model.addEventListener('change', () => renderLogs().catch(fail));
    lf.elements.status.addEventListener('change', () => renderLogs().catch(fail));
    $('logs-prev').addEventListener('click', () => { state.logsPage = Math.max(1, state.logsPage - 1); renderLogs().catch(fail); });
    $('logs-next').addEventListener('click', () => { state.logsPage += 1; renderLogs().catch(fail); });

    $('logout').addEventListener('click', async () => {
      try { await fetch(UI + '/logout', { method: 'POST', credentials: 'same-origin' }); } catch (_) { /* leave anyway */ }
      location.replace(UI + '/login');
    });
    window.addEventListener('hashchange', () => show(currentView()));
  }

  async function start() {
    let ok = false;
    try {
      const r = await fetch(UI + '/session', { credentials: 'same-origin', cache: 'no-store' });
      ok = r.ok;
    } catch (_) { ok = false; }
    if (!ok) {
      location.replace(UI + '/login');
      return;
    }
    wire();
    await show(currentView());
    document.body.dataset.ready = 'true';
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
