#!/bin/busybox sh
# shellcheck shell=sh
# /init of the probe guest (tools/lib/build-probe-initramfs.sh): a guest
# that says which PCI functions it has, on its serial console, and sleeps.
# The real cloud's guest image (tools/run-cloud.sh) and the VFIO VM's nested
# guest (tools/run-vfio-host.sh) both boot it; the scripts and tempest read
# these lines:
#
#   nova-acc guest: up after SECONDS s
#   nova-acc guest: pci DOMAIN:BUS:SLOT.FUNCTION 0xVENDOR:0xDEVICE   (each)
#   nova-acc guest: done
#
# The serial port (ttyS0), not the kernel's console: Nova's cmdline ends
# with console=hvc0.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{
    echo "nova-acc guest: up after $(cut -d' ' -f1 /proc/uptime) s"
    for dev in /sys/bus/pci/devices/*; do
        echo "nova-acc guest: pci ${dev##*/} $(cat "$dev/vendor"):$(cat "$dev/device")"
    done
    echo "nova-acc guest: done"
} > /dev/ttyS0 2>&1
while true; do sleep 3600; done
