/** Children of this (test) process, read from /proc, to prove that no ffmpeg is left behind. */
import { readdirSync, readFileSync } from 'node:fs';

export interface ChildInfo {
  pid: number;
  comm: string;
  state: string;
  /** Its niceness. */
  nice: number;
}

export function childProcesses(ppid = process.pid): ChildInfo[] {
  const out: ChildInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    if (Number(fields[1]) === ppid) out.push({ pid: Number(name), comm, state: fields[0] ?? '?', nice: Number(fields[16]) });
  }
  return out;
}

/** Children that are not in `allowed` (helpers such as test servers and publishers). */
export function strayChildren(allowed: Iterable<number> = []): ChildInfo[] {
  const ok = new Set(allowed);
  return childProcesses().filter((c) => !ok.has(c.pid));
}
