// The DOM: what the user sees and what they do. Text always goes in as
// textContent, never as markup. Actions are handed to `on`, the app's
// handlers.

import { fileOf, systemEvent } from './store.js';

const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && k !== 'dataset') e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children.filter(Boolean));
  return e;
}

const EVENT_WORDS = {
  created: 'created the group',
  joined: 'joined',
  invited: 'added members',
  left: 'left',
  kicked: 'removed a member',
  role_changed: 'changed a role',
  owner_transferred: 'handed the group over',
  muted: 'muted a member',
  unmuted: 'unmuted a member',
  updated: 'updated the group',
  dismissed: 'dismissed the group',
};

export class Ui {
  constructor(on) {
    this.on = on;
    this.list = $('messages');
    this.typingTimer = null;
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      on.login($('login-user').value.trim(), $('login-pass').value);
    });
    $('register-form').addEventListener('submit', (e) => {
      e.preventDefault();
      on.register($('register-user').value.trim(), $('register-pass').value);
    });
    $('logout').addEventListener('click', () => on.logout());
    $('friend-form').addEventListener('submit', (e) => {
      e.preventDefault();
      on.requestFriend($('friend-name').value.trim());
    });
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = $('text').value;
      if (!text.trim()) return;
      $('text').value = '';
      on.sendText(text);
    });
    $('text').addEventListener('input', () => on.typing());
    $('file').addEventListener('change', () => {
      const f = $('file').files[0];
      if (f) on.sendFile(f);
      $('file').value = '';
    });
    $('upload-cancel').addEventListener('click', () => on.cancelUpload());
    $('older').addEventListener('click', () => on.loadOlder());
    this.list.addEventListener('scroll', () => {
      if (this.list.scrollTop < 40 && !$('older').hidden) on.loadOlder();
    });
  }

  showAuth(message = '') {
    $('auth').hidden = false;
    $('app').hidden = true;
    $('logout').hidden = true;
    $('me').textContent = '';
    $('auth-status').textContent = message;
    this.setConn('offline');
    $('conn').hidden = true;
  }

  authStatus(message) { $('auth-status').textContent = message; }

  showApp(me) {
    $('auth').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    $('conn').hidden = false;
    $('me').textContent = `Signed in as ${me.username}`;
    $('chat').hidden = true;
    $('empty').hidden = false;
    for (const id of ['login-pass', 'register-pass']) $(id).value = '';
  }

  setConn(state) {
    $('conn').dataset.state = state;
    $('conn').textContent = state;
  }

  // titleOf(c): what the user calls it (a friend's remark for a 1:1).
  renderConversations(convs, openId, titleOf) {
    const items = convs.map((c) => {
      const title = titleOf(c);
      const badge = [];
      if (c.mentioned) badge.push(el('span', { class: 'mentioned', text: '@', title: 'You were mentioned' }));
      if (c.unread) badge.push(el('span', { class: 'unread', text: String(c.unread) }));
      const label = `${title}${c.unread ? `, ${c.unread} unread` : ''}${c.mentioned ? ', mentioned' : ''}`;
      return el('li', {},
        el('button', {
          type: 'button',
          'aria-label': label,
          'aria-current': String(c.conversation_id === openId),
          'data-conv': c.conversation_id,
          onclick: () => this.on.openConversation(c.conversation_id),
        }, el('span', { class: 'title', text: title }), el('span', {}, ...badge)));
    });
    $('conv-list').replaceChildren(...items);
  }

  // friends: /v1/friends's answer; a remark is this user's own name for a friend.
  renderFriends({ friends, blocked = [] }, requests, myId) {
    $('friends').replaceChildren(...friends.map((f) => this.friendRow(f)));
    const others = blocked.filter((b) => !friends.some((f) => f.user_id === b.user_id));
    $('blocked').replaceChildren(...friends.filter((f) => f.blocked).concat(others).map((b) => el('li', {},
      el('span', { text: b.username }),
      el('button', { type: 'button', class: 'quiet', text: 'Unblock', 'aria-label': `Unblock ${b.username}`, onclick: () => this.on.unblock(b.user_id) }))));
    const rows = [];
    for (const r of requests.incoming.filter((r) => r.status === 'PENDING')) {
      rows.push(el('li', { 'data-request': r.id },
        el('span', { text: `${r.from_username} wants to be friends` }),
        el('button', { type: 'button', text: 'Accept', 'aria-label': `Accept ${r.from_username}`, onclick: () => this.on.answerFriend(r.id, true) }),
        el('button', { type: 'button', class: 'quiet', text: 'Decline', 'aria-label': `Decline ${r.from_username}`, onclick: () => this.on.answerFriend(r.id, false) })));
    }
    for (const r of requests.outgoing.filter((r) => r.status === 'PENDING' && r.from_user_id === myId)) {
      rows.push(el('li', {}, el('span', { text: `Waiting for ${r.to_username}` })));
    }
    $('requests').replaceChildren(...rows);
    $('group-members').replaceChildren(el('legend', { text: 'Members' }), ...friends.map((f) => {
      const id = `member-${f.user_id}`;
      return el('div', {},
        el('input', { type: 'checkbox', id, value: String(f.user_id) }),
        el('label', { for: id, text: f.username }));
    }));
  }

  friendRow(f) {
    const shown = f.remark ? `${f.remark} (${f.username})` : f.username;
    const li = el('li', { 'data-friend': f.user_id },
      el('span', { class: 'friend-name', text: `${shown}${f.online ? ' (online)' : ''}` }),
      el('button', {
        type: 'button', class: 'quiet', text: 'Message', 'aria-label': `Message ${f.username}`,
        onclick: () => this.on.openDirect(f.user_id),
      }),
      el('button', {
        type: 'button', class: 'quiet', text: 'Remark', 'aria-label': `Set a remark for ${f.username}`,
        onclick: () => this.editRemark(li, f),
      }));
    if (!f.blocked) {
      li.append(el('button', {
        type: 'button', class: 'quiet', text: 'Block', 'aria-label': `Block ${f.username}`,
        onclick: () => this.on.block(f.user_id),
      }));
    }
    return li;
  }

  // The friend's row becomes a small form for the remark (empty clears it).
  editRemark(li, f) {
    const input = el('input', { value: f.remark ?? '', autocomplete: 'off', 'aria-label': `Remark for ${f.username}` });
    const form = el('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); this.on.setRemark(f.user_id, input.value.trim()); } },
      input,
      el('button', { type: 'submit', text: 'Save', 'aria-label': `Save the remark for ${f.username}` }),
      el('button', { type: 'button', class: 'quiet', text: 'Cancel', onclick: () => li.replaceWith(this.friendRow(f)) }));
    li.replaceChildren(form);
    input.focus();
  }

  friendStatus(message) { $('friend-status').textContent = message; }

  openChat(title) {
    $('empty').hidden = true;
    $('chat').hidden = false;
    $('chat-title').textContent = title;
    $('typing').textContent = '';
    this.list.replaceChildren();
    this.setOlder(false);
    $('text').focus();
  }

  setTitle(title) { $('chat-title').textContent = title; }

  closeChat() {
    $('chat').hidden = true;
    $('empty').hidden = false;
  }

  setOlder(more) { $('older').hidden = !more; }

  // Runs `change` (which adds older messages) keeping the view where it was.
  keepScroll(change) {
    const fromBottom = this.list.scrollHeight - this.list.scrollTop;
    change();
    this.list.scrollTop = this.list.scrollHeight - fromBottom;
  }

  // Runs `change` and follows the newest message if the view was at it.
  followBottom(change) {
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 60;
    change();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  toBottom() { this.list.scrollTop = this.list.scrollHeight; }

  // Whether the list is too short to scroll, so scrolling cannot ask for more.
  short() { return this.list.scrollHeight <= this.list.clientHeight; }

  // One message into the open chat, at its place by seq (pending sends stay last).
  insertMessage(m, view) {
    const node = this.messageNode(m, view);
    if (!node) return;
    this.place(node, m.seq);
  }

  place(node, seq) {
    let after = null;
    for (let c = this.list.lastElementChild; c; c = c.previousElementSibling) {
      if (c.dataset.seq && Number(c.dataset.seq) < seq) { after = c; break; }
    }
    if (after) after.after(node);
    else this.list.prepend(node);
  }

  messageNode(m, view) {
    const sys = systemEvent(m);
    if (m.body.kind === 'SYSTEM') {
      if (!sys || sys.type === 'recalled') return null;
      return el('li', { class: 'notice', 'data-seq': m.seq, text: noticeText(sys, view.nameOf) });
    }
    const own = m.sender_id === view.myId;
    const li = el('li', { class: own ? 'msg own' : 'msg', 'data-seq': m.seq, 'data-sender': m.sender_id });
    if (m.client_msg_id) li.dataset.cid = m.client_msg_id;
    this.fillMessage(li, m, view);
    return li;
  }

  fillMessage(li, m, view) {
    const own = m.sender_id === view.myId;
    const parts = [];
    if (view.group && !own) parts.push(el('span', { class: 'who', text: view.nameOf(m.sender_id) }));
    if (m.body.kind === 'RECALLED') {
      parts.push(el('span', { class: 'body recalled', text: 'message recalled' }));
    } else if (m.body.kind === 'FILE') {
      parts.push(this.fileNode(fileOf(m)));
    } else {
      parts.push(el('span', { class: 'body', text: m.body.content }));
    }
    if (own && m.seq) {
      let status = 'sent';
      if (view.direct) {
        if (m.seq <= view.peerRead) status = 'read';
      } else {
        let n = 0;
        for (const [who, seq] of view.readers) if (who !== view.myId && seq >= m.seq) n++;
        if (n) status = `read by ${n}`;
      }
      parts.push(el('span', { class: 'status', text: status }));
      if (m.body.kind !== 'RECALLED') {
        parts.push(el('button', {
          type: 'button', class: 'quiet recall', text: 'Recall', 'aria-label': 'Recall this message',
          onclick: () => this.on.recall(m.conversation_id, m.seq),
        }));
      }
    }
    li.replaceChildren(...parts);
  }

  // A file: its name and size, fetched only when asked for, except an image
  // small enough to preview as it comes.
  fileNode(info) {
    const box = el('span', { class: 'body file' });
    if (!info) { box.textContent = 'a file'; return box; }
    const size = formatSize(info.size);
    box.append(el('span', { class: 'file-name', text: info.name }), el('span', { class: 'file-size', text: ` (${size})` }));
    const get = el('button', {
      type: 'button', class: 'quiet file-get', text: 'Download', 'aria-label': `Download ${info.name}, ${size}`,
      onclick: () => this.on.fileBlob(info).then((blob) => saveBlob(blob, info.name), () => {
        get.textContent = 'not available';
      }),
    });
    box.append(get);
    if (IMAGE.test(info.name) && info.size <= PREVIEW_MAX) {
      this.on.fileBlob(info).then((blob) => {
        if (blob.type.startsWith('image/')) box.append(el('img', { src: URL.createObjectURL(blob), alt: info.name }));
      }, () => {});
    }
    return box;
  }

  // Re-renders the messages of the open chat whose state changed (recalled, read).
  refresh(seqs, msgOf, view) {
    for (const seq of seqs) {
      const li = this.list.querySelector(`li.msg[data-seq="${seq}"]`);
      const m = msgOf(seq);
      if (li && m) this.fillMessage(li, m, view);
    }
  }

  addPending(p, view) {
    const li = el('li', { class: 'msg own pending', 'data-cid': p.cid });
    li.append(el('span', { class: 'body', text: p.body.content }), el('span', { class: 'status', text: 'sending' }));
    this.list.append(li);
    this.toBottom();
    return view;
  }

  // A pending send was stored: it becomes the message, at its seq's place.
  confirmPending(cid, m, view) {
    const li = this.list.querySelector(`li.pending[data-cid="${CSS.escape(cid)}"]`);
    if (!li) { this.insertMessage(m, view); return; }
    li.remove();
    li.classList.remove('pending');
    li.dataset.seq = m.seq;
    this.fillMessage(li, m, view);
    this.place(li, m.seq);
  }

  failPending(cid, message) {
    const li = this.list.querySelector(`li.pending[data-cid="${CSS.escape(cid)}"]`);
    if (!li) return;
    li.querySelector('.status').textContent = `not sent: ${message}`;
    li.append(el('button', { type: 'button', class: 'quiet', text: 'Retry', onclick: () => this.on.retry(cid) }));
  }

  retrying(cid) {
    const li = this.list.querySelector(`li.pending[data-cid="${CSS.escape(cid)}"]`);
    li?.querySelector('button')?.remove();
    if (li) li.querySelector('.status').textContent = 'sending';
  }

  showTyping(name) {
    $('typing').textContent = `${name} is typing…`;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => { $('typing').textContent = ''; }, 4000);
  }

  clearTyping() { $('typing').textContent = ''; }

  progress(fraction) {
    const p = $('upload-progress');
    clearTimeout(this.progressTimer);
    p.hidden = false;
    p.value = Math.round(fraction * 100);
    // A finished bar stays a moment, then goes.
    if (fraction >= 1) this.progressTimer = setTimeout(() => { p.hidden = true; }, 1500);
  }

  // An upload runs (Cancel shows) or ended; a cancelled one's bar goes at once.
  uploading(on, cancelled = false) {
    $('upload-cancel').hidden = !on;
    if (cancelled) {
      clearTimeout(this.progressTimer);
      $('upload-progress').hidden = true;
    }
  }
}

// A group change in words, naming whom it was done to where that is not the actor.
function noticeText(sys, nameOf) {
  const actor = nameOf(sys.actor_id);
  if (sys.type === 'updated') return `${actor} ${updateWords(sys).join('; ') || EVENT_WORDS.updated}`;
  const users = (sys.user_ids ?? []).filter((u) => u !== sys.actor_id).map(nameOf).join(', ');
  if (!users) return `${actor} ${EVENT_WORDS[sys.type] ?? sys.type}`;
  switch (sys.type) {
    case 'joined': return `${actor} let ${users} join`;
    case 'invited': return `${actor} added ${users}`;
    case 'kicked': return `${actor} removed ${users}`;
    case 'role_changed': return `${actor} made ${users} ${sys.role === 'admin' ? 'an admin' : 'a member'}`;
    case 'owner_transferred': return `${actor} handed the group to ${users}`;
    case 'muted': return `${actor} muted ${users}`;
    case 'unmuted': return `${actor} unmuted ${users}`;
    default: return `${actor} ${EVENT_WORDS[sys.type] ?? sys.type}`;
  }
}

// A moment to come, as the user's locale writes it: the time today, else the day too.
export function formatWhen(ms) {
  const d = new Date(ms);
  const today = d.toDateString() === new Date().toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

// What an 'updated' event changed, in words.
function updateWords(sys) {
  const out = [];
  if ('name' in sys) out.push(`renamed the group ${sys.name}`);
  if ('notice' in sys) out.push(sys.notice ? `set the notice: ${sys.notice}` : 'cleared the notice');
  if ('join_policy' in sys) out.push(String(sys.join_policy).toUpperCase() === 'APPROVAL' ? 'now approves who joins' : 'lets anyone with the invite join');
  if ('muted_all' in sys) out.push(sys.muted_all ? 'muted everyone but the owner and admins' : 'let everyone talk again');
  if (sys.invite_code_reset) out.push('made a new invite code');
  return out;
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// Images at most this big are fetched as their message comes, to preview.
const PREVIEW_MAX = 2 * 1024 * 1024;
const IMAGE = /\.(png|jpe?g|gif|webp|avif)$/i;

// Hands a fetched file to the browser to save under `name`.
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
