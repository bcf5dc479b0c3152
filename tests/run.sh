#!/bin/sh
# Runs the unit suite, the end-to-end suite, and the end-to-end suite again under
# ASan + UBSan; prints every result and one closing total line "N passed, N failed".
cd "$(dirname "$0")/.."
total_p=0; total_f=0; status=0
run() {
    suite=$1; shift
    out=$(mktemp)
    KENG_TEST_SUITE=$suite "$@" 2>&1 | tee "$out"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [ -z "$line" ]; then
        echo "$suite: runner did not finish"; total_f=$((total_f + 1)); status=1; return
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    total_p=$((total_p + p)); total_f=$((total_f + f))
    [ "$f" = 0 ] || status=1
}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run unit build/test_unit
KENG_BIN_DIR=build run e2e build/test_e2e
KENG_BIN_DIR=build/asan run e2e-asan build/asan/test_e2e
echo "$total_p passed, $total_f failed"
exit $status
