// Prints the gzipped size of the JavaScript the first page loads and fails over the budget
// (300 KB gzipped, docs/benchmarks.md).
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET = 300 * 1024;
const html = readFileSync('dist/index.html', 'utf8');
const entry = [...html.matchAll(/(?:src|href)="\/assets\/([^"]+\.js)"/g)].map((m) => m[1]);
let total = 0;
for (const file of entry) {
  const size = gzipSync(readFileSync(`dist/assets/${file}`)).length;
  total += size;
  console.log(`first load: ${file} ${(size / 1024).toFixed(1)} KB gzipped`);
}
const all = readdirSync('dist/assets').filter((f) => f.endsWith('.js'));
const lazy = all
  .filter((f) => !entry.includes(f))
  .reduce((n, f) => n + gzipSync(readFileSync(`dist/assets/${f}`)).length, 0);
console.log(
  `first load total: ${(total / 1024).toFixed(1)} KB gzipped JavaScript (budget ${BUDGET / 1024} KB); ` +
    `${all.length - entry.length} lazy chunks ${(lazy / 1024).toFixed(1)} KB`,
);
// The landing page (the dashboard) adds its own chunk before it shows anything.
const dashboard = all.filter((f) => f.startsWith('Dashboard-'));
const landing = dashboard.reduce((n, f) => n + gzipSync(readFileSync(`dist/assets/${f}`)).length, total);
console.log(`dashboard before its chart: ${(landing / 1024).toFixed(1)} KB gzipped JavaScript`);
if (total > BUDGET || landing > BUDGET) {
  console.error('over the first-load budget');
  process.exit(1);
}
