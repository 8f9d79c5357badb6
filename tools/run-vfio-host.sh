#!/usr/bin/env bash
# A compute host that is a VM, for a real VFIO passthrough without hardware.
#
#   tools/run-vfio-host.sh [--build]  build what is missing: a Debian 12
#                                     rootfs with libvirt, QEMU, a kernel and
#                                     a venv with nova 34 and this checkout,
#                                     then its disk image (idempotent)
#   tools/run-vfio-host.sh --start    build, then boot the VM (QEMU TCG with
#                                     intel-iommu and the "edu" PCI device,
#                                     1234:11e8) and wait until its edu is on
#                                     vfio-pci and libvirtd answers
#   tools/run-vfio-host.sh --nested   stage 2, no cloud needed: in the VM, a
#                                     libvirt guest with the edu as a managed
#                                     <hostdev>; waits for the guest's console
#                                     to list 1234:11e8
#   tools/run-vfio-host.sh --compute  stage 3: nova-compute with
#                                     nova_acc.LibvirtAccDriver in the VM,
#                                     joined to tools/run-cloud.sh's cloud;
#                                     writes the VM's nova.conf and CI's
#                                     stand-in FPGA programming tool each
#                                     time (a changed nova.conf restarts a
#                                     running nova-compute; nova-acc's code
#                                     in the VM changes only with --start
#                                     after --stop)
#   tools/run-vfio-host.sh --demo     stage 3's check: boot a server with
#                                     device_context=resources:CUSTOM_EDU=1,
#                                     check it is ACTIVE on the VM with the
#                                     edu hostdev and its console lists the
#                                     device, delete it, check it is released
#   tools/run-vfio-host.sh --compute-stop
#   tools/run-vfio-host.sh --ssh [CMD...]  a shell (or CMD) in the VM
#   tools/run-vfio-host.sh --stand-in-log  what the stand-in FPGA programming
#                                     tool was asked to do in the VM, one
#                                     "programmed ADDRESS SHA256" or "erased
#                                     ADDRESS" a line (tempest reads it)
#   tools/run-vfio-host.sh --status
#   tools/run-vfio-host.sh --stop     stop the VM (clean poweroff, then kill)
#   tools/run-vfio-host.sh --rebuild-disk  new disk image from the rootfs
#                                     (forgets what the VM wrote to its disk)
#
# State under NOVA_ACC_VFIO_DIR (default /var/tmp/nova-acc-vfio): rootfs/,
# disk.raw, vmlinuz + initrd.img (the VM's), serial.log (the VM's console),
# nested-console.log, ssh key, logs/. The VM reaches nothing but 127.0.0.1
# of this machine: QEMU user networking with restrict=on, ssh in through a
# hostfwd on 127.0.0.1, and the cloud's ports (NOVA_ACC_VFIO_PORTS) out
# through guestfwd to 10.0.2.100, which socat in the VM republishes on the
# VM's own 127.0.0.1 (the keystone catalog says 127.0.0.1).
#
# Only the VM's emulated edu device is ever handed to nova-acc: nothing
# here selects a PCI device of this machine, and no nova-compute runs here.
#
# The state directory must belong to root (the uid running this) and be
# writable by nobody else, and must not be a symlink: it is refused
# otherwise (this script runs what is in it as root); a missing one is made
# 0700. The cloud's directory (NOVA_ACC_CLOUD_DIR), whose nova.conf and
# openrc files --compute and --demo use, is checked the same way. The VM's
# nova.conf, which holds the cloud's passwords, is 0600 here and in the VM.
#
# See "A real VFIO passthrough on one machine" in
# doc/source/operator-guide.rst (timings there).
set -euo pipefail
# What this script writes here is root's only; the VM's rootfs is built
# with umask 022 (see build), as Debian expects.
umask 077

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"
NOVA_ACC_LOG_PREFIX="run-vfio-host: "
# set_dirs and check_cloud_dir (below) check these before anything uses them.
DIR=${NOVA_ACC_VFIO_DIR:-/var/tmp/nova-acc-vfio}
CLOUD_DIR=${NOVA_ACC_CLOUD_DIR:-/var/tmp/nova-acc-cloud}
DISK_SIZE=${NOVA_ACC_VFIO_DISK_SIZE:-12G}
SSH_PORT=${NOVA_ACC_VFIO_SSH_PORT:-10022}
MIRROR=${NOVA_ACC_VFIO_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
NOVA_VERSION=34.0.0
VM_HOST=${NOVA_ACC_VFIO_HOST:-nova-acc-vfio}
VM_MEM=${NOVA_ACC_VFIO_MEM:-6G}
# The control plane's ports on this machine's 127.0.0.1 (tools/run-cloud.sh):
# keystone, rabbitmq, nova-api, placement, glance, neutron, nova-acc-api
# (the VM's nova-compute unbinds device contexts there).
PORTS=${NOVA_ACC_VFIO_PORTS:-"5000 5672 8774 8778 9292 9696 8790"}
GW=10.0.2.100
VENV=/opt/nova-acc/venv
SRC_IN_VM=/opt/nova-acc/src
# CI's stand-in FPGA programming tool (tools/lib/stand_in_programmer.py),
# the VM's [fpga_bitstream] program_command and erase_command: the
# virtio-rng pool's device_spec entry (nova_conf.py --vfio-host-devices)
# takes accel:bitstream_id, and the tool only logs what it was asked to do
# (root's log, $STAND_IN_LOG), which the tempest scenario of config data
# reads. Installed at --compute time, with nova.conf.
STAND_IN=/usr/local/sbin/nova-acc-stand-in-programmer
STAND_IN_LOG=/var/log/nova-acc/stand-in-programmer.log

# The devices of the VM nova-acc hands out, besides the edu (no reset
# method, on the root complex): a pool of two virtio-rng functions, each on
# a PCIe root port of its own (own IOMMU group, FLR), and an nvme PF with
# SR-IOV (QEMU 7.2 needs an nvme-subsys for it) whose two VFs are a pool of
# their own. The VM's init binds them (see configure_rootfs).
# shellcheck disable=SC2054  # commas within one -device value
DEVICES=(
    -device pcie-root-port,id=rp1,chassis=1,slot=1
    -device pcie-root-port,id=rp2,chassis=2,slot=2
    -device pcie-root-port,id=rp3,chassis=3,slot=3
    -device virtio-rng-pci,bus=rp1
    -device virtio-rng-pci,bus=rp2
    -device nvme-subsys,id=nvsub
    -device "nvme,bus=rp3,serial=novaaccpf,subsys=nvsub,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=4"
)
PACKAGES=(
    linux-image-amd64 initramfs-tools
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-system-common qemu-utils
    python3 python3-venv python3-libvirt
    pciutils kmod busybox-static udev iproute2 procps
    openssh-server socat ca-certificates less sudo
)

# set_dirs [create]: checks the state directory (tools/lib/common.sh: owned
# by this uid, writable by nobody else, no symlink, parents only root
# controls; made 0700 with "create"), then sets the paths under it.
# Returns 2 when it is missing and not to be created.
set_dirs() {
    local dir rc=0
    dir=$(nova_acc_state_dir "$DIR" NOVA_ACC_VFIO_DIR "${1:-}") || rc=$?
    ((rc != 2)) || return 2
    ((rc == 0)) || exit 1
    DIR=$dir
    ROOTFS=$DIR/rootfs
    DISK=$DIR/disk.raw
    SERIAL=$DIR/serial.log
    LOGS=$DIR/logs
    PIDFILE=$DIR/qemu.pid
    KEY=$DIR/id_ed25519
    mkdir -p "$LOGS"
}

# check_cloud_dir: the cloud's state directory, checked as run-cloud.sh
# checks it, before its nova.conf is read or its openrc (which puts its
# venv on PATH) is sourced.
check_cloud_dir() {
    local dir rc=0
    dir=$(nova_acc_state_dir "$CLOUD_DIR" NOVA_ACC_CLOUD_DIR) || rc=$?
    ((rc != 2)) || die "no cloud in $CLOUD_DIR (tools/run-cloud.sh)"
    ((rc == 0)) || exit 1
    CLOUD_DIR=$dir
}

# The command line of this VM's QEMU: a pidfile naming any other process
# is stale, and that process is never signalled.
qemu_cmd() { printf '%s\n' qemu-system-x86_64 "file=$DISK,"; }

# vm_pid: QEMU's pid, when it runs (a stale pidfile is removed).
vm_pid() {
    local match
    mapfile -t match < <(qemu_cmd)
    nova_acc_service_pid QEMU "$PIDFILE" "${match[@]}"
}
vm_running() { vm_pid >/dev/null; }

# ---------------------------------------------------------------------------
# The rootfs, built natively with debootstrap and chroot.

mounted_under() { awk -v p="$1" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/mounts; }

umount_under() {
    local m
    # Deepest first.
    for m in $(mounted_under "$1" | sort -r); do
        umount -l "$m" || true
    done
    [[ -z $(mounted_under "$1") ]] || die "still mounted under $1: $(mounted_under "$1")"
}

safe_rm() {
    umount_under "$1"
    rm -rf --one-file-system "$1"
}

chroot_mounts() {
    local r=$1
    umount_under "$r"
    mount -t proc proc "$r/proc"
    mount -t sysfs sysfs "$r/sys"
    mount --bind /dev "$r/dev"
    mount -t devpts devpts "$r/dev/pts" 2>/dev/null || true
}

in_chroot() {
    local r=$1; shift
    LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$r" "$@"
}

build_rootfs() {
    [[ -e $ROOTFS/.packages-done ]] && return 0
    local t=$DIR/rootfs.tmp
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >>"$LOGS/build.log" 2>&1 \
            || die "apt-get install debootstrap failed; see $LOGS/build.log"
    }
    if [[ ! -e $t/.debootstrap-done ]]; then
        safe_rm "$t"
        log "debootstrap $SUITE from $MIRROR into $t (log $LOGS/build.log)"
        debootstrap --variant=minbase "$SUITE" "$t" "$MIRROR" >>"$LOGS/build.log" 2>&1 \
            || die "debootstrap failed; see $LOGS/build.log"
        touch "$t/.debootstrap-done"
    fi
    log "installing ${PACKAGES[*]} in the rootfs (log $LOGS/build.log)"
    cp /etc/resolv.conf "$t/etc/resolv.conf"
    # No daemon starts in the chroot.
    printf '#!/bin/sh\nexit 101\n' > "$t/usr/sbin/policy-rc.d"
    chmod 755 "$t/usr/sbin/policy-rc.d"
    echo "deb $MIRROR $SUITE main" > "$t/etc/apt/sources.list"
    chroot_mounts "$t"
    trap 'umount_under "$DIR/rootfs.tmp"' EXIT
    in_chroot "$t" apt-get -o DPkg::Lock::Timeout=600 update -q >>"$LOGS/build.log" 2>&1 \
        || die "apt-get update in the rootfs failed; see $LOGS/build.log"
    in_chroot "$t" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        "${PACKAGES[@]}" >>"$LOGS/build.log" 2>&1 \
        || die "apt-get install in the rootfs failed; see $LOGS/build.log"
    in_chroot "$t" apt-get clean
    umount_under "$t"
    trap - EXIT
    rm -f "$t/usr/sbin/policy-rc.d"
    ls "$t"/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so >/dev/null \
        || die "the rootfs has no QEMU TCG module (accel-tcg-x86_64.so)"
    ls "$t"/boot/vmlinuz-* "$t"/boot/initrd.img-* >/dev/null \
        || die "the rootfs has no kernel or initrd in /boot"
    touch "$t/.packages-done"
    mv "$t" "$ROOTFS"
}

# The venv: created and filled in the chroot, at native speed.
src_stamp() {
    (cd "$ROOT" && { git rev-parse HEAD 2>/dev/null; git status --porcelain 2>/dev/null; } | sha1sum | cut -c1-16)
}

build_venv() {
    local stamp
    stamp=$(src_stamp)
    if [[ -e $ROOTFS/$VENV/.nova-done && $(cat "$ROOTFS/$SRC_IN_VM.stamp" 2>/dev/null) == "$stamp" ]]; then
        return 0
    fi
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    chroot_mounts "$ROOTFS"
    trap 'umount_under "$ROOTFS"' EXIT
    # This machine's pip configuration and local indexes, if any.
    local d pipenv=()
    for d in /opt/wheels /opt/pypi /opt/pypi-more; do
        if [[ -d $d ]]; then
            mkdir -p "$ROOTFS$d"
            mount --bind -o ro "$d" "$ROOTFS$d"
        fi
    done
    if [[ -f /etc/pip.conf ]]; then
        cp /etc/pip.conf "$ROOTFS/tmp/host-pip.conf"
        pipenv+=(PIP_CONFIG_FILE=/tmp/host-pip.conf)
    fi
    # This machine's CA bundle (its egress may need a CA of its own), only
    # for the build: nothing of it stays in the rootfs.
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        mount --bind -o ro /etc/ssl/certs/ca-certificates.crt \
            "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    fi
    if [[ ! -e $ROOTFS/$VENV/.nova-done ]]; then
        log "venv $VENV in the rootfs: nova==$NOVA_VERSION (log $LOGS/build.log)"
        rm -rf "${ROOTFS:?}/$VENV"
        # --system-site-packages: Debian's python3-libvirt, built for the
        # rootfs's libvirt (no compiler in the VM).
        in_chroot "$ROOTFS" python3 -m venv --system-site-packages "$VENV" >>"$LOGS/build.log" 2>&1 \
            || die "venv creation failed; see $LOGS/build.log"
        cp "$ROOT/constraints.txt" "$ROOTFS/tmp/constraints.txt"
        in_chroot "$ROOTFS" env "${pipenv[@]}" "$VENV/bin/pip" install -q \
            -c /tmp/constraints.txt "nova==$NOVA_VERSION" PyMySQL >>"$LOGS/build.log" 2>&1 \
            || die "pip install nova failed; see $LOGS/build.log"
        touch "$ROOTFS/$VENV/.nova-done"
    fi
    log "copying this checkout to $SRC_IN_VM and installing it in the venv"
    rm -rf "${ROOTFS:?}/$SRC_IN_VM"
    mkdir -p "$ROOTFS/$SRC_IN_VM"
    # The working tree as it is, without its git metadata (a worktree's .git
    # points outside the rootfs): pbr takes the version from PBR_VERSION.
    tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.tox \
        --exclude='*.pyc' --exclude=__pycache__ -cf - . | tar -C "$ROOTFS/$SRC_IN_VM" -xf -
    local version
    version=0.0.1.dev$(git -C "$ROOT" rev-list --count HEAD 2>/dev/null || echo 0)
    in_chroot "$ROOTFS" env "${pipenv[@]}" PBR_VERSION="$version" \
        "$VENV/bin/pip" install -q --no-deps --force-reinstall "$SRC_IN_VM" >>"$LOGS/build.log" 2>&1 \
        || die "pip install of this checkout failed; see $LOGS/build.log"
    in_chroot "$ROOTFS" "$VENV/bin/python" -c 'import nova.virt.nova_acc, nova_acc, os_acc, libvirt' \
        >>"$LOGS/build.log" 2>&1 || die "nova-acc does not import in the venv; see $LOGS/build.log"
    umount_under "$ROOTFS"
    trap - EXIT
    # nova-compute runs as nova: the venv and the source are everyone's to
    # read (pip keeps the checkout's modes, which may be 0600 here).
    chmod -R a+rX "${ROOTFS:?}$VENV" "$ROOTFS$SRC_IN_VM"
    rm -f "$ROOTFS/tmp/host-pip.conf"
    echo "$stamp" > "$ROOTFS/$SRC_IN_VM.stamp"
    # A new disk image carries the new code.
    rm -f "$DISK"
}

rootfs_kernel() { printf '%s\n' "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1; }

# The VM's init (PID 1), its network, its ssh key, and the nested guest's
# kernel and busybox initramfs.
configure_rootfs() {
    [[ -f $KEY ]] || ssh-keygen -q -t ed25519 -N '' -f "$KEY"
    install -d -m 700 "$ROOTFS/root/.ssh"
    install -m 600 "$KEY.pub" "$ROOTFS/root/.ssh/authorized_keys"
    echo "$VM_HOST" > "$ROOTFS/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$VM_HOST" > "$ROOTFS/etc/hosts"
    : > "$ROOTFS/etc/resolv.conf"
    cat > "$ROOTFS/etc/fstab" <<'EOT'
/dev/vda / ext4 rw,errors=remount-ro 0 1
EOT
    cat > "$ROOTFS/sbin/nova-acc-vm-init" <<EOT
#!/bin/sh
# PID 1 of the nova-acc VFIO VM (written by tools/run-vfio-host.sh).
PORTS="$PORTS"
GW=$GW
EOT
    cat >> "$ROOTFS/sbin/nova-acc-vm-init" <<'EOT'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "nova-acc-vm: $*" > /dev/ttyS0; }

if [ "$1" = shutdown ]; then
    say "shutting down"
    for p in nova-compute libvirtd virtlockd virtlogd sshd udevd socat; do
        pkill -TERM -x "$p" 2>/dev/null
    done
    sleep 3
    pkill -KILL -f nova-compute 2>/dev/null
    sync
    mount -o remount,ro / 2>/dev/null
    sync
    say "powering off"
    busybox poweroff -f
    exit 0
fi

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs tmpfs /dev/shm
mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mountpoint -q /tmp || mount -t tmpfs tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -o remount,rw /
say "userspace up after $(cut -d' ' -f1 /proc/uptime) s"
hostname -F /etc/hostname

ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2

# udev, so that libvirt's node devices are complete.
if [ -x /lib/systemd/systemd-udevd ]; then
    /lib/systemd/systemd-udevd --daemon
    udevadm trigger --action=add
    udevadm settle -t 120
fi

# The devices nova-acc hands out (QEMU's, see start_vm) to vfio-pci: the
# edu (1234:11e8, no reset method), the pool of virtio-rng functions
# (1af4:1044, FLR on their PCIe root ports) and the VFs of the nvme PF
# (1b36:0010 with SR-IOV). The PF stays on its own driver, nvme, as on real
# hardware (its VFs need a PF driver; libvirt moves the PF to vfio-pci
# itself when a guest gets it whole).
modprobe vfio-pci
modprobe nvme
to_vfio() {
    echo vfio-pci > "$1/driver_override"
    [ -e "$1/driver" ] && echo "${1##*/}" > "$1/driver/unbind"
    echo "${1##*/}" > /sys/bus/pci/drivers_probe
}
describe() {
    g=$(readlink "$1/iommu_group"); g=${g##*/}
    say "$2 ${1##*/} driver=$(basename "$(readlink "$1/driver")") reset_method=$(cat "$1/reset_method" 2>/dev/null) iommu_group=$g members=$(ls /sys/kernel/iommu_groups/"$g"/devices | tr '\n' ' ')"
}
for d in /sys/bus/pci/devices/*; do
    case "$(cat "$d/vendor"):$(cat "$d/device")" in
        0x1234:0x11e8) to_vfio "$d"; describe "$d" edu ;;
        0x1af4:0x1044) to_vfio "$d"; describe "$d" virtio-rng ;;
        0x1b36:0x0010)
            [ -e "$d/sriov_totalvfs" ] || continue
            [ -e "$d/driver" ] || echo "${d##*/}" > /sys/bus/pci/drivers/nvme/bind
            # The VFs' controllers are offline: no nvme probe of them.
            echo 0 > "$d/sriov_drivers_autoprobe"
            echo "$(cat "$d/sriov_totalvfs")" > "$d/sriov_numvfs"
            describe "$d" nvme-pf
            for v in "$d"/virtfn*; do
                v=$(readlink -f "$v")
                to_vfio "$v"; describe "$v" nvme-vf
            done ;;
    esac
done
say "vfio: $(ls /dev/vfio | tr '\n' ' ')"

mkdir -p /run/sshd /var/log/libvirt
/usr/sbin/sshd && say "sshd started" || say "sshd failed"

# The cloud's ports: 127.0.0.1:P in the VM -> $GW:P (QEMU guestfwd) ->
# 127.0.0.1:P of the machine that runs the VM.
for p in $PORTS; do
    socat "TCP-LISTEN:$p,bind=127.0.0.1,fork,reuseaddr" "TCP:$GW:$p" \
        >/dev/null 2>&1 &
done

for d in virtlogd virtlockd libvirtd; do
    "$d" -d || say "$d failed"
done
say "libvirt's daemons started"
i=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 300 ] && break
    sleep 1
done
say "libvirtd: $(virsh -c qemu:///system version 2>&1 | tr '\n' ' ')"
say "READY after $(cut -d' ' -f1 /proc/uptime) s"

# Reap orphans; SIGTERM (or SIGPWR) shuts the VM down.
exec python3 /usr/local/sbin/nova-acc-vm-reaper /sbin/nova-acc-vm-init shutdown
EOT
    chmod 755 "$ROOTFS/sbin/nova-acc-vm-init"
    nova_user
    install -D -m 755 "$ROOT/tools/lib/vm_reaper.py" \
        "$ROOTFS/usr/local/sbin/nova-acc-vm-reaper"

    # The nested guest: the VM's own kernel and the probe initramfs (the
    # cloud's guest image's too), with the rootfs's busybox.
    local n=$ROOTFS/var/lib/libvirt/images
    mkdir -p "$n"
    cp "$(rootfs_kernel)" "$n/edu-probe.vmlinuz"
    "$ROOT/tools/lib/build-probe-initramfs.sh" "$ROOTFS/bin/busybox" \
        "$n/edu-probe.initrd" >>"$LOGS/build.log" 2>&1 \
        || die "building the probe initramfs failed; see $LOGS/build.log"
}

# nova_user: nova-compute's user in the VM, as in a real deployment: an
# unprivileged "nova" in the libvirt group, whose only way to root is
# sudo nova-rootwrap with Nova's and nova-acc's filters (the privsep
# daemons: nova's own, nova-acc's device resets).
nova_user() {
    local r=$ROOTFS groups=libvirt
    if grep -q '^kvm:' "$r/etc/group"; then
        groups+=,kvm
    fi
    grep -q '^nova:' "$r/etc/passwd" \
        || chroot "$r" useradd --system --home-dir /var/lib/nova \
            --shell /usr/sbin/nologin --groups "$groups" nova \
        || die "useradd nova in the rootfs failed"
    install -d -m 755 "$r/etc/nova/rootwrap.d"
    install -m 644 "$r$VENV/etc/nova/rootwrap.d/compute.filters" \
        "$r$VENV/etc/nova/rootwrap.d/nova-acc.filters" "$r/etc/nova/rootwrap.d/" \
        || die "Nova's or nova-acc's rootwrap filters are not in $VENV/etc/nova/rootwrap.d"
    cat > "$r/etc/nova/rootwrap.conf" <<EOT
# nova-rootwrap of the VM's nova-compute (tools/run-vfio-host.sh).
[DEFAULT]
filters_path=/etc/nova/rootwrap.d
exec_dirs=$VENV/bin,/sbin,/usr/sbin,/bin,/usr/bin
use_syslog=False
EOT
    chmod 644 "$r/etc/nova/rootwrap.conf"
    cat > "$r/etc/sudoers.d/nova-rootwrap" <<EOT
# Nova's and nova-acc's privsep daemons, through rootwrap only.
Defaults:nova !requiretty
Defaults:nova secure_path="$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin"
nova ALL = (root) NOPASSWD: $VENV/bin/nova-rootwrap /etc/nova/rootwrap.conf *
EOT
    chmod 440 "$r/etc/sudoers.d/nova-rootwrap"
    # libvirt's socket for the libvirt group, without polkit (no D-Bus).
    sed -i -e '/^#* *unix_sock_group *=/c unix_sock_group = "libvirt"' \
        -e '/^#* *unix_sock_rw_perms *=/c unix_sock_rw_perms = "0770"' \
        -e '/^#* *auth_unix_rw *=/c auth_unix_rw = "none"' \
        "$r/etc/libvirt/libvirtd.conf"
}

build_disk() {
    if [[ -s $DISK ]]; then
        return 0
    fi
    (umask 022; configure_rootfs)
    local k
    k=$(rootfs_kernel)
    cp "$k" "$DIR/vmlinuz"
    cp "$ROOTFS/boot/initrd.img-${k##*/vmlinuz-}" "$DIR/initrd.img"
    log "disk image $DISK ($DISK_SIZE, ext4 from the rootfs)"
    rm -f "$DISK.tmp"
    truncate -s "$DISK_SIZE" "$DISK.tmp"
    mkfs.ext4 -q -F -L nova-acc-vfio -d "$ROOTFS" "$DISK.tmp" >>"$LOGS/build.log" 2>&1 \
        || die "mkfs.ext4 -d failed; see $LOGS/build.log"
    mv "$DISK.tmp" "$DISK"
}

build() {
    if vm_running; then
        log "the VM runs (pid $(cat "$PIDFILE")): not touching its rootfs or disk (--stop first)"
        return 0
    fi
    local t0=$SECONDS
    # The VM's own files get the modes a Debian system has (umask 022);
    # the state directory (0700) keeps everyone here out of them.
    (umask 022; build_rootfs)
    (umask 022; build_venv)
    build_disk
    log "built in $((SECONDS - t0)) s: $DISK"
}

# ---------------------------------------------------------------------------
# The VM.


vm_ssh() {
    ssh -q -i "$KEY" -p "$SSH_PORT" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 \
        -o ServerAliveInterval=30 -o BatchMode=yes root@127.0.0.1 "$@"
}

vm_scp_to() {
    scp -q -i "$KEY" -P "$SSH_PORT" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o BatchMode=yes "$1" "root@127.0.0.1:$2"
}

start_vm() {
    build
    if vm_running; then
        log "VM already running (pid $(cat "$PIDFILE"))"
        return 0
    fi
    local nic p t0=$SECONDS
    # restrict=on: the VM reaches only the forwards below, all to 127.0.0.1.
    nic="user,model=virtio-net-pci,restrict=on,net=10.0.2.0/24"
    nic+=",hostfwd=tcp:127.0.0.1:$SSH_PORT-:22"
    for p in $PORTS; do
        # cmd: one socat per connection (a tcp: chardev would carry one).
        nic+=",guestfwd=tcp:$GW:$p-cmd:socat - TCP:127.0.0.1:$p"
    done
    : > "$SERIAL"
    log "booting the VM (TCG; console $SERIAL, log $LOGS/qemu.log)"
    qemu-system-x86_64 -name nova-acc-vfio \
        -machine q35,kernel-irqchip=split -accel tcg,thread=multi -cpu max \
        -m "$VM_MEM" -smp 2 \
        -device intel-iommu,intremap=on,caching-mode=on -device edu \
        "${DEVICES[@]}" \
        -drive "file=$DISK,if=virtio,format=raw,cache=writeback" \
        -kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 intel_iommu=on iommu=pt net.ifnames=0 init=/sbin/nova-acc-vm-init" \
        -nic "$nic" \
        -display none -serial "file:$SERIAL" \
        -monitor "unix:$DIR/monitor.sock,server=on,wait=off" \
        -pidfile "$PIDFILE" -daemonize >>"$LOGS/qemu.log" 2>&1 \
        || die "QEMU did not start; see $LOGS/qemu.log"
    local rc=0
    nova_acc_wait 900 5 --alive vm_running -- \
        grep -q 'nova-acc-vm: READY' "$SERIAL" || rc=$?
    ((rc != 2)) || die "QEMU exited; see $SERIAL and $LOGS/qemu.log"
    ((rc == 0)) || die "the VM was not ready after 900 s; see $SERIAL"
    # sshd started before READY.
    nova_acc_wait 300 5 --alive vm_running -- vm_ssh true \
        || die "no ssh into the VM; see $SERIAL"
    log "VM ready in $((SECONDS - t0)) s:"
    grep 'nova-acc-vm:' "$SERIAL" >&2
}

stop_vm() {
    local pid match
    if ! pid=$(vm_pid); then
        log "VM not running"
        return 0
    fi
    # Every signal below only goes to this VM's QEMU (its command line).
    mapfile -t match < <(qemu_cmd)
    log "stopping the VM (pid $pid)"
    vm_ssh 'nohup /sbin/nova-acc-vm-init shutdown >/dev/null 2>&1 &' || true
    if ! nova_acc_wait 90 1 nova_acc_pid_gone "$pid" "${match[@]}"; then
        log "no clean poweroff after 90 s"
        nova_acc_stop_pid QEMU "$pid" "${match[@]}"
    fi
    rm -f "$PIDFILE"
    log "VM stopped"
}

status() {
    if vm_running; then
        echo "VM: running (pid $(cat "$PIDFILE")), ssh -p $SSH_PORT root@127.0.0.1 -i $KEY"
        vm_ssh 'lspci -nnk -d 1234:11e8; virsh -c qemu:///system list --all;
                pgrep -a -f "[b]in/nova-compute" || echo "nova-compute: not running"' || true
    else
        echo "VM: not running"
    fi
}

# ---------------------------------------------------------------------------
# Stage 2: a libvirt guest in the VM with the edu as a managed hostdev.

nested() {
    vm_running || start_vm
    local addr t0=$SECONDS
    addr=$(vm_ssh "lspci -D -n -d 1234:11e8 | cut -d' ' -f1")
    [[ -n $addr ]] || die "no edu device in the VM"
    log "nested guest with hostdev $addr"
    # shellcheck disable=SC2029  # $addr is expanded here on purpose
    vm_ssh "set -e
        virsh -q destroy edu-probe 2>/dev/null || true
        virsh -q undefine edu-probe 2>/dev/null || true
        rm -f /var/log/libvirt/edu-probe-console.log
        b=\$(echo $addr | tr ':.' '  ')
        set -- \$b
        cat > /tmp/edu-probe.xml <<EOX
<domain type='qemu'>
  <name>edu-probe</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/var/lib/libvirt/images/edu-probe.vmlinuz</kernel>
    <initrd>/var/lib/libvirt/images/edu-probe.initrd</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x\$1' bus='0x\$2' slot='0x\$3' function='0x\$4'/></source>
    </hostdev>
    <serial type='file'><source path='/var/log/libvirt/edu-probe-console.log'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOX
        virsh -q define /tmp/edu-probe.xml
        virsh -q start edu-probe
        virsh dumpxml edu-probe | sed -n '/<hostdev/,/<\/hostdev>/p'" >&2
    log "guest started after $((SECONDS - t0)) s; waiting for its console"
    if ! nova_acc_wait 1200 10 vm_ssh \
            'grep -q "nova-acc guest: done" /var/log/libvirt/edu-probe-console.log'; then
        vm_ssh 'cat /var/log/libvirt/edu-probe-console.log' >&2 || true
        die "no console output of the nested guest after 1200 s"
    fi
    vm_ssh 'cat /var/log/libvirt/edu-probe-console.log' > "$DIR/nested-console.log"
    log "nested guest's console after $((SECONDS - t0)) s ($DIR/nested-console.log):"
    grep -a 'nova-acc guest:\|^[0-9a-f]*:[0-9a-f]*\.[0-9]' "$DIR/nested-console.log" >&2 || true
    vm_ssh 'virsh -q destroy edu-probe; virsh -q undefine edu-probe;
            lspci -nnk -d 1234:11e8' >&2
    grep -q 'nova-acc guest: pci .* 0x1234:0x11e8' "$DIR/nested-console.log" \
        || die "the nested guest does not list 1234:11e8"
    log "stage 2 OK: the nested guest lists the edu device (1234:11e8) in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------
# Stage 3: nova-compute in the VM, joined to tools/run-cloud.sh's cloud.

# compute_conf OUTPUT: the VM's nova.conf (tools/lib/nova_conf.py
# compute-host): the cloud's own, minus what is that machine's (databases,
# API listeners, my_ip, its [nova_acc]), with the VM's host name and state
# path, nova-acc's driver under TCG, the privsep daemons started through
# sudo nova-rootwrap (nova-compute runs as nova), the VM's emulated devices
# (nova_conf.py --vfio-host-devices, --edu-device) and a reset on every
# release: the edu, which has no reset method, becomes dirty when released.
# The fpga_bitstream configurator runs the stand-in tool ($STAND_IN).
compute_conf() {
    check_cloud_dir
    local conf=$CLOUD_DIR/etc/nova/nova.conf
    [[ -f $conf ]] || die "no cloud: $conf is missing (tools/run-cloud.sh)"
    python3 "$ROOT/tools/lib/nova_conf.py" compute-host "$conf" "$1" \
        --set DEFAULT host "$VM_HOST" \
        --set DEFAULT my_ip 10.0.2.15 \
        --set DEFAULT state_path /var/lib/nova \
        --set DEFAULT use_stderr true \
        --set oslo_concurrency lock_path /var/lib/nova/lock \
        --compute-driver --tcg-compute \
        --set DEFAULT rootwrap_config /etc/nova/rootwrap.conf \
        --vfio-host-devices --edu-device --reset-on-release true \
        --set fpga_bitstream program_command "$STAND_IN,program,{address},{image}" \
        --set fpga_bitstream erase_command "$STAND_IN,erase,{address}" \
        --set fpga_bitstream staging_dir /var/lib/nova/nova-acc/fpga-images \
        || die "writing the VM's nova.conf ($1) failed"
}

# install_stand_in: the stand-in programming tool in the VM, root's, and
# its log (root's, 0644: the tempest scenario reads it through --ssh).
install_stand_in() {
    vm_scp_to "$ROOT/tools/lib/stand_in_programmer.py" "$STAND_IN.new"
    # shellcheck disable=SC2029  # expanded here on purpose
    vm_ssh "set -e
        chown root:root $STAND_IN.new; chmod 755 $STAND_IN.new
        mv -f $STAND_IN.new $STAND_IN
        install -d -o root -g root -m 755 ${STAND_IN_LOG%/*}
        test -f $STAND_IN_LOG || install -o root -g root -m 644 /dev/null $STAND_IN_LOG"
}

# vm_conf_is FILE: the VM's /etc/nova/nova.conf is FILE's content.
vm_conf_is() {
    local here there
    here=$(sha256sum < "$1")
    there=$(vm_ssh 'sha256sum < /etc/nova/nova.conf' 2>/dev/null) || return 1
    [[ $here == "$there" ]]
}

compute() {
    check_cloud_dir
    vm_running || start_vm
    [[ -s $CLOUD_DIR/admin-openrc ]] || die "no cloud: $CLOUD_DIR/admin-openrc is missing (tools/run-cloud.sh)"
    local p
    for p in $PORTS; do
        # shellcheck disable=SC2029  # $p is expanded here on purpose
        vm_ssh "timeout 10 bash -c ': </dev/tcp/127.0.0.1/$p'" \
            || die "the VM cannot reach 127.0.0.1:$p of this machine (is the cloud up?)"
    done
    # It holds the cloud's passwords: 0600 here (also when it existed) and
    # in the VM.
    compute_conf "$DIR/nova-compute.conf"
    chmod 600 "$DIR/nova-compute.conf"
    install_stand_in
    # A running nova-compute reads a changed nova.conf only when it starts.
    if ! vm_conf_is "$DIR/nova-compute.conf" \
            && vm_ssh 'pgrep -f "[b]in/nova-compute" >/dev/null'; then
        log "the VM's nova.conf changed: restarting its nova-compute"
        compute_stop
    fi
    # nova-compute runs as nova: its state and log directories are nova's;
    # nova.conf is root's, readable by nova's group (the privsep daemons,
    # root, read it too).
    vm_ssh 'mkdir -p /etc/nova /var/lib/nova/lock /var/lib/nova/instances /var/log/nova
            chown -R nova:nova /var/lib/nova /var/log/nova'
    vm_scp_to "$DIR/nova-compute.conf" /etc/nova/nova.conf
    vm_ssh 'chown root:nova /etc/nova/nova.conf; chmod 640 /etc/nova/nova.conf'
    # The compute node's UUID is kept in the state directory: a VM with a
    # new disk (--rebuild-disk) is the same compute node and resource
    # provider to the cloud, not a second node of the same name, which Nova
    # and placement refuse. The first one is derived from the host name.
    local node_uuid
    if [[ -s $DIR/compute_id ]]; then
        node_uuid=$(<"$DIR/compute_id")
    else
        node_uuid=$(python3 "$ROOT/tools/lib/nova_conf.py" node-uuid "$VM_HOST")
    fi
    # shellcheck disable=SC2029  # expanded here on purpose
    vm_ssh "test -s /var/lib/nova/compute_id || echo $node_uuid > /var/lib/nova/compute_id"
    vm_ssh 'cat /var/lib/nova/compute_id' > "$DIR/compute_id"
    if vm_ssh 'pgrep -f "[b]in/nova-compute" >/dev/null'; then
        log "nova-compute already runs in the VM"
    else
        log "starting nova-compute in the VM (log /var/log/nova/nova-compute.log in the VM)"
        vm_ssh "nohup setpriv --reuid=nova --regid=nova --init-groups env HOME=/var/lib/nova $VENV/bin/nova-compute --config-file /etc/nova/nova.conf \
            >>/var/log/nova/nova-compute.log 2>&1 </dev/null & echo started"
    fi
    # Up when the cloud lists the VM's compute service.
    local t0=$SECONDS rc=0
    nova_acc_wait 900 10 --alive vm_ssh 'pgrep -f "[b]in/nova-compute"' -- \
        compute_service_up || rc=$?
    if ((rc == 2)); then
        vm_ssh 'tail -30 /var/log/nova/nova-compute.log' >&2
        die "nova-compute in the VM exited"
    fi
    ((rc == 0)) || die "nova-compute in the VM did not report up after 900 s; see --ssh tail /var/log/nova/nova-compute.log"
    log "nova-compute in the VM is up after $((SECONDS - t0)) s (host $VM_HOST)"
    # Its device pools reach placement with its first resource update:
    # until then a boot with a device context finds no host.
    rc=0
    nova_acc_wait 300 5 --alive vm_ssh 'pgrep -f "[b]in/nova-compute"' -- \
        vm_pools_in_placement || rc=$?
    ((rc == 0)) || die "the VM's device pools are not in placement after 300 s; see --ssh tail /var/log/nova/nova-compute.log"
    log "the VM's device pools are in placement after $((SECONDS - t0)) s"
    # nova-api finds a host by name (a boot with host=, as the device
    # scenarios make) only once the host is mapped to its cell. The
    # scheduler's periodic discovery maps it within 30 s; a scenario that
    # came first failed "Compute host nova-acc-vfio could not be found".
    # So map it now, as devstack does after starting a compute, and wait
    # for the mapping (the periodic discovery may map it at the same time,
    # and then nova-manage's own create fails: HostMappingExists).
    cloud_nova_manage cell_v2 discover_hosts >>"$LOGS/discover-hosts.log" 2>&1 || true
    rc=0
    nova_acc_wait 120 3 vm_host_mapped || rc=$?
    ((rc == 0)) || die "the VM's host $VM_HOST is not mapped to a cell after 120 s; see $LOGS/discover-hosts.log"
    log "the VM's host is mapped to its cell after $((SECONDS - t0)) s"
}

# cloud_nova_manage ARGS...: the cloud's nova-manage, with its nova.conf.
cloud_nova_manage() {
    "$CLOUD_DIR/venv/nova/bin/nova-manage" --config-file "$CLOUD_DIR/etc/nova/nova.conf" "$@"
}

# vm_host_mapped: nova-api's database maps the VM's host to a cell.
vm_host_mapped() {
    nova_acc_output_has "[|] +$VM_HOST +[|]" cloud_nova_manage cell_v2 list_hosts
}

# vm_pools_in_placement: placement has a pool provider of the VM for each
# resource class of its devices.
vm_pools_in_placement() {
    local names rc
    # shellcheck disable=SC1091
    names=$(source "$CLOUD_DIR/admin-openrc" && openstack resource provider list -f value -c name)
    for rc in CUSTOM_RNG CUSTOM_NVME CUSTOM_NVME_VF CUSTOM_EDU; do
        grep -q "^${VM_HOST}_\(.*_\)\?${rc}_" <<<"$names" || return 1
    done
}

# compute_service_up: the cloud lists the VM's nova-compute as up.
compute_service_up() {
    # shellcheck disable=SC1091
    (source "$CLOUD_DIR/admin-openrc" && nova_acc_output_has '^up$' \
        openstack compute service list --service nova-compute --host "$VM_HOST" \
        -f value -c State)
}

# pool_unused POOL: placement says resource provider POOL is used by none.
pool_unused() {
    [[ $(openstack resource provider usage show "$1" -f value -c usage) == 0 ]]
}

# server_built ID: server ID is out of BUILD (ACTIVE, ERROR...).
server_built() {
    [[ $(openstack server show "$1" -f value -c status) != BUILD ]]
}

# edu_in_ledger ADDRESS STATE: the VM's ledger has device ADDRESS in STATE.
edu_in_ledger() {
    nova_acc_output_has "$1 *\\| $2 " \
        vm_ssh "$VENV/bin/nova-acc-manage --config-file /etc/nova/nova.conf devices list"
}

compute_stop() {
    vm_running || { log "VM not running"; return 0; }
    # SIGTERM, wait, then SIGKILL (nova-compute may ignore SIGTERM).
    # shellcheck disable=SC2016  # expanded in the VM
    vm_ssh 'pkill -TERM -f "[b]in/nova-compute" || exit 0
            for i in $(seq 60); do pgrep -f "[b]in/nova-compute" >/dev/null || exit 0; sleep 1; done
            pkill -KILL -f "[b]in/nova-compute"; exit 0'
    log "nova-compute in the VM stopped"
}

# Stage 3's check: a server with a device context lands on the VM, its guest
# gets the edu by VFIO and lists it; on delete the device is free again.
demo() {
    check_cloud_dir
    vm_running || start_vm
    vm_ssh 'pgrep -f "[b]in/nova-compute" >/dev/null' || compute
    local t0=$SECONDS id name host pool addr i usage
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/admin-openrc"
    pool=$(openstack resource provider list -f value -c uuid -c name \
        | awk -v h="${VM_HOST}_CUSTOM_EDU_" 'index($2, h) == 1 {print $1}')
    [[ -n $pool ]] || die "placement has no CUSTOM_EDU pool of $VM_HOST yet"
    addr=$(vm_ssh "lspci -D -n -d 1234:11e8 | cut -d' ' -f1")
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/demo-openrc"
    # A demo that was interrupted (or a VM disk rebuilt under an ACTIVE
    # server) leaves its server holding the one edu: delete it first.
    local old
    for old in $(openstack server list --name '^edu-vfio$' -f value -c ID); do
        log "deleting server $old left by an earlier demo"
        openstack server delete --wait "$old" || die "could not delete server $old"
    done
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/admin-openrc"
    nova_acc_wait 120 2 pool_unused "$pool" || true
    usage=$(openstack resource provider usage show "$pool" -f value -c usage)
    [[ $usage == 0 ]] || die "pool $pool of $VM_HOST is in use ($usage CUSTOM_EDU) by another server"
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/demo-openrc"
    log "openstack server create --flavor m1.nano --image nova-acc-guest --nic none --hint device_context=resources:CUSTOM_EDU=1 edu-vfio"
    id=$(openstack server create --flavor m1.nano --image nova-acc-guest --nic none \
        --hint device_context=resources:CUSTOM_EDU=1 edu-vfio -f value -c id)
    nova_acc_wait 600 5 server_built "$id" || true
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/admin-openrc"
    nova_acc_output_has '^ACTIVE$' openstack server show "$id" -f value -c status \
        || die "server $id is not ACTIVE: $(openstack server show "$id" -f value -c status -c fault)"
    host=$(openstack server show "$id" -f value -c OS-EXT-SRV-ATTR:host)
    name=$(openstack server show "$id" -f value -c OS-EXT-SRV-ATTR:instance_name)
    log "server $id ACTIVE after $((SECONDS - t0)) s on host $host ($name)"
    [[ $host == "$VM_HOST" ]] || die "server $id is on $host, not on $VM_HOST"
    usage=$(openstack resource provider usage show "$pool" -f value -c usage)
    log "placement: pool $pool uses $usage CUSTOM_EDU"
    vm_ssh "virsh dumpxml $name" > "$DIR/demo-domain.xml"
    sed -n '/<hostdev/,/<\/hostdev>/p' "$DIR/demo-domain.xml" >&2
    local b
    b=$(echo "$addr" | awk -F'[:.]' '{printf "bus=.0x%s. slot=.0x%s. function=.0x%x.", $2, $3, $4}')
    nova_acc_output_has "$b" \
        grep -A3 "<hostdev mode='subsystem' type='pci' managed='yes'>" "$DIR/demo-domain.xml" \
        || die "the domain XML has no hostdev for $addr; see $DIR/demo-domain.xml"
    vm_ssh '/opt/nova-acc/venv/bin/nova-acc-manage --config-file /etc/nova/nova.conf devices list' >&2
    log "waiting for the guest's console to list the device"
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/demo-openrc"
    local failed=0
    for ((i = 0; i < 90; i++)); do
        if openstack console log show "$id" > "$DIR/demo-console.tmp" 2>"$LOGS/demo-console.err"; then
            failed=0
            mv "$DIR/demo-console.tmp" "$DIR/demo-console.log"
            grep -aq 'pci .* 0x1234:0x11e8' "$DIR/demo-console.log" && break
        else
            failed=$((failed + 1))
            [[ $failed -lt 6 ]] || die "the cloud does not answer: $(tail -1 "$LOGS/demo-console.err"); server $id is left on $VM_HOST"
        fi
        sleep 10
    done
    grep -a 'nova-acc guest:' "$DIR/demo-console.log" >&2 || true
    grep -aq 'pci .* 0x1234:0x11e8' "$DIR/demo-console.log" \
        || die "the guest's console does not list 1234:11e8 after 900 s; see $DIR/demo-console.log"
    log "the guest lists the edu device after $((SECONDS - t0)) s; deleting the server"
    openstack server delete --wait "$id"
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/admin-openrc"
    nova_acc_wait 60 2 pool_unused "$pool" || true
    usage=$(openstack resource provider usage show "$pool" -f value -c usage)
    log "placement: pool $pool uses $usage CUSTOM_EDU after the delete"
    vm_ssh '/opt/nova-acc/venv/bin/nova-acc-manage --config-file /etc/nova/nova.conf devices list; virsh list --all' >&2
    [[ $usage == 0 ]] || die "the pool's usage is $usage after the delete"
    # The edu has no reset method: released with a reset on, it is dirty
    # (out of service) until the operator clears it.
    local manage="$VENV/bin/nova-acc-manage --config-file /etc/nova/nova.conf"
    nova_acc_wait 120 3 edu_in_ledger "$addr" dirty \
        || die "device $addr is not dirty in the ledger after the delete"
    # shellcheck disable=SC2029  # expanded here on purpose
    vm_ssh "$manage devices clear-dirty --force $addr" >&2 \
        || die "nova-acc-manage devices clear-dirty --force $addr failed"
    edu_in_ledger "$addr" free || die "device $addr is not free after clear-dirty"
    log "stage 3 OK in $((SECONDS - t0)) s: ACTIVE on $VM_HOST with $addr by VFIO, listed by the guest, dirty on delete (no reset method), free after clear-dirty"
}

# The state directory: checked (and made when missing) before any
# command uses it; the commands that only look at or stop a VM do not make
# one.
case ${1:---build} in
    --build|--rebuild-disk|--start|--nested|--compute|--demo)
        set_dirs create ;;
    --stop|--status|--compute-stop|--ssh|--stand-in-log)
        if ! set_dirs; then
            log "no VM: $DIR does not exist"
            [[ $1 == --ssh || $1 == --stand-in-log ]] && exit 1
            exit 0
        fi ;;
esac

case ${1:---build} in
    --build) build ;;
    --rebuild-disk) stop_vm; rm -f "$DISK"; build ;;
    --start) start_vm ;;
    --stop) stop_vm ;;
    --status) status ;;
    --nested) nested ;;
    --compute) compute ;;
    --compute-stop) compute_stop ;;
    --demo) demo ;;
    --ssh) shift; vm_ssh "$@" ;;
    --stand-in-log) vm_ssh cat "$STAND_IN_LOG" ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' ;;
    *) die "unknown argument $1 (see --help)" ;;
esac
