import { RefugeError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/log.js';
import { silentLogger } from '../../core/log.js';
import type { JobEngine } from '../../vault/jobs/engine.js';
import type { VaultRepositories } from '../../vault/repositories/index.js';
import { DRILL_JOB_TYPE, type DrillJobParams } from './drill-job.js';
import type { Drill, DrillRepository, DrillRun, DrillSubjectKind } from './drill-repository.js';
import { checkProbe, type Probe } from './probe.js';

/**
 * Drills: scheduled (or requested) test failovers with a health probe. The schedule lives in the database
 * (`drills.next_run_at`), and the scheduler in every vault process claims a due drill by compare-and-set, so a
 * drill runs once per due time however many processes share the database and whether or not one restarted.
 * A run that was due while the vault was down runs once when it comes back (missed runs are not replayed).
 */
export class DrillService {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;

  constructor(
    private readonly repos: VaultRepositories,
    readonly drills: DrillRepository,
    private readonly engine: JobEngine,
    private readonly log: Logger = silentLogger,
  ) {}

  async create(vaultName: string, input: { name: string; subjectKind: DrillSubjectKind; subject: string; intervalSeconds?: number; firstRunAt?: string; probe: Probe }): Promise<Drill> {
    const vault = await this.repos.vaults.get(vaultName);
    await this.subjectExists(vault.id, input.subjectKind, input.subject);
    if (input.firstRunAt !== undefined && Number.isNaN(Date.parse(input.firstRunAt))) throw new RefugeError('invalid_argument', `firstRunAt '${input.firstRunAt}' is not a time`, { details: { field: '/body/firstRunAt' } });
    return this.drills.create({
      vaultId: vault.id,
      name: input.name,
      subjectKind: input.subjectKind,
      subject: input.subject,
      intervalSeconds: input.intervalSeconds ?? null,
      firstRunAt: input.firstRunAt ? new Date(input.firstRunAt).toISOString() : null,
      probe: checkProbe(input.probe),
    });
  }

  /** Starts a run now: records it and its job in one transaction. Refused while a run of the drill is going. */
  async runNow(drill: Drill, trigger: DrillRun['trigger']): Promise<DrillRun> {
    const active = await this.drills.activeRun(drill.id);
    if (active) throw new RefugeError('operation_not_allowed', `drill '${drill.name}' is already running (job ${active.jobId})`, { details: { job: active.jobId } });
    const vault = await this.repos.vaults.byId(drill.vaultId);
    const runId = newId('drun');
    const startedAt = new Date().toISOString();
    const params: DrillJobParams = { drillId: drill.id, runId, vault: vault.name, subjectKind: drill.subjectKind, subject: drill.subject, probe: drill.probe, requestedAt: startedAt };
    await this.repos.db.transaction().execute(async (trx) => {
      const jobId = await this.engine.create(trx, { vaultId: vault.id, type: DRILL_JOB_TYPE, replicationId: null, params, requestedBy: `drill:${drill.name}` });
      await this.drills.insertRun(trx, { id: runId, drillId: drill.id, subjectKind: drill.subjectKind, subject: drill.subject, jobId, trigger, startedAt }, vault.id);
    });
    this.engine.kick();
    return (await this.drills.runs(drill.id, 1))[0] as DrillRun;
  }

  /** Runs every due drill once and moves its next run on by its interval. */
  async tick(now = new Date()): Promise<number> {
    let started = 0;
    for (const d of await this.drills.due(now.toISOString())) {
      const next = d.intervalSeconds === null ? null : new Date(Math.max(now.getTime(), Date.parse(d.nextRunAt as string)) + d.intervalSeconds * 1000).toISOString();
      if (!(await this.drills.claimDue(d.id, d.nextRunAt as string, next))) continue;
      try {
        await this.runNow(d, 'schedule');
        started++;
      } catch (err) {
        this.log.warn({ err, drill: d.name }, 'scheduled drill did not start');
      }
    }
    return started;
  }

  start(pollMs = 5000): void {
    this.timer = setInterval(() => {
      if (this.ticking) return;
      this.ticking = this.tick()
        .then(() => undefined)
        .catch((err: unknown) => this.log.error({ err }, 'drill scheduler failed'))
        .finally(() => (this.ticking = undefined));
    }, pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
  }

  private async subjectExists(vaultId: string, kind: DrillSubjectKind, name: string): Promise<void> {
    if (kind === 'replication') await this.repos.replications.get(vaultId, name);
    else await this.repos.plans.get(vaultId, name);
  }
}
