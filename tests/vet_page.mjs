// The vet report's page in headless Chromium (Debian's), through
// playwright-core: the four checklist headings with the verdicts vet.json
// gives, no script, nothing fetched; a screenshot for people.
//   node vet_page.mjs VET.HTML VET.JSON SHOT.PNG
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [html, json, shot] = process.argv.slice(2);
const report = JSON.parse(readFileSync(json, 'utf8'));
const want = {
  'Air gap': report.checks.air_gap.verdict,
  'Energy': report.checks.energy.verdict,
  'Training set': report.checks.training_set.verdict,
  'Gateway': report.checks.gateway.verdict,
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
let failed = 0;
const fail = (m) => { failed++; console.log('FAIL ' + m); };
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 1200 } });
  const fetched = [];
  page.on('request', (r) => { if (!r.url().startsWith('file://')) fetched.push(r.url()); });
  await page.goto('file://' + html);
  const headings = await page.$$eval('h2', (hs) => hs.map((h) => {
    const v = h.querySelector('.verdict');
    return { title: h.firstChild.textContent.trim(), verdict: v ? v.textContent.trim() : '' };
  }));
  for (const [title, verdict] of Object.entries(want)) {
    const h = headings.find((x) => x.title === title);
    if (!h) fail(`no heading "${title}" (headings: ${headings.map((x) => x.title).join(', ')})`);
    else if (h.verdict !== verdict.toUpperCase())
      fail(`"${title}" shows ${h.verdict}, vet.json says ${verdict}`);
  }
  if ((await page.$$('script')).length) fail('the page has a script');
  if (fetched.length) fail('the page fetched ' + fetched.join(', '));
  const text = await page.textContent('body');
  if (!text.includes(report.node.id)) fail('the node id is not on the page');
  for (const a of report.checks.air_gap.attempts)
    if (!text.includes(a.attempt)) fail(`the attempt "${a.attempt}" is not on the page`);
  await page.screenshot({ path: shot, fullPage: true });
  // and at a phone's width it still reads
  await page.setViewportSize({ width: 360, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 380) fail(`at 360 px the page is ${wide} px wide`);
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log(`4 headings with vet.json's verdicts, no script, nothing fetched; screenshot ${shot}`);
