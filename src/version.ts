/** casa-live's version, read once from package.json (the one home of the version string). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from './install.js';

export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
