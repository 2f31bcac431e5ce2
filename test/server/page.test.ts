// The chat page in a real browser (playwright-core driving Debian's /usr/bin/chromium; CI installs
// it with apt-get): the model name and demo warning show, a typed message streams a reply with a
// tok/s figure, and Stop ends a long reply (the server frees the engine slot).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { loadEngine } from '../../src/engine/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { tinyModel, TEST_TIMEOUT_MS, type TinyModel } from './real-server.ts';
import { ScriptedEngine } from './scripted-engine.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (install it with: apt-get install -y chromium)`;
let model: TinyModel;
let s: RunningServer;
let browser: Browser;

before(async () => {
  if (skip) return;
  model = await tinyModel();
  // isDemo, as `mixtile serve` without --model: the page must say the weights are random.
  s = await startServer({ host: '127.0.0.1', port: 0, load: () => loadEngine({ modelPath: model.path, threads: 1, ctxSize: 2048, parallel: 2, isDemo: true }) });
  await s.ready;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});
after(async () => {
  await browser?.close();
  await s?.close();
  model?.remove();
});

test('chat page: demo warning, streamed reply with tok/s, stop button', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await browser.newPage();
  await page.goto(s.url + '/');
  await page.getByTestId('model').filter({ hasText: 'mixtile-demo' }).waitFor();
  assert.equal(await page.getByTestId('demo-warning').isVisible(), true);
  assert.match((await page.getByTestId('demo-warning').textContent()) ?? '', /random weights/);

  // A reply streams in piece by piece and finishes.
  await page.getByTestId('input').fill('Hello there');
  await page.getByTestId('send').click();
  await page.locator('[data-testid="msg-user"]').filter({ hasText: 'Hello there' }).waitFor();
  const reply = page.locator('[data-testid="msg-assistant"]').last();
  await reply.locator('[data-testid="answer"]').filter({ hasText: /\S/ }).waitFor();
  // The demo reply runs to the end of the context unless stopped; stop it once some text arrived.
  const firstLen = ((await reply.locator('[data-testid="answer"]').textContent()) ?? '').length;
  await page.waitForFunction((n) => (document.querySelector('[data-testid="msg-assistant"]:last-child [data-testid="answer"]')?.textContent ?? '').length > n, firstLen);
  await page.getByTestId('speed').filter({ hasText: /tok\/s/ }).waitFor();
  assert.equal(await page.getByTestId('stop').isEnabled(), true);
  await page.getByTestId('stop').click();
  await page.locator('[data-testid="msg-assistant"][data-state="stopped"]').waitFor();
  assert.equal(await page.getByTestId('send').isEnabled(), true);
  // The server saw the abort and freed the slot.
  const engine = s.host.loaded();
  const t0 = performance.now();
  while (engine.stats().running > 0 && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(engine.stats().running, 0);
  await page.close();
});

test('chat page: thinking shows in a collapsible block, apart from the answer (scripted engine double)', { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const engine = new ScriptedEngine({ reply: () => '<think>\nThe user greets me.\n</think>\n\nHello there!', tokenDelayMs: 2 });
  const scripted = await startServer({ host: '127.0.0.1', port: 0, load: async () => engine });
  try {
    await scripted.ready;
    const page = await browser.newPage();
    await page.goto(scripted.url + '/');
    await page.getByTestId('model').filter({ hasText: 'scripted' }).waitFor();
    assert.equal(await page.getByTestId('demo-warning').isVisible(), false);
    await page.getByTestId('input').fill('Hi');
    await page.getByTestId('input').press('Enter');
    const reply = page.locator('[data-testid="msg-assistant"][data-state="done"]');
    await reply.waitFor();
    assert.equal(await reply.locator('[data-testid="answer"]').textContent(), 'Hello there!');
    const details = reply.locator('details');
    assert.equal(await details.evaluate((d) => (d as HTMLDetailsElement).open), false, 'thinking starts collapsed');
    await details.locator('summary').click();
    assert.match((await details.textContent()) ?? '', /The user greets me\./);
    await page.close();
  } finally {
    await scripted.close();
  }
});
