#!/usr/bin/env bash
# Makes a throwaway CA and a localhost server certificate for development (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=Trailgate dev CA" -keyout dev-ca.key -out dev-ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout dev-server.key -out dev-server.csr
openssl x509 -req -in dev-server.csr -CA dev-ca.pem -CAkey dev-ca.key -CAcreateserial -days 365 \
  -out dev-server.pem -extfile <(printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
rm -f dev-server.csr dev-ca.srl
echo "wrote $(pwd)/dev-ca.pem dev-server.pem dev-server.key"
