#!/bin/sh
# compose's one-shot amqp-certs: a private CA for the broker, made once, kept in volume
# rabbitmq-tls (mounted here on /tmp/rabbitmq-ssl, a directory the rabbitmq image gives its
# user, so a new volume is writable without root):
#   ca/ca.crt                 the CA's certificate; the services mount only this directory
#                             (volume subpath ca) and verify the broker with it (AMQP_CA_FILE)
#   server/server.{crt,key}   the broker's certificate (DNS rabbitmq, localhost) and key
# The CA's key lives in this container's /tmp only: once the broker's certificate is signed,
# nothing can issue another. Delete the volume to start over.
set -eu
out=/tmp/rabbitmq-ssl
if [ -s "$out/server/server.crt" ] && [ -s "$out/ca/ca.crt" ]; then
  echo "broker certificate exists, kept"
  exit 0
fi
mkdir -p "$out/ca" "$out/server"
chmod 755 "$out/ca"
chmod 700 "$out/server"
work=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
  -subj "/CN=drama-streaming compose CA" -keyout "$work/ca.key" -out "$work/ca.crt"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=rabbitmq" -keyout "$out/server/server.key" -out "$work/server.csr"
printf 'subjectAltName=DNS:rabbitmq,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -days 825 -extfile "$work/ext" -out "$out/server/server.crt"
cp "$work/ca.crt" "$out/server/ca.crt"
cp "$work/ca.crt" "$out/ca/ca.crt"
chmod 600 "$out/server/server.key"
chmod 644 "$out/ca/ca.crt"
rm -rf "$work"
echo "broker certificate made"
