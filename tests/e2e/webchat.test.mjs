// Browser end-to-end test of the web chat widget, in Debian's headless chromium driven by
// playwright-core (never a downloaded browser). Started by tests/e2e/webchat_e2e.c, which runs
// the real stack (nats-server, router, classifier with the demo model, escalation worker,
// responder) and passes:
//
//   node webchat.test.mjs <router url> <config path> <output dir>
//
// The scenario a customer and an agent go through: open the demo page served by the router,
// see the consent notice and the bot disclosure before anything can be typed, accept; type
// "hello" and get the bot's answer (saying it is a bot) with buttons; tap a button and get its
// answer; ask for a human and get the handoff message; an agent in `switchboard console`
// (a child process with piped stdin) claims the ticket and replies: the reply appears marked as
// from a person; the agent resolves; reload the page: the history is shown, and a new question
// is answered by the bot in the same conversation (its "chatting with the bot again" prefix
// only exists there). Screenshots go to <output dir>: webchat-agent.png when the agent's reply
// is shown, webchat.png at the end (webchat-failure.png when something went wrong).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [routerUrl, configPath, outDir] = process.argv.slice(2);
if (!routerUrl || !configPath || !outDir) {
  console.error('usage: node webchat.test.mjs <router url> <config path> <output dir>');
  process.exit(2);
}
const binDir = process.env.SB_BIN_DIR;
const chromiumPath = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 45000;

function log(msg) {
  console.log(`[webchat-e2e] ${msg}`);
}

// ---- the agent's terminal console, as a child process ----

class Console {
  constructor() {
    const exe = path.join(binDir, 'switchboard');
    assert.ok(existsSync(exe), `switchboard CLI not found at ${exe}`);
    this.out = '';
    this.proc = spawn(exe, ['console', '--config', configPath, '--team', 'support', '--agent', 'e2e'],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (d) => { this.out += d; });
    this.proc.stderr.setEncoding('utf8');
    this.errors = '';
    this.proc.stderr.on('data', (d) => { this.errors += d; });
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
  }

  // Waits until stdout matches re (searched from offset `from`), returns the match.
  async waitFor(re, from = 0, timeout = STEP_MS) {
    const end = Date.now() + timeout;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      if (Date.now() > end) {
        throw new Error(`console: timed out waiting for ${re}\n--- stdout ---\n${this.out}` +
          `\n--- stderr ---\n${this.errors.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async command(line, expect) {
    const from = this.out.length;
    this.proc.stdin.write(line + '\n');
    return this.waitFor(expect, from);
  }

  async quit() {
    this.proc.stdin.write('quit\n');
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill('SIGTERM'), 10000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

// ---- page helpers ----

async function countOf(page, selector) {
  return page.locator(selector).count();
}

async function waitForMore(page, selector, than) {
  await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length > n,
    [selector, than], { timeout: STEP_MS });
}

async function lastText(page, selector) {
  return page.locator(selector).last().locator('.sbw-text').innerText();
}

const BOT = 'li.sbw-msg--bot';
const AGENT = 'li.sbw-msg--agent';
const VISITOR = 'li.sbw-msg--visitor';

async function send(page, text) {
  const box = page.getByLabel('Your message');
  await box.fill(text);
  await box.press('Enter');
  // The visitor's bubble shows at once and is marked sent after the router's ack.
  await page.locator(VISITOR).filter({ hasText: text }).last().waitFor({ timeout: STEP_MS });
  await page.waitForFunction((t) => {
    const all = [...document.querySelectorAll('li.sbw-msg--visitor')];
    const li = all.reverse().find((x) => x.querySelector('.sbw-text').textContent === t);
    return li && !li.querySelector('.sbw-state');
  }, text, { timeout: STEP_MS });
}

async function main() {
  assert.ok(existsSync(chromiumPath), `chromium not found at ${chromiumPath}`);
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const agent = new Console();
  const problems = [];
  let page;
  try {
    const context = await browser.newContext({
      viewport: { width: 1100, height: 800 }, reducedMotion: 'reduce', locale: 'en-GB',
    });
    page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`);
    });
    page.on('requestfailed', (r) => {
      // The live stream is cut on reload; anything else failing is a problem.
      if (!r.url().includes('/v1/webchat/stream')) problems.push(`request failed: ${r.url()}`);
    });

    await agent.waitFor(/console: team support/);
    log('console ready');

    // 1. The notice and the bot disclosure come first; nothing can be typed yet.
    await page.goto(`${routerUrl}/widget/demo.html`);
    const notice = page.getByRole('region', { name: 'Before we start' });
    await notice.waitFor({ timeout: STEP_MS });
    const noticeText = await notice.innerText();
    assert.match(noticeText, /bot/i, 'the notice discloses the bot');
    assert.match(noticeText, /keep this conversation/i, 'the notice says what is kept');
    assert.equal(await page.getByLabel('Your message').isDisabled(), true);
    assert.equal(await countOf(page, 'li.sbw-msg'), 0);
    await page.getByRole('button', { name: 'Accept and start chatting' }).click();
    await page.locator('.sbw-banner').waitFor({ timeout: STEP_MS });
    assert.match(await page.locator('.sbw-banner').innerText(), /bot/i);
    assert.equal(await notice.isVisible(), false);
    log('consent accepted');

    // 2. "hello": the bot answers, says it is a bot, and offers buttons.
    await send(page, 'hello');
    await waitForMore(page, BOT, 0);
    const first = page.locator(BOT).first();
    assert.match(await first.locator('.sbw-text').innerText(), /bot/i, 'first answer discloses the bot');
    assert.match(await first.locator('.sbw-author').innerText(), /Bot/);
    assert.match(await first.locator('.sbw-author').innerText(), /automated/);
    assert.equal(await page.locator('[role=log][aria-live=polite]').count(), 1);
    log(`bot: ${await lastText(page, BOT)}`);

    // 3. A button: its answer.
    const buttons = first.getByRole('button');
    assert.ok(await buttons.count() > 0, 'the answer has buttons');
    const hours = first.getByRole('button', { name: 'Opening hours' });
    const choice = (await hours.count()) > 0 ? hours : buttons.first();
    const choiceTitle = await choice.innerText();
    let bots = await countOf(page, BOT);
    await choice.click();
    await page.locator(VISITOR).filter({ hasText: choiceTitle }).waitFor({ timeout: STEP_MS });
    await waitForMore(page, BOT, bots);
    const afterButton = await lastText(page, BOT);
    log(`button "${choiceTitle}" -> bot: ${afterButton}`);
    if (choiceTitle === 'Opening hours') assert.match(afterButton, /Monday/);
    assert.equal(await first.getByRole('button').first().isDisabled(), true,
      'a tapped button group is spent');

    // 4. Asking for a human: the handoff message.
    bots = await countOf(page, BOT);
    await send(page, 'I want to talk to a human');
    await waitForMore(page, BOT, bots);
    const handoff = await lastText(page, BOT);
    log(`handoff: ${handoff}`);
    assert.match(handoff, /colleague/i);

    // 5. The agent claims and replies; the reply shows as from a person.
    const esc = await agent.waitFor(/== new escalation #(\d+) ==/);
    const ticket = esc[1];
    log(`console sees ticket #${ticket}`);
    await agent.command(`claim ${ticket}`, new RegExp(`#${ticket} claim: sent`));
    const reply = 'Hi, this is Ada from support. How can I help?';
    await agent.command(`reply ${ticket} ${reply}`, new RegExp(`#${ticket} reply: sent`));
    await page.locator(AGENT).filter({ hasText: reply }).waitFor({ timeout: STEP_MS });
    const agentLi = page.locator(AGENT).last();
    assert.match(await agentLi.locator('.sbw-author').innerText(), /a person/);
    assert.equal(await agentLi.locator('.sbw-text').innerText(), reply);
    log('agent reply shown, marked as a person');
    await page.screenshot({ path: path.join(outDir, 'webchat-agent.png') });

    // 6. The agent hands the conversation back to the bot.
    const mark = agent.out.length;
    await agent.command(`resolve ${ticket}`, new RegExp(`#${ticket} resolve: sent`));
    // Recorded by the escalation worker: the ticket comes back resolved.
    await agent.waitFor(new RegExp(`#${ticket} resolved`), mark);

    // 7. Reload: the history is there and the conversation goes on.
    const before = await countOf(page, 'li.sbw-msg');
    await page.reload();
    await page.locator('.sbw-banner').waitFor({ timeout: STEP_MS });
    assert.equal(await page.getByRole('region', { name: 'Before we start' }).isVisible(), false,
      'consent is remembered');
    assert.equal(await countOf(page, 'li.sbw-msg'), before, 'the history is shown after a reload');
    assert.equal(await page.locator(AGENT).filter({ hasText: reply }).count(), 1);
    await page.getByLabel('Your message').waitFor({ state: 'visible' });
    await page.waitForFunction(() => !document.querySelector('.sbw-input').disabled, null,
      { timeout: STEP_MS });
    bots = await countOf(page, BOT);
    await send(page, 'what are your opening hours?');
    await waitForMore(page, BOT, bots);
    const resumed = await lastText(page, BOT);
    log(`after reload: ${resumed}`);
    assert.match(resumed, /again/i, 'the bot resumes the same conversation');
    // Nothing is shown twice after the reload.
    const ids = await page.locator('li.sbw-msg').evaluateAll((l) => l.map((x) => x.dataset.id));
    assert.equal(new Set(ids).size, ids.length);

    await page.screenshot({ path: path.join(outDir, 'webchat.png'), fullPage: true });
    log(`screenshot: ${path.join(outDir, 'webchat.png')}`);
    assert.deepEqual(problems, [], 'no page errors, console errors or failed requests');
  } catch (e) {
    if (page) {
      await page.screenshot({ path: path.join(outDir, 'webchat-failure.png'), fullPage: true })
        .catch(() => {});
    }
    throw e;
  } finally {
    const code = await agent.quit();
    log(`console exited with ${code}`);
    await browser.close();
  }
}

main().then(() => {
  console.log('1 passed, 0 failed');
}, (e) => {
  console.error(e && e.stack ? e.stack : e);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
