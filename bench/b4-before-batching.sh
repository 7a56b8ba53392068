#!/usr/bin/env bash
# bash bench/b4-before-batching.sh [ROUNDS] [REV]
# B4's one-stream runs of the engine before batching (REV, default 4b3b6e2: the last commit
# before the batched engine, format-version-1 bundles, graphs on the main thread) alternated
# with this checkout's B4 suite (batched and unbatched engines), ROUNDS rounds (default 2),
# so that B4's fixed baseline (18.42 ms, a full run of 2026-11-24) can be checked against the
# same machine on the same day. REV is built in a temporary git worktree with this checkout's
# node_modules; each B4 run writes to its own directory under bench/results/tmp/b4-before/.
# Needs git history, npm ci and npm run build done here. About 6 minutes per round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
REV="${2:-4b3b6e2}"
OUT="$PWD/bench/results/tmp/b4-before"
TMP="$(mktemp -d)"
OLD="$TMP/before"
cleanup() { git worktree remove --force "$OLD" >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$OUT"
git worktree add --detach "$OLD" "$REV" >/dev/null
ln -s "$PWD/node_modules" "$OLD/node_modules"
(cd "$OLD" && npx tsc -p tsconfig.json)

run() { # $1: label, $2: checkout, $3: round
  echo "$(date +%T) round $3: $1"
  (cd "$2" && node bin/casa-live.js bench --suite b4 --out "$OUT/$1-$3" >"$OUT/$1-$3.log" 2>&1)
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run before "$OLD" "$r"; run now "$PWD" "$r"; else run now "$PWD" "$r"; run before "$OLD" "$r"; fi
done

node --input-type=module - "$OUT" "$ROUNDS" <<'EOF'
import { readFileSync } from 'node:fs';
const [dir, rounds] = process.argv.slice(2);
for (let r = 1; r <= Number(rounds); r++) {
  const before = JSON.parse(readFileSync(`${dir}/before-${r}/b4-latency.json`, 'utf8')).results.oneStream.captionMs;
  const now = JSON.parse(readFileSync(`${dir}/now-${r}/b4-latency.json`, 'utf8')).results.oneStreamByEngine;
  const fmt = (q) => `p50 ${q.p50} / p99 ${q.p99} ms`;
  console.log(`round ${r}: before batching ${fmt(before)}; ${Object.entries(now).map(([k, v]) => `${k} ${fmt(v.captionMs)}`).join('; ')}; batched ÷ before ${(now.batched.captionMs.p99 / before.p99).toFixed(2)}×`);
}
EOF
