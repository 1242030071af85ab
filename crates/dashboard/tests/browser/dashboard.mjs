// Walks the dashboard as an operator would, in Debian's Chromium driven by playwright-core.
// Usage: node dashboard.mjs <base_url>; env DASHBOARD_PASSWORD (master key), CHROMIUM
// (executable, default /usr/bin/chromium), DASHBOARD_ARTIFACTS (screenshot folder).
// Exits non-zero with a message on the first failed check; prints "DASHBOARD-E2E OK" at the end.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { check, launchBrowser, watchPage } from './harness.mjs';

const base = process.argv[2];
const password = process.env.DASHBOARD_PASSWORD;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.DASHBOARD_ARTIFACTS || 'ui-artifacts';
if (!base || !password) {
  console.error('usage: DASHBOARD_PASSWORD=... node dashboard.mjs <base_url>');
  process.exit(2);
}
const origin = new URL(base).origin;
const TIMEOUT = 30_000; // liveness only; a loaded CI machine can be slow

await mkdir(artifacts, { recursive: true });
const browser = await launchBrowser(executablePath, TIMEOUT);
const problems = [];
try {
  const { context, page } = browser;

  // Everything must come from the gateway itself, and the key must never be in a URL.
  // The session probe's 401 on the login page is expected; other console errors are bugs.
  const urls = watchPage(page, { origin, secrets: [password], expected: /status of 401/, problems });

  // --- login -------------------------------------------------------------------------------
  await page.goto(base + '/ui/');
  await page.waitForURL(/\/ui\/login$/);
  check(true, 'signed-out visit to /ui/ lands on the login page');
  await page.getByLabel('Master key').fill('sk-wrong-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
  check(page.url().endsWith('/ui/login'), 'a wrong key shows an error and stays on the login page');
  await page.screenshot({ path: join(artifacts, 'login.png') });
  await page.getByLabel('Master key').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/ui\/$/);
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === 'idlehands_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'login sets an HttpOnly SameSite=Strict session cookie');
  check(!(await page.evaluate(() => document.cookie)).includes('idlehands_session'), 'the session cookie is not readable by scripts');
  await page.waitForSelector('body[data-ready="true"]');

  // --- overview: chart ---------------------------------------------------------------------
  const bars = page.locator('#chart svg rect.seg-bar');
  await bars.first().waitFor();
  check((await bars.count()) >= 20, `stacked spend chart has bars (${await bars.count()})`);
  const keyGroups = await bars.evaluateAll((els) => [...new Set(els.map((e) => e.dataset.group))]);
  check(keyGroups.includes('ci-runner') && keyGroups.includes('research-notebook'), 'chart series are key aliases: ' + keyGroups.join(', '));
  const spendText = await page.locator('#total-spend').textContent();
  check(/^\$\d[\d,]*\.\d{2}$/.test(spendText) && spendText !== '$0.00', 'total spend card shows ' + spendText);
  check((await page.locator('#legend li').count()) === keyGroups.length, 'legend lists every series');
  check((await page.locator('#breakdown tr').count()) === keyGroups.length, 'breakdown table lists every group');

  await page.locator('#overview-form label', { hasText: 'Model' }).click();
  await page.locator('#chart svg rect[data-group="claude-sonnet-4"]').first().waitFor();
  check((await page.locator('#breakdown-group').textContent()) === 'Model', 'group by model regroups the chart');
  await page.locator('#overview-form label', { hasText: 'Lines' }).click();
  await page.locator('#chart svg polyline').first().waitFor();
  check((await page.locator('#chart svg polyline').count()) === 3, 'line style draws one line per model');
  await page.locator('#overview-form label', { hasText: 'User' }).click();
  await page.locator('#chart svg polyline[data-group="alice"]').waitFor();
  check(true, 'group by user draws a line per user');
  await page.locator('#overview-form label', { hasText: 'Stacked' }).click();
  await page.locator('#overview-form label', { hasText: 'Key' }).click();
  await page.locator('#chart svg rect[data-group="ci-runner"]').first().waitFor();
  await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
  check(true, 'screenshot saved to ' + join(artifacts, 'dashboard.png'));

  // --- keys ----------------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Keys' }).click();
  const ciRow = page.locator('#keys-body tr', { hasText: 'ci-runner' });
  await ciRow.waitFor();
  const budgetBars = page.locator('#keys-body [role="progressbar"]');
  check((await budgetBars.count()) === 3, 'keys with a max budget show a budget bar');
  const ciBar = ciRow.locator('[role="progressbar"]');
  check((await ciBar.getAttribute('aria-valuetext')) === '$42.18 of $50.00', 'ci-runner budget bar reads $42.18 of $50.00');
  const width = await ciBar.locator('span').evaluate((e) => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width);
  check(width > 0.8 && width < 0.9, 'ci-runner bar is filled to 84% (' + width.toFixed(3) + ')');
  check(await page.locator('#keys-body tr', { hasText: 'staging-bot' }).locator('.bar.over').count() === 1, 'over-budget key bar is marked over');
  check((await ciRow.textContent()).includes('600 rpm'), 'limits column shows rpm');
  check((await page.locator('#keys-body tr', { hasText: 'legacy-batch' }).locator('.badge').textContent()) === 'Blocked', 'blocked key shows Blocked');

  await page.getByRole('button', { name: 'Block ci-runner' }).click();
  await page.getByRole('button', { name: 'Unblock ci-runner' }).waitFor();
  check((await ciRow.locator('.badge').textContent()) === 'Blocked', 'blocking a key updates its status');

  await page.getByRole('button', { name: 'Create key' }).click();
  const create = page.locator('#create-dialog');
  await create.getByLabel('Alias').fill('e2e-created');
  await create.getByLabel('Max budget (USD)').fill('25');
  await create.getByLabel('Budget resets every').fill('30d');
  await create.getByLabel('Expires after').fill('90d');
  await create.getByLabel('Models').fill('gpt-4o-mini, claude-sonnet-4');
  await create.getByLabel('Requests / minute').fill('100');
  await create.getByRole('button', { name: 'Create' }).click();
  const secret = page.locator('#secret-value');
  await page.locator('#secret-dialog[open]').waitFor();
  const plaintext = (await secret.textContent()).trim();
  check(/^sk-[0-9a-f]{22}$/.test(plaintext), 'new key plaintext shown in a dialog');
  console.log('created-key: ' + plaintext);
  await page.locator('#keys-body tr', { hasText: 'e2e-created' }).waitFor();
  await page.screenshot({ path: join(artifacts, 'key-created.png') });
  await page.locator('#secret-dialog').getByRole('button', { name: 'Done' }).click();
  await page.waitForFunction(() => document.getElementById('secret-value').textContent === '');
  check(true, 'plaintext wiped from the page when the dialog closes');
  check(!(await page.content()).includes(plaintext), 'plaintext is nowhere in the page afterwards');
  check((await page.locator('#keys-body tr', { hasText: 'e2e-created' }).textContent()).includes('$0.00 of $25.00'), 'new key listed with its budget');

  await page.getByRole('button', { name: 'Delete legacy-batch' }).click();
  await page.locator('#confirm-dialog[open]').waitFor();
  check((await page.locator('#confirm-text').textContent()).includes('legacy-batch'), 'delete asks for confirmation naming the key');
  await page.locator('#confirm-dialog').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#keys-body tr', { hasText: 'legacy-batch' }).waitFor({ state: 'detached' });
  check(true, 'confirmed delete removes the key');
  await page.screenshot({ path: join(artifacts, 'keys.png'), fullPage: true });

  // --- request log ---------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Requests' }).click();
  const rows = page.locator('#logs-body tr');
  await rows.first().waitFor();
  check((await rows.count()) === 50, 'request log shows a page of 50 rows');
  await rows.nth(0).getByRole('button').click();
  const drawer = page.locator('#log-drawer');
  await drawer.locator('h3', { hasText: 'Prompt' }).waitFor();
  const drawerText = await drawer.textContent();
  check(drawerText.includes('careful code reviewer') && drawerText.includes('The diff looks fine'), 'detail shows stored prompt and response');
  check(drawerText.includes("<script>alert('x')</script>") && (await drawer.locator('script').count()) === 0, 'logged markup is shown as text, not run');
  await page.screenshot({ path: join(artifacts, 'request-detail.png') });
  await drawer.getByRole('button', { name: 'Close details' }).click();
  await rows.nth(1).getByRole('button').click();
  await drawer.locator('[data-testid="no-prompts"]').waitFor();
  check(true, 'a row without stored prompts says they are not stored');
  await page.keyboard.press('Escape');
  await drawer.waitFor({ state: 'hidden' });

  const filters = page.locator('#log-filters');
  await filters.getByLabel('Key').selectOption({ label: 'research-notebook' });
  await filters.getByRole('button', { name: 'Apply' }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('#logs-body tr td:nth-child(3)')].every((td) => td.textContent === 'research-notebook'));
  check((await rows.count()) > 0, 'key filter narrows the log to that key');
  await filters.getByLabel('Status').selectOption('failure');
  await page.waitForFunction(() => [...document.querySelectorAll('#logs-body .badge')].every((b) => b.textContent === 'failure'));
  check(true, 'status filter shows only failures');
  await filters.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#logs-body tr').length === 50);
  check(true, 'clearing filters restores the full page');

  // Dark scheme: same page, the palette from prefers-color-scheme (looked at by a person).
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('#chart svg rect.seg-bar').first().waitFor();
  await page.screenshot({ path: join(artifacts, 'dashboard-dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });

  // --- sign out ------------------------------------------------------------------------------
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/ui\/login$/);
  await page.goto(base + '/ui/#/keys');
  await page.waitForURL(/\/ui\/login$/);
  check(true, 'after sign-out the dashboard sends you to the login page');

  check(urls.some((u) => u.includes('/global/spend/report')), 'the chart came from /global/spend/report');
  if (problems.length) throw new Error(problems.join('\n'));
  check(true, 'no off-origin requests, no key in URLs, no page errors');
  console.log('DASHBOARD-E2E OK');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
