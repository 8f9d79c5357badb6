#!/usr/bin/env bash
# Set up everything nova-acc's tests and demo need, idempotently:
#
#   1. Debian packages (installed only when missing),
#   2. a virtualenv in .venv (created only when missing or broken),
#   3. the Python requirements, pinned by constraints.txt (re-installed only
#      when a requirements file or this script's package list changed),
#   4. nova-acc itself, rebuilt from the work tree on every run.
#
# nova-acc is installed as a regular (non-editable) package: it ships a
# module into nova/virt/ (nova/virt/nova_acc), which an editable install
# cannot place inside the installed nova package.
#
# Environment: PYTHON (default python3), VENV (default <repo>/.venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"
NOVA_ACC_LOG_PREFIX="setup: "

PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}

# libvirt-python builds from source against libvirt-dev (found through
# pkg-config); tests validate domain XML with virt-xml-validate
# (libvirt-clients), a wrapper around xmllint (libxml2-utils); the probe
# initramfs builder's test packs an archive with cpio, which a minimal
# Debian lacks.
APT_PACKAGES=(libvirt-dev pkg-config libvirt-clients libxml2-utils cpio)


# ---- 1. system packages ---------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    # shellcheck disable=SC2016  # dpkg-query's format, not bash's
    if ! nova_acc_output_has 'install ok installed' \
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    # Wait for another apt (the real cloud's set-up may run one) instead
    # of failing on its lock.
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" \
        >/dev/null
fi

# ---- 2. virtualenv -----------------------------------------------------------
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating virtualenv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --upgrade pip wheel
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# ---- 3. requirements -------------------------------------------------------
# The stamp records what the requirements were installed from, so a second
# run skips pip's resolver entirely.
stamp_file="$VENV/.nova-acc-requirements"
stamp=$(cat requirements.txt test-requirements.txt constraints.txt \
            <("$VENV/bin/python" --version 2>&1) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]; then
    log "installing requirements (constrained by constraints.txt)"
    rm -f "$stamp_file"
    "${PIP[@]}" -c constraints.txt -r requirements.txt \
        -r test-requirements.txt
    echo "$stamp" >"$stamp_file"
fi

# ---- 4. nova-acc itself ----------------------------------------------------
# Always rebuilt so the work tree's changes are what runs. A stale build/
# directory would carry deleted modules into the new wheel.
log "installing nova-acc from $ROOT"
rm -rf "$ROOT/build"
"${PIP[@]}" --no-deps --no-build-isolation --force-reinstall "$ROOT"

# The compute_driver shim must sit inside the installed nova package.
"$VENV/bin/python" "$ROOT/tools/lib/install_check.py" check \
    --find nova.virt.nova_acc --find nova_acc --find os_acc --find stestr \
    || die "nova-acc is not importable after the install (above)"
log "ready: $VENV"
