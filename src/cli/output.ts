// What the CLI prints: aligned tables for people, JSON for scripts. Neither ever carries an upstream secret:
// rows come from the repository, which only knows an account key's last 4 characters.

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => unknown;
}

/** JSON on stdout, one document, newline-terminated. Dates become ISO strings. */
export function printJson(output: Output, value: unknown): void {
  output.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** An aligned table (or a note when there are no rows). */
export function printTable<T>(output: Output, columns: readonly Column<T>[], rows: readonly T[], empty = '(none)'): void {
  if (rows.length === 0) {
    output.out(`${empty}\n`);
    return;
  }
  const cells = rows.map((row) => columns.map((c) => cellText(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (parts: readonly string[]) =>
    parts
      .map((p, i) => (i === parts.length - 1 ? p : p.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  output.out(`${[line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n')}\n`);
}

/** `label: value` lines for one record. */
export function printRecord(output: Output, fields: readonly (readonly [label: string, value: unknown])[]): void {
  const width = Math.max(...fields.map(([label]) => label.length)) + 1;
  output.out(`${fields.map(([label, value]) => `${`${label}:`.padEnd(width)} ${cellText(value)}`).join('\n')}\n`);
}

/** One table cell: dates as ISO minutes, null as `-`, lists comma-joined, control characters escaped. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.toISOString().replace(/:\d{2}\.\d{3}Z$/, 'Z') : '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map(cellText).join(',');
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${cellText(v)}`).join(',');
  }
  return String(value).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) =>
    `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Process streams as an Output. */
export const processOutput: Output = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};
