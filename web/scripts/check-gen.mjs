// Fails when src/api/schema.ts is not what openapi-typescript makes of openapi.json (which a
// Rust test keeps equal to the document the api serves): the client is never edited by hand.
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const out = join(mkdtempSync(join(tmpdir(), 'va-gen-')), 'schema.ts');
execFileSync('node_modules/.bin/openapi-typescript', ['openapi.json', '-o', out], { stdio: 'pipe' });
if (readFileSync(out, 'utf8') !== readFileSync('src/api/schema.ts', 'utf8')) {
  console.error('src/api/schema.ts differs from openapi.json: run `npm run gen` in web/');
  process.exit(1);
}
console.log('src/api/schema.ts matches openapi.json');
