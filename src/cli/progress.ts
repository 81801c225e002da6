import { formatBytes } from '../core/durations.js';
import { sleep } from '../core/durations.js';
import type { JobView } from '../vault/jobs/definitions.js';
import type { ApiClient } from './client.js';

/**
 * Progress display for long work. On a terminal one line is redrawn in place; otherwise (logs, CI, pipes) a line
 * is printed only when something changes, so output stays readable in a file.
 */
export class ProgressLine {
  private last = '';
  private readonly tty = process.stdout.isTTY === true;

  update(text: string): void {
    if (text === this.last) return;
    this.last = text;
    if (this.tty) process.stdout.write(`\r\x1b[2K${text}`);
    else process.stdout.write(`${text}\n`);
  }

  done(text?: string): void {
    if (this.tty) process.stdout.write(`\r\x1b[2K${text ?? this.last}\n`);
    else if (text && text !== this.last) process.stdout.write(`${text}\n`);
    this.last = '';
  }
}

export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

export function bytesProgress(done: number, total: number): string {
  return `${bar(total > 0 ? done / total : 0)} ${formatBytes(done)} / ${formatBytes(total)}`;
}

/** Polls a job until it ends, drawing its current task and progress; returns the final job. */
export async function followJob(client: ApiClient, jobId: string, options: { quiet?: boolean } = {}): Promise<JobView> {
  const line = new ProgressLine();
  const path = await client.in(`/jobs/${jobId}`);
  // Only a coarse view when not on a terminal: the task name and every 25%.
  const coarse = process.stdout.isTTY !== true;
  for (;;) {
    const job = await client.get<JobView>(path);
    if (!options.quiet) {
      const task = job.tasks.find((t) => t.state === 'running' || t.state === 'waiting') ?? job.tasks.find((t) => t.state === 'failed');
      const shown = coarse ? Math.floor(job.progress * 4) / 4 : job.progress;
      if (job.state === 'waiting' && task) {
        // A manual step: say what it asks and how to answer, and keep following (someone else may answer).
        line.update(`  ${job.type} ${bar(shown)} waiting for input at ${task.name}: ${task.message ?? ''} (answer: refuge job resume ${job.id} [--reject])`);
      } else line.update(`  ${job.type} ${bar(shown)} ${task ? `${task.name}${task.message && !coarse ? ` (${task.message})` : ''}` : job.state}`);
    }
    if (job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') {
      if (!options.quiet) line.done(`  ${job.type} ${bar(job.state === 'succeeded' ? 1 : job.progress)} ${job.state}`);
      return job;
    }
    await sleep(250);
  }
}
