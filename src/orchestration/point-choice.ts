import { RefugeError } from '../core/errors.js';
import type { RecoveryPoint, Replication } from '../vault/model.js';
import type { ReplicationRepository } from '../vault/repositories/replications.js';

/**
 * Which recovery point a failover boots, as ASR offers it:
 * - `latest`: the newest point once the replicator has committed what was in flight (resolved inside the job);
 * - `latest-processed`: the newest point recorded when the operation is requested (fastest RTO);
 * - `latest-app-consistent`: the newest point taken with application hooks (`consistency: app`);
 * - `latest-multi-machine`: the newest point cut together with the replication's consistency group;
 * - a recovery point id (custom).
 */
export const POINT_CHOICES = ['latest', 'latest-processed', 'latest-app-consistent', 'latest-multi-machine'] as const;
export type PointChoice = (typeof POINT_CHOICES)[number] | (string & {});

export async function resolvePoint(points: ReplicationRepository, rep: Replication, choice: PointChoice): Promise<RecoveryPoint> {
  const none = (what: string, hint?: string) =>
    new RefugeError('failed_precondition', `replication '${rep.name}' has no ${what} recovery point`, { details: { field: '/body/point' }, ...(hint ? { hint } : {}) });
  switch (choice) {
    case 'latest':
    case 'latest-processed': {
      const p = await points.latestPoint(rep.id);
      if (!p) throw none('', 'wait for its first point (`refuge replication show`)');
      return p;
    }
    case 'latest-app-consistent': {
      const p = await points.latestPointOf(rep.id, 'app');
      if (!p) throw none('app-consistent', 'set an app-consistent interval on its policy, or choose latest');
      return p;
    }
    case 'latest-multi-machine': {
      if (!rep.groupId) {
        throw new RefugeError('failed_precondition', `replication '${rep.name}' is in no consistency group, so it has no multi-machine point`, {
          details: { field: '/body/point' },
          hint: 'choose latest, or put it in a group with `refuge replication set NAME --group GROUP`',
        });
      }
      const p = await points.latestPointOf(rep.id, 'group-cut');
      if (!p) throw none('multi-machine', 'its group has not cut a point together yet');
      return p;
    }
    default:
      return points.getPoint(rep.id, choice);
  }
}
