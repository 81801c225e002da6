import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import type { StoreBackend } from '../../../src/store/backend.js';
import { collectGarbage } from '../../../src/store/gc.js';
import { prunePoints } from '../../../src/store/prune.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { ASR_RETENTION } from '../../../src/store/retention.js';
import { CRASH_REP, crashDisk, crashPointTime } from './crash-scenario.js';
import { commitDisk } from './fixtures.js';

/**
 * A child process that works on a store and kills itself with SIGKILL (kill -9: no cleanup, no finally) at a
 * chosen storage operation: before it, or while it is under way. Run by crash.test.ts as
 *   crash-child.ts <store dir> <commit|prune|gc> <operation number, 0 = never> <before|during>
 * It prints `ops <n>` when it finishes without crashing, so the test learns how many operations there are.
 */

const [dir, mode, crashAtText, how] = process.argv.slice(2) as [string, 'commit' | 'prune' | 'gc', string, 'before' | 'during'];
const crashAt = Number(crashAtText);
let ops = 0;

function crashing(inner: StoreBackend): StoreBackend {
  const step = async <T>(call: () => Promise<T>): Promise<T> => {
    ops++;
    if (ops === crashAt && how === 'before') process.kill(process.pid, 'SIGKILL');
    if (ops === crashAt) {
      const running = call();
      setImmediate(() => process.kill(process.pid, 'SIGKILL'));
      return running;
    }
    return call();
  };
  return {
    location: inner.location,
    get: (k) => inner.get(k),
    getRange: (k, o, l) => inner.getRange(k, o, l),
    exists: (k) => inner.exists(k),
    list: (p) => inner.list(p),
    put: (k, d) => step(() => inner.put(k, d)),
    delete: (k) => step(() => inner.delete(k)),
  };
}

const store = await ReplicaStore.open(crashing(new FilesystemBackend(dir)), { packSize: 48 * 1024 });
if (mode === 'commit') {
  const ids = await store.listPointIds(CRASH_REP);
  const parent = await store.getPoint(CRASH_REP, ids.at(-1) as string);
  await commitDisk(store, crashDisk(ids.length), { replicationId: CRASH_REP, parent, capturedAt: crashPointTime(ids.length) });
} else if (mode === 'prune') {
  await prunePoints(store, CRASH_REP, ASR_RETENTION, { now: crashPointTime(0).getTime() + 30 * 3600_000 });
} else {
  await collectGarbage(store, { graceMs: 0, repackBelow: 0.95 });
}
await store.close();
process.stdout.write(`ops ${ops}\n`);
