// Walks the dashboard's Tags page on the real gateway: a tag seen only in a call is listed
// without a Delete button; two tags are made through the form (one with a budget and limits),
// a taken name is refused in the dialog, one tag is deleted and the search narrows the list.
// Usage: node tags-page.mjs <base_url>; env DASHBOARD_PASSWORD (master key), CHROMIUM,
// DASHBOARD_ARTIFACTS. Exits non-zero on the first failed check; prints "TAGS-PAGE-E2E OK".
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { check, launchBrowser, signIn, watchPage } from './harness.mjs';

const base = process.argv[2];
const password = process.env.DASHBOARD_PASSWORD;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.DASHBOARD_ARTIFACTS || 'ui-artifacts';
if (!base || !password) {
  console.error('usage: DASHBOARD_PASSWORD=... node tags-page.mjs <base_url>');
  process.exit(2);
}
const origin = new URL(base).origin;
const TIMEOUT = 30_000; // liveness only

await mkdir(artifacts, { recursive: true });
const browser = await launchBrowser(executablePath, TIMEOUT);
const problems = [];
try {
  const { page } = browser;
  watchPage(page, { origin, secrets: [password], expected: /status of (401|400)/, problems });
  await signIn(page, base, password);

  // --- the list ------------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Tags' }).click();
  const seen = page.locator('#tags-body tr[data-name="seen-in-a-call"]');
  await seen.waitFor();
  check((await seen.textContent()).includes('calls'), 'a tag seen only in calls says so');
  check(await seen.locator('button').count() === 0, 'a tag seen only in calls has no Delete button');
  check(await page.title() === 'Tags · IdleHands gateway', 'the page has its title');

  // --- create --------------------------------------------------------------------------------
  const dialog = page.locator('#tag-dialog');
  async function create(name, extra) {
    await page.getByRole('button', { name: 'Create tag' }).click();
    await dialog.getByLabel('Name').fill(name);
    for (const [label, value] of Object.entries(extra || {})) await dialog.getByLabel(label).fill(value);
    await dialog.getByRole('button', { name: 'Create' }).click();
  }
  await create('browser-team', {
    Description: 'made in the browser', 'Max budget (USD)': '5', 'Budget resets every': '30d',
    'Requests / minute': '10', 'Tokens / minute': '5000',
  });
  const team = page.locator('#tags-body tr[data-name="browser-team"]');
  await team.waitFor();
  const text = await team.textContent();
  check(text.includes('$5.00 / 30d') && text.includes('10 rpm') && text.includes('5000 tpm'), 'the tag is listed with its budget and limits: ' + text);
  check(text.includes('made in the browser') && text.includes('API'), 'the tag shows its description and source: ' + text);
  check(!(await dialog.isVisible()), 'the dialog closes after creating');

  await create('browser-team', {});
  await page.locator('#tag-error').filter({ hasText: 'Tag browser-team already exists' }).waitFor();
  check(true, 'a taken name is refused and the dialog says why');
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  await create('browser-gone', {});
  await page.locator('#tags-body tr[data-name="browser-gone"]').waitFor();
  check((await page.locator('#tags-body tr[data-name="browser-gone"]').textContent()).includes('none'), 'a tag without a budget says none');
  await page.screenshot({ path: join(artifacts, 'real-gateway-tags.png') });

  // --- delete --------------------------------------------------------------------------------
  await page.locator('#tags-body tr[data-name="browser-gone"]').getByRole('button', { name: 'Delete browser-gone' }).click();
  await page.locator('#tag-confirm-dialog').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#tags-body tr[data-name="browser-gone"]').waitFor({ state: 'detached' });
  check(await team.count() === 1, 'deleting one tag keeps the others');

  // --- search --------------------------------------------------------------------------------
  await page.locator('#tag-search').fill('browser');
  await page.waitForFunction(() => document.querySelectorAll('#tags-body tr').length === 1);
  check(true, 'the search narrows the list');

  if (problems.length) throw new Error(problems.join('\n'));
  check(true, 'no off-origin requests, no secrets in URLs, no page errors');
  console.log('TAGS-PAGE-E2E OK');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
