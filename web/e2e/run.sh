#!/bin/sh
# Browser tests of the web client: headless Debian Chromium driven by
# playwright-core, against real chatd nodes (one in memory, two on Redis).
# Needs Go, Node.js 20+, and Redis on 127.0.0.1:6379 (or CHAT_TEST_REDIS_URL).
set -eu
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
if [ ! -d node_modules ]; then
	npm ci --no-audit --no-fund
fi
mkdir -p artifacts
exec node --test --test-concurrency=1 tests/
