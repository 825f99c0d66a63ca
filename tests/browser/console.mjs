// Drives the NOC console in a real browser (Debian's Chromium through playwright-core). Run by
// tests/tests/console_browser.rs, which starts the collector, feeds it replayed captures and
// passes what the data must show in the environment:
//   BASE        the collector's URL
//   OPERATOR    user:password of an operator; READER the same for a read-only user
//   SCOPE       the incident's scope as the console prints it, e.g. access node OLT-A
//   CUSTOMERS   the incident's customers, comma-separated
//   CUSTOMER    a customer to open, and POINTS: {"metric": points expected on its p90 plot,
//               or on its success plot for journey:NAME}
//   AGENTS      how many agents the agent list must show
//   SHOTS       where screenshots go
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE');
const [opUser, opPass] = env('OPERATOR').split(':');
const [rdUser, rdPass] = env('READER').split(':');
const SCOPE = env('SCOPE');
const CUSTOMERS = env('CUSTOMERS').split(',').sort();
const CUSTOMER = env('CUSTOMER');
const POINTS = JSON.parse(env('POINTS'));
const AGENTS = Number(env('AGENTS'));
const SHOTS = env('SHOTS');
mkdirSync(SHOTS, { recursive: true });

let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});
// Whatever the Content-Security-Policy keeps the console itself from doing: nothing may be.
const violations = [];
const login = async (username, password) => {
  const context = await browser.newContext({ httpCredentials: { username, password, send: 'always' }, viewport: { width: 1400, height: 900 } });
  context.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  return context;
};
try {
  // Without credentials the console does not answer.
  const anonymous = await browser.newContext();
  // A browser given no credentials shows its own login error; the answer itself is a 401.
  const navigation = await (await anonymous.newPage()).goto(BASE + '/').then(() => 'a page', (e) => e.message);
  check(navigation.includes('ERR_INVALID_AUTH_CREDENTIALS'), `no credentials: the browser gets ${navigation.split('\n')[0]}`);
  const denied = await anonymous.request.get(BASE + '/');
  check(denied.status() === 401, `no credentials: the console answers ${denied.status()}, expected 401`);
  await anonymous.close();

  // A read-only user sees the incident, but has no way to acknowledge it.
  const reader = await login(rdUser, rdPass);
  const watch = await reader.newPage();
  await watch.goto(BASE + '/');
  const row = watch.locator('#incidents tbody tr', { hasText: SCOPE });
  await row.first().waitFor({ timeout: 15000 });
  check((await row.count()) === 1, `the open incidents list ${SCOPE} once`);
  check((await watch.locator('button[data-ack]').count()) === 0, 'a read-only user gets no acknowledge button');
  const incidentId = await row.first().getAttribute('data-id');
  const forbidden = await watch.evaluate(async (id) => {
    const r = await fetch(`/api/v1/incidents/${id}/ack`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    return r.status;
  }, incidentId);
  check(forbidden === 403, `a read-only user's acknowledge is refused (${forbidden})`);
  await watch.screenshot({ path: `${SHOTS}/incidents-read-only.png`, fullPage: true });

  // An operator opens the incident and checks its customers, evidence and plot.
  const operator = await login(opUser, opPass);
  const page = await operator.newPage();
  await page.goto(BASE + '/');
  await page.screenshot({ path: `${SHOTS}/incidents.png`, fullPage: true });
  await page.locator('#incidents tbody tr', { hasText: SCOPE }).locator('a').first().click();
  await page.waitForURL(`**/incidents/${incidentId}`);
  const shown = (await page.locator('#customers tbody tr td:first-child').allTextContents()).map((s) => s.trim()).sort();
  check(JSON.stringify(shown) === JSON.stringify(CUSTOMERS), `the incident's customers are ${shown}, expected ${CUSTOMERS}`);
  check((await page.locator('table.evidence tr').count()) >= 4, 'the evidence is listed');
  const evidence = await page.locator('table.evidence').textContent();
  check(!/\d{13}/.test(evidence), `the evidence writes times as dates, not Unix ms: ${evidence}`);
  const affected = await page.locator('figure.chart g.series[data-label="affected p90"] circle').count();
  const others = await page.locator('figure.chart g.series[data-label="others p90"] circle').count();
  check(affected > 0 && others > 0, `the plot shows the affected customers (${affected} points) against the others (${others})`);
  check((await page.locator('table.actions tbody tr').count()) >= CUSTOMERS.length, 'suggested actions are listed');
  await page.screenshot({ path: `${SHOTS}/incident.png`, fullPage: true });

  // The operator acknowledges; the read-only page updates live, without a reload.
  const before = Number((await watch.evaluate(() => document.body.dataset.updates)) || 0);
  await page.locator('button[data-ack]').click();
  await page.locator('#ack .acked').waitFor({ timeout: 10000 });
  check((await page.locator('#ack').textContent()).includes(`acked by ${opUser}`), 'the incident shows who acknowledged it');
  await watch.locator('#incidents tbody tr', { hasText: `acked by ${opUser}` }).waitFor({ timeout: 15000 });
  const after = Number(await watch.evaluate(() => document.body.dataset.updates));
  check(after > before, `the open list updated live (${before} -> ${after} updates, no reload)`);
  const api = await operator.request.get(`${BASE}/api/v1/incidents/${incidentId}`);
  check((await api.json()).acked_by === opUser, 'the API records the acknowledgement');

  // The customer view: p50/p90/p99 plots over the last 24 hours, one point per window.
  await page.goto(`${BASE}/customers/${CUSTOMER}`);
  for (const [metric, expected] of Object.entries(POINTS)) {
    if (metric.startsWith('journey:')) {
      const n = await page.locator(`svg[data-metric="${metric}"] g.series[data-label="success"] circle`).count();
      check(n === expected, `${CUSTOMER}'s ${metric} success plot has ${n} points, expected ${expected}`);
      continue;
    }
    const n = await page.locator(`svg[data-metric="${metric}"] g.series[data-label="p90"] circle`).count();
    check(n === expected, `${CUSTOMER}'s ${metric} p90 plot has ${n} points, expected ${expected}`);
    const p99 = await page.locator(`svg[data-metric="${metric}"] g.series[data-label="p99"] circle`).count();
    check(p99 === expected, `${CUSTOMER}'s ${metric} p99 plot has ${p99} points`);
  }
  check((await page.locator('#score').count()) === 1, "the customer's score is at the top");
  check((await page.locator('nav.ranges a.current').textContent()) === 'the data', 'the range follows the data');
  check((await page.locator('#services tbody tr').count()) > 0, 'the top services are listed');
  check((await page.locator('#customer-incidents tbody tr').count()) >= 1, "the customer's incidents are listed");
  await page.screenshot({ path: `${SHOTS}/customer.png`, fullPage: true });

  await page.goto(`${BASE}/agents`);
  const agents = await page.locator('#agents tbody tr').count();
  check(agents === AGENTS, `the agent list shows ${agents} agents, expected ${AGENTS}`);
  await page.screenshot({ path: `${SHOTS}/agents.png`, fullPage: true });
  await page.goto(`${BASE}/history`);
  await page.screenshot({ path: `${SHOTS}/history.png`, fullPage: true });
  check(violations.length === 0, `the console breaks none of its own security policy: ${violations.join('; ')}`);
} finally {
  await browser.close();
}
if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
