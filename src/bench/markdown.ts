/** Markdown tables for SUMMARY.md. */

/** One markdown table row; a null cell is a blank one. */
export function mdRow(cells: readonly unknown[]): string {
  return `|${cells.map((c) => (c === null ? ' ' : ` ${String(c)} `)).join('|')}|`;
}

/** A markdown table: the header, its rule, then one row per array of cells. */
export function mdTable(header: ReadonlyArray<string | null>, rows: ReadonlyArray<readonly unknown[]>): string[] {
  return [mdRow(header), `|${'---|'.repeat(header.length)}`, ...rows.map(mdRow)];
}
