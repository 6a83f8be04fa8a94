// Groups and rooms beyond their messages: creating them, finding public
// rooms and joining one, joining a group by its invite, and the members
// panel of the open group (roles, invites, removals, join requests). The
// flow and its DOM together, as it touches little else; text goes in as
// textContent only. The group's own settings (name, notice, who may join,
// mute all, the invite code) are in the panel too, for the owner and admins.

import { ApiError } from './api.js';
import { el, formatWhen } from './ui.js';

const $ = (id) => document.getElementById(id);

// Who may do what is the server's rule; these only decide which buttons
// are worth showing.
const RANK = { MEMBER: 0, ADMIN: 1, OWNER: 2 };

// The mutes offered in the members panel, in seconds.
const MUTES = [['10 minutes', 600], ['1 hour', 3600], ['1 day', 86400]];

export class Groups {
  // app: {store(), openId(), refreshConversations(), openConversation(id), forget(id), explain(e)}
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.shown = null; // the group whose panel is open: {id, kind, myRole, name}
    this.group = null; // that group as the server last said
    this.list = { members: [], more: false }; // its members loaded so far, by user id
    this.found = { prefix: '', groups: [], more: false }; // the last room search
    $('group-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const ids = [...$('group-members').querySelectorAll('input:checked')].map((i) => Number(i.value));
      this.create($('group-kind').value, $('group-name').value.trim(), ids, $('group-policy').value);
    });
    $('room-search').addEventListener('submit', (e) => {
      e.preventDefault();
      this.searchRooms($('room-prefix').value.trim());
    });
    $('more-rooms').addEventListener('click', () => this.searchRooms(this.found.prefix, true));
    $('more-members').addEventListener('click', () => this.moreMembers());
    $('group-settings').addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveSettings();
    });
    $('new-invite').addEventListener('click', () => {
      this.act('make a new invite code', () => this.api.updateGroup(this.shown.id, { new_invite_code: true }));
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

  // Leaves the shown group (it leaves the conversation list), or dismisses
  // it (it stays, read-only, with its history: the server keeps it in every
  // member's list).
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
    if (what === 'leave') {
      this.app.forget(s.id);
      this.status(`You left ${s.name}`);
    } else {
      this.status(`${s.name} is dismissed`);
    }
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

  // Rooms whose name starts with `prefix`, a page at a time: `more` adds
  // the page after the last room shown.
  async searchRooms(prefix, more = false) {
    try {
      const after = more ? this.found.groups.at(-1)?.conversation_id ?? 0 : 0;
      const r = await this.api.rooms(prefix, after);
      this.found = { prefix, groups: more ? this.found.groups.concat(r.groups) : r.groups, more: r.has_more };
      const mine = this.app.store().convs;
      $('rooms').replaceChildren(...this.found.groups.map((g) => el('li', {},
        el('span', { text: `${g.name} (${g.member_count} ${g.member_count === 1 ? 'member' : 'members'})` }),
        mine.has(g.conversation_id)
          ? el('button', { type: 'button', class: 'quiet', text: 'Open', 'aria-label': `Open ${g.name}`, onclick: () => this.app.openConversation(g.conversation_id) })
          : el('button', { type: 'button', text: 'Join', 'aria-label': `Join ${g.name}`, onclick: () => this.join(g.conversation_id, g.name) }))));
      $('more-rooms').hidden = !r.has_more;
      this.status(this.found.groups.length ? '' : `No rooms start with "${prefix}"`);
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

  // A conversation was opened: the members button is for groups and rooms,
  // and their notice shows under the title.
  opened(conv) {
    this.closePanel();
    $('members-toggle').hidden = !conv || conv.kind === 'DIRECT';
    this.showNotice('');
    if (conv && conv.kind !== 'DIRECT') this.head(conv.conversation_id).catch(() => {});
  }

  showNotice(text) {
    $('chat-notice').textContent = text;
    $('chat-notice').hidden = !text;
  }

  // The open group's name and notice, as the server has them now.
  async head(id) {
    const g = await this.api.group(id);
    if (this.app.openId() !== id) return;
    $('chat-title').textContent = g.name;
    this.showNotice(g.notice ?? '');
  }

  closePanel() {
    this.shown = null;
    this.group = null;
    this.list = { members: [], more: false };
    // Emptied, so that another group's panel never shows this one's for a moment.
    $('invite-info').textContent = '';
    $('members').replaceChildren();
    $('group-settings').hidden = true;
    this.drawRequests(null);
    $('more-members').hidden = true;
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

  // Something changed in group `id` (a SYSTEM message `ev`, a request): the
  // panel follows; a new name or notice shows at once.
  changed(id, ev) {
    if (this.shown?.id === id) this.refresh(id).catch(() => {});
    if (ev?.type !== 'updated') return;
    if (this.app.openId() === id && ('notice' in ev || 'name' in ev)) this.head(id).catch(() => {});
    if ('name' in ev) this.app.refreshConversations().catch(() => {});
  }

  // The members, a page (200) at a time, until there are at least `want`.
  async loadMembers(id, want) {
    const members = [];
    for (;;) {
      const r = await this.api.members(id, members.at(-1)?.user_id ?? 0);
      members.push(...r.members);
      if (!r.has_more || !r.members.length || members.length >= want) return { members, more: r.has_more };
    }
  }

  async moreMembers() {
    const id = this.shown?.id;
    const after = this.list.members.at(-1)?.user_id;
    if (!id || !after) return;
    try {
      const r = await this.api.members(id, after);
      if (this.shown?.id !== id) return;
      this.list = { members: this.list.members.concat(r.members), more: r.has_more };
      this.drawMembers(this.app.store().me.user_id);
    } catch (e) {
      this.failed('load more members', e);
    }
  }

  async refresh(id) {
    try {
      // As many members as were shown, so that acting on one far down keeps it in view.
      const [g, m] = await Promise.all([this.api.group(id), this.loadMembers(id, this.list.members.length)]);
      if (this.shown?.id !== id) return;
      this.shown = { id, kind: g.kind, myRole: g.my_role ?? 'MEMBER', name: g.name };
      const before = this.group;
      this.group = g;
      this.list = m;
      const store = this.app.store();
      for (const x of m.members) store.names.set(x.user_id, x.username);
      const admin = RANK[this.shown.myRole] >= RANK.ADMIN;
      $('invite-info').textContent = g.kind === 'GROUP' && admin && g.invite_code
        ? `Invite: ${g.conversation_id}/${g.invite_code} (${g.join_policy === 'APPROVAL' ? 'you approve who joins' : 'anyone with it joins'})`
        : '';
      this.drawSettings(g, before, admin);
      this.drawMembers(store.me.user_id);
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

  // The settings form, for the owner and admins; who may join is the owner's
  // to say (and only a group's: anyone may join a room). A field the user
  // has changed from the group as it was (`before`) keeps their change.
  drawSettings(g, before, admin) {
    $('group-settings').hidden = !admin;
    if (!admin) return;
    const fresh = (now, was) => !before || now === was;
    if (fresh($('settings-name').value, before?.name)) $('settings-name').value = g.name;
    if (fresh($('settings-notice').value, before?.notice ?? '')) $('settings-notice').value = g.notice ?? '';
    if (fresh($('settings-policy').value, before?.join_policy)) $('settings-policy').value = g.join_policy;
    if (fresh($('settings-muted-all').checked, Boolean(before?.muted_all))) $('settings-muted-all').checked = Boolean(g.muted_all);
    $('settings-policy-box').hidden = g.kind !== 'GROUP' || this.shown.myRole !== 'OWNER';
    $('new-invite').hidden = g.kind !== 'GROUP';
  }

  // Sends only what differs from the group as it is.
  saveSettings() {
    const g = this.group;
    if (!g || !this.shown) return;
    const changes = {};
    const name = $('settings-name').value.trim();
    const notice = $('settings-notice').value.trim();
    if (name && name !== g.name) changes.name = name;
    if (notice !== (g.notice ?? '')) changes.notice = notice;
    if (!$('settings-policy-box').hidden && $('settings-policy').value !== g.join_policy) {
      changes.join_policy = $('settings-policy').value;
    }
    if ($('settings-muted-all').checked !== Boolean(g.muted_all)) changes.muted_all = $('settings-muted-all').checked;
    if (!Object.keys(changes).length) { this.status('Nothing to change'); return; }
    this.act(`change ${g.name}`, async () => {
      await this.api.updateGroup(this.shown.id, changes);
      this.status(`${g.name}: settings saved`);
    }, true);
  }

  drawMembers(myId) {
    const mine = RANK[this.shown.myRole];
    const now = Date.now();
    $('more-members').hidden = !this.list.more;
    $('members').replaceChildren(...this.list.members.map((x) => {
      const li = el('li', { 'data-member': x.user_id },
        el('span', { text: `${x.username}${x.user_id === myId ? ' (you)' : ''}` }),
        el('span', { class: 'role', text: x.role.toLowerCase() }));
      const muted = x.muted_until_ms > now;
      if (muted) li.append(el('span', { class: 'muted-until', text: `muted until ${formatWhen(x.muted_until_ms)}` }));
      if (x.user_id !== myId && RANK[x.role] < mine) {
        li.append(...this.muteControls(x, muted));
        if (this.shown.myRole === 'OWNER') {
          li.append(el('button', {
            type: 'button', class: 'quiet', text: 'Make owner', 'aria-label': `Make owner: ${x.username}`,
            onclick: () => this.transfer(x),
          }));
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

  // A choice of how long, and Mute; Unmute when muted.
  muteControls(x, muted) {
    const select = el('select', { 'aria-label': `Mute ${x.username} for` },
      ...MUTES.map(([label, secs]) => el('option', { value: String(secs), text: label })));
    const out = [select, el('button', {
      type: 'button', class: 'quiet', text: 'Mute', 'aria-label': `Mute ${x.username}`,
      onclick: () => this.mute(x, Number(select.value)),
    })];
    if (muted) {
      out.push(el('button', {
        type: 'button', class: 'quiet', text: 'Unmute', 'aria-label': `Unmute ${x.username}`,
        onclick: () => this.mute(x, 0),
      }));
    }
    return out;
  }

  mute(x, seconds) {
    return this.act(`${seconds ? 'mute' : 'unmute'} ${x.username}`, () => this.api.mute(this.shown.id, x.user_id, seconds));
  }

  // The owner hands the group over and becomes an admin.
  transfer(x) {
    const name = this.shown.name;
    if (!window.confirm(`Make ${x.username} the owner of ${name}? You will be an admin.`)) return;
    this.act(`make ${x.username} the owner`, async () => {
      await this.api.transfer(this.shown.id, x.user_id);
      this.status(`${x.username} owns ${name} now`);
    }, true);
  }

  // Runs one change to the shown group, then shows the group as it now is.
  // `says`: f leaves its own status line.
  async act(what, f, says = false) {
    const id = this.shown?.id;
    try {
      await f();
      if (!says) this.status('');
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
