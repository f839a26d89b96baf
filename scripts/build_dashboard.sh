#!/usr/bin/env bash
# Rebuilds the fine-tuning dashboard from web/ into services/gateway/static/dashboard/ (the bundle the gateway
# serves, committed so machines without Node.js serve it too). Needs Node.js >= 20.19 and npm, and the project's
# Python (for the gateway's OpenAPI schema). Commit web/ and services/gateway/static/dashboard/ together:
# tests/browser/test_bundle_fresh.py fails when the bundle was not built from the current sources.
#
#   scripts/build_dashboard.sh              # npm ci, API types, type check, unit tests, vite build, copy, hash
#   SKIP_TESTS=1 scripts/build_dashboard.sh # without the Vitest run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
OUT=services/gateway/static/dashboard

if ! command -v npm >/dev/null 2>&1; then
  echo "build_dashboard: npm not found. Install Node.js 20.19+ (e.g. apt-get install nodejs npm), or use the" >&2
  echo "committed bundle in $OUT as it is." >&2
  exit 1
fi

echo "== gateway OpenAPI schema and training-spec JSON Schema -> web/src/api/"
HF_HUB_OFFLINE=1 "$PY" web/scripts/dump_openapi.py

cd web
echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "== API types from the schema -> src/api/schema.gen.ts"
npm run --silent gen:api
echo "== type check (includes the guide's example and the schema check)"
npx tsc --noEmit -p tsconfig.json
if [ "${SKIP_TESTS:-0}" != "1" ]; then
  echo "== unit tests"
  npx vitest run
fi
echo "== vite build"
npx vite build --logLevel warn
cd "$ROOT"

echo "== copy into $OUT"
rm -rf "$OUT"
mkdir -p "$OUT/hooks" "$OUT/api"
cp -R web/dist/. "$OUT/"
# The hook's sources (useFineTuning and the small hooks it composes) and the modules they import, in the same
# relative layout as web/src. These copies are build output (.gitattributes marks them linguist-generated).
cp web/src/hooks/*.ts "$OUT/hooks/"
cp web/src/api/client.ts web/src/api/events.ts web/src/api/types.ts web/src/api/schema.gen.ts "$OUT/api/"
"$PY" web/scripts/source_hash.py --write "$OUT/build-info.json" >/dev/null
echo "== built: $(du -sh "$OUT" | cut -f1) in $OUT, source hash $(sed -n 's/.*"source_hash": "\(.*\)".*/\1/p' "$OUT/build-info.json" | cut -c1-12)"
