// What the browser tests share: numbered steps, screenshots, and the
// accessibility checks (every control named, text contrast at least 4.5:1).

import { join } from 'node:path';

let stepNo = 0;
export function step(what) {
  console.log(`[browser] ${++stepNo}. ${what}`);
}

export async function shot(shots, page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// Every visible input and button has an accessible name; the names missing.
export async function unnamedControls(page) {
  return page.evaluate(() => {
    const out = [];
    for (const e of document.querySelectorAll('input, button, select, textarea')) {
      const visible = e.type === 'file' || e.getClientRects().length > 0;
      if (!visible) continue;
      let name = e.getAttribute('aria-label') ?? '';
      const by = e.getAttribute('aria-labelledby');
      if (!name && by) name = by.split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' ');
      if (!name && e.labels?.length) name = [...e.labels].map((l) => l.textContent).join(' ');
      if (!name && e.tagName === 'BUTTON') name = e.textContent;
      if (!name.trim()) out.push(e.outerHTML.slice(0, 80));
    }
    return out;
  });
}

// Visible text whose contrast with its background is under 4.5:1.
export async function lowContrast(page) {
  return page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (e) => {
      for (; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const e = n.parentElement;
      if (!n.textContent.trim() || !e.getClientRects().length) continue;
      const style = getComputedStyle(e);
      const [l1, l2] = [lum(rgb(style.color)), lum(background(e))].sort((x, y) => y - x);
      const ratio = (l1 + 0.05) / (l2 + 0.05);
      if (ratio < 4.5) out.push(`${n.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
    }
    return out;
  });
}


// Ends the run: the step it failed at, and a non-zero exit.
export function failed(e) {
  console.error(`[browser] FAILED at step ${stepNo}: ${e.stack ?? e}`);
  process.exit(1);
}
