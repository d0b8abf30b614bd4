#!/usr/bin/env bash
# Brings a Debian machine (with Node.js 20+) to where Archenland runs and tests:
# Blender and ffmpeg from Debian's packages, Chromium too when WITH_BROWSER=1, and the
# npm dependencies. Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v blender >/dev/null || missing+=(blender)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
if [[ "${WITH_BROWSER:-0}" == 1 ]] && ! command -v chromium >/dev/null; then missing+=(chromium); fi
if (( ${#missing[@]} )); then
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  echo "setup: installing ${missing[*]} from Debian's packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Reinstall npm packages only when the lock file changed since the last install.
stamp=node_modules/.archenland-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi

# Build the web UI when it is missing or older than its sources (including the shared
# protocol it bundles), so `npm start` and `npm test` always serve a fresh one.
if [[ ! -f web/dist/index.html ]] || [[ -n "$(find web/src web/public web/index.html web/vite.config.ts src/protocol package-lock.json -newer web/dist/index.html -print -quit 2>/dev/null)" ]]; then
  echo "setup: building the web UI" >&2
  npm run --silent build:web >&2
fi
