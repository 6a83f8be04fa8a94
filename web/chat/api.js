// natter's REST API (/v1, bearer token) and its live event stream.
//
// The token lives in sessionStorage (one tab, gone when it closes) and only
// ever travels in the Authorization header, never in a URL. The event
// stream is read with fetch() and a streaming body reader because
// EventSource cannot send that header.

const TOKEN_KEY = 'natter.token';
const DEVICE_KEY = 'natter.device';

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs, mutedUntilMs) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    // For MUTED: when the mute ends (ms since the epoch); 0: the whole group.
    this.mutedUntilMs = mutedUntilMs;
  }
}

export class Api {
  constructor() {
    this.token = sessionStorage.getItem(TOKEN_KEY);
  }

  setToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  async call(method, path, body) {
    const init = { method, headers: this.headers() };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: a proxy's page, say */ }
    if (!r.ok) {
      throw new ApiError(r.status, data?.code, data?.message, data?.retry_after_ms, data?.muted_until_ms);
    }
    return data;
  }

  register(username, password) {
    return this.call('POST', '/v1/register', { username, password });
  }

  async login(username, password) {
    // One device per tab, kept across reloads and logins in it: a login on
    // a device ends that device's previous session instead of piling up
    // sessions, and two tabs do not take each other's.
    let device_id = sessionStorage.getItem(DEVICE_KEY);
    if (!device_id) {
      device_id = `web-${crypto.randomUUID().slice(0, 8)}`;
      sessionStorage.setItem(DEVICE_KEY, device_id);
    }
    const r = await this.call('POST', '/v1/login', { username, password, device_id });
    this.setToken(r.token);
    return r;
  }

  async logout() {
    try {
      await this.call('POST', '/v1/logout');
    } finally {
      this.setToken(null);
    }
  }

  me() { return this.call('GET', '/v1/me'); }
  conversations() { return this.call('GET', '/v1/conversations?limit=100'); }

  history(id, beforeSeq, limit = 20) {
    const before = beforeSeq ? `&before_seq=${beforeSeq}` : '';
    return this.call('GET', `/v1/conversations/${id}/messages?limit=${limit}${before}`);
  }

  send(req) { return this.call('POST', '/v1/messages', req); }
  sync(cursors, after) {
    return this.call('POST', '/v1/sync', { cursors, after_conversation_id: after });
  }
  markRead(id, seq) { return this.call('POST', `/v1/conversations/${id}/read`, { seq }); }
  typing(id) { return this.call('POST', `/v1/conversations/${id}/typing`); }
  recall(id, seq) { return this.call('POST', `/v1/conversations/${id}/messages/${seq}/recall`); }

  users(prefix) { return this.call('GET', `/v1/users?prefix=${encodeURIComponent(prefix)}&limit=20`); }
  friends() { return this.call('GET', '/v1/friends?limit=200'); }
  friendRequests() { return this.call('GET', '/v1/friends/requests?limit=50'); }
  requestFriend(to_user_id) { return this.call('POST', '/v1/friends/requests', { to_user_id }); }
  answerFriend(id, accept) { return this.call('POST', `/v1/friends/requests/${id}`, { accept }); }

  // Groups and rooms (docs/HTTP.md, "Groups and rooms").
  createGroup(kind, name, member_ids, join_policy) {
    return this.call('POST', '/v1/groups', { kind, name, member_ids, join_policy });
  }
  group(id) { return this.call('GET', `/v1/groups/${id}`); }
  rooms(prefix, after = 0) {
    return this.call('GET', `/v1/rooms?prefix=${encodeURIComponent(prefix)}&after=${after}&limit=20`);
  }
  join(id, invite_code) { return this.call('POST', `/v1/groups/${id}/join`, invite_code ? { invite_code } : {}); }
  members(id, after = 0) { return this.call('GET', `/v1/groups/${id}/members?after=${after}&limit=200`); }
  // changes: {name?, notice?, join_policy?, muted_all?, new_invite_code?}
  updateGroup(id, changes) { return this.call('PATCH', `/v1/groups/${id}`, changes); }
  mute(id, userId, seconds) { return this.call('PUT', `/v1/groups/${id}/members/${userId}/mute`, { seconds }); }
  transfer(id, user_id) { return this.call('POST', `/v1/groups/${id}/owner`, { user_id }); }
  invite(id, user_ids) { return this.call('POST', `/v1/groups/${id}/members`, { user_ids }); }
  kick(id, userId) { return this.call('DELETE', `/v1/groups/${id}/members/${userId}`); }
  setRole(id, userId, role) { return this.call('PUT', `/v1/groups/${id}/members/${userId}/role`, { role }); }
  leave(id) { return this.call('POST', `/v1/groups/${id}/leave`); }
  dismiss(id) { return this.call('DELETE', `/v1/groups/${id}`); }
  joinRequests(id) { return this.call('GET', `/v1/groups/${id}/join-requests?limit=100`); }
  answerJoin(id, userId, accept) { return this.call('POST', `/v1/groups/${id}/join-requests/${userId}`, { accept }); }

  block(userId) { return this.call('PUT', `/v1/blocks/${userId}`); }
  unblock(userId) { return this.call('DELETE', `/v1/blocks/${userId}`); }
  setRemark(userId, remark) { return this.call('PUT', `/v1/friends/${userId}/remark`, { remark }); }

  // tus requests (upload.js): the bearer and Tus-Resumable headers added.
  tus(method, url, headers = {}, body = undefined, signal = undefined) {
    return fetch(url, { method, headers: this.headers({ 'tus-resumable': '1.0.0', ...headers }), body, signal });
  }

  async download(fileId) {
    const r = await fetch(`/v1/files/${encodeURIComponent(fileId)}`, { headers: this.headers() });
    if (!r.ok) throw await failure(r);
    return r.blob();
  }
}

export async function failure(r) {
  let data = null;
  try { data = await r.json(); } catch { /* not JSON */ }
  return new ApiError(r.status, data?.code, data?.message, data?.retry_after_ms, data?.muted_until_ms);
}

// The live event stream, reconnected with backoff and jitter until stop().
// onEvent(type, data) gets every event; onState(state, detail) is told
// 'connecting', 'online', 'offline' or 'ended' (a disconnect that needs a
// new login).
export class EventStream {
  constructor(api, onEvent, onState) {
    this.api = api;
    this.onEvent = onEvent;
    this.onState = onState;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.abort = null;
    this.onOffline = () => this.cut();
    this.onOnline = () => this.reconnectSoon(0);
  }

  start() {
    this.stopped = false;
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.timer);
    this.abort?.abort();
  }

  // The network went away: drop the stream now rather than wait for it to time out.
  cut() {
    this.abort?.abort();
    clearTimeout(this.timer);
    this.onState('offline');
  }

  reconnectSoon(delayMs) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.abort?.abort();
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  async connect() {
    if (this.stopped) return;
    if (!navigator.onLine) { this.onState('offline'); return; }
    const abort = new AbortController();
    this.abort = abort;
    this.onState('connecting');
    let retryAfter = null;
    let quiet = null;
    const watchdog = () => {
      clearTimeout(quiet);
      // Comments come every 15 s: a stream silent for 45 s is dead.
      quiet = setTimeout(() => abort.abort(), 45000);
    };
    try {
      const r = await fetch('/v1/events', {
        headers: this.api.headers({ accept: 'text/event-stream' }),
        signal: abort.signal,
        cache: 'no-store',
      });
      if (r.status === 401) { this.onState('ended', 'session ended'); this.stopped = true; return; }
      if (!r.ok) throw new Error(`events: HTTP ${r.status}`);
      watchdog();
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let ev = { type: 'message', data: '' };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watchdog();
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (line === '') {
            if (ev.data) {
              const data = JSON.parse(ev.data);
              if (ev.type === 'sync') { this.attempt = 0; this.onState('online'); }
              if (ev.type === 'disconnect') {
                if (['LOGGED_OUT', 'KICKED', 'REPLACED'].includes(data.reason)) {
                  this.stopped = true;
                  this.onState('ended', data.message || data.reason);
                } else {
                  retryAfter = data.reconnect_after_ms;
                }
              }
              this.onEvent(ev.type, data);
            }
            ev = { type: 'message', data: '' };
          } else if (line.startsWith(':')) {
            // a keep-alive comment
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') ev.type = val;
            else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
          }
        }
      }
    } catch (e) {
      if (this.abort !== abort) return; // replaced by a newer attempt
    } finally {
      clearTimeout(quiet);
    }
    if (this.stopped || this.abort !== abort) return;
    this.onState(navigator.onLine ? 'connecting' : 'offline');
    if (!navigator.onLine) return; // 'online' reconnects
    // Exponential backoff, at most 15 s, half of it random so that clients
    // cut together do not come back together.
    const base = Math.min(15000, 500 * 2 ** this.attempt++);
    const delay = (retryAfter ?? 0) + Math.round(base / 2 + Math.random() * base / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
