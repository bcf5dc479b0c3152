#!/bin/sh
# Benchmark of the thumbnailer: sh bench/thumb/run.sh [ROUNDS]   (from the repository root)
# Builds bench/thumb/bench_thumb.c with src/thumb.c at -O2, makes a 12 MP and a 2 MP photo-like
# JPEG in a temporary directory, and prints a Markdown report (paste it into bench/thumb.md).
# Compares against djpeg -scale 1/8 (libjpeg-turbo-progs), vipsthumbnail (libvips-tools) and
# ImageMagick's convert, each run as a process; a tool that is not installed is reported as such.
set -eu
cd "$(dirname "$0")/../.."
ROUNDS="${1:-21}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/keng-bench-thumb.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT INT TERM
CC="${CC:-cc}"
# shellcheck disable=SC2046
$CC -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Iinclude \
    $(pkg-config --cflags libturbojpeg libpng) \
    bench/thumb/bench_thumb.c src/thumb.c -o "$DIR/bench_thumb" \
    $(pkg-config --libs libturbojpeg libpng) -pthread
echo "## thumb benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m)"
echo
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "not installed"; }
echo "- djpeg: libjpeg-turbo-progs $(ver libjpeg-turbo-progs)"
echo "- vipsthumbnail: libvips-tools $(ver libvips-tools)"
echo "- convert: imagemagick $(ver imagemagick)"
echo "- libturbojpeg $(pkg-config --modversion libturbojpeg), libpng $(pkg-config --modversion libpng)"
echo
"$DIR/bench_thumb" "$DIR" "$ROUNDS"
