// Groups and rooms beyond their messages: creating them, finding public
// rooms and joining one, joining a group by its invite, and the members
// panel of the open group (roles, invites, removals, join requests). The
// flow and its DOM together, as it touches little else; text goes in as
// textContent only.

import { ApiError } from './api.js';
import { el } from './ui.js';

const $ = (id) => document.getElementById(id);

// Who may do what is the server's rule; these only decide which buttons
// are worth showing.
const RANK = { MEMBER: 0, ADMIN: 1, OWNER: 2 };

export class Groups {
  // app: {store(), openId(), refreshConversations(), openConversation(id), forget(id), explain(e)}
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.shown = null; // the group whose panel is open: {id, kind, myRole}
    $('group-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const ids = [...$('group-members').querySelectorAll('input:checked')].map((i) => Number(i.value));
      this.create($('group-kind').value, $('group-name').value.trim(), ids, $('group-policy').value);
    });
    $('room-search').addEventListener('submit', (e) => {
      e.preventDefault();
      this.searchRooms($('room-prefix').value.trim());
    });
    $('invite-join').addEventListener('submit', (e) => {
      e.preventDefault();
      this.joinByInvite($('invite-code').value.trim());
    });
    $('members-toggle').addEventListener('click', () => {
      if (this.shown) this.closePanel();
      else this.openPanel();
    });
    $('invite-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.invite($('invite-name').value.trim());
    });
    $('leave-group').addEventListener('click', () => this.end('leave', (id) => this.api.leave(id)));
    $('dismiss-group').addEventListener('click', () => this.end('dismiss', (id) => this.api.dismiss(id)));
  }

  // Leaves or dismisses the shown group; it leaves the conversation list.
  async end(what, f) {
    const s = this.shown;
    if (!s) return;
    if (what === 'dismiss' && !window.confirm(`Dismiss ${s.name} for everyone? There is no undo.`)) return;
    // Closed first: the group's last notice may come before the answer,
    // and must not draw a panel of a group this user is no longer in.
    this.closePanel();
    try {
      await f(s.id);
    } catch (e) {
      this.failed(`${what} ${s.name}`, e);
      return;
    }
    this.app.forget(s.id);
    this.status(what === 'leave' ? `You left ${s.name}` : `${s.name} is dismissed`);
  }

  status(message) { $('group-status').textContent = message; }

  failed(what, e) { this.status(`Could not ${what}: ${this.app.explain(e)}`); }

  async create(kind, name, ids, policy) {
    try {
      const g = await this.api.createGroup(kind, name, ids, kind === 'GROUP' ? policy : undefined);
      $('group-form').reset();
      await this.app.refreshConversations();
      await this.app.openConversation(g.conversation_id);
    } catch (e) {
      this.failed(`create ${name}`, e);
    }
  }

  async searchRooms(prefix) {
    try {
      const r = await this.api.rooms(prefix);
      const mine = this.app.store().convs;
      $('rooms').replaceChildren(...r.groups.map((g) => el('li', {},
        el('span', { text: `${g.name} (${g.member_count} ${g.member_count === 1 ? 'member' : 'members'})` }),
        mine.has(g.conversation_id)
          ? el('button', { type: 'button', class: 'quiet', text: 'Open', 'aria-label': `Open ${g.name}`, onclick: () => this.app.openConversation(g.conversation_id) })
          : el('button', { type: 'button', text: 'Join', 'aria-label': `Join ${g.name}`, onclick: () => this.join(g.conversation_id, g.name) }))));
      this.status(r.groups.length ? '' : `No rooms start with "${prefix}"`);
    } catch (e) {
      this.failed('search rooms', e);
    }
  }

  async join(id, name, code) {
    try {
      const r = await this.api.join(id, code);
      if (!r.joined) { this.status(`Asked to join ${name}; waiting for approval`); return; }
      this.status(`You joined ${name}`);
      await this.app.refreshConversations();
      if ($('rooms').childElementCount) this.searchRooms($('room-prefix').value.trim());
      await this.app.openConversation(id);
    } catch (e) {
      this.failed(`join ${name}`, e);
    }
  }

  // An invite is "<group id>/<code>", as the members panel shows it.
  joinByInvite(text) {
    const m = /^(\d+)\/(\S+)$/.exec(text);
    if (!m) { this.status('An invite looks like 12/abcdef: the group id, a slash, the code'); return; }
    $('invite-join').reset();
    this.join(Number(m[1]), `group ${m[1]}`, m[2]);
  }

  // A conversation was opened: the members button is for groups and rooms.
  opened(conv) {
    this.closePanel();
    $('members-toggle').hidden = !conv || conv.kind === 'DIRECT';
  }

  closePanel() {
    this.shown = null;
    $('members-panel').hidden = true;
    $('members-toggle').setAttribute('aria-expanded', 'false');
  }

  async openPanel() {
    const id = this.app.openId();
    if (!id) return;
    $('members-panel').hidden = false;
    $('members-toggle').setAttribute('aria-expanded', 'true');
    this.shown = { id, kind: null, myRole: 'MEMBER' };
    await this.refresh(id);
  }

  // Something changed in group `id` (a SYSTEM message, a request): the panel follows.
  changed(id) {
    if (this.shown?.id === id) this.refresh(id).catch(() => {});
  }

  async refresh(id) {
    try {
      const [g, m] = await Promise.all([this.api.group(id), this.api.members(id)]);
      if (this.shown?.id !== id) return;
      this.shown = { id, kind: g.kind, myRole: g.my_role ?? 'MEMBER', name: g.name };
      const store = this.app.store();
      for (const x of m.members) store.names.set(x.user_id, x.username);
      const admin = RANK[this.shown.myRole] >= RANK.ADMIN;
      $('invite-info').textContent = g.kind === 'GROUP' && admin && g.invite_code
        ? `Invite: ${g.conversation_id}/${g.invite_code} (${g.join_policy === 'APPROVAL' ? 'you approve who joins' : 'anyone with it joins'})`
        : '';
      this.drawMembers(m.members, store.me.user_id);
      $('leave-group').hidden = this.shown.myRole === 'OWNER';
      $('dismiss-group').hidden = this.shown.myRole !== 'OWNER';
      $('invite-form').hidden = !admin && g.join_policy === 'APPROVAL';
      if (admin && g.kind === 'GROUP') {
        const r = await this.api.joinRequests(id);
        this.drawRequests(r.requests);
      } else {
        this.drawRequests(null);
      }
    } catch (e) {
      if (this.shown?.id === id) this.failed('load the members', e);
    }
  }

  drawMembers(members, myId) {
    const mine = RANK[this.shown.myRole];
    $('members').replaceChildren(...members.map((x) => {
      const li = el('li', { 'data-member': x.user_id },
        el('span', { text: `${x.username}${x.user_id === myId ? ' (you)' : ''}` }),
        el('span', { class: 'role', text: x.role.toLowerCase() }));
      if (x.user_id !== myId && RANK[x.role] < mine) {
        if (this.shown.myRole === 'OWNER') {
          const to = x.role === 'ADMIN' ? 'MEMBER' : 'ADMIN';
          li.append(el('button', {
            type: 'button', class: 'quiet',
            text: to === 'ADMIN' ? 'Make admin' : 'Make member',
            'aria-label': `${to === 'ADMIN' ? 'Make admin' : 'Make member'}: ${x.username}`,
            onclick: () => this.act(`change ${x.username}'s role`, () => this.api.setRole(this.shown.id, x.user_id, to)),
          }));
        }
        li.append(el('button', {
          type: 'button', class: 'quiet', text: 'Remove', 'aria-label': `Remove ${x.username}`,
          onclick: () => this.act(`remove ${x.username}`, () => this.api.kick(this.shown.id, x.user_id)),
        }));
      }
      return li;
    }));
  }

  drawRequests(requests) {
    $('join-requests-box').hidden = requests === null;
    $('join-requests').replaceChildren(...(requests ?? []).map((r) => el('li', { 'data-requester': r.user_id },
      el('span', { text: `${r.username} asks to join${r.message ? `: ${r.message}` : ''}` }),
      el('button', { type: 'button', text: 'Accept', 'aria-label': `Let ${r.username} join`, onclick: () => this.answer(r, true) }),
      el('button', { type: 'button', class: 'quiet', text: 'Refuse', 'aria-label': `Refuse ${r.username}`, onclick: () => this.answer(r, false) }))));
    if (requests && !requests.length) $('join-requests').append(el('li', { text: 'No one is waiting' }));
  }

  // Runs one change to the shown group, then shows the group as it now is.
  async act(what, f) {
    const id = this.shown?.id;
    try {
      await f();
      this.status('');
    } catch (e) {
      this.failed(what, e);
    }
    if (id) await this.refresh(id);
  }

  answer(r, accept) {
    return this.act(`answer ${r.username}`, () => this.api.answerJoin(this.shown.id, r.user_id, accept));
  }

  async invite(name) {
    if (!this.shown) return;
    try {
      const r = await this.api.users(name);
      const u = r.users.find((x) => x.username === name.toLowerCase());
      if (!u) { this.status(`No user named ${name}`); return; }
      $('invite-form').reset();
      await this.act(`invite ${u.username}`, () => this.api.invite(this.shown.id, [u.user_id]));
    } catch (e) {
      this.failed(`invite ${name}`, e instanceof ApiError ? e : new Error(String(e)));
    }
  }

  // The live join_request event: someone asks to join a group this user runs.
  joinRequest(ev) {
    const c = this.app.store().convs.get(ev.conversation_id);
    this.status(`${ev.username} asks to join ${c?.title ?? `group ${ev.conversation_id}`}`);
    this.changed(ev.conversation_id);
  }
}
