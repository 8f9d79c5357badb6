#!/usr/bin/env bash
# The probe guest's initramfs, built in one place for tools/run-cloud.sh
# (the cloud's guest image) and tools/run-vfio-host.sh (the VFIO VM's
# nested guest):
#
#   tools/lib/build-probe-initramfs.sh BUSYBOX OUTPUT
#
# OUTPUT (a gzipped newc cpio archive, written whole or not at all) holds
# BUSYBOX, a static busybox, as /bin/busybox, and tools/lib/probe-init.sh as
# /init, which lists the guest's PCI functions on its serial console.
set -euo pipefail

if (($# != 2)); then
    echo "usage: $0 BUSYBOX OUTPUT" >&2
    exit 2
fi
busybox=$1 output=$2
lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -f $busybox && -x $busybox ]] || {
    echo "$0: $busybox is no executable file (a static busybox:" \
        "busybox-static)" >&2
    exit 1
}

tree=$(mktemp -d)
tmp=$(mktemp "$output.XXXXXX")
trap 'rm -rf -- "$tree"; rm -f -- "$tmp"' EXIT
mkdir -p "$tree"/{bin,dev,proc,sys}
chmod 755 "$tree" "$tree"/{bin,dev,proc,sys}
cp -- "$busybox" "$tree/bin/busybox"
chmod 755 "$tree/bin/busybox"
install -m 755 -- "$lib/probe-init.sh" "$tree/init"
# Owned by root in the guest, whoever builds it.
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | gzip -1 >"$tmp"
chmod 644 -- "$tmp"
mv -f -- "$tmp" "$output"
