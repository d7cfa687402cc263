// axe-core (Deque's accessibility engine, from npm) run inside the page.
// Its source is evaluated through the DevTools protocol, which the page's
// Content-Security-Policy does not apply to: the page itself keeps
// refusing inline script.

import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const source = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const axeVersion = JSON.parse(fs.readFileSync(require.resolve('axe-core/package.json'), 'utf8')).version;

/**
 * Runs every axe rule on the page as it is now; returns the violations,
 * each {id, impact, help, where, targets, why}.
 */
export async function audit(page, where) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(source);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    where,
    targets: v.nodes.map((n) => n.target.join(' ')),
    why: v.nodes.map((n) => n.failureSummary),
  }));
}
