#!/bin/sh
# The image's ENTRYPOINT (README "Container image"). `run ...` (the default CMD) first
# runs `egressd check-config` on the same files, so a bad config ends the container at
# once with every problem printed, then execs egressd as PID 1 so that SIGTERM drains
# and SIGHUP reloads. Any other command (`check`, `check-config`, `version`...) is
# passed to egressd as it is. Writes nothing: works on a read-only root.
set -eu
if [ "$#" -eq 0 ]; then
  set -- run --config /etc/egressd/egressd.yaml
fi
if [ "$1" = "run" ]; then
  shift
  /usr/local/bin/egressd check-config "$@" >&2
  exec /usr/local/bin/egressd run "$@"
fi
exec /usr/local/bin/egressd "$@"
