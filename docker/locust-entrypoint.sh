#!/bin/sh
# Entry point of the locust image (docker/locust.Dockerfile): `exec locust "$@"`, so locust is PID 1 and
# gets SIGTERM itself. Before that, if a report folder is mounted at /results ($RESULTS_DIR overrides it),
# check that this user can write to it: a bind-mounted ./results owned by another uid, or created by
# Docker as root because it did not exist, would otherwise fail only when locust writes the reports,
# after the whole run.
set -eu
results="${RESULTS_DIR:-/results}"
if [ -d "$results" ]; then
    probe="$results/.locust-write-test.$$"
    if ! (: >"$probe") 2>/dev/null; then
        echo "locust-entrypoint: cannot write to $results as uid $(id -u) gid $(id -g)." >&2
        echo "  Create it as yourself before starting (mkdir -p results) and, if your uid is not 1000," >&2
        echo "  run as you: RESULTS_UID=\$(id -u) RESULTS_GID=\$(id -g) docker compose up ..." >&2
        exit 1
    fi
    rm -f "$probe"
fi
exec locust "$@"
