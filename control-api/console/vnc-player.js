// VNC replay in noVNC. The gateway re-encodes a recorded session from any moment
// (GET /api/v1/sessions/{id}/replay?from=SECONDS) as an FBS file: blocks of server-to-client RFB
// bytes, each with its time in milliseconds since the session start. This module reads the file
// as it streams in, and hands the blocks to noVNC at the recorded pace through an object shaped
// like a WebSocket (noVNC accepts any such channel). Seeking fetches the file again from the new
// moment: it starts with the screen at that moment. Thumbnails are the gateway's PNG snapshots.
import RFB from './vendor/novnc/core/rfb.js';

// Most bytes read ahead of the playing position: a long or fast session never fills memory.
const READ_AHEAD = 16 << 20;
const MAGIC = 'FBS 001.000\n';
const THUMBS = 8;

// What noVNC talks to: it sends requests and never gets answers (a recording has no server).
class ReplayChannel {
  constructor() {
    this.binaryType = 'arraybuffer';
    this.protocol = '';
    this.readyState = 'open';
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
  }

  send() {}

  close() {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    if (this.onclose) this.onclose({ code: 1000, reason: '', wasClean: true });
  }

  deliver(bytes) {
    if (this.readyState === 'open' && this.onmessage) this.onmessage({ data: bytes.slice().buffer });
  }
}

// FBS blocks from a stream of chunks: [u32 length][data padded to 4][u32 ms], after the magic.
class FbsParser {
  constructor() {
    this.buf = new Uint8Array(0);
    this.magic = false;
  }

  push(chunk) {
    const b = new Uint8Array(this.buf.length + chunk.length);
    b.set(this.buf);
    b.set(chunk, this.buf.length);
    this.buf = b;
    const out = [];
    if (!this.magic) {
      if (this.buf.length < MAGIC.length) return out;
      if (new TextDecoder().decode(this.buf.subarray(0, MAGIC.length)) !== MAGIC) throw new Error('not an FBS file');
      this.magic = true;
      this.buf = this.buf.subarray(MAGIC.length);
    }
    const view = () => new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    while (this.buf.length >= 4) {
      const len = view().getUint32(0);
      const total = 4 + Math.ceil(len / 4) * 4 + 4;
      if (this.buf.length < total) break;
      out.push({ data: this.buf.subarray(4, 4 + len), ms: view().getUint32(total - 4) });
      this.buf = this.buf.subarray(total);
    }
    return out;
  }
}

// One playback from one moment: fetches, parses and delivers blocks at the recorded pace.
class Playback {
  constructor(api, id, screen, fromS, opts) {
    this.opts = opts; // { speed, idleLimitS, onTime(ms), onEnd() }
    this.channel = new ReplayChannel();
    this.rfb = new RFB(screen, this.channel, { shared: true });
    this.rfb.viewOnly = true;
    this.rfb.scaleViewport = true;
    this.rfb.background = '#111';
    // noVNC's handshake takes one step per message after the version line, and reads nothing
    // past its ServerInit in the message that completes it: the version line goes alone, and
    // the blocks after the handshake wait for its connect event.
    this.connected = false;
    this.rfb.addEventListener('connect', () => {
      this.connected = true;
      setTimeout(() => this.schedule(), 0);
    });
    this.queue = [];
    this.queued = 0;
    this.done = false;
    this.abort = new AbortController();
    this.startMs = Math.round(fromS * 1000);
    this.lastMs = this.startMs;
    this.t0 = null; // wall time (ms) at which the position was startMs
    this.paused = !!opts.paused;
    this.pausedAt = this.now();
    this.timer = null;
    this.wake = null;
    this.read(api, id, fromS).catch((e) => { if (e.name !== 'AbortError') opts.onError(e); });
  }

  async read(api, id, fromS) {
    const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/replay?from=' + fromS.toFixed(3),
      { signal: this.abort.signal });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || ('HTTP ' + r.status));
    }
    this.startMs = Math.round(Number(r.headers.get('x-trailgate-replay-from') || fromS) * 1000);
    this.lastMs = this.startMs;
    const reader = r.body.getReader();
    const parser = new FbsParser();
    for (;;) {
      while (this.queued > READ_AHEAD) await new Promise((res) => { this.wake = res; });
      const { value, done } = await reader.read();
      if (done) break;
      for (const b of parser.push(value)) {
        this.queue.push(b);
        this.queued += b.data.length;
      }
      this.schedule();
    }
    this.done = true;
    this.schedule();
  }

  now() {
    return performance.now();
  }

  // The playing position: recorded ms since the session start.
  clock() {
    if (this.t0 === null) return this.startMs;
    const at = this.paused ? this.pausedAt : this.now();
    return Math.min(this.startMs + (at - this.t0) * this.opts.speed, this.opts.durationMs);
  }

  // Delivers every block that is due, then sleeps until the next one. Paused, the position
  // stands still: blocks due there (a new start's first screen) are still delivered.
  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.t0 === null) this.t0 = this.paused ? this.pausedAt : this.now();
    const speed = this.opts.speed;
    const ref = () => (this.paused ? this.pausedAt : this.now());
    for (;;) {
      const b = this.queue[0];
      if (!b || (this.delivered && !this.connected)) break;
      if (!b.seen && !this.paused) {
        // Idle time beyond the limit is skipped: the clock jumps over it, once per block.
        b.seen = true;
        const idle = this.opts.idleLimitS * 1000;
        const gap = b.ms - this.lastMs;
        if (idle && gap > idle) this.t0 -= (gap - idle) / speed;
      }
      // The handshake (0 ms) and the first screen (the start) are due at once.
      const due = this.t0 + (Math.max(b.ms, this.startMs) - this.startMs) / speed;
      if (due > ref()) {
        if (!this.paused) this.timer = setTimeout(() => this.schedule(), Math.min(due - ref(), 250));
        break;
      }
      this.queue.shift();
      this.queued -= b.data.length;
      this.lastMs = Math.max(this.lastMs, b.ms);
      if (!this.delivered) {
        this.channel.deliver(b.data.subarray(0, 12));
        this.channel.deliver(b.data.subarray(12));
      } else {
        this.channel.deliver(b.data);
      }
      this.delivered = true;
      if (this.wake) { this.wake(); this.wake = null; }
    }
    const ended = this.done && !this.queue.length;
    this.opts.onTime(ended ? Math.max(this.lastMs, this.clock()) : this.clock());
    if (ended) this.opts.onEnd();
    else if (!this.timer && !this.paused) this.timer = setTimeout(() => this.schedule(), 250);
  }

  pause() {
    if (this.paused) return;
    this.paused = true;
    this.pausedAt = this.now();
    clearTimeout(this.timer);
  }

  resume() {
    if (!this.paused) return;
    if (this.t0 !== null) this.t0 += this.now() - this.pausedAt;
    this.paused = false;
    this.schedule();
  }

  setSpeed(speed) {
    // Keep the position: re-base the clock at the current point.
    if (this.t0 !== null) {
      this.startMs = this.clock();
      this.t0 = this.paused ? this.pausedAt : this.now();
    }
    this.opts.speed = speed;
    this.schedule();
  }

  dispose() {
    clearTimeout(this.timer);
    this.abort.abort();
    if (this.wake) this.wake();
    try { this.rfb.disconnect(); } catch (_) { /* already gone */ }
  }
}

function fmt(ms) {
  const s = Math.max(0, ms / 1000);
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}`;
}

// The replay of an ended VNC session in `el`. Returns { dispose }.
export function vncReplay(el, { api, h, id, durationS, onError }) {
  const screen = h('div', { id: 'vnc-screen', class: 'vnc-screen' });
  const slider = h('input', { id: 'vnc-at', type: 'range', min: 0, max: durationS.toFixed(3), step: 'any', value: 0 });
  const time = h('span', { class: 'muted', id: 'vnc-time' }, fmt(0) + ' / ' + fmt(durationS * 1000));
  const speed = h('select', { id: 'vnc-speed' }, ['1', '2', '4', '8'].map((v) => h('option', { value: v }, v + '×')));
  const idle = h('select', { id: 'vnc-idle' }, [['2', 'skip idle > 2 s'], ['', 'real time']].map(([v, t]) => h('option', { value: v }, t)));
  const play = h('button', { id: 'vnc-play' }, 'Pause');
  const status = h('span', { id: 'vnc-status', class: 'muted' }, 'Playing');
  const thumbs = h('div', { id: 'vnc-thumbs', class: 'thumbs' });
  el.replaceChildren(h('div', { class: 'vnc' },
    h('div', { class: 'actions' }, play, slider, time, h('label', {}, 'Speed ', speed), idle, status),
    screen, thumbs));

  let pb = null;
  let dragging = false;
  let started = performance.now();
  const opts = (paused) => ({
    paused,
    durationMs: durationS * 1000,
    speed: Number(speed.value),
    idleLimitS: idle.value ? Number(idle.value) : 0,
    onTime: (ms) => {
      if (!dragging) slider.value = (ms / 1000).toFixed(3);
      time.textContent = fmt(ms) + ' / ' + fmt(durationS * 1000);
    },
    onEnd: () => {
      status.textContent = 'Ended';
      play.textContent = 'Replay';
      // How long the playing took (ms of wall time), for whoever checks the pace.
      if (!el.dataset.ended) el.dataset.playedMs = String(Math.round(performance.now() - started));
      el.dataset.ended = '1';
    },
    onError: (e) => { status.textContent = e.message; status.className = 'error'; onError(e); },
  });
  // A new start keeps the pause: a paused seek shows that moment's screen and waits.
  const start = (fromS) => {
    const paused = !!(pb && pb.paused);
    if (pb) pb.dispose();
    screen.replaceChildren();
    status.textContent = paused ? 'Paused' : 'Playing';
    status.className = 'muted';
    play.textContent = paused ? 'Play' : 'Pause';
    delete el.dataset.ended;
    started = performance.now();
    pb = new Playback(api, id, screen, fromS, opts(paused));
    el.dataset.from = String(fromS);
  };
  const pause = () => { pb.pause(); play.textContent = 'Play'; status.textContent = 'Paused'; };
  play.addEventListener('click', () => {
    if (play.textContent === 'Replay') start(0);
    else if (pb.paused) { pb.resume(); play.textContent = 'Pause'; status.textContent = 'Playing'; }
    else pause();
  });
  slider.addEventListener('input', () => { dragging = true; });
  slider.addEventListener('change', () => { dragging = false; start(Number(slider.value)); });
  speed.addEventListener('change', () => pb && pb.setSpeed(Number(speed.value)));
  idle.addEventListener('change', () => { if (pb) pb.opts.idleLimitS = idle.value ? Number(idle.value) : 0; });
  start(0);

  // Thumbnails across the session; a click seeks there.
  const urls = [];
  (async () => {
    for (let i = 0; i < THUMBS && durationS > 0; i++) {
      const at = (durationS * (i + 0.5)) / THUMBS;
      const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/snapshot?width=160&at=' + at.toFixed(3));
      if (!r.ok) continue;
      const url = URL.createObjectURL(await r.blob());
      urls.push(url);
      thumbs.append(h('figure', { class: 'thumb', 'data-at': at.toFixed(3), onclick: () => start(at) },
        h('img', { src: url, alt: 'screen at ' + fmt(at * 1000) }), h('figcaption', {}, fmt(at * 1000))));
    }
  })().catch(() => {});

  return {
    dispose: () => {
      if (pb) pb.dispose();
      urls.forEach((u) => URL.revokeObjectURL(u));
    },
    // For tests and scripts: seek to a moment (keeping the pause), and pause.
    seek: (s) => start(s),
    pause,
  };
}

// A live VNC session: the gateway's snapshot of its screen now, refreshed every 2 s.
export function vncLive(el, { api, h, id, timers }) {
  const img = h('img', { id: 'vnc-live', alt: 'screen', class: 'vnc-live' });
  const at = h('span', { class: 'muted', id: 'vnc-time' });
  el.replaceChildren(h('p', { class: 'muted' }, 'Live (refreshed every 2 s). ', at), img);
  let url = null;
  let loading = false;
  const show = async () => {
    if (loading || document.hidden) return;
    loading = true;
    try {
      const r = await api('/api/v1/sessions/' + encodeURIComponent(id) + '/snapshot');
      if (!r.ok) return;
      const next = URL.createObjectURL(await r.blob());
      img.src = next;
      if (url) URL.revokeObjectURL(url);
      url = next;
      at.textContent = 'Screen at ' + (r.headers.get('x-trailgate-screen-time') || '?') + ' s.';
    } finally {
      loading = false;
    }
  };
  show();
  timers.push(setInterval(show, 2000));
}
