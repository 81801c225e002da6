/** How commands print: aligned tables for people, JSON with --json for scripts. */

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printTable(rows: Record<string, unknown>[], columns: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return '-';
    if (Array.isArray(v)) return v.join(',');
    return typeof v === 'string' ? v : JSON.stringify(v);
  };
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  process.stdout.write(line(columns.map((c) => c.toUpperCase())) + '\n');
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + '\n');
}

/** Prints an object as `key: value` lines (nested objects as JSON). */
export function printFields(obj: Record<string, unknown>): void {
  const width = Math.max(...Object.keys(obj).map((k) => k.length));
  for (const [k, v] of Object.entries(obj)) {
    const text = v !== null && typeof v === 'object' ? JSON.stringify(v) : String((v as string | undefined) ?? '-');
    process.stdout.write(`${(k + ':').padEnd(width + 1)} ${text}\n`);
  }
}

export const say = (line: string): void => {
  process.stdout.write(line + '\n');
};

/** Prints `value` as JSON with --json, else as a table of its items (with `columns`) or as fields. */
export function show(json: boolean | undefined, value: unknown, columns?: string[]): void {
  if (json) return printJson(value);
  const v = value as Record<string, unknown>;
  if (columns) printTable((v.items as Record<string, unknown>[] | undefined) ?? [], columns);
  else printFields(v);
}

/** For commands whose effect has no body to show (a deletion): a line for people, an object for scripts. */
export function done(json: boolean | undefined, value: Record<string, unknown>, line: string): void {
  if (json) printJson(value);
  else say(line);
}
