// Walks the dashboard served by the real gateway (crates/proxy, store on SQLite) with data made
// by real requests. Usage: node real-gateway.mjs <base_url>; env DASHBOARD_PASSWORD (master
// key), CHROMIUM, DASHBOARD_ARTIFACTS, EXPECT_REQUESTS (rows in the request log),
// EXPECT_ALIASES (comma-separated key aliases that made requests).
// Exits non-zero on the first failed check; prints "REAL-GATEWAY-E2E OK" at the end.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { check, launchBrowser, watchPage } from './harness.mjs';

const base = process.argv[2];
const password = process.env.DASHBOARD_PASSWORD;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.DASHBOARD_ARTIFACTS || 'ui-artifacts';
const expectRequests = Number(process.env.EXPECT_REQUESTS || '0');
const expectAliases = (process.env.EXPECT_ALIASES || '').split(',').filter(Boolean);
if (!base || !password) {
  console.error('usage: DASHBOARD_PASSWORD=... node real-gateway.mjs <base_url>');
  process.exit(2);
}
const origin = new URL(base).origin;
const TIMEOUT = 30_000; // liveness only

await mkdir(artifacts, { recursive: true });
const browser = await launchBrowser(executablePath, TIMEOUT);
const problems = [];
try {
  const { context, page } = browser;

  const urls = watchPage(page, { origin, secrets: [password], expected: /status of 401/, problems });

  // --- login ---------------------------------------------------------------------------------
  await page.goto(base + '/ui/');
  await page.waitForURL(/\/ui\/login$/);
  check(true, 'signed-out visit to /ui/ lands on the login page');
  await page.getByLabel('Master key').fill('sk-wrong-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
  check(page.url().endsWith('/ui/login'), 'the gateway refuses a wrong key');
  await page.getByLabel('Master key').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/ui\/$/);
  const session = (await context.cookies(base)).find((c) => c.name === 'idlehands_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the gateway sets an HttpOnly SameSite=Strict session cookie');
  check(!session.value.includes(password), 'the cookie is not the master key');
  await page.waitForSelector('body[data-ready="true"]');

  // --- overview ------------------------------------------------------------------------------
  const bars = page.locator('#chart svg rect.seg-bar');
  await bars.first().waitFor();
  const keyGroups = await bars.evaluateAll((els) => [...new Set(els.map((e) => e.dataset.group))]);
  for (const a of expectAliases) check(keyGroups.includes(a), `chart has a series for key ${a} (${keyGroups.join(', ')})`);
  const spendText = await page.locator('#total-spend').textContent();
  check(/^\$\d[\d,]*\.\d{2,}$/.test(spendText), 'total spend card shows ' + spendText);
  await page.locator('#overview-form label', { hasText: 'Model' }).click();
  await page.locator('#chart svg rect[data-group="mocky"]').first().waitFor();
  await page.locator('#chart svg rect[data-group="other"]').first().waitFor();
  check(true, 'group by model shows both model groups');
  await page.locator('#overview-form label', { hasText: 'Key' }).click();
  await page.locator(`#chart svg rect[data-group="${expectAliases[0]}"]`).first().waitFor();
  await page.screenshot({ path: join(artifacts, 'real-gateway-dashboard.png'), fullPage: true });
  check(true, 'screenshot saved to ' + join(artifacts, 'real-gateway-dashboard.png'));

  // --- keys ----------------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Keys' }).click();
  const ciRow = page.locator('#keys-body tr', { hasText: 'ci-runner' });
  await ciRow.waitFor();
  const ciBar = ciRow.locator('[role="progressbar"]');
  const barText = await ciBar.getAttribute('aria-valuetext');
  check(/^\$\d+\.\d{2} of \$5\.00$/.test(barText), 'ci-runner budget bar: ' + barText);
  check((await ciRow.textContent()).includes('60 rpm'), 'limits column shows the rpm limit');
  await page.getByRole('button', { name: 'Block ci-runner' }).click();
  await page.getByRole('button', { name: 'Unblock ci-runner' }).waitFor();
  check((await ciRow.locator('.badge').textContent()) === 'Blocked', 'blocking a key on the real gateway updates its status');

  await page.getByRole('button', { name: 'Create key' }).click();
  const create = page.locator('#create-dialog');
  await create.getByLabel('Alias').fill('browser-made');
  await create.getByLabel('Max budget (USD)').fill('25');
  await create.getByLabel('Budget resets every').fill('30d');
  await create.getByLabel('Models').fill('mocky');
  await create.getByLabel('Requests / minute').fill('100');
  await create.getByRole('button', { name: 'Create' }).click();
  await page.locator('#secret-dialog[open]').waitFor();
  const plaintext = (await page.locator('#secret-value').textContent()).trim();
  check(/^sk-\S{8,}$/.test(plaintext), 'the new key is shown once in a dialog');
  console.log('created-key: ' + plaintext);
  await page.locator('#keys-body tr', { hasText: 'browser-made' }).waitFor();
  await page.locator('#secret-dialog').getByRole('button', { name: 'Done' }).click();
  await page.waitForFunction(() => document.getElementById('secret-value').textContent === '');
  check(!(await page.content()).includes(plaintext), 'plaintext is gone from the page afterwards');

  await page.getByRole('button', { name: 'Delete legacy-batch' }).click();
  await page.locator('#confirm-dialog[open]').waitFor();
  await page.locator('#confirm-dialog').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#keys-body tr', { hasText: 'legacy-batch' }).waitFor({ state: 'detached' });
  check(true, 'deleting a key removes it from the list');
  await page.screenshot({ path: join(artifacts, 'real-gateway-keys.png'), fullPage: true });

  // --- request log ---------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Requests' }).click();
  const rows = page.locator('#logs-body tr');
  await rows.first().waitFor();
  check((await rows.count()) === expectRequests, `request log lists the ${expectRequests} requests made (${await rows.count()})`);
  // research-notebook's call to mocky is the one whose prompt carries markup and a key.
  const xss = rows.filter({ hasText: 'research-notebook' }).filter({ hasText: 'mocky' }).first();
  await xss.getByRole('button').click();
  const drawer = page.locator('#log-drawer');
  await drawer.locator('h3', { hasText: 'Prompt' }).waitFor();
  const drawerText = await drawer.textContent();
  check(drawerText.includes("Review <script>alert('x')</script>") && (await drawer.locator('script').count()) === 0, 'the stored prompt is shown as text: ' + drawerText.slice(0, 400));
  check(drawerText.includes('Hello from the mock deployment'), 'the stored response is shown');
  check(!drawerText.includes('sk-live-0123456789abcdef') && drawerText.includes('sk-[redacted]'), 'a key pasted into a prompt is redacted in the log');
  await page.screenshot({ path: join(artifacts, 'real-gateway-request-detail.png') });
  await drawer.getByRole('button', { name: 'Close details' }).click();
  const filters = page.locator('#log-filters');
  await filters.getByLabel('Key').selectOption({ label: 'research-notebook' });
  await filters.getByRole('button', { name: 'Apply' }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('#logs-body tr td:nth-child(3)')].every((td) => td.textContent === 'research-notebook'));
  check((await rows.count()) > 0, 'the key filter narrows the log on the server');
  await filters.getByRole('button', { name: 'Clear' }).click();

  // --- sign out ------------------------------------------------------------------------------
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/ui\/login$/);
  const after = await page.evaluate(async () => (await fetch('/key/list')).status);
  check(after === 401, 'after sign-out the management API refuses the browser');

  check(urls.some((u) => u.includes('/global/spend/report')), 'the chart came from /global/spend/report');
  if (problems.length) throw new Error(problems.join('\n'));
  check(true, 'no off-origin requests, no key in URLs, no page errors');
  console.log('REAL-GATEWAY-E2E OK');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
