/**
 * A validation issue's path as people write it: `streams[2].input`, `resume.cam1`. Shared
 * by whatever reports schema problems (the WebSocket protocol's errors, the config loader).
 */
export function formatPath(parts: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}
