import { isRefugeError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { MAX_STAGE_PART_ENTRIES, STAGE_ABOVE_ENTRIES } from '../../protocol/limits.js';
import type { CommitPointRequest, StageChangesRequest } from '../../protocol/schemas.js';

type Changes = CommitPointRequest['disks'][number]['changes'];

/**
 * The commit to send for `request`. While it lists at most `above` chunks, the request itself; beyond (a first
 * point of a large disk lists every chunk it holds), its changes go ahead in parts of `partEntries` through `send`
 * (`POST /points/staged`, docs/protocol.md "Staged changes") and the commit carries the last part and the stage's
 * id: no request grows past a few MB, however large the disk, and a part that fails is sent again alone. A
 * replicator that predates staging answers the first part 404: then the request goes whole, as it always did.
 */
export async function stageLongCommit(
  request: CommitPointRequest,
  send: (part: StageChangesRequest) => Promise<void>,
  o: { above?: number; partEntries?: number } = {},
): Promise<CommitPointRequest> {
  if (request.disks.reduce((n, d) => n + d.changes.length, 0) <= (o.above ?? STAGE_ABOVE_ENTRIES)) return request;
  const size = o.partEntries ?? MAX_STAGE_PART_ENTRIES;
  // Parts fill disk by disk, in the request's order; the last one, however full, goes with the commit.
  const parts: { name: string; changes: Changes }[][] = [[]];
  let room = size;
  for (const d of request.disks) {
    for (let at = 0; at < d.changes.length; ) {
      if (room === 0) {
        parts.push([]);
        room = size;
      }
      const take = Math.min(room, d.changes.length - at);
      parts.at(-1)?.push({ name: d.name, changes: d.changes.slice(at, at + take) });
      at += take;
      room -= take;
    }
  }
  const tail = parts.pop() ?? [];
  const stageId = newId('stg');
  for (const [part, disks] of parts.entries()) {
    try {
      await send({ stageId, part, disks });
    } catch (err) {
      if (part === 0 && isRefugeError(err, 'not_found')) return request; // no such route: an older replicator
      throw err;
    }
  }
  return { ...request, stageId, disks: request.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, changes: tail.filter((t) => t.name === d.name).flatMap((t) => t.changes) })) };
}
