import { appendFileSync } from 'node:fs';

/**
 * Records a figure a reliability test measured (docs/reliability.md quotes them): printed in the test output as
 * `[figure R1] {...}`, and appended as one JSON line to $REFUGE_FIGURES when that is set (the soak run does).
 */
export function figure(row: string, values: Record<string, unknown>): void {
  const line = JSON.stringify({ row, at: new Date().toISOString(), ...values });
  process.stdout.write(`[figure ${row}] ${line}\n`);
  const file = process.env.REFUGE_FIGURES;
  if (file) appendFileSync(file, `${line}\n`);
}
