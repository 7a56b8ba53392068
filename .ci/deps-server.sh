#!/usr/bin/env bash
# Debian packages the daemon's tests need (test/server): Chromium for the overlay test
# (driven by playwright-core, which downloads nothing), systemd-analyze for the unit
# check, ffmpeg for the ffmpeg-driven stand-in pipeline, mosquitto (and mosquitto_passwd,
# openssl) for the MQTT output test (test/outputs/mqtt.test.ts), redis-server for cluster mode
# (test/cluster and benchmark B8 start their own on a free port; the tests fail, not skip,
# without it). Idempotent; called by .ci/run.
set -euo pipefail

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -x /usr/sbin/mosquitto ] && command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x "${REDIS_SERVER:-/usr/bin/redis-server}" ] || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ci: installing ${need_apt[*]} from Debian (server tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
