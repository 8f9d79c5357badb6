#!/usr/bin/env bash
# Set up (tools/setup.sh), type-check os_acc with mypy (mypy.ini), then run
# nova-acc's whole test suite with stestr: unit tests and Nova functional
# tests (tests/, see .stestr.conf).
#
#   ./tools/run-tests.sh                  # everything; this is what CI runs
#   ./tools/run-tests.sh tests.unit       # stestr filter regexes, passed on
#
# Without arguments (the README's test command, and CI) the suite is
# followed by the real cloud: tools/run-cloud.sh brings a multi-process
# OpenStack with nova-acc up on this machine, tools/run-tempest.sh runs
# nova-acc's tempest plugin against it, and tools/run-cloud.sh --stop stops
# it again (also when something failed). NOVA_ACC_CLOUD=0 skips that part;
# with filter arguments it is skipped too.
#
# The last line is "N passed, N failed, N skipped", counted from the
# subunit streams of both runs; the exit status is non-zero when mypy found
# an error, a test failed, none passed or the cloud did not come up.
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
tempest_results=$(mktemp "${TMPDIR:-/tmp}/nova-acc-tempest.XXXXXX.subunit")
trap 'rm -f "$results" "$tempest_results"' EXIT

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

# The real cloud and tempest. A cloud that does not come up fails the run
# (with the end of the logs that say why); it is stopped in every case.
cloud_status="real cloud: skipped"
cloud_rc=0
if [ $# -eq 0 ] && [ "${NOVA_ACC_CLOUD:-1}" != 0 ]; then
    cloud_dir=${NOVA_ACC_CLOUD_DIR:-/var/tmp/nova-acc-cloud}
    echo
    echo "== The real cloud: tools/run-cloud.sh, tools/run-tempest.sh =="
    set +e
    cloud_start=$(date +%s)
    ./tools/run-cloud.sh
    up_rc=$?
    tempest_rc=0
    if [ "$up_rc" -eq 0 ]; then
        NOVA_ACC_TEMPEST_SUBUNIT=$tempest_results ./tools/run-tempest.sh
        tempest_rc=$?
    else
        for f in "$cloud_dir"/logs/*.log; do
            [ -f "$f" ] || continue
            echo "--- last lines of $f"
            tail -n 15 "$f"
        done
    fi
    ./tools/run-cloud.sh --stop
    set -e
    cloud_time=$(($(date +%s) - cloud_start))
    if [ "$up_rc" -ne 0 ]; then
        cloud_rc=1
        cloud_status="real cloud: did NOT come up (exit status $up_rc; logs above and in $cloud_dir/logs)"
    elif [ ! -s "$tempest_results" ]; then
        cloud_rc=1
        cloud_status="real cloud: tempest produced no results (exit status $tempest_rc; $cloud_dir/logs/tempest.log)"
    else
        cloud_status="real cloud: up, tempest run and stopped in $cloud_time s (tempest exit status $tempest_rc)"
    fi
fi

set +e
summary=$(cat "$results" "$tempest_results" \
          | "$PY" "$ROOT/tools/subunit_summary.py")
summary_rc=$?
set -e

echo
if [ "$stestr_rc" -ne 0 ]; then
    echo "stestr exited with status $stestr_rc" >&2
fi
echo "$mypy_status"
echo "$cloud_status"
echo "$summary"
if [ "$mypy_rc" -ne 0 ] || [ "$stestr_rc" -ne 0 ] ||
        [ "$cloud_rc" -ne 0 ] || [ "$summary_rc" -ne 0 ]; then
    exit 1
fi
