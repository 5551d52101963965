#!/usr/bin/env bash
# Installs the Debian 12 packages Tern needs to build and test. Idempotent; run as root.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build clang libclang-rt-14-dev pkg-config
  # libraries
  libcaf-dev libboost1.74-dev libprotobuf-dev protobuf-compiler libssl-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev librocksdb-dev
  catch2
  # access control: PostgreSQL client library (auth provider) and server (its tests)
  libpq-dev postgresql
  # third-party MQTT clients and broker used by the integration tests and the benchmark
  mosquitto mosquitto-clients python3 python3-paho-mqtt python3-pytest python3-yaml
  # tools the tests use
  procps iproute2 openssl
  # headless browser for the dashboard and MQTT.js-over-WebSocket tests
  chromium
  # client libraries of the interoperability tests: Paho C (its samples, and a driver built
  # with gcc at test time) and Node.js for MQTT.js (installed from npm below)
  libpaho-mqtt-dev paho.mqtt.c-examples gcc nodejs
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  updated=1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm comes with some Node.js builds and is a package of its own in Debian's.
if ! command -v npm >/dev/null 2>&1; then
  [ "$updated" -eq 1 ] || $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends npm
fi

# MQTT.js, pinned by test/interop/package-lock.json, into test/interop/node_modules (ignored
# by git).
npm ci --prefix "$(dirname "$0")/../test/interop" --no-audit --no-fund --loglevel=error
