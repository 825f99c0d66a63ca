// Times the console's pages in Chromium: from navigation start to the load event (the HTML
// parsed, styled and laid out), median and max of RUNS loads. Run by the collector's
// `queries` benchmark against its loaded store: node render_bench.mjs BASE PATH...
import { chromium } from 'playwright-core';

const [base, ...paths] = process.argv.slice(2);
const RUNS = 7;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage();
  for (const path of paths) {
    const times = [];
    let rows = 0;
    for (let i = 0; i < RUNS; i += 1) {
      await page.goto(base + path, { waitUntil: 'load' });
      const t = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        return n.loadEventEnd - n.startTime;
      });
      rows = await page.locator('tbody tr').count();
      times.push(t);
    }
    times.sort((a, b) => a - b);
    console.log(`chromium: ${path.padEnd(24)} load p50 ${times[RUNS >> 1].toFixed(0)} ms  max ${times[RUNS - 1].toFixed(0)} ms  (${rows} table rows)`);
  }
} finally {
  await browser.close();
}
