// The systemd unit passes `systemd-analyze verify` and keeps its hardening.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

const UNIT = path.join(REPO_ROOT, 'systemd', 'casa-live.service');

it('systemd-analyze verify passes', async () => {
  const result = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile('systemd-analyze', ['verify', UNIT], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    ),
  );
  expect(result).toEqual({ code: 0, out: '' });
});

it('is hardened, restarts on failure and logs to the journal', async () => {
  const unit = await readFile(UNIT, 'utf8');
  for (const line of [
    'DynamicUser=yes',
    'StateDirectory=casa-live',
    'ProtectSystem=strict',
    'ProtectHome=yes',
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
    'LimitNOFILE=65536',
    'Restart=on-failure',
    'StandardOutput=journal',
    'ExecReload=/bin/kill -HUP $MAINPID',
    'KillMode=mixed',
  ]) {
    expect(unit.split('\n')).toContain(line);
  }
});
