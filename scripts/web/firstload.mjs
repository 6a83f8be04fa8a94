// The first load of a page in Chromium, a fresh profile each time: bytes
// over the wire (headers included) and in files, requests, and the time to
// DOMContentLoaded and load. Prints one JSON line per run, then the medians.
//
//   node scripts/web/firstload.mjs <url> [runs]
//
// playwright-core comes from tests/browser (npm ci --prefix tests/browser).

import { createRequire } from 'node:module';
const require = createRequire(new URL('../../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const url = process.argv[2];
const runs = Number(process.argv[3] ?? 5);
const browser = await chromium.launch({
  executablePath: process.env.NATTER_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const rows = [];
for (let i = 0; i < runs; i++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: 'load' });
  const m = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    const all = [nav, ...res];
    return {
      requests: all.length,
      wire_bytes: all.reduce((s, e) => s + e.transferSize, 0),
      body_bytes: all.reduce((s, e) => s + e.decodedBodySize, 0),
      dom_ms: nav.domContentLoadedEventEnd,
      load_ms: nav.loadEventEnd,
    };
  });
  console.log(JSON.stringify({ run: i + 1, ...m }));
  rows.push(m);
  await ctx.close();
}
await browser.close();
const median = (k) => {
  const v = rows.map((r) => r[k]).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
};
console.log(JSON.stringify({
  url, runs, requests: median('requests'), wire_bytes: median('wire_bytes'),
  body_bytes: median('body_bytes'), dom_ms: median('dom_ms'), load_ms: median('load_ms'),
}));
