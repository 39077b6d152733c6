// The console in a real browser: Playwright drives the system's Chromium (headless) against a
// gateway that `tests/console.rs` started, filled with events and a failing destination.
//
// Environment (set by tests/console.rs):
//   ONCEHOOK_CONSOLE_URL   the console, e.g. http://127.0.0.1:8081/console
//   ONCEHOOK_ADMIN_TOKEN   the gateway's admin token
//   ONCEHOOK_TEST_EMAIL    the email of the event to find, whose delivery to `crm` is dead
//   ONCEHOOK_TEST_EVENT_ID that event's id
//   ONCEHOOK_TEST_MASKED   JSON list of values the source masks: none may appear in any page
//   ONCEHOOK_TEST_DEAD     how many deliveries are dead when the test starts
//   ONCEHOOK_SCREENSHOTS   where to write one PNG per page
//   ONCEHOOK_CHROMIUM      the browser (default /usr/bin/chromium)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/console.rs (scripts/test)`);
  return value;
}

const consoleUrl = env('ONCEHOOK_CONSOLE_URL');
const token = env('ONCEHOOK_ADMIN_TOKEN');
const email = env('ONCEHOOK_TEST_EMAIL');
const eventId = env('ONCEHOOK_TEST_EVENT_ID');
const masked = JSON.parse(env('ONCEHOOK_TEST_MASKED'));
const deadAtStart = Number(env('ONCEHOOK_TEST_DEAD'));
const screenshots = env('ONCEHOOK_SCREENSHOTS');
const executablePath = process.env.ONCEHOOK_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000;

let context;
let page;
let profile;
const browserErrors = [];
const pagesChecked = [];

before(async () => {
  mkdirSync(screenshots, { recursive: true });
  // A fresh profile every run: nothing remembered from an earlier session.
  profile = mkdtempSync(join(tmpdir(), 'oncehook-console-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1366, height: 900 },
    timeout: 60000,
  });
  context.setDefaultTimeout(TIMEOUT);
  page = context.pages()[0] || await context.newPage();
  // A CSP violation, a script error or a failed request shows up here.
  page.on('console', (message) => {
    if (message.type() === 'error') browserErrors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => browserErrors.push(`page error: ${error.message}`));
});

after(async () => {
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// No masked value in clear anywhere in the page's HTML (what `page.content()` serializes).
async function assertMasked(name) {
  const html = await page.content();
  for (const value of masked) {
    assert.ok(!html.includes(value), `${name}: the masked value ${JSON.stringify(value)} appears in the page`);
  }
  pagesChecked.push(name);
}

async function shot(name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
  await assertMasked(name);
}

function heading(name) {
  return page.getByRole('heading', { level: 1, name });
}

test('sign-in refuses a wrong token and accepts the admin token', async () => {
  await page.goto(consoleUrl);
  await heading('Sign in').waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Sections' }).isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).isVisible(), false);
  const tokenInput = page.getByLabel('Admin token');
  assert.ok(await tokenInput.evaluate((el) => el === document.activeElement), 'the token field has focus');
  await tokenInput.fill('not-the-admin-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const error = page.locator('#signin-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.innerText(), /refused this token.*invalid admin token/);
  await shot('01-sign-in-refused');
  // The refused token's 401 is the only error the browser may report.
  assert.ok(browserErrors.every((e) => e.includes('401')), browserErrors.join('\n'));
  browserErrors.length = 0;

  await tokenInput.fill(token);
  await tokenInput.press('Enter');
  await heading('Overview').waitFor();
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem('oncehook.adminToken'),
    local: localStorage.length,
    cookies: document.cookie,
  }));
  assert.deepEqual(stored, { session: token, local: 0, cookies: '' });
});

test('the overview charts show the traffic', async () => {
  const intake = page.locator('figure[data-chart="intake"]');
  await intake.locator('rect.bar').first().waitFor();
  const total = async (chart) => Number(await page.locator(`figure[data-chart="${chart}"]`).getAttribute('data-total'));
  assert.ok(await total('intake') > 0, 'intake requests');
  assert.ok(await total('dedupe') > 0, 'duplicates');
  assert.ok(await total('ack') > 0, 'ack latencies');
  assert.ok(await total('e2e') > 0, 'end-to-end latencies');
  assert.equal(await total('dead'), deadAtStart, 'dead deliveries');
  assert.ok(await page.locator('figure[data-chart="ack"] circle.point').count() > 0, 'an ack p95 point');
  assert.ok(await page.locator('figure[data-chart="e2e"] circle.point').count() > 0, 'an end-to-end p95 point');
  assert.ok(await page.locator('figure[data-chart="dead"] rect.bar').count() > 0, 'a dead-letter bar');
  const duplicates = await intake.locator('rect.bar[data-series="duplicate"]').count();
  assert.ok(duplicates > 0, 'duplicates are drawn apart from accepted requests');
  const dedupe = await page.locator('[data-kpi="dedupe"] .value').innerText();
  assert.notEqual(dedupe, '–');
  assert.notEqual(await page.locator('[data-kpi="requests"] .value').innerText(), '0');
  const forms = page.locator('#sources tr[data-source="forms"]');
  assert.match(await forms.innerText(), /forms\s+\d+\s+\d+\s+\d+\s+0\s+50%/);
  await shot('02-overview-15m');

  for (const label of ['1 hour', '24 hours']) {
    await page.getByRole('button', { name: label }).click();
    await page.locator(`button[aria-pressed="true"]`, { hasText: label }).waitFor();
    await page.locator('#overview-body[aria-busy="false"] figure[data-chart="intake"] rect.bar').first().waitFor();
    assert.ok(await total('intake') > 0, `intake requests over ${label}`);
  }
  await shot('03-overview-24h');
});

test('events: search by email finds the event', async () => {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Events' }).click();
  await heading('Events').waitFor();
  await page.locator('#events-table tbody tr').first().waitFor();
  assert.ok(await page.locator('#events-table tbody tr').count() > 1, 'the unfiltered list has every event');
  await shot('04-events');

  // Keyboard only: type the address and press Enter.
  const emailField = page.getByLabel('Email');
  await emailField.fill(email);
  await emailField.press('Enter');
  await page.locator('#events-table caption', { hasText: 'matching the search' }).waitFor();
  const rows = page.locator('#events-table tbody tr');
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute('data-event-id'), eventId);
  await shot('05-events-search');
});

test('event detail: the dead delivery, its reason and its attempts', async () => {
  await page.getByRole('link', { name: eventId }).click();
  await page.getByRole('heading', { level: 1, name: `Event ${eventId}` }).waitFor();
  const crm = page.locator('article.delivery[data-destination="crm"]');
  assert.equal(await crm.getAttribute('data-state'), 'dead');
  assert.equal(await crm.locator('.dead-reason').innerText(), 'http_5xx');
  assert.match(await crm.locator('.last-error').innerText(), /503/);
  const attempts = crm.locator('ol.timeline li');
  assert.equal(await attempts.count(), 2, 'both attempts are on the timeline');
  assert.match(await attempts.first().innerText(), /Attempt 1[\s\S]*HTTP 503[\s\S]*ms/);
  const analytics = page.locator('article.delivery[data-destination="analytics"]');
  assert.equal(await analytics.getAttribute('data-state'), 'delivered');
  const payload = await page.locator('#payload').innerText();
  assert.match(payload, /"email": "l\*\*\*"/, 'the email is masked in the payload');
  assert.match(payload, /"plan": "pro"/, 'unmasked fields are shown');
  assert.ok(await page.locator('text=Never replayed.').isVisible());
  await shot('06-event-dead');
});

test('replay: a dry run counts, a reason is required, then the replay delivers', async () => {
  await page.locator('#replay-dead').click();
  const dialog = page.getByRole('dialog', { name: /Replay the dead deliveries/ });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.getByText('Give a reason for the replay.').waitFor();
  assert.ok(await dialog.getByRole('button', { name: 'Replay' }).isDisabled(), 'no replay before a preview');

  await dialog.getByLabel('Reason (required)').fill('crm was down; fixed');
  await dialog.getByLabel('Requested by (required)').fill('ops@example.com');
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.locator('#replay-preview-result', { hasText: '1 delivery would be sent.' }).waitFor();
  await shot('07-replay-preview');

  await dialog.getByRole('button', { name: 'Replay 1 delivery' }).click();
  await dialog.locator('#replay-done', { hasText: 'queued 1 delivery' }).waitFor();
  await dialog.getByRole('button', { name: 'Close' }).click();
  await dialog.waitFor({ state: 'detached' });

  // The page follows the event until the replayed delivery settles.
  await page.locator('article.delivery[data-destination="crm"][data-state="delivered"]').waitFor();
  await page.locator('#event-status', { hasText: 'completed' }).waitFor();
  const crm = page.locator('article.delivery[data-destination="crm"]');
  const timeline = crm.locator('ol.timeline li');
  assert.equal(await timeline.count(), 4, 'two attempts, the replay, the attempt under it');
  assert.match(await timeline.nth(2).innerText(), /Replayed[\s\S]*by ops@example\.com: crm was down; fixed/);
  assert.match(await timeline.nth(3).innerText(), /Attempt 1[\s\S]*HTTP 200[\s\S]*replay/);
  const history = page.locator('#replay-history tbody tr');
  assert.equal(await history.count(), 1);
  assert.match(await history.first().innerText(), /crm[\s\S]*ops@example\.com[\s\S]*crm was down; fixed/);
  await shot('08-event-delivered');
});

test('dead letters: groups, selection and filter replays preview their counts', async () => {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Dead letters' }).click();
  await heading('Dead letters').waitFor();
  const left = deadAtStart - 1;
  const group = page.locator('#dead-groups tbody tr');
  await group.first().waitFor();
  assert.equal(await group.count(), 1);
  assert.match(await group.first().innerText(), new RegExp(`crm\\s+http_5xx\\s+${left}\\s+HTTP 503`));
  assert.equal(await page.locator('#dead-table tbody tr').count(), left);
  await shot('09-dead-letters');

  // A selection of one.
  await page.locator('#dead-table tbody tr').first().getByRole('checkbox').check();
  await page.locator('#selected-count', { hasText: '1 selected' }).waitFor();
  await page.getByRole('button', { name: 'Replay selected…' }).click();
  let dialog = page.getByRole('dialog');
  await dialog.getByLabel('Reason (required)').fill('looking only');
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.locator('#replay-preview-result', { hasText: '1 delivery would be sent.' }).waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });

  // A whole group.
  await page.getByRole('button', { name: /Replay the \d+ dead deliveries to crm/ }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('Reason (required)').fill('looking only');
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.locator('#replay-preview-result', { hasText: `${left} deliveries would be sent.` }).waitFor();
  await shot('10-dead-letters-group-preview');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });

  // A filter.
  await page.getByRole('textbox', { name: 'Destination', exact: true }).fill('crm');
  await page.getByRole('button', { name: 'Preview and replay…' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('Reason (required)').fill('looking only');
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.locator('#replay-preview-result', { hasText: `${left} deliveries would be sent.` }).waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.locator('#dead-table tbody tr').count(), left, 'dry runs replayed nothing');
});

test('the overview lists what needs attention, with runbook links', async () => {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Overview' }).click();
  await heading('Overview').waitFor();
  // The replay of the earlier test delivered: the overview shows how replays ended.
  const replayKpi = page.locator('li[data-kpi="replays"] .value');
  for (let i = 0; i < 20 && (await replayKpi.innerText()) !== '100%'; i += 1) {
    await page.waitForTimeout(500);
    await page.getByRole('button', { name: 'Refresh' }).click();
  }
  assert.equal(await replayKpi.innerText(), '100%');
  assert.match(await page.locator('li[data-kpi="replays"] .note').innerText(), /1 delivered, 0 dead/);
  const attention = page.getByRole('region', { name: 'Needs attention' });
  // The dead deliveries to crm happened minutes ago.
  const dead = attention.locator('li[data-attention^="dead-crm"]');
  await dead.waitFor();
  assert.match(await dead.innerText(), /Dead letters to crm in the last hour/);
  assert.equal(await dead.getByRole('link', { name: 'Runbook' }).getAttribute('href'),
    'https://github.com/oncehook/oncehook/blob/main/RUNBOOK.md#dead-deliveries');
  // A paused destination is listed too, and leaves the list when resumed.
  const api = (path, body) => fetch(`${new URL(consoleUrl).origin}/api/v1${path}`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal((await api('/destinations/analytics/pause', { reason: 'attention test' })).status, 200);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await attention.locator('li[data-attention="paused-analytics"]').waitFor();
  assert.match(await attention.locator('li[data-attention="paused-analytics"]').innerText(), /attention test/);
  await assertMasked('overview-attention');
  await shot('overview-attention');
  assert.equal((await api('/destinations/analytics/resume', {})).status, 200);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await attention.locator('li[data-attention="paused-analytics"]').waitFor({ state: 'detached' });
});

test('destinations: pause with a reason holds deliveries, resume releases them', async () => {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Destinations' }).click();
  await heading('Destinations').waitFor();
  const row = page.locator('#destinations-table tbody tr[data-destination="crm"]');
  await row.getByText('active').waitFor();
  await page.getByRole('button', { name: 'Pause crm…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Pause crm' });
  await dialog.getByRole('button', { name: 'Pause crm' }).click();
  await dialog.getByText('Give a reason for the pause.').waitFor();
  await dialog.getByRole('textbox', { name: 'Reason (required)' }).fill('CRM deploy, CHG-42');
  await dialog.getByRole('textbox', { name: 'Requested by (required)' }).fill('console test');
  await dialog.getByRole('button', { name: 'Pause crm' }).click();
  await dialog.waitFor({ state: 'detached' });
  await row.getByText('paused', { exact: true }).waitFor();
  await row.getByText('Paused by console test: CRM deploy, CHG-42').waitFor();
  const paused = await (await fetch(`${new URL(consoleUrl).origin}/api/v1/destinations`,
    { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.equal(paused.destinations.find((d) => d.name === 'crm').state, 'paused');
  await assertMasked('destinations-paused');
  await shot('destinations-paused');
  await page.getByRole('button', { name: 'Resume crm' }).click();
  await row.getByText('active').waitFor();
  const resumed = await (await fetch(`${new URL(consoleUrl).origin}/api/v1/destinations`,
    { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.equal(resumed.destinations.find((d) => d.name === 'crm').state, 'active');
  await assertMasked('destinations');
});

test('the pages are keyboard-usable and raised no browser errors', async () => {
  await page.goto(`${consoleUrl}#/overview`);
  await heading('Overview').waitFor();
  // Each view moves the focus to its heading, so the next Tab lands on the view's first control.
  const focused = () => page.evaluate(() => document.activeElement && document.activeElement.textContent.trim());
  await page.waitForFunction(() => document.activeElement && document.activeElement.tagName === 'H1');
  assert.equal(await focused(), 'Overview');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), '15 minutes');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), '1 hour');
  await page.keyboard.press('Enter');
  await page.locator('button[aria-pressed="true"]', { hasText: '1 hour' }).waitFor();
  // The skip link is the first stop from the top of the page, and leads to the content.
  const first = await page.evaluate(() => document.querySelector(
    'a[href], button:not([hidden]), input, select, textarea, [tabindex]:not([tabindex="-1"])').id);
  assert.equal(first, 'skip-link');
  await page.locator('#skip-link').focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
  await assertMasked('overview-again');

  // Signing out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await heading('Sign in').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('oncehook.adminToken')), null);
  assert.equal(await page.locator('#signin-error').innerText(), 'Signed out.');
  assert.deepEqual(browserErrors, []);
  assert.ok(pagesChecked.length >= 10, `checked ${pagesChecked.length} pages`);
});
