#!/usr/bin/env bash
# Set up (tools/setup.sh), type-check os_acc with mypy (mypy.ini), then run
# nova-acc's whole test suite with stestr: unit tests and Nova functional
# tests (tests/, see .stestr.conf).
#
#   ./tools/run-tests.sh                  # everything; this is what CI runs
#   ./tools/run-tests.sh tests.unit       # stestr filter regexes, passed on
#
# The last line is "N passed, N failed, N skipped", counted from the run's
# subunit stream; the exit status is non-zero when mypy found an error, a
# test failed or none passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

./tools/setup.sh

VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

# Every test gets at most this many seconds (oslotest's fixtures.Timeout,
# as Nova's own tox sets it), so a test that hangs fails by name instead
# of stalling the whole run until CI's limit. The slowest test here takes
# about 40 s on 2 busy cores.
export OS_TEST_TIMEOUT=${OS_TEST_TIMEOUT:-300}

# The type check takes seconds (its cache is kept in the venv). A type error
# fails the run but does not stop the tests, so one run reports both.
set +e
"$PY" -m mypy --cache-dir "$VENV/.mypy_cache"
mypy_rc=$?
set -e
if [ "$mypy_rc" -eq 0 ]; then
    mypy_status="mypy: os_acc OK"
else
    mypy_status="mypy: os_acc FAILED (exit status $mypy_rc, errors above)"
fi
echo "$mypy_status"

results=$(mktemp "${TMPDIR:-/tmp}/nova-acc-tests.XXXXXX.subunit")
trap 'rm -f "$results"' EXIT

# The stream goes to a file (for the count) and through stestr's own
# pretty-printer (for the log; its exit status is ignored: the count below
# decides). stestr also keeps the run in .stestr/, so
# "stestr last" and "stestr failing" work afterwards.
set +e
"$PY" -m stestr run --subunit "$@" | tee "$results" \
    | "$PY" "$ROOT/tools/subunit_summary.py" --trace
statuses=("${PIPESTATUS[@]}")
set -e
stestr_rc=${statuses[0]}

set +e
summary=$("$PY" "$ROOT/tools/subunit_summary.py" "$results")
summary_rc=$?
set -e

echo
if [ "$stestr_rc" -ne 0 ]; then
    echo "stestr exited with status $stestr_rc" >&2
fi
echo "$mypy_status"
echo "$summary"
if [ "$mypy_rc" -ne 0 ] || [ "$stestr_rc" -ne 0 ] ||
        [ "$summary_rc" -ne 0 ]; then
    exit 1
fi
