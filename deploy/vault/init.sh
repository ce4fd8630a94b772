#!/bin/sh
# One-shot set-up of the compose OpenBao dev server (in-memory, so it runs on every start):
# the database secrets engine with dynamic roles on the `orders` database, and KV v2
# secrets for the HTTP and SSH upstreams. Secrets come from the environment only.
set -eu

: "${BAO_ADDR:?}" "${BAO_TOKEN:?}" "${POSTGRES_PASSWORD:?}"

bao secrets list -format=json | grep -q '"database/"' || bao secrets enable database

bao write database/config/orders \
  plugin_name=postgresql-database-plugin \
  connection_url='postgresql://{{username}}:{{password}}@postgres:5432/orders?sslmode=disable' \
  allowed_roles='orders-readonly,orders-readwrite' \
  username=portcullis \
  password="$POSTGRES_PASSWORD"

bao write database/roles/orders-readonly db_name=orders default_ttl=1h max_ttl=8h \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT pg_read_all_data TO \"{{name}}\";"

bao write database/roles/orders-readwrite db_name=orders default_ttl=1h max_ttl=8h \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT pg_read_all_data, pg_write_all_data TO \"{{name}}\";"

# KV v2 is mounted at secret/ by the dev server.
if [ -n "${BILLING_TOKEN:-}" ]; then
  bao kv put secret/billing-api value="Bearer $BILLING_TOKEN" >/dev/null
fi
if [ -n "${WEB1_SSH_PRIVATE_KEY:-}" ]; then
  printf '%s\n' "$WEB1_SSH_PRIVATE_KEY" | bao kv put secret/web-1 private_key=- >/dev/null
fi
echo "vault-init: database/ and secret/ configured"
