// Walks the dashboard's Models page on the real gateway (store_model_in_db on): lists the
// config's models, adds two through the form (one with an upstream key), deletes one.
// Usage: node models-page.mjs <base_url>; env DASHBOARD_PASSWORD (master key), CHROMIUM,
// DASHBOARD_ARTIFACTS, UPSTREAM_KEY (the key typed into the form; must never be shown).
// Exits non-zero on the first failed check; prints "MODELS-PAGE-E2E OK" at the end.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { check, launchBrowser, signIn, watchPage } from './harness.mjs';

const base = process.argv[2];
const password = process.env.DASHBOARD_PASSWORD;
const upstreamKey = process.env.UPSTREAM_KEY;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.DASHBOARD_ARTIFACTS || 'ui-artifacts';
if (!base || !password || !upstreamKey) {
  console.error('usage: DASHBOARD_PASSWORD=... UPSTREAM_KEY=... node models-page.mjs <base_url>');
  process.exit(2);
}
const origin = new URL(base).origin;
const TIMEOUT = 30_000; // liveness only

await mkdir(artifacts, { recursive: true });
const browser = await launchBrowser(executablePath, TIMEOUT);
const problems = [];
try {
  const { context, page } = browser;
  watchPage(page, { origin, secrets: [password, upstreamKey], expected: /status of (401|400)/, problems });
  const modelInfoBodies = [];
  page.on('response', async (res) => {
    if (res.url().includes('/model/')) {
      try { modelInfoBodies.push(await res.text()); } catch (_) { /* navigation */ }
    }
  });

  await signIn(page, base, password);

  // --- the list ------------------------------------------------------------------------------
  await page.getByRole('link', { name: 'Models' }).click();
  const rows = page.locator('#models-body tr');
  await page.locator('#models-body tr[data-name="mocky"]').waitFor();
  check(await page.locator('#models-body tr[data-name="other"]').count() === 1, 'config models are listed');
  check(await page.locator('#models-body tr[data-name="mocky"] button').count() === 0, 'a config model has no Delete button');
  check((await page.locator('#models-body tr[data-name="mocky"]').textContent()).includes('config.yaml'), 'a config model says where it comes from');
  check((await page.locator('#models-body tr[data-name="mocky"]').textContent()).includes('$1.00 / $2.00'), 'prices are shown per 1M tokens');
  check(await page.title() === 'Models · IdleHands gateway', 'the page has its title');

  // --- add ----------------------------------------------------------------------------------
  async function add(name, model, extra) {
    await page.getByRole('button', { name: 'Add model' }).click();
    const dialog = page.locator('#model-dialog');
    await dialog.getByLabel('Public name').fill(name);
    await dialog.getByLabel('Provider model').fill(model);
    for (const [label, value] of Object.entries(extra || {})) await dialog.getByLabel(label).fill(value);
    await dialog.getByRole('button', { name: 'Add' }).click();
  }
  // A base URL the gateway cannot use is refused, and the reason shown in the dialog.
  await add('browser-bad', 'openai/x', { 'API base': 'ftp://nowhere.example' });
  const dialog = page.locator('#model-dialog');
  await page.locator('#model-error').filter({ hasText: 'api_base' }).waitFor();
  check(true, 'the gateway refuses a bad base URL and the dialog says why');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  check(await page.locator('#models-body tr[data-name="browser-bad"]').count() === 0, 'the refused model is not listed');

  await add('browser-kept', 'openai/browser-kept-model', {
    'API base': 'http://127.0.0.1:9/v1', 'API key': upstreamKey, 'Requests / minute': '5',
    'Input USD / 1M tokens': '3', 'Output USD / 1M tokens': '15',
  });
  await page.locator('#models-body tr[data-name="browser-kept"]').waitFor();
  const kept = await page.locator('#models-body tr[data-name="browser-kept"]').textContent();
  check(kept.includes('API') && kept.includes('5 rpm') && kept.includes('$3.00 / $15.00'), 'the added model is listed with its limits and prices: ' + kept);
  check(!(await dialog.isVisible()), 'the dialog closes after adding');
  check((await dialog.getByLabel('API key').inputValue()) === '', 'the key typed into the form is cleared');
  await add('browser-gone', 'openai/browser-gone-model', {});
  await page.locator('#models-body tr[data-name="browser-gone"]').waitFor();
  await page.screenshot({ path: join(artifacts, 'real-gateway-models.png') });

  // --- delete -------------------------------------------------------------------------------
  await page.locator('#models-body tr[data-name="browser-gone"]').getByRole('button', { name: 'Delete browser-gone' }).click();
  await page.locator('#model-confirm-dialog').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#models-body tr[data-name="browser-gone"]').waitFor({ state: 'detached' });
  check(await page.locator('#models-body tr[data-name="browser-kept"]').count() === 1, 'deleting one model keeps the others');

  // --- search -------------------------------------------------------------------------------
  await page.locator('#model-search').fill('kept');
  await page.waitForFunction(() => document.querySelectorAll('#models-body tr').length === 1);
  check(await rows.count() === 1, 'the search narrows the list');

  const html = await page.content();
  check(!html.includes(upstreamKey), 'the upstream key is not in the page');
  check(modelInfoBodies.length > 0 && modelInfoBodies.every((b) => !b.includes(upstreamKey)), 'no answer the page received carries the upstream key');
  if (problems.length) throw new Error(problems.join('\n'));
  check(true, 'no off-origin requests, no secrets in URLs, no page errors');
  console.log('MODELS-PAGE-E2E OK');
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
