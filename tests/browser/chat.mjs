// natter's web chat client in a real Chromium: two users in two browser
// contexts, driven only through the page, asserting on what the page shows.
//
//   node tests/browser/chat.mjs <base-url> [screenshot-dir]
//
// Exits non-zero at the first failed expectation. Waits are for selectors
// and conditions with timeouts, never fixed sleeps.

import { chromium } from 'playwright-core';
import { step, shot, unnamedControls, lowContrast, failed } from './lib.mjs';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.argv[2];
const shots = process.argv[3] ?? 'target/screenshots';
if (!base) {
  console.error('usage: node chat.mjs <base-url> [screenshot-dir]');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const WAIT = 15000;
const PASSWORD = 'correct horse';
// A 2×2 PNG, red.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);

// The open chat's messages: [{seq, text}] in DOM order.
async function messages(page) {
  return page.$$eval('#messages li.msg', (lis) => lis.map((li) => ({
    seq: Number(li.dataset.seq || 0),
    text: li.querySelector('.body')?.textContent ?? '',
  })));
}

async function inOrderOnce(page) {
  const ms = await messages(page);
  const seqs = ms.map((m) => m.seq).filter(Boolean);
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i] > seqs[i - 1], `seqs ascending and unique: ${seqs.join(',')}`);
  }
  return ms;
}

async function register(page, name) {
  await page.goto(base);
  await page.locator('#register-user').fill(name);
  await page.locator('#register-pass').fill(PASSWORD);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('#app').waitFor({ state: 'visible' }).catch(async (e) => {
    throw new Error(`${e.message}; the page says: ${await page.locator('#auth-status').textContent()}`);
  });
  await page.locator('#conn[data-state="online"]').waitFor();
}

// Sends with the keyboard only: focus the field, type, Enter.
async function sendByKeyboard(page, text) {
  await page.locator('#text').focus();
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
  await page.locator('#messages li.msg.own:not(.pending)', { hasText: text }).last().waitFor();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.NATTER_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  try {
    // Short enough that one page of history overflows the list, so paging back takes a scroll.
    const ctxA = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 560 } });
    const ctxB = await browser.newContext({ acceptDownloads: true });
    ctxA.setDefaultTimeout(WAIT);
    ctxB.setDefaultTimeout(WAIT);
    const a = await ctxA.newPage();
    const b = await ctxB.newPage();
    for (const [who, p] of [['alice', a], ['bob', b]]) {
      p.on('pageerror', (e) => console.log(`[${who} page error] ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') console.log(`[${who} console] ${m.text()}`); });
      p.on('response', async (r) => {
        if (r.status() >= 500) console.log(`[${who}] ${r.request().method()} ${r.url()}: ${r.status()} ${await r.text().catch(() => '')}`);
      });
    }

    step('the login screen: every control is named');
    await a.goto(base);
    await a.locator('#login-form').waitFor();
    assert.deepEqual(await unnamedControls(a), []);
    assert.deepEqual(await lowContrast(a), []);
    await shot(shots, a, 'login');

    step('both register and log in through the page');
    await register(a, 'alice');
    await register(b, 'bob');
    assert.equal(await a.locator('#me').textContent(), 'Signed in as alice');

    step('alice asks bob to be friends; bob accepts; both see the other as a friend');
    await a.getByLabel('Add a friend by username').fill('bob');
    await a.getByRole('button', { name: 'Send request' }).click();
    await a.locator('#friend-status', { hasText: 'Request sent to bob' }).waitFor();
    await b.getByRole('button', { name: 'Accept alice' }).click();
    await a.getByRole('button', { name: 'Message bob' }).waitFor();
    await b.getByRole('button', { name: 'Message alice' }).waitFor();

    step('alice opens the 1:1 and sends with the keyboard only');
    await a.getByRole('button', { name: 'Message bob' }).click();
    await a.locator('#chat-title', { hasText: 'bob' }).waitFor();
    await sendByKeyboard(a, 'hello bob');

    step('bob sees the conversation with one unread, opens it, reads it');
    const convB = b.locator('#conv-list button', { hasText: 'alice' });
    await convB.locator('.unread', { hasText: '1' }).waitFor();
    await shot(shots, b, 'conversations');
    await convB.click();
    await b.locator('#messages li.msg', { hasText: 'hello bob' }).waitFor();
    await convB.locator('.unread').waitFor({ state: 'detached' });

    step('alice sees the read receipt on her message');
    await a.locator('#messages li.msg.own', { hasText: 'hello bob' }).locator('.status', { hasText: 'read' }).waitFor();

    step('bob types: alice sees it; bob sends: alice sees the message live');
    await b.locator('#text').focus();
    await b.keyboard.type('hi al');
    await a.locator('#typing', { hasText: 'bob is typing' }).waitFor();
    await b.keyboard.type('ice');
    await b.keyboard.press('Enter');
    await a.locator('#messages li.msg:not(.own)', { hasText: 'hi alice' }).waitFor();
    assert.deepEqual((await inOrderOnce(a)).map((m) => m.text), ['hello bob', 'hi alice']);

    step('alice recalls a message: both see "message recalled"');
    await sendByKeyboard(a, 'oops');
    const oopsB = b.locator('#messages li.msg', { hasText: 'oops' });
    await oopsB.waitFor();
    const oopsSeq = await oopsB.getAttribute('data-seq');
    await a.locator('#messages li.msg.own', { hasText: 'oops' }).getByRole('button', { name: 'Recall this message' }).click();
    await a.locator(`#messages li.msg[data-seq="${oopsSeq}"]`, { hasText: 'message recalled' }).waitFor();
    await b.locator(`#messages li.msg[data-seq="${oopsSeq}"]`, { hasText: 'message recalled' }).waitFor();
    assert.equal(await b.locator('#messages li.msg', { hasText: 'oops' }).count(), 0);

    step('history: bob sends 30 more; alice reloads and pages back on scroll');
    await b.evaluate(async () => {
      const token = sessionStorage.getItem('natter.token');
      const conv = Number(document.querySelector('#conv-list button[aria-current="true"]').dataset.conv);
      for (let i = 1; i <= 30; i++) {
        const r = await fetch('/v1/messages', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ client_msg_id: `page-${i}`, conversation_id: conv, body: { kind: 'TEXT', content: `page ${i}` } }),
        });
        if (!r.ok) throw new Error(`send ${i}: ${r.status}`);
      }
    });
    await a.locator('#messages li.msg', { hasText: /^page 30$/ }).waitFor();
    await a.reload();
    await a.locator('#conn[data-state="online"]').waitFor();
    await a.locator('#conv-list button', { hasText: 'bob' }).click();
    await a.locator('#messages li.msg', { hasText: 'page 30' }).waitFor();
    const first = await inOrderOnce(a);
    assert.equal(first.length, 20, `one page of history: ${first.map((m) => m.seq).join(',')}`);
    assert.equal(first.at(-1).text, 'page 30');
    await a.locator('#older').waitFor();
    await a.locator('#messages').evaluate((e) => { e.scrollTop = 0; });
    await a.waitForFunction(() => document.querySelectorAll('#messages li.msg').length === 33)
      .catch(async (e) => {
        const seen = await messages(a);
        throw new Error(`${e.message}; shown: ${seen.map((m) => `${m.seq}:${m.text}`).join(' | ')}`);
      });
    const all = await inOrderOnce(a);
    assert.deepEqual(all.slice(0, 3).map((m) => m.text), ['hello bob', 'hi alice', 'message recalled']);
    assert.deepEqual(all.slice(3).map((m) => m.text), Array.from({ length: 30 }, (_, i) => `page ${i + 1}`));
    await a.locator('#older').waitFor({ state: 'hidden' });
    await shot(shots, a, 'chat');

    step('a file: alice uploads with progress; bob sees its name and size, and fetches it only on click');
    // Every download bob's page starts (GET /v1/files/{id}).
    const fileGets = [];
    b.on('request', (r) => {
      if (r.method() === 'GET' && /^\/v1\/files\/[^/]+$/.test(new URL(r.url()).pathname)) fileGets.push(r.url());
    });
    const bytes = randomBytes(200 * 1024 + 123);
    await a.evaluate(() => {
      // Every value the progress bar shows.
      const bar = document.getElementById('upload-progress');
      window.progressSeen = [];
      new MutationObserver(() => window.progressSeen.push(bar.value)).observe(bar, { attributes: true });
    });
    await a.locator('#file').setInputFiles({ name: 'notes.bin', mimeType: 'application/octet-stream', buffer: bytes });
    await a.waitForFunction(() => document.getElementById('upload-progress').value === 100);
    const seen = await a.evaluate(() => window.progressSeen);
    assert.ok(seen.some((v) => v > 0 && v < 100), `progress between 0 and 100: ${seen}`);
    const notes = b.locator('#messages li.msg', { hasText: 'notes.bin' });
    await notes.locator('.file-size', { hasText: '(200.1 KiB)' }).waitFor();
    assert.deepEqual(fileGets, [], 'nothing is downloaded before the click');
    const [download] = await Promise.all([
      b.waitForEvent('download'),
      notes.getByRole('button', { name: 'Download notes.bin, 200.1 KiB' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'notes.bin');
    assert.ok(readFileSync(await download.path()).equals(bytes), 'the downloaded bytes are the uploaded ones');
    assert.equal(fileGets.length, 1, `one download, on the click: ${fileGets}`);

    step('an image: bob sees it previewed');
    await a.locator('#file').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: PNG });
    const img = b.locator('#messages li.msg img[alt="dot.png"]');
    await img.waitFor();
    await b.waitForFunction(() => {
      const i = document.querySelector('#messages img[alt="dot.png"]');
      return i && i.complete && i.naturalWidth === 2;
    });

    step('a group: alice creates it with bob, mentions him; bob sees the mention, reads it (alice sees "read by 1") and answers');
    await a.getByLabel('Name of the group or room').fill('climbers');
    await a.locator('#group-members').getByLabel('bob').check();
    await a.getByRole('button', { name: 'Create', exact: true }).click();
    await a.locator('#chat-title', { hasText: 'climbers' }).waitFor();
    await sendByKeyboard(a, 'rope? @bob');
    const groupB = b.locator('#conv-list button', { hasText: 'climbers' });
    await groupB.locator('.mentioned').waitFor();
    await groupB.click();
    await b.locator('#messages li.msg', { hasText: 'rope? @bob' }).locator('.who', { hasText: 'alice' }).waitFor();
    await a.locator('#messages li.msg', { hasText: 'rope? @bob' }).locator('.status', { hasText: 'read by 1' }).waitFor();
    await sendByKeyboard(b, 'got one');
    await a.locator('#messages li.msg', { hasText: 'got one' }).waitFor();
    await shot(shots, a, 'group');

    step('alice goes offline; bob sends 3; back online, alice sees each once, in order');
    await a.locator('#conv-list button', { hasText: 'bob' }).click();
    await a.locator('#messages li.msg', { hasText: 'page 30' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'alice' }).click();
    await b.locator('#messages li.msg', { hasText: 'page 30' }).waitFor();
    await ctxA.setOffline(true);
    await a.locator('#conn[data-state="offline"]').waitFor();
    for (const t of ['while away 1', 'while away 2', 'while away 3']) await sendByKeyboard(b, t);
    await ctxA.setOffline(false);
    await a.locator('#conn[data-state="online"]').waitFor();
    await a.locator('#messages li.msg', { hasText: 'while away 3' }).waitFor();
    const after = await inOrderOnce(a);
    assert.deepEqual(
      after.filter((m) => m.text.startsWith('while away')).map((m) => m.text),
      ['while away 1', 'while away 2', 'while away 3'],
    );
    assert.equal(after.at(-1).text, 'while away 3');

    step('members: alice, the owner, sees the roles, makes bob an admin, removes him and invites him back');
    await a.locator('#conv-list button', { hasText: 'climbers' }).click();
    await a.locator('#chat-title', { hasText: 'climbers' }).waitFor();
    await a.getByRole('button', { name: 'Members', exact: true }).click();
    const bobRow = a.locator('#members li', { hasText: 'bob' });
    await bobRow.locator('.role', { hasText: 'member' }).waitFor();
    await a.locator('#members li', { hasText: 'alice (you)' }).locator('.role', { hasText: 'owner' }).waitFor();
    await a.getByRole('button', { name: 'Make admin: bob', exact: true }).click();
    await bobRow.locator('.role', { hasText: 'admin' }).waitFor();
    await a.getByRole('button', { name: 'Remove bob', exact: true }).click();
    await bobRow.waitFor({ state: 'detached' });
    await a.getByLabel('Invite by username').fill('bob');
    await a.getByRole('button', { name: 'Invite', exact: true }).click();
    await bobRow.locator('.role', { hasText: 'member' }).waitFor();
    for (const said of ['alice made bob an admin', 'alice removed bob', 'alice added bob']) {
      await a.locator('#messages li.notice', { hasText: said }).waitFor();
    }
    await shot(shots, a, 'members');

    step('group settings: alice renames climbers and sets a notice; bob sees it under the title, and its change live');
    await a.getByLabel('Name', { exact: true }).fill('climbers club');
    await a.getByLabel('Notice (shown under the title)').fill('Meet at nine');
    await a.getByRole('button', { name: 'Save settings' }).click();
    await a.locator('#chat-title', { hasText: 'climbers club' }).waitFor();
    await a.locator('#chat-notice', { hasText: 'Meet at nine' }).waitFor();
    await a.locator('#conv-list button', { hasText: 'climbers club' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'climbers club' }).click();
    await b.locator('#chat-title', { hasText: 'climbers club' }).waitFor();
    await b.locator('#chat-notice', { hasText: 'Meet at nine' }).waitFor();
    await a.getByLabel('Notice (shown under the title)').fill('Meet at ten');
    await a.getByRole('button', { name: 'Save settings' }).click();
    await b.locator('#chat-notice', { hasText: 'Meet at ten' }).waitFor();
    for (const said of ['alice renamed the group climbers club; set the notice: Meet at nine', 'alice set the notice: Meet at ten']) {
      await b.locator('#messages li.notice', { hasText: said }).waitFor();
    }
    await b.getByRole('button', { name: 'Members', exact: true }).click();
    await b.locator('#members li', { hasText: 'bob (you)' }).waitFor();
    assert.ok(await b.locator('#group-settings').isHidden(), 'a member has no settings to change');
    assert.equal(await b.getByRole('button', { name: 'Mute alice' }).count(), 0, 'a member mutes no one');

    // Each change below is made before bob sends: its PATCH or PUT answered.
    const answered = (method) => a.waitForResponse((r) => r.request().method() === method && /\/v1\/groups\//.test(r.url()));

    step('mute all: alice mutes everyone but admins; bob\'s send is refused, saying why; lifted, his retry goes');
    let done = answered('PATCH');
    await a.getByLabel('Mute everyone but the owner and admins').check();
    await a.getByRole('button', { name: 'Save settings' }).click();
    assert.equal((await done).status(), 204);
    await b.locator('#text').fill('may I?');
    await b.locator('#text').press('Enter');
    const hushed = b.locator('#messages li.msg.pending', { hasText: 'may I?' });
    await hushed.locator('.status', { hasText: 'not sent: only the owner and admins may send while the group is muted' }).waitFor();
    done = answered('PATCH');
    await a.getByLabel('Mute everyone but the owner and admins').uncheck();
    await a.getByRole('button', { name: 'Save settings' }).click();
    assert.equal((await done).status(), 204);
    for (const said of ['alice muted everyone but the owner and admins', 'alice let everyone talk again']) {
      await b.locator('#messages li.notice', { hasText: said }).waitFor();
    }
    await hushed.getByRole('button', { name: 'Retry' }).click();
    await b.locator('#messages li.msg.own:not(.pending)', { hasText: 'may I?' }).waitFor();

    step('mute one: alice mutes bob for an hour; his row says until when; his send is refused with the time; unmuted, it goes');
    done = answered('PUT');
    await a.getByLabel('Mute bob for').selectOption({ label: '1 hour' });
    await a.getByRole('button', { name: 'Mute bob', exact: true }).click();
    assert.equal((await done).status(), 204);
    await bobRow.locator('.muted-until', { hasText: /^muted until \S/ }).waitFor();
    await a.locator('#messages li.notice', { hasText: 'alice muted bob' }).waitFor();
    await b.locator('#members li', { hasText: 'bob (you)' }).locator('.muted-until').waitFor();
    assert.deepEqual(await unnamedControls(a), []);
    assert.deepEqual(await lowContrast(a), []);
    assert.deepEqual(await lowContrast(b), []);
    await shot(shots, a, 'settings');
    await b.locator('#text').fill('still here');
    await b.locator('#text').press('Enter');
    const muted = b.locator('#messages li.msg.pending', { hasText: 'still here' });
    await muted.locator('.status', { hasText: /not sent: you are muted in this group until \S/ }).waitFor();
    assert.ok(!/\d{13}/.test(await muted.locator('.status').textContent()), 'a time, not milliseconds');
    await a.getByRole('button', { name: 'Unmute bob', exact: true }).click();
    await bobRow.locator('.muted-until').waitFor({ state: 'detached' });
    await a.locator('#messages li.notice', { hasText: 'alice unmuted bob' }).waitFor();
    await muted.getByRole('button', { name: 'Retry' }).click();
    await b.locator('#messages li.msg.own:not(.pending)', { hasText: 'still here' }).waitFor();

    step('the invite: alice makes a new code, then has the owner approve who joins');
    const oldInvite = await a.locator('#invite-info').textContent();
    assert.match(oldInvite, /^Invite: \d+\/\S+ \(anyone with it joins\)$/);
    await a.getByRole('button', { name: 'New invite code' }).click();
    await a.waitForFunction((old) => {
      const now = document.getElementById('invite-info').textContent;
      return now.startsWith('Invite: ') && now !== old;
    }, oldInvite);
    await a.getByLabel('Who may join', { exact: true }).selectOption('APPROVAL');
    await a.getByRole('button', { name: 'Save settings' }).click();
    await a.locator('#invite-info', { hasText: 'you approve who joins' }).waitFor();
    for (const said of ['alice made a new invite code', 'alice now approves who joins']) {
      await a.locator('#messages li.notice', { hasText: said }).waitFor();
    }

    step('alice hands climbers club to bob (she confirms); she becomes an admin, he the owner');
    let asked = '';
    a.once('dialog', (d) => { asked = d.message(); d.accept(); });
    await a.getByRole('button', { name: 'Make owner: bob', exact: true }).click();
    await bobRow.locator('.role', { hasText: 'owner' }).waitFor();
    assert.equal(asked, 'Make bob the owner of climbers club? You will be an admin.');
    await a.locator('#members li', { hasText: 'alice (you)' }).locator('.role', { hasText: 'admin' }).waitFor();
    await a.locator('#messages li.notice', { hasText: 'alice handed the group to bob' }).waitFor();
    assert.equal(await a.getByRole('button', { name: 'Make owner: bob' }).count(), 0);
    await b.getByRole('button', { name: 'Make member: alice', exact: true }).waitFor();
    await b.locator('#group-settings').waitFor();

    step('rooms: alice creates a public room; bob finds it by name, joins it, and they talk in it');
    await a.getByLabel('Name of the group or room').fill('lobby');
    await a.getByLabel('Kind', { exact: true }).selectOption('ROOM');
    await a.getByRole('button', { name: 'Create', exact: true }).click();
    await a.locator('#chat-title', { hasText: 'lobby' }).waitFor();
    await b.getByLabel('Search public rooms by name').fill('lob');
    await b.getByRole('button', { name: 'Search rooms', exact: true }).click();
    await b.getByRole('button', { name: 'Join lobby', exact: true }).click();
    await b.locator('#chat-title', { hasText: 'lobby' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'lobby' }).waitFor();
    await b.getByRole('button', { name: 'Open lobby', exact: true }).waitFor();
    await sendByKeyboard(b, 'hello lobby');
    await a.locator('#messages li.msg', { hasText: 'hello lobby' }).locator('.who', { hasText: 'bob' }).waitFor();
    await sendByKeyboard(a, 'welcome');
    await b.locator('#messages li.msg', { hasText: 'welcome' }).waitFor();

    step('an approval group: bob asks to join with its invite; alice sees the request live and lets him in');
    await a.getByLabel('Name of the group or room').fill('quiet');
    await a.getByLabel('Who may join a group').selectOption('APPROVAL');
    await a.getByRole('button', { name: 'Create', exact: true }).click();
    await a.locator('#chat-title', { hasText: 'quiet' }).waitFor();
    await a.getByRole('button', { name: 'Members', exact: true }).click();
    await a.locator('#join-requests', { hasText: 'No one is waiting' }).waitFor();
    const info = await a.locator('#invite-info', { hasText: 'you approve who joins' }).textContent();
    const invite = info.match(/Invite: (\S+)/)[1];
    await b.getByLabel('Invite (group id/code)').fill(invite);
    await b.getByRole('button', { name: 'Join with invite', exact: true }).click();
    await b.locator('#group-status', { hasText: 'waiting for approval' }).waitFor();
    await a.locator('#group-status', { hasText: 'bob asks to join quiet' }).waitFor();
    await a.getByRole('button', { name: 'Let bob join', exact: true }).click();
    await a.locator('#members li', { hasText: 'bob' }).locator('.role', { hasText: 'member' }).waitFor();
    await a.locator('#join-requests', { hasText: 'No one is waiting' }).waitFor();
    await a.locator('#messages li.notice', { hasText: 'alice let bob join' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'quiet' }).waitFor();

    step('bob leaves quiet (alice sees it; it leaves his list); alice dismisses lobby (both see it; it stays, with its history)');
    await b.locator('#conv-list button', { hasText: 'quiet' }).click();
    await b.locator('#chat-title', { hasText: 'quiet' }).waitFor();
    await b.getByRole('button', { name: 'Members', exact: true }).click();
    await b.getByRole('button', { name: 'Dismiss for everyone' }).waitFor({ state: 'hidden' });
    await b.getByRole('button', { name: 'Leave', exact: true }).click();
    await b.locator('#group-status', { hasText: 'You left quiet' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'quiet' }).waitFor({ state: 'detached' });
    await a.locator('#messages li.notice', { hasText: 'bob left' }).waitFor();
    await a.locator('#conv-list button', { hasText: 'lobby' }).click();
    await a.locator('#chat-title', { hasText: 'lobby' }).waitFor();
    await a.getByRole('button', { name: 'Members', exact: true }).click();
    a.once('dialog', (d) => d.accept());
    await a.getByRole('button', { name: 'Dismiss for everyone' }).click();
    await a.locator('#group-status', { hasText: 'lobby is dismissed' }).waitFor();
    await a.locator('#messages li.notice', { hasText: 'alice dismissed the group' }).waitFor();
    await b.locator('#conv-list button', { hasText: 'lobby' }).click();
    await b.locator('#messages li.notice', { hasText: 'alice dismissed the group' }).waitFor();

    step('a group of 206: the members panel shows 200, and the rest on "More members"');
    await a.evaluate(async (password) => {
      const token = sessionStorage.getItem('natter.token');
      const post = async (path, body, auth) => {
        const headers = { 'content-type': 'application/json' };
        if (auth) headers.authorization = `Bearer ${token}`;
        const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
        if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
        return r.json();
      };
      const ids = [];
      for (let i = 0; i < 205; i += 41) {
        const batch = Array.from({ length: 41 }, (_, j) => `crowd${String(i + j).padStart(3, '0')}`);
        for (const u of await Promise.all(batch.map((username) => post('/v1/register', { username, password })))) ids.push(u.user_id);
      }
      await post('/v1/groups', { kind: 'GROUP', name: 'crowd', member_ids: ids }, true);
    }, PASSWORD);
    await a.locator('#conv-list button', { hasText: 'crowd' }).click();
    await a.locator('#chat-title', { hasText: 'crowd' }).waitFor();
    await a.getByRole('button', { name: 'Members', exact: true }).click();
    await a.getByRole('button', { name: 'More members' }).waitFor();
    assert.equal(await a.locator('#members li').count(), 200);
    await a.getByRole('button', { name: 'More members' }).click();
    await a.waitForFunction(() => document.querySelectorAll('#members li').length === 206);
    await a.getByRole('button', { name: 'More members' }).waitFor({ state: 'hidden' });
    await a.locator('#members li', { hasText: 'crowd204' }).waitFor();
    const names = await a.$$eval('#members li[data-member]', (lis) => lis.map((li) => Number(li.dataset.member)));
    assert.equal(new Set(names).size, 206, 'each member once');

    step('room search pages: of 21 rooms named hall-*, bob sees 20, and the 21st on "More rooms"');
    await a.evaluate(async () => {
      const token = sessionStorage.getItem('natter.token');
      for (let i = 1; i <= 21; i++) {
        const r = await fetch('/v1/groups', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ kind: 'ROOM', name: `hall-${String(i).padStart(2, '0')}` }),
        });
        if (!r.ok) throw new Error(`room ${i}: ${r.status}`);
      }
    });
    await b.getByLabel('Search public rooms by name').fill('hall');
    await b.getByRole('button', { name: 'Search rooms', exact: true }).click();
    await b.getByRole('button', { name: 'More rooms' }).waitFor();
    assert.equal(await b.locator('#rooms li').count(), 20);
    await b.getByRole('button', { name: 'More rooms' }).click();
    await b.getByRole('button', { name: 'Join hall-21', exact: true }).waitFor();
    assert.equal(await b.locator('#rooms li').count(), 21);
    await b.getByRole('button', { name: 'More rooms' }).waitFor({ state: 'hidden' });

    step('the new screens: every control is named, all text has 4.5:1 contrast');
    await shot(shots, a, 'approval');
    await shot(shots, b, 'rooms');
    assert.deepEqual(await unnamedControls(a), []);
    assert.deepEqual(await unnamedControls(b), []);
    assert.deepEqual(await lowContrast(a), []);
    assert.deepEqual(await lowContrast(b), []);

    step('a remark and a block: alice calls bob "Bobby"; blocks him, so his message is refused; unblocks him');
    await a.getByRole('button', { name: 'Set a remark for bob', exact: true }).click();
    await a.getByLabel('Remark for bob', { exact: true }).fill('Bobby');
    assert.deepEqual(await unnamedControls(a), []);
    await a.getByRole('button', { name: 'Save the remark for bob', exact: true }).click();
    await a.locator('#friends li', { hasText: 'Bobby (bob)' }).waitFor();
    await a.locator('#conv-list button', { hasText: 'Bobby (bob)' }).click();
    await a.locator('#chat-title', { hasText: /^Bobby \(bob\)$/ }).waitFor();
    await a.getByRole('button', { name: 'Set a remark for bob', exact: true }).click();
    await a.getByLabel('Remark for bob', { exact: true }).fill('Bob B');
    await a.getByRole('button', { name: 'Save the remark for bob', exact: true }).click();
    await a.locator('#chat-title', { hasText: /^Bob B \(bob\)$/ }).waitFor();
    await a.locator('#conv-list button', { hasText: 'Bob B (bob)' }).waitFor();
    assert.equal(await a.locator('#conv-list button', { hasText: 'Bobby' }).count(), 0);
    await a.getByRole('button', { name: 'Block bob', exact: true }).click();
    await a.getByRole('button', { name: 'Unblock bob', exact: true }).waitFor();
    await b.locator('#conv-list button', { hasText: 'alice' }).click();
    await b.locator('#messages li.msg', { hasText: 'while away 3' }).waitFor();
    await b.locator('#text').fill('are you there?');
    await b.locator('#text').press('Enter');
    const refused = b.locator('#messages li.msg.pending', { hasText: 'are you there?' });
    await refused.locator('.status', { hasText: 'not sent' }).waitFor();
    await a.getByRole('button', { name: 'Unblock bob', exact: true }).click();
    await a.getByRole('button', { name: 'Block bob', exact: true }).waitFor();
    await refused.getByRole('button', { name: 'Retry' }).click();
    await b.locator('#messages li.msg.own:not(.pending)', { hasText: 'are you there?' }).waitFor();

    step('an upload cut at 1.25 MiB resumes after a reload from the offset the server holds, and arrives whole');
    const big = randomBytes(3 * 1024 * 1024 + 17);
    // A file on disk, so that picking it again gives the same name, size and lastModified.
    const bigPath = join(mkdtempSync(join(tmpdir(), 'natter-')), 'big.bin');
    writeFileSync(bigPath, big);
    const tusLog = [];
    a.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/files/') && r.method() !== 'GET') {
        tusLog.push({ method: r.method(), offset: r.headers()['upload-offset'] });
      }
    });
    let patches = 0;
    await a.route('**/v1/files/*', (route) => {
      if (route.request().method() === 'PATCH' && ++patches > 20) return route.abort('connectionreset');
      return route.continue();
    });
    await a.locator('#conv-list button', { hasText: 'bob' }).click();
    await a.locator('#messages li.msg', { hasText: 'are you there?' }).waitFor();
    await a.locator('#file').setInputFiles(bigPath);
    await a.locator('#friend-status', { hasText: 'Could not upload big.bin' }).waitFor();
    await a.unroute('**/v1/files/*');
    await a.reload();
    await a.locator('#conn[data-state="online"]').waitFor();
    const cut = tusLog.length;
    await a.locator('#conv-list button', { hasText: 'bob' }).click();
    await a.locator('#messages li.msg', { hasText: 'are you there?' }).waitFor();
    await a.locator('#file').setInputFiles(bigPath);
    const cutAt = 20 * 64 * 1024;
    const resumedText = `Resumed big.bin from ${Math.round((100 * cutAt) / big.length)}%`;
    await a.locator('#friend-status', { hasText: resumedText }).waitFor().catch(async (e) => {
      const said = await a.locator('#friend-status').textContent();
      throw new Error(`${e.message}; the page says: ${said}; tus: ${JSON.stringify(tusLog.slice(cut, cut + 4))}`);
    });
    const resumed = tusLog.slice(cut);
    assert.equal(resumed[0]?.method, 'HEAD', `asks the server first: ${JSON.stringify(resumed.slice(0, 3))}`);
    assert.ok(!resumed.some((x) => x.method === 'POST'), 'no new upload is made');
    assert.equal(resumed.find((x) => x.method === 'PATCH').offset, String(cutAt), 'goes on from the cut');
    const bigB = b.locator('#messages li.msg', { hasText: 'big.bin' });
    await bigB.locator('.file-size', { hasText: '(3.0 MiB)' }).waitFor();
    const [bigDownload] = await Promise.all([
      b.waitForEvent('download'),
      bigB.getByRole('button', { name: 'Download big.bin, 3.0 MiB' }).click(),
    ]);
    assert.ok(readFileSync(await bigDownload.path()).equals(big), 'the resumed file is the original, byte for byte');
    assert.equal(await a.evaluate(() => localStorage.getItem('natter.uploads')), '{}', 'a finished upload is forgotten');

    step('an upload in progress is cancelled: the server deletes it, the bar goes, nothing is kept to resume');
    const spare = join(mkdtempSync(join(tmpdir(), 'natter-')), 'spare.bin');
    writeFileSync(spare, randomBytes(1024 * 1024));
    let holding;
    const held = new Promise((r) => { holding = r; });
    let spared = 0;
    await a.route('**/v1/files/*', (route) => {
      // The third append waits until the page gives up on it.
      if (route.request().method() === 'PATCH' && ++spared === 3) { holding(route); return undefined; }
      return route.continue();
    });
    const deleted = a.waitForResponse((r) => r.request().method() === 'DELETE' && new URL(r.url()).pathname.startsWith('/v1/files/'));
    await a.locator('#file').setInputFiles(spare);
    const stuck = await held;
    assert.equal(Object.keys(JSON.parse(await a.evaluate(() => localStorage.getItem('natter.uploads')))).length, 1);
    assert.deepEqual(await unnamedControls(a), []);
    await a.getByRole('button', { name: 'Cancel upload' }).click();
    assert.equal((await deleted).status(), 204);
    await a.locator('#friend-status', { hasText: 'The upload of spare.bin is cancelled' }).waitFor();
    await a.locator('#upload-progress').waitFor({ state: 'hidden' });
    await a.getByRole('button', { name: 'Cancel upload' }).waitFor({ state: 'hidden' });
    assert.equal(await a.evaluate(() => localStorage.getItem('natter.uploads')), '{}', 'a cancelled upload is forgotten');
    await stuck.abort().catch(() => {});
    await a.unroute('**/v1/files/*');
    assert.equal(await a.locator('#messages li.msg', { hasText: 'spare.bin' }).count(), 0, 'nothing was sent');

    step('the chat screen: every control is named, all text has 4.5:1 contrast');
    assert.deepEqual(await unnamedControls(a), []);
    assert.deepEqual(await unnamedControls(b), []);
    assert.deepEqual(await lowContrast(a), []);
    assert.deepEqual(await lowContrast(b), []);

    step('alice logs out');
    await a.getByRole('button', { name: 'Log out' }).click();
    await a.locator('#login-form').waitFor();
    assert.equal(await a.evaluate(() => sessionStorage.getItem('natter.token')), null);

    console.log('[browser] all passed');
  } finally {
    await browser.close();
  }
}

main().catch(failed);
