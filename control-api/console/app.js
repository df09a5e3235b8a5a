// Trailgate console: sessions, live view, terminal and VNC replay, kill. Plain ES module, no
// build step; everything it shows comes from the control API with the token the user signed in
// with (kept in this tab's sessionStorage, sent as a bearer header, never put in a URL).

const main = document.getElementById('main');
// Script errors are kept for whoever looks (the browser tests print them on failure).
window.tgErrors = [];
window.addEventListener('error', (e) => window.tgErrors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.tgErrors.push(String(e.reason)));
const state = { token: sessionStorage.getItem('tg_token'), me: null, timers: [], player: null };

// DOM from data: text always goes through textContent (session data comes from peers).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clearTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.player && state.player.dispose) state.player.dispose();
  state.player = null;
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, { Authorization: 'Bearer ' + state.token });
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 401) {
    signOut('The token was refused.');
    throw new Error('unauthorized');
  }
  return r;
}

async function json(path, opts) {
  const r = await api(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || ('HTTP ' + r.status));
  return body;
}

function signOut(message) {
  clearTimers();
  sessionStorage.removeItem('tg_token');
  state.token = null;
  state.me = null;
  renderSignIn(message);
}

function renderSignIn(message) {
  document.getElementById('me').textContent = '';
  document.getElementById('signout').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'API token' });
  const form = h('form', { class: 'signin', id: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'With a control API token. It is kept for this browser tab only.'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    h('p', { id: 'signin-error', class: 'error' }, message || ''));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    state.token = input.value.trim();
    try {
      state.me = await json('/api/v1/whoami');
      sessionStorage.setItem('tg_token', state.token);
      route();
    } catch (err) {
      if (err.message !== 'unauthorized') signOut(err.message);
    }
  });
  main.replaceChildren(form);
  input.focus();
}

const fmtDuration = (s) => (s === null || s === undefined) ? '' :
  s < 60 ? s.toFixed(1) + ' s' : s < 3600 ? (s / 60).toFixed(1) + ' min' : (s / 3600).toFixed(1) + ' h';
const fmtBytes = (n) => n < 1024 ? n + ' B' : n < 1 << 20 ? (n / 1024).toFixed(1) + ' KiB' :
  n < 1 << 30 ? (n / (1 << 20)).toFixed(1) + ' MiB' : (n / (1 << 30)).toFixed(2) + ' GiB';
const fmtTime = (t) => t ? t.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC') : '';
const badge = (text, cls) => h('span', { class: 'badge ' + (cls || text) }, text);

const FILTERS = [
  ['user', 'User'], ['target', 'Target'], ['protocol', 'Protocol', ['', 'ssh', 'vnc']],
  ['verdict', 'Verdict', ['', 'accept', 'deny', 'fail', 'gw-auth-fail', 'auth-fail', 'key-error', 'protocol-error', 'login-timeout']],
  ['active', 'Active', ['', 'true', 'false']], ['since', 'Since (RFC 3339)'], ['until', 'Until'],
  ['file', 'File path contains'], ['command', 'Command contains'],
];

function renderSessions(params) {
  const form = h('form', { class: 'filters', id: 'filters' });
  for (const [key, label, options] of FILTERS) {
    const value = params.get(key) || '';
    const field = options
      ? h('select', { name: key }, options.map((o) => h('option', { value: o, selected: o === value }, o || 'any')))
      : h('input', { name: key, value, size: key === 'since' || key === 'until' ? 22 : 12 });
    form.append(h('label', {}, label, field));
  }
  form.append(h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) q.set(el.name, el.value);
    location.hash = '#/sessions?' + q.toString();
  });
  const tbody = h('tbody');
  const table = h('table', { id: 'sessions' },
    h('thead', {}, h('tr', {}, ['Start', 'Protocol', 'User', 'Target', 'Verdict', 'Status', 'Duration',
      'Bytes in/out', 'Last input', 'Files', 'Trail'].map((c) => h('th', {}, c)))),
    tbody);
  const pager = h('div', { class: 'pager' });
  const error = h('p', { class: 'error', id: 'list-error' });
  main.replaceChildren(h('h1', {}, 'Sessions'), form, error, table, pager);

  const query = new URLSearchParams(params);
  if (!query.get('limit')) query.set('limit', '50');
  const load = async () => {
    let page;
    try {
      page = await json('/api/v1/sessions?' + query.toString());
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    error.textContent = '';
    tbody.replaceChildren(...page.items.map((s) => h('tr', { 'data-id': s.id, onclick: () => { location.hash = '#/session/' + encodeURIComponent(s.id); } },
      h('td', {}, fmtTime(s.start_time)),
      h('td', {}, s.protocol),
      h('td', {}, (s.user && s.user.name) || ''),
      h('td', {}, (s.target && s.target.name) || ''),
      h('td', {}, s.verdict || ''),
      h('td', {}, s.active ? badge('active') : s.status),
      h('td', {}, fmtDuration(s.duration)),
      h('td', {}, fmtBytes(s.bytes_client_to_server) + ' / ' + fmtBytes(s.bytes_server_to_client)),
      h('td', {}, fmtTime(s.last_activity)),
      h('td', {}, s.files || ''),
      h('td', {}, badge(s.trail.integrity)))));
    const link = (href, text) => href
      ? h('button', { onclick: () => { location.hash = '#/sessions?' + href.split('?')[1]; } }, text)
      : h('button', { disabled: true }, text);
    const m = page.meta;
    pager.replaceChildren(link(m.previous, '← Newer'),
      h('span', { class: 'muted', id: 'total' }, `${m.offset + 1}–${m.offset + page.items.length} of ${m.total}`),
      link(m.next, 'Older →'));
  };
  load();
  // Active sessions' counters move: the page refreshes while it is shown.
  state.timers.push(setInterval(() => { if (!document.hidden) load(); }, 2000));
}

function dl(pairs) {
  return h('dl', { class: 'meta' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// Terminal output of an asciicast as plain text (escape sequences dropped), for the live view.
function castText(cast) {
  let out = '';
  for (const line of cast.split('\n').slice(1)) {
    if (!line) continue;
    try {
      const ev = JSON.parse(line);
      if (ev[1] === 'o') out += ev[2];
    } catch (_) { /* a line cut by a live read */ }
  }
  return out.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]|\x1b[=>]/g, '').replace(/\r\n/g, '\n').replace(/\r/g, '');
}

async function renderSession(id) {
  let s;
  try {
    s = await json('/api/v1/sessions/' + encodeURIComponent(id));
  } catch (err) {
    main.replaceChildren(h('p', { class: 'error' }, err.message));
    return;
  }
  const back = h('a', { href: '#/sessions' }, '← Sessions');
  const title = h('h1', {}, `${s.protocol.toUpperCase()} session ${s.id}`);
  const meta = h('div', { id: 'meta' });
  const actions = h('div', { class: 'actions' });
  const player = h('div', { id: 'player' });
  const channels = h('div', { id: 'channels' });
  const downloads = h('div', { id: 'downloads' });
  const verify = h('p', { id: 'verify', class: 'muted' }, 'Verifying…');
  main.replaceChildren(back, title, meta, actions, h('h2', {}, 'Replay'), player,
    h('h2', {}, 'Channels'), channels, h('h2', {}, 'Integrity'), verify,
    h('h2', {}, 'Trail downloads'), downloads);

  const showMeta = (s) => meta.replaceChildren(dl([
    ['User', `${(s.user && s.user.name) || '-'} → ${(s.target && s.target.name) || '-'} (${(s.user && s.user.server_username) || '-'})`],
    ['Client', `${s.client.ip}:${s.client.port}`],
    ['Start', fmtTime(s.start_time)], ['End', s.active ? h('span', {}, badge('active')) : fmtTime(s.end_time)],
    ['Duration', fmtDuration(s.duration)], ['Last input', fmtTime(s.last_activity)],
    ['Verdict', s.verdict], ['Status', s.status],
    ['End reason', s.end_reason ? `${s.end_reason} (${s.end_reason_code || '-'})` : null],
    ['Terminated by', s.terminated_by],
    ['Bytes', `${fmtBytes(s.bytes_client_to_server)} to the target, ${fmtBytes(s.bytes_server_to_client)} to the client`],
    ['Files', s.files || null], ['Trail', h('span', {}, badge(s.trail.integrity), ' ', fmtBytes(s.trail.size))],
    ['Policies', (s.policies || []).join(', ')],
  ]));
  showMeta(s);

  const download = h('button', { id: 'download', onclick: async () => {
    const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/trail');
    const url = URL.createObjectURL(await r.blob());
    const a = h('a', { href: url, download: id + '.trail' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } }, 'Download trail');
  actions.append(download);
  if (s.active && state.me && state.me.role === 'admin') {
    const reason = h('input', { id: 'kill-reason', placeholder: 'Reason for the user', size: 30 });
    const out = h('span', { id: 'kill-result' });
    actions.append(reason, h('button', { id: 'kill', class: 'danger', onclick: async () => {
      try {
        const ended = await json('/api/v1/sessions/' + encodeURIComponent(id) + '/kill', {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ reason: reason.value || undefined }),
        });
        out.textContent = 'Ended: ' + ended.end_reason;
        showMeta(ended);
      } catch (err) {
        out.textContent = err.message;
        out.className = 'error';
      }
    } }, 'Kill session'), out);
  }

  const showChannels = async () => {
    const list = await json('/api/v1/sessions/' + encodeURIComponent(id) + '/channels?limit=1000');
    channels.replaceChildren(h('table', {}, h('thead', {}, h('tr', {},
      ['#', 'Type', 'Command', 'Verdict', 'Exit', 'Bytes in/out', 'Start', 'End'].map((c) => h('th', {}, c)))),
    h('tbody', {}, list.items.map((c) => h('tr', {},
      h('td', {}, c.id), h('td', {}, c.type), h('td', { class: 'wrap' }, c.command || c.subsystem || c.connected || ''),
      h('td', {}, c.verdict), h('td', {}, c.exit_status ?? ''),
      h('td', {}, fmtBytes(c.bytes_client_to_server) + ' / ' + fmtBytes(c.bytes_server_to_client)),
      h('td', {}, fmtTime(c.start_time)), h('td', {}, fmtTime(c.end_time)))))));
  };
  const showDownloads = async () => {
    const list = await json('/api/v1/sessions/' + encodeURIComponent(id) + '/trail_downloads?limit=1000');
    downloads.replaceChildren(list.items.length ? h('table', {}, h('tbody', {}, list.items.map((d) => h('tr', {},
      h('td', {}, fmtTime(d.time)), h('td', {}, d.token), h('td', {}, d.format), h('td', {}, d.range || ''),
      h('td', {}, d.follow ? 'follow' : ''))))) : h('p', { class: 'muted' }, 'None yet.'));
  };
  const showVerify = async () => {
    try {
      const v = await json('/api/v1/sessions/' + encodeURIComponent(id) + '/verify');
      verify.replaceChildren(badge(v.integrity), ' ', v.detail || '', ' ',
        h('span', { class: 'muted' }, v.signing_key_fingerprint ? 'signed by ' + v.signing_key_fingerprint : ''));
    } catch (err) {
      verify.textContent = err.message;
    }
  };
  showChannels().catch(() => {});
  showDownloads().catch(() => {});
  showVerify();

  if (s.trail.integrity === 'none' || s.trail.integrity === 'deleted') {
    player.replaceChildren(h('p', { class: 'muted' }, 'This session has no trail to replay.'));
  } else if (s.protocol === 'vnc') {
    // noVNC is loaded only for VNC sessions.
    const vnc = await import('./vnc-player.js');
    if (s.active) {
      vnc.vncLive(player, { api, h, id, timers: state.timers });
      state.timers.push(setInterval(async () => {
        const now = await json('/api/v1/sessions/' + encodeURIComponent(id)).catch(() => null);
        if (!now) return;
        showMeta(now);
        if (!now.active) { clearTimers(); renderSession(id); }
      }, 2000));
    } else {
      state.player = vnc.vncReplay(player, {
        api, h, id, durationS: Math.max(0, s.duration || 0),
        onError: (e) => window.tgErrors.push('vnc replay: ' + e.message),
      });
      window.tgVnc = state.player;
    }
  } else if (s.active) {
    // Live: the terminal's output as it is recorded (the trail is flushed on each read).
    const pre = h('pre', { class: 'live', id: 'live' }, 'Waiting for output…');
    player.replaceChildren(h('p', { class: 'muted' }, 'Live (refreshed every 2 s).'), pre);
    const poll = async () => {
      const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/trail?format=asciicast');
      if (r.ok) {
        pre.textContent = castText(await r.text()).split('\n').slice(-200).join('\n');
        pre.scrollTop = pre.scrollHeight;
      }
      const now = await json('/api/v1/sessions/' + encodeURIComponent(id));
      showMeta(now);
      if (!now.active) {
        clearTimers();
        renderSession(id);
      }
    };
    poll().catch(() => {});
    state.timers.push(setInterval(() => { poll().catch(() => {}); }, 2000));
  } else {
    terminalPlayer(id, player);
  }
}

async function terminalPlayer(id, el) {
  const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/trail?format=asciicast');
  if (!r.ok) {
    el.replaceChildren(h('p', { class: 'muted' }, 'No terminal in this session.'));
    return;
  }
  const cast = await r.text();
  const screen = h('div', { id: 'terminal' });
  const speed = h('select', { id: 'speed' }, ['1', '2', '4', '8'].map((v) => h('option', { value: v }, v + '×')));
  const idle = h('select', { id: 'idle' }, [['2', 'skip idle > 2 s'], ['', 'real time']].map(([v, t]) => h('option', { value: v }, t)));
  const create = () => {
    if (state.player && state.player.dispose) state.player.dispose();
    const opts = { autoPlay: true, fit: 'width', speed: Number(speed.value) };
    if (idle.value) opts.idleTimeLimit = Number(idle.value);
    state.player = window.AsciinemaPlayer.create({ data: cast }, screen, opts);
  };
  speed.addEventListener('change', create);
  idle.addEventListener('change', create);
  el.replaceChildren(h('div', { class: 'actions' }, h('label', {}, 'Speed ', speed), idle), screen);
  create();
}

// Settings policies of both protocols: each one's body as JSON, saved with PUT (the API
// validates and names the field in its answer); the file's policies are read-only.
async function renderPolicies() {
  const admin = state.me && state.me.role === 'admin';
  const box = h('div', { id: 'policies' });
  main.replaceChildren(h('h1', {}, 'Settings policies'), box);
  const editor = (proto, key, body, source) => {
    const text = h('textarea', { readonly: !admin || source === 'config', 'data-key': key, 'data-proto': proto },
      JSON.stringify(body, null, 2));
    const keyInput = key ? null : h('input', { class: 'new-key', placeholder: 'key', size: 20 });
    const out = h('span', { class: 'result' });
    const save = async () => {
      const k = key || keyInput.value.trim();
      let parsed;
      try {
        parsed = JSON.parse(text.value);
      } catch (err) {
        out.textContent = 'Not JSON: ' + err.message;
        out.className = 'result error';
        return;
      }
      try {
        await json(`/api/v1/configuration/${proto}/settings_policies/${encodeURIComponent(k)}`, {
          method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(parsed),
        });
        out.textContent = 'Saved.';
        out.className = 'result';
        if (!key) renderPolicies();
      } catch (err) {
        out.textContent = err.message;
        out.className = 'result error';
      }
    };
    const del = async () => {
      try {
        await json(`/api/v1/configuration/${proto}/settings_policies/${encodeURIComponent(key)}`, { method: 'DELETE' });
        renderPolicies();
      } catch (err) {
        out.textContent = err.message;
        out.className = 'result error';
      }
    };
    const editable = admin && source !== 'config';
    return h('div', { class: 'policy', 'data-policy': key ? proto + '/' + key : proto + '/new' },
      h('h2', {}, key ? `${proto} / ${key}` : `New ${proto} policy`, source === 'config' ? h('span', { class: 'muted' }, ' (from the configuration file)') : null),
      keyInput, text,
      editable ? h('div', { class: 'actions' }, h('button', { class: 'save', onclick: save }, 'Save'),
        key ? h('button', { class: 'delete danger', onclick: del }, 'Delete') : null, out) : null);
  };
  for (const proto of ['ssh', 'vnc']) {
    try {
      const list = await json(`/api/v1/configuration/${proto}/settings_policies`);
      box.append(...list.items.map((p) => editor(proto, p.key, p.body, p.source)));
      if (admin) box.append(editor(proto, null, { timeout: 3600, inactivity_timeout: { enabled: false } }, 'api'));
    } catch (err) {
      box.append(h('p', { class: 'error' }, err.message));
    }
  }
}

function route() {
  clearTimers();
  if (!state.token) return renderSignIn();
  if (!state.me) {
    json('/api/v1/whoami').then((me) => { state.me = me; route(); }).catch((err) => {
      if (err.message !== 'unauthorized') signOut(err.message);
    });
    return;
  }
  document.getElementById('me').textContent = `${state.me.name} (${state.me.role})`;
  document.getElementById('signout').hidden = false;
  const hash = location.hash.slice(1) || '/sessions';
  const [path, query] = hash.split('?');
  if (path.startsWith('/session/')) return renderSession(decodeURIComponent(path.slice('/session/'.length)));
  if (path === '/policies') return renderPolicies();
  return renderSessions(new URLSearchParams(query || ''));
}

document.getElementById('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);
route();
