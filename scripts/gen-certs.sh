#!/usr/bin/env bash
# Creates self-signed TEST certificates for Tern's TLS listeners: a CA, a server certificate
# for localhost / 127.0.0.1 / ::1, a client certificate, and a second, unrelated CA with its
# own client certificate (for "wrong CA" tests). For tests and trying things out only: never
# use these keys for anything real.
#
# Usage: scripts/gen-certs.sh [out-dir]      (default: etc/certs)
# Writes: ca.pem ca.key server.pem server.key client.pem client.key
#         other-ca.pem other-ca.key other-client.pem other-client.key
set -euo pipefail
out=${1:-"$(dirname "$0")/../etc/certs"}
days=${TERN_CERT_DAYS:-825}
mkdir -p "$out"
cd "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

ca() {  # ca <name> <subject>
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$days" -subj "$2" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # leaf <name> <ca> <subject> <extensions>
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$3" -out "$tmp/$1.csr"
  printf '%s\n' "$4" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -CAserial "$tmp/$2.srl" -days "$days" -sha256 -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "/O=Tern test/CN=Tern test CA"
leaf server ca "/O=Tern test/CN=localhost" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1')"
leaf client ca "/O=Tern test/CN=client-cn-1" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:client-san-1.example')"
ca other-ca "/O=Somebody else/CN=Unrelated test CA"
leaf other-client other-ca "/O=Somebody else/CN=intruder" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth')"
chmod 600 ./*.key
echo "gen-certs: test certificates written to $(pwd)"
