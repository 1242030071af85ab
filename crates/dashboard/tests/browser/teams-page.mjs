// Walks the dashboard's Teams and Users pages on the real gateway (crates/proxy, store on
// SQLite): budgets at a glance, create, edit budget, block. Usage: node teams-page.mjs <base_url>;
// env DASHBOARD_PASSWORD (master key), CHROMIUM, DASHBOARD_ARTIFACTS.
// Exits non-zero on the first failed check; prints "TEAMS-PAGE-E2E OK" at the end.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { check, launchBrowser, signIn, watchPage } from './harness.mjs';

const base = process.argv[2];
const password = process.env.DASHBOARD_PASSWORD;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.DASHBOARD_ARTIFACTS || 'ui-artifacts';
if (!base || !password) {
  console.error('usage: DASHBOARD_PASSWORD=... node teams-page.mjs <base_url>');
  process.exit(2);
}
const origin = new URL(base).origin;
const TIMEOUT = 30_000; // liveness only

await mkdir(artifacts, { recursive: true });
const browser = await launchBrowser(executablePath, TIMEOUT);
const problems = [];
try {
  const { context, page } = browser;
  watchPage(page, { origin, secrets: [password], expected: /status of (401|400)/, problems });
  await signIn(page, base, password);

  // --- teams: budgets at a glance, create, edit, block ---------------------------------------
  await page.getByRole('link', { name: 'Teams' }).click();
  const research = page.locator('#teams-body tr[data-team="research"]');
  await research.waitFor();
  const bar = await research.locator('[role="progressbar"]').getAttribute('aria-valuetext');
  check(/^\$0\.\d+ of \$10\.00$/.test(bar), 'the seeded team shows its spend against its budget: ' + bar);
  check((await research.textContent()).includes('60 rpm'), 'the team row shows its rpm limit');
  check((await research.textContent()).includes('alice'), 'the team row lists its members');

  await page.getByRole('button', { name: 'Create team' }).click();
  const td = page.locator('#team-dialog');
  await td.getByLabel('Team id').fill('browser-team');
  await td.getByLabel('Alias').fill('Browser Team');
  await td.getByLabel('Models').fill('mocky');
  await td.getByLabel('Members').fill('u-browser');
  await td.getByRole('button', { name: 'Create' }).click();
  const made = page.locator('#teams-body tr[data-team="browser-team"]');
  await made.waitFor();
  check((await made.textContent()).includes('Browser Team'), 'a team created in the dialog is listed');

  await page.getByRole('button', { name: 'Edit budget of Browser Team' }).click();
  const bd = page.locator('#budget-dialog');
  await bd.getByLabel('Max budget (USD)').fill('7');
  await bd.getByLabel('Requests / minute').fill('30');
  await bd.getByRole('button', { name: 'Save' }).click();
  await page.waitForFunction(() => {
    const row = document.querySelector('#teams-body tr[data-team="browser-team"]');
    return row && row.textContent.includes('of $7.00') && row.textContent.includes('30 rpm');
  });
  check(true, 'editing the budget shows the new budget and limit');

  // A budget the gateway refuses is explained in the dialog.
  await page.getByRole('button', { name: 'Edit budget of Browser Team' }).click();
  await bd.getByLabel('Budget resets every').fill('');
  await bd.getByLabel('Max budget (USD)').fill('7');
  await page.evaluate(() => { document.querySelector('#budget-form [name="max_budget"]').removeAttribute('min'); });
  await bd.getByLabel('Max budget (USD)').fill('-1');
  await bd.getByRole('button', { name: 'Save' }).click();
  await page.locator('#budget-error', { hasText: 'max_budget' }).waitFor();
  check(true, 'a refused budget shows the gateway\'s message');
  await bd.getByRole('button', { name: 'Cancel' }).click();

  await page.getByRole('button', { name: 'Block Research' }).click();
  await page.getByRole('button', { name: 'Unblock Research' }).waitFor();
  check((await research.locator('.badge').textContent()) === 'Blocked', 'blocking a team updates its status');
  await page.screenshot({ path: join(artifacts, 'teams-page.png'), fullPage: true });

  // --- users ---------------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Users' }).click();
  const alice = page.locator('#users-body tr[data-user="alice"]');
  await alice.waitFor();
  check((await alice.textContent()).includes('Internal user'), 'the seeded user shows their role');
  check((await alice.textContent()).includes('research'), 'the seeded user shows their teams');
  const aliceBar = await alice.locator('[role="progressbar"]').getAttribute('aria-valuetext');
  check(/^\$0\.\d+ of \$2\.00$/.test(aliceBar), 'the seeded user shows spend against budget: ' + aliceBar);

  await page.getByRole('button', { name: 'Create user' }).click();
  const ud = page.locator('#user-dialog');
  await ud.getByLabel('User id').fill('bob');
  await ud.getByLabel('E-mail').fill('bob@example.com');
  await ud.getByLabel('Role').selectOption('proxy_admin_viewer');
  await ud.getByLabel('Teams').fill('browser-team');
  await ud.getByRole('button', { name: 'Create' }).click();
  await page.locator('#secret-dialog[open]').waitFor();
  const plaintext = (await page.locator('#secret-value').textContent()).trim();
  check(/^sk-\S{8,}$/.test(plaintext), 'the new user\'s key is shown once');
  console.log('created-user-key: ' + plaintext);
  await page.locator('#secret-dialog').getByRole('button', { name: 'Done' }).click();
  const bob = page.locator('#users-body tr[data-user="bob"]');
  await bob.waitFor();
  check((await bob.textContent()).includes('Admin (view only)'), 'the new user is listed with their role');

  await page.getByRole('button', { name: 'Edit budget of bob' }).click();
  await bd.getByLabel('Max budget (USD)').fill('3');
  await bd.getByRole('button', { name: 'Save' }).click();
  await page.waitForFunction(() => {
    const row = document.querySelector('#users-body tr[data-user="bob"]');
    return row && row.textContent.includes('of $3.00');
  });
  check(true, 'editing a user\'s budget shows it');
  await page.screenshot({ path: join(artifacts, 'users-page.png'), fullPage: true });

  if (problems.length) throw new Error(problems.join('\n'));
  check(true, 'no off-origin requests, no key in URLs, no page errors');
  console.log('TEAMS-PAGE-E2E OK');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
