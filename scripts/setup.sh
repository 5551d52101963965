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
  # headless browser for the dashboard test
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
