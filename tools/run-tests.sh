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
# Before tempest, the VFIO host joins that cloud: tools/run-vfio-host.sh
# boots its VM (QEMU TCG with real VFIO devices: a virtio-rng pool with
# FLR, an nvme PF with SR-IOV VFs, the edu without a reset method) and
# starts nova-compute in it, and tempest runs the device scenarios on it
# too (NOVA_ACC_TEMPEST_VFIO_HOST=1 of run-tempest.sh). The VM's disk is
# built in the background while stestr runs and cached in
# /var/tmp/nova-acc-vfio (NOVA_ACC_VFIO_DIR); a VM that cannot be built or
# booted fails the run, with the logs that say why. It is stopped in every
# case, before the cloud.
#   NOVA_ACC_VFIO=0     skip the VFIO host (local runs only: refused when
#                       CI is set, as CI sets it)
#   NOVA_ACC_STESTR=0   skip the stestr suite, to run the cloud part alone
#                       (refused when CI is set)
#
# The last line is "N passed, N failed, N skipped", counted from the
# subunit streams of both runs; the exit status is non-zero when mypy found
# an error, a test failed, none passed or the cloud did not come up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ci=false
case ${CI:-} in ''|0|false|False) ;; *) ci=true ;; esac
run_stestr=${NOVA_ACC_STESTR:-1}
run_vfio=${NOVA_ACC_VFIO:-1}
if $ci && { [ "$run_stestr" = 0 ] || [ "$run_vfio" = 0 ]; }; then
    echo "run-tests: CI is set: NOVA_ACC_STESTR=0 and NOVA_ACC_VFIO=0 are for local runs only" >&2
    exit 2
fi
run_cloud=false
if [ $# -eq 0 ] && [ "${NOVA_ACC_CLOUD:-1}" != 0 ]; then
    run_cloud=true
fi
if $ci && ! $run_cloud; then
    echo "run-tests: CI is set: the real cloud (NOVA_ACC_CLOUD=0 or filter arguments) cannot be skipped" >&2
    exit 2
fi
phase_start=$(date +%s)
timings=""
run_start=$phase_start
# phase NAME: the time since the last phase ends NAME's. Said as it ends, so
# that a run stopped from outside shows how far it got.
phase() {
    local now
    now=$(date +%s)
    timings+="$1 $((now - phase_start)) s; "
    echo "run-tests: $1 done in $((now - phase_start)) s ($((now - run_start)) s into the run)"
    phase_start=$now
}

./tools/setup.sh
phase setup

VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

# Every test gets at most this many seconds (oslotest's fixtures.Timeout,
# as Nova's own tox sets it), so a test that hangs fails by name instead
# of stalling the whole run until CI's limit. The slowest test here takes
# about 40 s on 2 busy cores.
export OS_TEST_TIMEOUT=${OS_TEST_TIMEOUT:-300}

# CI stops a run at 90 minutes, and then shows nothing of its result. So
# the run keeps to a budget of its own (NOVA_ACC_RUN_BUDGET seconds from
# its start, 80 minutes by default): the stestr suite and tempest are
# stopped (timeout(1): SIGTERM to the whole process group, SIGKILL 30 s
# later) when they would outlive it, with 3 minutes left to stop the VM
# and the cloud, and such a run fails saying which phase ran out of time.
# A whole run takes about 50 minutes. Only where CI is set: timeout(1)
# puts its command in a process group of its own, out of reach of a
# terminal's Ctrl-C.
run_budget=${NOVA_ACC_RUN_BUDGET:-4800}
# within_budget RESERVE CMD...: CMD, stopped when only RESERVE seconds of
# the budget would be left (CI only).
within_budget() {
    local seconds=$((run_start + run_budget - $1 - $(date +%s)))
    shift
    if $ci; then
        # timeout 0 would mean no limit at all.
        [ "$seconds" -gt 0 ] || seconds=1
        timeout --kill-after=30 "$seconds" "$@"
    else
        "$@"
    fi
}
# out_of_budget STATUS: STATUS is timeout(1)'s (124: stopped; 137: killed).
out_of_budget() { [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; }

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
vfio_build_log=$(mktemp "${TMPDIR:-/tmp}/nova-acc-vfio-build.XXXXXX.log")
trap 'rm -f "$results" "$tempest_results" "$vfio_build_log"' EXIT

# The VFIO host's disk (debootstrap, a venv with nova, this checkout) is
# built while stestr runs: mostly downloads and disk, little CPU.
vfio_build_pid=""
if $run_cloud && [ "$run_vfio" != 0 ]; then
    ./tools/run-vfio-host.sh --build >"$vfio_build_log" 2>&1 &
    vfio_build_pid=$!
fi

# The stream goes to a file (for the count) and through stestr's own
# pretty-printer (for the log; its exit status is ignored: the count below
# decides). stestr also keeps the run in .stestr/, so
# "stestr last" and "stestr failing" work afterwards.
#
# What the workers print outside any test (Nova's services logging while a
# test's fixtures are torn down: about 6,000 lines, 1.8 MB a run) goes to
# a file of its own, kept after the run; its end is shown when the run
# failed. A failing test's own logs are shown with it either way.
stestr_other_output=$(mktemp "${TMPDIR:-/tmp}/nova-acc-stestr-other-output.XXXXXX.log")
stestr_rc=0
if [ "$run_stestr" != 0 ]; then
    set +e
    within_budget 1200 "$PY" -m stestr run --subunit "$@" | tee "$results" \
        | "$PY" "$ROOT/tools/subunit_summary.py" --trace \
              --other-output "$stestr_other_output"
    statuses=("${PIPESTATUS[@]}")
    set -e
    stestr_rc=${statuses[0]}
    if out_of_budget "$stestr_rc"; then
        echo "run-tests: stestr stopped: it would have outlived the run's" \
             "budget (NOVA_ACC_RUN_BUDGET=$run_budget s); the tests it did" \
             "not finish count as failed"
    fi
    stestr_summary=$("$PY" "$ROOT/tools/subunit_summary.py" "$results") || {
        echo "--- the last 60 lines the workers printed outside any test" \
             "(all of it: $stestr_other_output)"
        tail -n 60 "$stestr_other_output"
    }
    echo "stestr: $stestr_summary; the workers' output outside any test:" \
         "$stestr_other_output ($(wc -l < "$stestr_other_output") lines)"
else
    echo "stestr: skipped (NOVA_ACC_STESTR=0)"
fi
phase stestr

# The real cloud, the VFIO host and tempest. A cloud or a VFIO host that
# does not come up fails the run (with the end of the logs that say why);
# both are stopped in every case.
cloud_status="real cloud: skipped"
vfio_status="VFIO host: skipped (NOVA_ACC_VFIO=0)"
cloud_rc=0
vfio_rc=0
if $run_cloud; then
    cloud_dir=${NOVA_ACC_CLOUD_DIR:-/var/tmp/nova-acc-cloud}
    vfio_dir=${NOVA_ACC_VFIO_DIR:-/var/tmp/nova-acc-vfio}
    echo
    echo "== The real cloud: tools/run-cloud.sh, tools/run-tempest.sh =="
    set +e
    cloud_start=$(date +%s)
    ./tools/run-cloud.sh
    up_rc=$?
    phase cloud-up
    vfio_up=false
    if [ "$up_rc" -eq 0 ] && [ -n "$vfio_build_pid" ]; then
        echo
        echo "== The VFIO host: tools/run-vfio-host.sh --start, --compute =="
        wait "$vfio_build_pid"
        build_rc=$?
        cat "$vfio_build_log"
        phase vfio-build-wait
        if [ "$build_rc" -eq 0 ] && ./tools/run-vfio-host.sh --start; then
            phase vfio-start
            if ./tools/run-vfio-host.sh --compute; then
                vfio_up=true
                phase vfio-compute
            fi
        fi
        if ! $vfio_up; then
            vfio_rc=1
            vfio_status="VFIO host: did NOT come up (logs above and in $vfio_dir)"
            for f in "$vfio_dir"/logs/build.log "$vfio_dir"/logs/qemu.log "$vfio_dir"/serial.log; do
                [ -f "$f" ] || continue
                echo "--- last lines of $f"
                tail -n 25 "$f"
            done
            ./tools/run-vfio-host.sh --ssh tail -n 40 /var/log/nova/nova-compute.log
        fi
    fi
    tempest_rc=0
    tempest_budget_status=""
    if [ "$up_rc" -eq 0 ]; then
        NOVA_ACC_TEMPEST_VFIO_HOST=$($vfio_up && echo 1 || echo 0) \
            NOVA_ACC_TEMPEST_SUBUNIT=$tempest_results \
            within_budget 180 ./tools/run-tempest.sh
        tempest_rc=$?
        if out_of_budget "$tempest_rc"; then
            tempest_budget_status=" (stopped: it would have outlived the run's budget, NOVA_ACC_RUN_BUDGET=$run_budget s)"
        fi
        phase tempest
    else
        for f in "$cloud_dir"/logs/*.log; do
            [ -f "$f" ] || continue
            echo "--- last lines of $f"
            tail -n 15 "$f"
        done
    fi
    if [ -n "$vfio_build_pid" ]; then
        # A build still running (the cloud failed first) is waited for.
        wait "$vfio_build_pid" 2>/dev/null
        if $vfio_up; then
            vfio_status="VFIO host: up, its device scenarios run by tempest"
            # With the VFIO host every scenario has what it needs: a skip
            # is a scenario that did not run.
            tempest_summary=$("$PY" "$ROOT/tools/subunit_summary.py" "$tempest_results")
            case $tempest_summary in
                *" 0 skipped"*) ;;
                *)
                    vfio_rc=1
                    vfio_status="VFIO host: up, but tempest skipped scenarios ($tempest_summary)" ;;
            esac
            ./tools/run-vfio-host.sh --ssh tail -n 5 /var/log/nova/nova-compute.log
        fi
        ./tools/run-vfio-host.sh --stop
    fi
    ./tools/run-cloud.sh --stop
    phase stop
    set -e
    cloud_time=$(($(date +%s) - cloud_start))
    if [ "$up_rc" -ne 0 ]; then
        cloud_rc=1
        cloud_status="real cloud: did NOT come up (exit status $up_rc; logs above and in $cloud_dir/logs)"
        [ -z "$vfio_build_pid" ] || vfio_status="VFIO host: not started (no cloud)"
    elif [ ! -s "$tempest_results" ]; then
        cloud_rc=1
        cloud_status="real cloud: tempest produced no results (exit status $tempest_rc$tempest_budget_status; $cloud_dir/logs/tempest.log)"
    elif [ -n "$tempest_budget_status" ]; then
        cloud_rc=1
        cloud_status="real cloud: up, tempest$tempest_budget_status"
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
if $run_cloud; then
    echo "$vfio_status"
fi
echo "timings: $timings"
echo "$summary"
if [ "$mypy_rc" -ne 0 ] || [ "$stestr_rc" -ne 0 ] ||
        [ "$cloud_rc" -ne 0 ] || [ "$vfio_rc" -ne 0 ] ||
        [ "$summary_rc" -ne 0 ]; then
    exit 1
fi
