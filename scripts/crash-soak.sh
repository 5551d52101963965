#!/usr/bin/env bash
# Crash soak: kill -9 the broker N times (default 200) under continuous QoS 1 and QoS 2
# traffic from persistent sessions, then check that every acknowledged message arrived, in
# order, and QoS 2 exactly once. Usage: scripts/crash-soak.sh [kills] [build-dir] (default:
# 200, build). The same test runs 20 kills in the suite; see docs/durability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-200}
build=${2:-build}
export TERN_KILL_LOOPS=$kills
export TERN_BROKER_NODE=${TERN_BROKER_NODE:-$PWD/$build/apps/broker-node}
[ -x "$TERN_BROKER_NODE" ] || { echo "no broker-node at $TERN_BROKER_NODE: build first" >&2; exit 2; }
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q \
  test/integration/test_15_durability.py -k kill9_loop
