#!/bin/sh
# Runs every benchmark under bench/ one after the other and prints their Markdown reports;
# `make bench` calls it. From the repository root:
#
#   sh bench/run.sh                 # http, memory, thumb, fanout, publish (those present)
#   sh bench/run.sh http memory     # only the named ones
#
# The benchmarks share the machine's two cores, so they never run in parallel. A benchmark that
# fails is reported and the others still run; the exit status is 1 if any failed.
# Results and how to read them: bench/README.md (and bench/thumb.md, bench/fanout.md,
# bench/publish.md).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -gt 0 ] || set -- http memory thumb fanout publish
failed=""
for b in "$@"; do
    if [ ! -f "bench/$b/run.sh" ]; then
        echo "# $b: bench/$b/run.sh is not there, skipped"
        echo
        continue
    fi
    echo "# bench/$b/run.sh"
    echo
    start=$(date +%s)
    if ! sh "bench/$b/run.sh"; then
        failed="$failed $b"
        echo "# $b FAILED" >&2
    fi
    echo
    echo "(bench/$b/run.sh took $(($(date +%s) - start)) s)"
    echo
done
if [ -n "$failed" ]; then
    echo "failed:$failed" >&2
    exit 1
fi
