#!/bin/bash
# The image's HEALTHCHECK (README "Container image"): GET /readyz on the admin endpoint
# through bash's /dev/tcp, since the image has no curl. Healthy only on `200`.
# EGRESSD_ADMIN (host:port, default 127.0.0.1:9090) must match admin.address's port.
set -u
admin=${EGRESSD_ADMIN:-127.0.0.1:9090}
host=${admin%:*} port=${admin##*:}
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$admin" >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "readyz: $status" >&2; exit 1 ;;
esac
