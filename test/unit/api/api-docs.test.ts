import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiMarkdown } from '../../../scripts/api-docs.js';

/** docs/api.md is generated from the routes' OpenAPI document; a route added or changed without regenerating it fails here. */
describe('API reference', () => {
  it('docs/api.md is the current OpenAPI document (regenerate with `npm run docs:api`)', async () => {
    const committed = await readFile(join(import.meta.dirname, '..', '..', '..', 'docs', 'api.md'), 'utf8');
    expect(committed === (await apiMarkdown()), 'docs/api.md is stale: run `npm run docs:api`').toBe(true);
  });
});
