// natter's admin console in a real Chromium, beside a chat user's page:
// the administrator logs in, watches the dashboard move under load, finds
// the user and disables her (her open page is signed out at once), changes
// the log level and finds a line in the log view, traces one user and
// downloads the trace, finds a group and removes a member; every screen is
// named for assistive technology and readable.
//
//   node tests/browser/admin.mjs <base-url> <screenshot-dir> <admin> <admin-password> <traced-user-id>
//
// Exits non-zero at the first failed expectation.

import { chromium } from 'playwright-core';
import { step, shot, unnamedControls, lowContrast, failed } from './lib.mjs';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';

const [base, shots, adminName, adminPassword, tracedId] = process.argv.slice(2);
if (!tracedId) {
  console.error('usage: node admin.mjs <base-url> <screenshot-dir> <admin> <admin-password> <traced-user-id>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const WAIT = 15000;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.NATTER_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  try {
    const chatCtx = await browser.newContext();
    const adminCtx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 800 } });
    chatCtx.setDefaultTimeout(WAIT);
    adminCtx.setDefaultTimeout(WAIT);
    const zoe = await chatCtx.newPage();
    const admin = await adminCtx.newPage();
    for (const [who, p] of [['zoe', zoe], ['admin', admin]]) {
      p.on('pageerror', (e) => console.log(`[${who} page error] ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') console.log(`[${who} console] ${m.text()}`); });
    }

    step('zoe registers in the web client and is online');
    await zoe.goto(base);
    await zoe.locator('#register-user').fill('zoe');
    await zoe.locator('#register-pass').fill('correct horse');
    await zoe.getByRole('button', { name: 'Register' }).click();
    await zoe.locator('#conn[data-state="online"]').waitFor();

    step('the admin login screen: controls named, readable; a wrong password is refused');
    await admin.goto(`${base}/admin`);
    await admin.locator('#login-form').waitFor();
    assert.deepEqual(await unnamedControls(admin), []);
    assert.deepEqual(await lowContrast(admin), []);
    await shot(shots, admin, 'admin-login');
    await admin.getByLabel('Administrator').fill(adminName);
    await admin.getByLabel('Password').fill('not the password');
    await admin.getByRole('button', { name: 'Log in' }).click();
    await admin.locator('#login-error', { hasText: 'wrong' }).waitFor();

    step('the administrator logs in with the keyboard and sees the dashboard move under load');
    await admin.getByLabel('Password').fill(adminPassword);
    await admin.getByLabel('Password').press('Enter');
    await admin.locator('#who-name', { hasText: adminName }).waitFor();
    await admin.locator('#dash-status', { hasText: 'live' }).waitFor();
    await admin.waitForFunction(() => {
      const v = document.querySelector('[data-key="messages_in_per_sec"]');
      return v && Number(v.textContent) > 0;
    }, null, { timeout: WAIT });
    const online = Number(await admin.locator('[data-key="users_online"]').textContent());
    assert.ok(online >= 1, `users online: ${online}`);
    assert.deepEqual(await unnamedControls(admin), []);
    assert.deepEqual(await lowContrast(admin), []);
    await shot(shots, admin, 'admin-dashboard');

    step('finds zoe and disables her: her open page is signed out at once');
    await admin.getByRole('link', { name: 'Users' }).click();
    await admin.getByLabel('Name or email contains').fill('zoe');
    await admin.getByRole('button', { name: 'Search' }).click();
    await admin.getByRole('link', { name: 'zoe', exact: true }).click();
    await admin.locator('#user-online', { hasText: 'yes' }).waitFor();
    await shot(shots, admin, 'admin-user');
    await admin.getByLabel('Reason').first().fill('testing the console');
    await admin.getByRole('button', { name: 'Disable' }).click();
    await admin.locator('#user-state', { hasText: 'disabled' }).waitFor();
    await zoe.locator('#login-form').waitFor();
    const said = await zoe.locator('body').textContent();
    assert.ok(said.includes('disabled by an administrator'), `zoe's page: ${said.slice(0, 300)}`);

    step('a line is found in the log view, and the log level goes to debug live');
    // Found first: at debug level the load's lines fill the in-memory log
    // within seconds, and the disable's line would leave it.
    await admin.getByRole('link', { name: 'Logs' }).click();
    await admin.getByLabel('Text').fill('user.disable');
    await admin.getByRole('button', { name: 'Filter' }).click();
    await admin.locator('#log-lines div', { hasText: 'user.disable' }).first().waitFor();
    await admin.getByLabel('Server log level').fill('debug');
    await admin.getByRole('button', { name: 'Set level' }).click();
    await admin.locator('#toast', { hasText: 'Log level is now debug' }).waitFor();
    assert.deepEqual(await unnamedControls(admin), []);
    await shot(shots, admin, 'admin-logs');

    step('one user is traced for a minute, and the trace downloads as NDJSON of her lines');
    await admin.getByLabel('User id').fill(tracedId);
    await admin.getByLabel('Minutes').fill('1');
    await admin.getByRole('button', { name: 'Start trace' }).click();
    await admin.locator('#toast', { hasText: 'Tracing' }).waitFor();
    const traceRow = admin.locator('#traces tr', { hasText: tracedId }).first();
    await traceRow.waitFor();
    // Her sends go on: the trace fills; the page lists it again on a visit.
    for (let i = 0; ; i++) {
      await admin.getByRole('link', { name: 'Dashboard' }).click();
      await admin.getByRole('link', { name: 'Logs' }).click();
      await traceRow.waitFor();
      const lines = Number(await traceRow.locator('td.num').textContent());
      if (lines > 0) break;
      assert.ok(i < 40, 'the trace stayed empty');
      await admin.waitForTimeout(250);
    }
    const [download] = await Promise.all([
      admin.waitForEvent('download'),
      traceRow.getByRole('link', { name: 'Download' }).click(),
    ]);
    const ndjson = readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(ndjson.length > 0);
    assert.ok(ndjson.every((l) => String(l.user) === tracedId), JSON.stringify(ndjson[0]));
    assert.ok(ndjson.some((l) => l.level === 'debug'), 'no debug line in the trace');

    step('a group is found, shown with its members, and a member removed');
    await admin.getByRole('link', { name: 'Groups' }).click();
    await admin.getByLabel('Name contains').fill('crew');
    await admin.getByRole('button', { name: 'Search' }).click();
    await admin.getByRole('link', { name: 'crew', exact: true }).click();
    await admin.locator('h2', { hasText: 'Group crew' }).waitFor();
    await admin.getByRole('button', { name: 'Remove loadb' }).waitFor();
    assert.deepEqual(await unnamedControls(admin), []);
    assert.deepEqual(await lowContrast(admin), []);
    await shot(shots, admin, 'admin-group');
    await admin.getByRole('button', { name: 'Remove loadb' }).click();
    await admin.locator('#toast', { hasText: 'Removed' }).waitFor();
    await admin.getByRole('button', { name: 'Remove loadb' }).waitFor({ state: 'detached' });

    step('the configuration page shows each key with where it came from');
    await admin.getByRole('link', { name: 'Configuration' }).click();
    const httpRow = admin.locator('tr', { hasText: 'listen.http' }).first();
    await httpRow.waitFor();
    assert.ok((await httpRow.textContent()).includes('flag'), await httpRow.textContent());
    const levelRow = admin.locator('tr', { has: admin.locator('code', { hasText: /^log\.level$/ }) });
    assert.ok((await levelRow.textContent()).includes('live'), await levelRow.textContent());
    assert.deepEqual(await lowContrast(admin), []);
    await shot(shots, admin, 'admin-config');

    step('the audit log shows the disable, the trace and the removal, by this administrator');
    await admin.getByRole('link', { name: 'Audit log' }).click();
    for (const action of ['user.disable', 'log.trace', 'group.remove_member']) {
      const row = admin.locator('tr', { hasText: action }).first();
      await row.waitFor();
      assert.ok((await row.textContent()).includes(adminName), action);
    }
    assert.deepEqual(await lowContrast(admin), []);
    await shot(shots, admin, 'admin-audit');

    step('logs out');
    await admin.getByRole('button', { name: 'Log out' }).click();
    await admin.locator('#login-form').waitFor();
    console.log('[browser] all passed');
  } finally {
    await browser.close();
  }
}

main().catch(failed);
