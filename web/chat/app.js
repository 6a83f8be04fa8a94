// The web client's flow: the session, what each live event does, sync
// after every (re)connect, and the user's actions. State is in store.js,
// the DOM in ui.js, the server in api.js.

import { Api, ApiError, EventStream } from './api.js';
import { Store, systemEvent } from './store.js';
import { Ui, formatWhen } from './ui.js';
import { Groups } from './groups.js';
import { Cancelled, upload } from './upload.js';

const api = new Api();
let store = null;
let stream = null;
// The chat on screen: {convId, peerId}; convId is null for a 1:1 not yet started.
let open = null;
let lastTyping = 0;
// The upload running, to cancel it: an AbortController.
let uploading = null;

const ui = new Ui({
  login, register, logout, openConversation, openDirect, sendText, sendFile, retry,
  requestFriend, answerFriend, loadOlder, recall, typing,
  fileBlob, block, unblock, setRemark, cancelUpload,
});
const groups = new Groups(api, {
  store: () => store,
  openId: () => open?.convId ?? null,
  refreshConversations: () => refreshConversations(),
  openConversation: (id) => openConversation(id),
  forget: (id) => forget(id),
  explain: (e) => explain(e),
});

// A file of a message. The server shares a file before it stores the
// message naming it, so whoever sees the message can download it at once.
async function fileBlob(info) {
  return api.download(info.file_id);
}

// What ui.js needs to draw messages of the open chat.
function view() {
  const c = open?.convId ? store.convs.get(open.convId) : null;
  return {
    myId: store.me.user_id,
    group: c ? c.kind !== 'DIRECT' : false,
    direct: !c || c.kind === 'DIRECT',
    peerRead: open?.convId ? store.thread(open.convId).peerRead : 0,
    readers: open?.convId ? store.thread(open.convId).readers : new Map(),
    nameOf: (id) => store.nameOf(id),
  };
}

function explain(e) {
  if (!(e instanceof ApiError)) return 'the server cannot be reached';
  // The server says until when in ms since the epoch; people read a time.
  if (e.code === 'MUTED' && e.mutedUntilMs > 0) {
    return `you are muted in this group until ${formatWhen(e.mutedUntilMs)}`;
  }
  return e.message;
}

// Runs `f`, again after the server's retry_after_ms while it answers that
// it is busy (429, 503), a few times.
async function patiently(f) {
  for (let tries = 1; ; tries++) {
    try {
      return await f();
    } catch (e) {
      const busy = e instanceof ApiError && (e.status === 429 || e.status === 503);
      if (!busy || tries >= 4) throw e;
      ui.authStatus(`The server is busy; trying again (${e.message})`);
      await new Promise((r) => setTimeout(r, e.retryAfterMs ?? 1000));
    }
  }
}

async function login(username, password) {
  try {
    await patiently(() => api.login(username, password));
    await start();
  } catch (e) {
    ui.authStatus(`Could not log in: ${explain(e)}`);
  }
}

async function register(username, password) {
  try {
    await patiently(() => api.register(username, password));
  } catch (e) {
    ui.authStatus(`Could not register: ${explain(e)}`);
    return;
  }
  await login(username, password);
}

async function logout() {
  stream?.stop();
  try { await api.logout(); } catch { /* the session ends here either way */ }
  end('You have logged out.');
}

function end(message) {
  stream?.stop();
  stream = null;
  store = null;
  open = null;
  api.setToken(null);
  ui.showAuth(message);
}

async function start() {
  const me = await api.me();
  store = new Store();
  store.me = { user_id: me.user_id, username: me.username };
  ui.showApp(me);
  await Promise.all([refreshConversations(), refreshFriends()]);
  stream = new EventStream(api, onEvent, (state, detail) => {
    ui.setConn(state);
    if (state === 'ended') end(`Signed out: ${detail}`);
  });
  stream.start();
}

async function refreshConversations() {
  const r = await api.conversations();
  store.setConversations(r.conversations);
  if (open?.convId) {
    const c = store.convs.get(open.convId);
    if (c) { c.unread = 0; c.mentioned = false; }
  }
  drawList();
}

function drawList() {
  ui.renderConversations(store.sortedConversations(), open?.convId ?? null, (c) => store.title(c));
}

// Friends, and with them the remarks that title their 1:1s.
async function refreshFriends() {
  const [f, r] = await Promise.all([api.friends(), api.friendRequests()]);
  if (!store) return;
  store.remarks.clear();
  for (const x of f.friends) {
    store.names.set(x.user_id, x.username);
    if (x.remark) store.remarks.set(x.user_id, x.remark);
  }
  ui.renderFriends(f, r, store.me.user_id);
  drawList();
  const c = open?.convId ? store.convs.get(open.convId) : null;
  if (open && !open.convId) ui.setTitle(store.personTitle(open.peerId));
  else if (c?.kind === 'DIRECT') ui.setTitle(store.title(c));
}

function onEvent(type, data) {
  if (!store) return;
  switch (type) {
    case 'sync': syncSoon(); break;
    case 'message': onMessage(data); break;
    case 'read': onRead(data); break;
    case 'typing':
      if (data.conversation_id === open?.convId && data.user_id !== store.me.user_id) {
        ui.showTyping(store.nameOf(data.user_id));
      }
      break;
    case 'join_request': groups.joinRequest(data); break;
    case 'presence':
    case 'friend_request':
      refreshFriends().catch(() => {});
      break;
    default:
      break;
  }
}

// One message from anywhere: held once, drawn at its place if its chat is open.
function onMessage(m) {
  const fresh = !store.convs.has(m.conversation_id);
  const r = store.add(m);
  if (!r) return;
  const mine = m.sender_id === store.me.user_id;
  if (open?.convId === m.conversation_id) {
    const v = view();
    ui.followBottom(() => {
      if (r.cid) ui.confirmPending(r.cid, m, v);
      else ui.insertMessage(m, v);
      if (r.recalled) ui.refresh([r.recalled], (s) => store.thread(m.conversation_id).msgs.get(s), v);
    });
    if (!mine) ui.clearTyping();
    markReadSoon();
  } else if (!mine && !fresh && m.body.kind !== 'SYSTEM') {
    const c = store.convs.get(m.conversation_id);
    c.unread = (c.unread || 0) + 1;
    if (m.mention_all || m.mention_user_ids?.includes(store.me.user_id)) c.mentioned = true;
  }
  if (m.body.kind === 'SYSTEM') groups.changed(m.conversation_id, systemEvent(m));
  if (r.gap) syncSoon();
  if (fresh) refreshConversations().catch(() => {});
  else drawList();
}

function onRead(e) {
  if (e.user_id === store.me.user_id) {
    const c = store.convs.get(e.conversation_id);
    if (c && e.seq >= c.last_seq) { c.unread = 0; c.mentioned = false; drawList(); }
    return;
  }
  // A 1:1 peer's read cursor, or (in a small group) each member's.
  const t = store.thread(e.conversation_id);
  if (e.seq <= (t.readers.get(e.user_id) ?? 0)) return;
  t.readers.set(e.user_id, e.seq);
  t.peerRead = Math.max(t.peerRead, e.seq);
  if (open?.convId === e.conversation_id) {
    const own = t.seqs.filter((s) => t.msgs.get(s).sender_id === store.me.user_id);
    ui.refresh(own, (s) => t.msgs.get(s), view());
  }
}

// Sync: every message after each cursor, page by page, once per (re)connect
// and whenever a gap shows. One pass at a time; a request during a pass
// makes one more pass.
let syncing = null;
let syncAgain = false;
function syncSoon() {
  if (syncing) { syncAgain = true; return; }
  syncing = syncAll().finally(() => {
    syncing = null;
    if (syncAgain) { syncAgain = false; syncSoon(); }
  });
}

async function syncAll() {
  const states = [];
  let after = 0;
  try {
    for (let page = 0; page < 100; page++) {
      const r = await api.sync(store.cursors(), after);
      for (const m of r.messages) onMessage(m);
      states.push(...r.conversations);
      if (!r.has_more) break;
      after = r.next_after_conversation_id;
    }
    if (!store) return;
    store.synced(states);
    await refreshConversations();
  } catch {
    // The stream's reconnect syncs again.
  }
}

let readTimer = null;
function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 200);
}

async function markRead() {
  if (!open?.convId || document.visibilityState !== 'visible') return;
  const c = store.convs.get(open.convId);
  const seq = store.newestSeq(open.convId);
  if (!c) return;
  c.unread = 0;
  c.mentioned = false;
  drawList();
  if (seq > (c.read_seq || 0)) {
    c.read_seq = seq;
    await api.markRead(open.convId, seq).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markReadSoon);

// A conversation this user is no longer in: out of the list, and closed.
function forget(id) {
  store.convs.delete(id);
  if (open?.convId === id) {
    open = null;
    ui.closeChat();
  }
  drawList();
}

async function openConversation(id) {
  const c = store.convs.get(id);
  if (!c) return;
  open = { convId: id, peerId: c.peer_user_id ?? null };
  // Shown now; the server hears it once the messages are (markRead).
  c.unread = 0;
  c.mentioned = false;
  ui.openChat(store.title(c));
  groups.opened(c);
  drawList();
  if (c.kind !== 'DIRECT') {
    api.members(id).then((r) => {
      for (const m of r.members) store.names.set(m.user_id, m.username);
    }).catch(() => {});
  }
  const t = store.thread(id);
  const v = view();
  for (const seq of t.seqs) ui.insertMessage(t.msgs.get(seq), v);
  for (const p of store.pending.values()) if (p.convId === id) ui.addPending(p, v);
  if (!t.loaded) {
    try {
      const h = await api.history(id);
      t.loaded = true;
      t.hasOlder = h.has_more;
      if (open?.convId !== id) return;
      for (const m of h.messages) onMessage(m);
    } catch { /* the list stays as it is; scrolling tries again */ }
  }
  ui.setOlder(Boolean(t.hasOlder));
  ui.toBottom();
  if (ui.short()) loadOlder();
  markReadSoon();
}

function openDirect(userId) {
  const c = store.directWith(userId);
  if (c) { openConversation(c.conversation_id); return; }
  open = { convId: null, peerId: userId };
  ui.openChat(store.personTitle(userId));
  groups.opened(null);
  drawList();
}

let loadingOlder = false;
async function loadOlder() {
  if (!open?.convId || loadingOlder) return;
  const id = open.convId;
  const t = store.thread(id);
  if (!t.hasOlder) return;
  loadingOlder = true;
  try {
    const h = await api.history(id, t.seqs[0]);
    if (open?.convId !== id) return;
    t.hasOlder = h.has_more;
    const v = view();
    ui.keepScroll(() => {
      for (const m of h.messages) if (store.add(m)) ui.insertMessage(m, v);
    });
    ui.setOlder(t.hasOlder);
  } catch { /* try again on the next scroll */ } finally {
    loadingOlder = false;
  }
  if (ui.short() && t.hasOlder && open?.convId === id) loadOlder();
}

function mentionsIn(text) {
  const ids = [];
  for (const [, name] of text.matchAll(/@([\w.-]+)/g)) {
    for (const [id, n] of store.names) if (n === name.toLowerCase() && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

function sendText(text) {
  const group = open?.convId && store.convs.get(open.convId)?.kind !== 'DIRECT';
  send({ kind: 'TEXT', content: text }, group ? mentionsIn(text) : []);
}

function send(body, mentions = []) {
  if (!open) return;
  const p = {
    cid: crypto.randomUUID(),
    convId: open.convId,
    toUserId: open.convId ? null : open.peerId,
    body,
    mentions,
    tries: 0,
  };
  store.pending.set(p.cid, p);
  ui.addPending(p, view());
  deliver(p);
}

// Sends until stored; the same client_msg_id each time, so a repeat after a
// lost answer is answered as a duplicate, never stored twice.
async function deliver(p) {
  const req = { client_msg_id: p.cid, body: p.body };
  if (p.convId) req.conversation_id = p.convId;
  else req.to_user_id = p.toUserId;
  if (p.mentions.length) req.mention_user_ids = p.mentions;
  try {
    const r = await api.send(req);
    if (!store) return;
    if (!p.convId && open && !open.convId && open.peerId === p.toUserId) open.convId = r.conversation_id;
    p.convId = r.conversation_id;
    onMessage({
      conversation_id: r.conversation_id, seq: r.seq, msg_id: r.msg_id, sender_id: store.me.user_id,
      client_msg_id: p.cid, server_ts_ms: r.server_ts_ms, body: p.body,
      mention_user_ids: p.mentions, mention_all: false,
    });
  } catch (e) {
    const passing = !(e instanceof ApiError) || e.status === 429 || e.status >= 500;
    if (passing && p.tries++ < 5) {
      setTimeout(() => deliver(p), e.retryAfterMs ?? 1000 * p.tries);
    } else {
      ui.failPending(p.cid, explain(e));
    }
  }
}

function retry(cid) {
  const p = store.pending.get(cid);
  if (!p) return;
  p.tries = 0;
  ui.retrying(cid);
  deliver(p);
}

function typing() {
  const now = Date.now();
  if (!open?.convId || now - lastTyping < 3000) return;
  lastTyping = now;
  api.typing(open.convId).catch(() => {});
}

async function recall(convId, seq) {
  try {
    await api.recall(convId, seq);
    const s = store.tombstone(convId, seq);
    if (s && open?.convId === convId) ui.refresh([s], (x) => store.thread(convId).msgs.get(x), view());
  } catch (e) {
    ui.friendStatus(`Could not recall: ${explain(e)}`);
  }
}

async function requestFriend(name) {
  try {
    const r = await api.users(name);
    const u = r.users.find((x) => x.username === name.toLowerCase());
    if (!u) { ui.friendStatus(`No user named ${name}`); return; }
    const q = await api.requestFriend(u.user_id);
    ui.friendStatus(q.status === 'ACCEPTED' ? `You and ${u.username} are friends` : `Request sent to ${u.username}`);
    await refreshFriends();
  } catch (e) {
    ui.friendStatus(`Could not send the request: ${explain(e)}`);
  }
}

async function answerFriend(id, accept) {
  try {
    await api.answerFriend(id, accept);
    await refreshFriends();
  } catch (e) {
    ui.friendStatus(`Could not answer: ${explain(e)}`);
  }
}

// Blocks and remarks: the friends list shows the result.
async function friendAction(what, f) {
  try {
    await f();
    ui.friendStatus('');
  } catch (e) {
    ui.friendStatus(`Could not ${what}: ${explain(e)}`);
  }
  await refreshFriends().catch(() => {});
}

function block(userId) { return friendAction(`block ${store.nameOf(userId)}`, () => api.block(userId)); }
function unblock(userId) { return friendAction(`unblock ${store.nameOf(userId)}`, () => api.unblock(userId)); }
function setRemark(userId, remark) {
  return friendAction('set the remark', () => api.setRemark(userId, remark));
}

async function sendFile(file) {
  if (!open) return;
  const abort = new AbortController();
  uploading = abort;
  ui.uploading(true);
  try {
    ui.progress(0);
    const onProgress = (sent, total) => ui.progress(total ? sent / total : 1);
    const { fileId: id, from } = await upload(api, store.me.user_id, file, onProgress, abort.signal);
    if (from) ui.friendStatus(`Resumed ${file.name} from ${Math.round((100 * from) / file.size)}%`);
    send({ kind: 'FILE', content: JSON.stringify({ file_id: id, name: file.name, size: file.size }) });
  } catch (e) {
    if (e instanceof Cancelled) ui.friendStatus(`The upload of ${file.name} is cancelled`);
    else ui.friendStatus(`Could not upload ${file.name}: ${explain(e)}`);
  } finally {
    if (uploading === abort) {
      uploading = null;
      ui.uploading(false, abort.signal.aborted);
    }
  }
}

function cancelUpload() { uploading?.abort(); }

// A token from earlier in this tab resumes the session.
if (api.token) {
  start().catch((e) => {
    api.setToken(null);
    ui.showAuth(e instanceof ApiError && e.status === 401 ? 'Your session has ended; log in again.' : '');
  });
} else {
  ui.showAuth();
}
