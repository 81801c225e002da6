import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LEAF_SIZE, blobName, leafDigests, nameFromLeafDigests } from '../../../src/store/chunks.js';
import { checkConfig, type StoreConfig } from '../../../src/store/store-config.js';
import { agentNamesFor } from '../../../src/api/routes/agents.js';
import { expectRefugeError } from './expect-error.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

/** Store format 3's names (chunks.ts, docs/design-delta-points.md): a hash over the SHA-256 of each 16 KiB leaf. */
describe('blob naming', () => {
  it('sha256 is the SHA-256 of the bytes (format 2)', () => {
    const data = randomBytes(70_000);
    expect(blobName(data, 'sha256')).toBe(sha(data).toString('hex'));
  });

  it('leaf16 is SHA-256("RFG3" | u32 BE length | SHA-256 of each 16 KiB leaf), the last leaf shorter', () => {
    const data = randomBytes(2 * LEAF_SIZE + 100);
    const head = Buffer.concat([Buffer.from('RFG3'), Buffer.from([0, 0, 0x80, 0x64])]); // 32,868 bytes
    const leaves = [data.subarray(0, LEAF_SIZE), data.subarray(LEAF_SIZE, 2 * LEAF_SIZE), data.subarray(2 * LEAF_SIZE)].map(sha);
    expect(blobName(data, 'leaf16')).toBe(sha(Buffer.concat([head, ...leaves])).toString('hex'));
    expect(blobName(data, 'leaf16')).not.toBe(blobName(data, 'sha256'));
  });

  it('after a write, the name follows from the digests of the leaves written and the others remembered', () => {
    const chunk = randomBytes(256 * 1024);
    const remembered = leafDigests(chunk);
    const written = Buffer.from(chunk);
    randomBytes(8192).copy(written, 5 * LEAF_SIZE + 4096); // one 8 KiB write inside leaf 5
    const digests = Buffer.from(remembered);
    leafDigests(written.subarray(5 * LEAF_SIZE, 6 * LEAF_SIZE)).copy(digests, 5 * 32); // only leaf 5 hashed again
    expect(nameFromLeafDigests(written.length, digests)).toBe(blobName(written, 'leaf16'));
    expect(blobName(written, 'leaf16')).not.toBe(blobName(chunk, 'leaf16'));
  });

  it('names differ with the length even where the leaves would not tell (a zero tail)', () => {
    const short = randomBytes(LEAF_SIZE);
    const long = Buffer.concat([short, Buffer.alloc(10)]);
    expect(blobName(long, 'leaf16')).not.toBe(blobName(short, 'leaf16'));
    const one = Buffer.alloc(1);
    expect(blobName(Buffer.alloc(0), 'leaf16')).not.toBe(blobName(one, 'leaf16'));
  });

  it('a naming this Refuge does not know is an error, not a guess', () => {
    expect(() => blobName(Buffer.from('x'), 'leaf8' as never)).toThrow(/'leaf8' is not a blob naming/);
  });

  it('the vault lets an agent ship to a format-3 store only from 0.3.0, which names chunks as the store asks', () => {
    expect(agentNamesFor('sha256', '0.1.0')).toBe(true);
    expect(agentNamesFor('leaf16', '0.2.0')).toBe(false);
    expect(agentNamesFor('leaf16', 'garbage')).toBe(false);
    expect(agentNamesFor('leaf16', '0.3.0')).toBe(true);
    expect(agentNamesFor('leaf16', '1.0.0')).toBe(true);
  });

  it('a store of an unknown format is refused, naming the formats this Refuge reads', async () => {
    const config = { format: 5, chunkSize: 262144, packSize: 16 << 20, compressionLevel: 3, createdAt: '', encryption: null } as unknown as StoreConfig;
    await expectRefugeError(Promise.resolve().then(() => checkConfig(config, '/x')), 'failed_precondition', 'formats 2, 3, 4');
    expect(checkConfig({ ...config, format: 3 }, '/x').format).toBe(3);
  });
});
