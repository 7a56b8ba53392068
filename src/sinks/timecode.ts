/** Subtitle time stamps. */

function parts(seconds: number): { h: number; m: number; s: number; ms: number } {
  const total = Math.max(0, Math.round(seconds * 1000));
  return {
    h: Math.floor(total / 3_600_000),
    m: Math.floor(total / 60_000) % 60,
    s: Math.floor(total / 1000) % 60,
    ms: total % 1000,
  };
}

const p2 = (n: number): string => String(n).padStart(2, '0');
const p3 = (n: number): string => String(n).padStart(3, '0');

/** 00:01:02,345 (SubRip). */
export function srtTime(seconds: number): string {
  const t = parts(seconds);
  return `${p2(t.h)}:${p2(t.m)}:${p2(t.s)},${p3(t.ms)}`;
}

/** 00:01:02.345 (WebVTT). */
export function vttTime(seconds: number): string {
  const t = parts(seconds);
  return `${p2(t.h)}:${p2(t.m)}:${p2(t.s)}.${p3(t.ms)}`;
}

/** 00:01:02.345 for terminal output (hours always shown, so columns line up). */
export function clockTime(seconds: number): string {
  return vttTime(seconds);
}
