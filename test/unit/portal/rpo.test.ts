import { describe, expect, it } from 'vitest';
import { churn, diskChurn } from '../../../src/portal/src/rpo.js';
import type { Point } from '../../../src/portal/src/types.js';

const point = (second: number, changedBytes: number, diskChurn: Point['diskChurn']): Point => ({
  id: `pt_${second}`,
  capturedAt: new Date(Date.UTC(2026, 11, 2, 0, 0, second)).toISOString(),
  committedAt: new Date(Date.UTC(2026, 11, 2, 0, 0, second + 1)).toISOString(),
  consistency: 'crash',
  changedBytes,
  storedBytes: 0,
  diskChurn,
});

describe('portal: churn of a replication and of each disk', () => {
  it('averages the bytes changed after the first point over the time the points span', () => {
    const points = [point(20, 3000, [{ name: 'disk0', changedBytes: 2000 }, { name: 'data', changedBytes: 1000 }]), point(0, 999, null), point(10, 1000, [{ name: 'disk0', changedBytes: 1000 }, { name: 'data', changedBytes: 0 }])];
    expect(churn(points)).toBe(200); // 4,000 bytes in 20 s; the oldest point's own churn is before the span
    // Per disk: only the points that report it, oldest of them first (10 s apart).
    expect(diskChurn(points)).toEqual([{ name: 'data', bytesPerSecond: 100 }, { name: 'disk0', bytesPerSecond: 200 }]);
  });

  it('knows nothing from fewer than two points, or from points at one instant', () => {
    expect(churn([point(0, 10, null)])).toBeNull();
    expect(diskChurn([point(0, 10, null), point(5, 10, [{ name: 'disk0', changedBytes: 10 }])])).toEqual([]);
    expect(churn([point(5, 10, null), point(5, 10, null)])).toBeNull();
  });
});
