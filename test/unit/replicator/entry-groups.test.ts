import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BatchEntry } from '../../../src/protocol/chunk-batch.js';
import { GROUP_IDLE_MS, inGroups } from '../../../src/replicator/entry-groups.js';
import { Replicator, type ReplicationTarget } from '../../../src/replicator/replicator.js';
import type { ReplicaStore } from '../../../src/store/replica-store.js';
import { chunkHash } from '../../helpers/chunk-name.js';

const CHUNK = 64 * 1024;
const whole = (): BatchEntry => {
  const body = randomBytes(CHUNK);
  return { hash: chunkHash(body), body, compressed: false };
};

/** A request body that delivers `entries`, then stalls until `release` is called (a link cut mid-batch), then fails or ends. */
function stalledBody(entries: BatchEntry[]) {
  let release!: (err?: Error) => void;
  const stalled = new Promise<Error | undefined>((resolve) => (release = resolve));
  async function* body(): AsyncGenerator<BatchEntry> {
    for (const e of entries) yield e;
    const err = await stalled;
    if (err) throw err;
  }
  return { body: body(), release };
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('gathering a batch body into groups', () => {
  it('yields what arrived once the body pauses, without waiting for the group to fill or the body to end', async () => {
    const entries = [whole(), whole(), whole()];
    const { body, release } = stalledBody(entries);
    const groups = inGroups(body);
    const first = await groups.next();
    expect(first.value).toEqual(entries); // three of 64 entries and 192 KiB of 1 MiB: held back only by the pause
    const rest = groups.next();
    release(new Error('connection reset'));
    await expect(rest).rejects.toThrow('connection reset');
  });

  it('a body that never pauses is gathered into full groups only', async () => {
    const entries = Array.from({ length: 20 }, whole); // 1.25 MiB of whole chunks
    const sizes: number[] = [];
    for await (const g of inGroups(entries)) sizes.push(g.length);
    expect(sizes).toEqual([16, 4]);
  });

  it('a group that is stopped early leaves a stalled body unread, without hanging', async () => {
    const { body, release } = stalledBody([whole()]);
    const groups = inGroups(body);
    await groups.next();
    await expect(groups.return(undefined)).resolves.toMatchObject({ done: true });
    release();
  });
});

describe('the replicator answering which chunks it lacks', () => {
  it('waits for the chunks of a batch being stored before answering, so an agent restarting its upload does not send them twice', async () => {
    const stored = new Set<string>();
    let unblock!: () => void;
    const blocked = new Promise<void>((resolve) => (unblock = resolve));
    const store = {
      async putChunks(items: { hash: string }[]) {
        await blocked; // a worker still rebuilding the group
        for (const i of items) stored.add(i.hash);
      },
      async missingChunks(hashes: string[]) {
        return hashes.filter((h) => !stored.has(h));
      },
    };
    const target: ReplicationTarget = { store: store as unknown as ReplicaStore, chunkSize: CHUNK, onCommitted: async () => undefined };
    const replicator = new Replicator({ resolve: async () => target });
    const entries = [whole(), whole()];
    const { body, release } = stalledBody(entries);
    const upload = replicator.putChunks('r1', body);
    await wait(GROUP_IDLE_MS * 5); // the pause: the two entries go to the store
    let answered: string[] | undefined;
    const asking = replicator.missingChunks('r1', [...entries.map((e) => e.hash), 'f'.repeat(64)]).then((m) => (answered = m));
    await wait(50);
    expect(answered).toBeUndefined();
    unblock();
    await asking;
    expect(answered).toEqual(['f'.repeat(64)]);
    release(new Error('connection reset'));
    await expect(upload).rejects.toThrow('connection reset');
    expect(replicator.counters.get('r1')).toMatchObject({ chunksReceived: 2, wireBytesReceived: 2 * CHUNK });
  });
});
