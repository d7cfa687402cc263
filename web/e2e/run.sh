#!/bin/sh
# Browser tests of the web client: headless Debian Chromium driven by
# playwright-core, against real chatd nodes (one in memory, two on Redis),
# with axe-core run in the page. Needs Go, Node.js 20+, and Redis on
# 127.0.0.1:6379 (or CHAT_TEST_REDIS_URL).
set -eu
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
# npm writes node_modules/.package-lock.json on install: older than the
# lock file means the dependencies changed since (axe-core came later).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund
fi
mkdir -p artifacts
status=0
node --test --test-concurrency=1 tests/ || status=$?
echo "web/e2e: screenshots and chatd logs are in $(pwd)/artifacts"
exit $status
