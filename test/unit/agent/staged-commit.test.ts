import { describe, expect, it } from 'vitest';
import { stageLongCommit } from '../../../src/agent/shipping/staged-commit.js';
import { RefugeError } from '../../../src/core/errors.js';
import type { CommitPointRequest, StageChangesRequest } from '../../../src/protocol/schemas.js';

const h = (n: number) => n.toString(16).padStart(64, '0');
const request = (counts: number[]): CommitPointRequest => ({
  parentId: null,
  capturedAt: new Date(0).toISOString(),
  consistency: 'crash',
  disks: counts.map((count, d) => ({ name: `disk${d}`, sizeBytes: 1 << 30, changes: Array.from({ length: count }, (_, i) => [i, i % 7 === 0 ? null : h(d * 1000 + i)] as [number, string | null]) })),
});

/**
 * How the agent splits a long change list into staged parts (the replicator's side, and the real exchange, are
 * tested in test/unit/store/staged-commit.test.ts and agent-replication): every entry goes exactly once, in order,
 * parts never exceed their size, and a replicator without the route gets the request whole.
 */
describe('staging a long commit', () => {
  it('sends every entry once, in order, in parts across disks; the commit carries the rest', async () => {
    const whole = request([7, 0, 12]);
    const parts: StageChangesRequest[] = [];
    const commit = await stageLongCommit(whole, async (p) => void parts.push(p), { above: 10, partEntries: 5 });
    expect(parts.map((p) => p.part)).toEqual([0, 1, 2]);
    expect(parts.map((p) => p.disks.reduce((n, d) => n + d.changes.length, 0))).toEqual([5, 5, 5]);
    expect(new Set(parts.map((p) => p.stageId))).toEqual(new Set([commit.stageId]));
    expect(parts[1]?.disks.map((d) => d.name)).toEqual(['disk0', 'disk2']); // a part spans disks
    for (const d of whole.disks) {
      const sent = [...parts.flatMap((p) => p.disks), ...commit.disks].filter((x) => x.name === d.name).flatMap((x) => x.changes);
      expect(sent).toEqual(d.changes);
    }
    expect(commit.disks.map((d) => [d.name, d.sizeBytes, d.changes.length])).toEqual([['disk0', 1 << 30, 0], ['disk1', 1 << 30, 0], ['disk2', 1 << 30, 4]]);
  });

  it('leaves a short list whole, and goes whole to a replicator without the staging route', async () => {
    const parts: StageChangesRequest[] = [];
    const short = request([10]);
    expect(await stageLongCommit(short, async (p) => void parts.push(p), { above: 10, partEntries: 5 })).toBe(short);
    expect(parts).toEqual([]);
    const long = request([11]);
    const old = async () => {
      throw new RefugeError('not_found', 'no route POST /replicator/v1/replications/x/points/staged');
    };
    expect(await stageLongCommit(long, old, { above: 10, partEntries: 5 })).toBe(long);
    const failing = async () => {
      throw new RefugeError('unavailable', 'link down');
    };
    await expect(stageLongCommit(long, failing, { above: 10, partEntries: 5 })).rejects.toThrow('link down');
  });
});
