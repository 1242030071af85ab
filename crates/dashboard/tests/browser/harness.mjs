// What every browser walk shares: a check that logs or throws, and a headless Chromium on a
// throwaway profile (Debian's build, driven by playwright-core), removed again at the end.
import { chromium } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

// `{ context, page, close }`; `timeout` bounds every wait (liveness only).
export async function launchBrowser(executablePath, timeout) {
  const userDataDir = await mkdtemp(join(tmpdir(), 'idlehands-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      viewport: { width: 1440, height: 900 },
      colorScheme: 'light',
      timezoneId: 'UTC',
      locale: 'en-US',
    });
  } catch (e) {
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  context.setDefaultTimeout(timeout);
  const page = context.pages()[0] || (await context.newPage());
  const close = async () => {
    await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  };
  return { context, page, close };
}

// Records in `problems` what no page may do: a request off the gateway's origin, a secret in a
// URL, an uncaught error, a console error other than an expected one (`expected`, a RegExp over
// its text: the login page's session probe answers 401, a refused form 400). Returns every URL
// the page asked for, in order.
export function watchPage(page, { origin, secrets, expected, problems }) {
  const urls = [];
  page.on('request', (req) => {
    const u = req.url();
    urls.push(u);
    if (!u.startsWith('data:') && new URL(u).origin !== origin) problems.push('off-origin request: ' + u);
    for (const s of secrets) {
      if (u.includes(s)) problems.push('a secret in a URL: ' + u.split(s).join('<secret>'));
    }
  });
  page.on('pageerror', (e) => problems.push('uncaught page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected.test(m.text())) problems.push('console error: ' + m.text());
  });
  return urls;
}

// Signs in on the login page with the master key and waits until the dashboard is ready.
export async function signIn(page, base, password) {
  await page.goto(base + '/ui/login');
  await page.getByLabel('Master key').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/ui\/$/);
  await page.waitForSelector('body[data-ready="true"]');
}
