// What the client holds: conversations, and each one's messages once each
// in seq order, whichever way they came (history, sync, the live stream, a
// send's answer). No DOM here.

export class Store {
  constructor() {
    this.me = null; // {user_id, username}
    this.convs = new Map(); // id -> conversation summary
    this.threads = new Map(); // id -> thread
    this.pending = new Map(); // client_msg_id -> {cid, convId, toUserId, body, failed}
    this.names = new Map(); // user id -> username
    this.remarks = new Map(); // friend's user id -> this user's remark for them
  }

  thread(id) {
    let t = this.threads.get(id);
    if (!t) {
      // synced: every message up to it is held or fetchable as history;
      // seqs: what is held, ascending.
      t = { msgs: new Map(), seqs: [], synced: 0, hasOlder: null, peerRead: 0, readers: new Map(), loaded: false };
      this.threads.set(id, t);
    }
    return t;
  }

  // The conversation list from the server. A conversation seen for the
  // first time is synced up to its last seq: what came before is history,
  // fetched when it is opened.
  setConversations(list) {
    for (const c of list) {
      const known = this.convs.get(c.conversation_id);
      if (!this.threads.has(c.conversation_id)) this.thread(c.conversation_id).synced = c.last_seq;
      this.convs.set(c.conversation_id, { ...known, ...c });
      if (c.kind === 'DIRECT' && c.peer_user_id) this.names.set(c.peer_user_id, c.title);
    }
  }

  // Conversations, most recently active first.
  sortedConversations() {
    return [...this.convs.values()].sort(
      (a, b) => (b.last_activity_ms - a.last_activity_ms) || (b.conversation_id - a.conversation_id),
    );
  }

  directWith(userId) {
    for (const c of this.convs.values()) if (c.kind === 'DIRECT' && c.peer_user_id === userId) return c;
    return null;
  }

  // Adds one message. Returns null for a repeat; else {seq, cid, gap,
  // recalled}: cid when it confirms a pending send, gap when a message
  // before it is missing (sync), recalled: the seq a recall event
  // tombstoned.
  add(m) {
    const t = this.thread(m.conversation_id);
    const known = t.msgs.get(m.seq);
    if (known) {
      if (m.body.kind === 'RECALLED' && known.body.kind !== 'RECALLED') {
        t.msgs.set(m.seq, m);
        return { seq: m.seq, changed: true };
      }
      return null;
    }
    t.msgs.set(m.seq, m);
    t.seqs.splice(lowerBound(t.seqs, m.seq), 0, m.seq);
    let cid = null;
    if (m.sender_id === this.me?.user_id && this.pending.has(m.client_msg_id)) {
      cid = m.client_msg_id;
      this.pending.delete(cid);
    }
    while (t.msgs.has(t.synced + 1)) t.synced++;
    const out = { seq: m.seq, cid, gap: m.seq > t.synced, recalled: null };
    const ev = systemEvent(m);
    if (ev?.type === 'recalled') out.recalled = this.tombstone(m.conversation_id, ev.seq);
    const c = this.convs.get(m.conversation_id);
    if (c && m.seq > c.last_seq) {
      c.last_seq = m.seq;
      c.last_message = m;
      c.last_activity_ms = Math.max(c.last_activity_ms || 0, m.server_ts_ms);
    }
    return out;
  }

  // A recalled message: its body becomes the tombstone. Returns the seq
  // when it is held.
  tombstone(convId, seq) {
    const t = this.thread(convId);
    const m = t.msgs.get(seq);
    if (!m || m.body.kind === 'RECALLED') return null;
    t.msgs.set(seq, { ...m, body: { kind: 'RECALLED', content: '' } });
    return seq;
  }

  // Cursors for a sync: the seq each conversation is complete up to.
  cursors() {
    return [...this.threads.entries()].map(([conversation_id, t]) => ({ conversation_id, seq: t.synced }));
  }

  // After a whole sync pass: each conversation it named is complete up to
  // its last seq (what lies before joined_seq is not this user's).
  synced(states) {
    for (const s of states) {
      const t = this.thread(s.conversation_id);
      t.synced = Math.max(t.synced, s.last_seq);
    }
  }

  newestSeq(convId) {
    const t = this.threads.get(convId);
    return t && t.seqs.length ? t.seqs[t.seqs.length - 1] : 0;
  }

  // What this user calls a 1:1's peer: their remark with the username
  // ("Bobby (bob)"), else the username.
  personTitle(userId) {
    const name = this.nameOf(userId);
    const remark = this.remarks.get(userId);
    return remark ? `${remark} (${name})` : name;
  }

  // A conversation's title as shown: a 1:1 by what this user calls the peer.
  title(c) {
    return c.kind === 'DIRECT' && c.peer_user_id && this.remarks.has(c.peer_user_id)
      ? `${this.remarks.get(c.peer_user_id)} (${c.title})`
      : c.title;
  }

  nameOf(userId) {
    if (userId === this.me?.user_id) return this.me.username;
    return this.names.get(userId) ?? `user ${userId}`;
  }
}

// The first index whose value is not below x.
export function lowerBound(sorted, x) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// A SYSTEM message's event ({type, actor_id, ...}), or null.
export function systemEvent(m) {
  if (m.body.kind !== 'SYSTEM') return null;
  try { return JSON.parse(m.body.content); } catch { return null; }
}

// A FILE message's {file_id, name, size}, or null.
export function fileOf(m) {
  if (m.body.kind !== 'FILE') return null;
  try { return JSON.parse(m.body.content); } catch { return null; }
}
