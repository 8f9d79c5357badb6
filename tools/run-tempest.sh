#!/usr/bin/env bash
# Runs nova-acc's tempest plugin against the cloud of tools/run-cloud.sh.
#
#   tools/run-tempest.sh [REGEX]     default regex: nova_acc_tempest_plugin
#
# Creates the tempest workspace $NOVA_ACC_CLOUD_DIR/tempest (tempest init),
# writes its etc/tempest.conf, runs 'tempest run --regex REGEX' and prints
# the result; exits non-zero when a test failed. The log is
# $NOVA_ACC_CLOUD_DIR/logs/tempest.log.
#
# NOVA_ACC_TEMPEST_DEVICE_CONTEXT: a device context a host of the cloud can
# satisfy (e.g. resources:CUSTOM_EDU=1); unset here, where no host has a
# device, so the tests that need one are skipped.
# NOVA_ACC_TEMPEST_PROFILE_SATISFIABLE=true: a host has a device for the
# cloud's profile ("edu", the first [nova_acc] profile of its nova.conf;
# then profile:edu must boot, not fail with NoValidHost).
# NOVA_ACC_TEMPEST_LIBVIRT_URI: libvirt of the compute host, for the domain
# XML checks (default qemu:///system, this machine's).
# NOVA_ACC_TEMPEST_LIBVIRT_HOST: the compute host that URI reaches, when
# the cloud has several (e.g. nova-acc-vfio, tools/run-vfio-host.sh).
# nova-acc-api's tests ([service_available] nova_acc_api) run when Keystone's
# catalog has its service type, device-context (run-cloud.sh registers it).
# NOVA_ACC_TEMPEST_VFIO_HOST=1: the cloud has the VFIO host VM of
# tools/run-vfio-host.sh (--start, --compute): the device scenarios run
# on its devices (VFIO_* below: the virtio-rng pool, the nvme VFs and PF,
# the edu without a reset method), virsh and nova-acc-manage run in the VM
# through run-vfio-host.sh --ssh, and the cloud's profile (edu) is
# satisfiable there; config data (accel:bitstream_id) is tested on the
# virtio-rng pool with the VM's stand-in programming tool, whose log
# run-vfio-host.sh --stand-in-log prints.
# NOVA_ACC_TEMPEST_SUBUNIT: a file to write the run's subunit stream to
# (tools/run-tests.sh counts it with the unit and functional tests).
#
# The admin password comes from the cloud's admin-openrc (made by
# run-cloud.sh from its passwords file); tempest.conf, which holds it, is
# 0600. The state directory is checked as run-cloud.sh checks it (owned by
# this uid, writable by nobody else) before anything in it is run.
set -euo pipefail
umask 077

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"
NOVA_ACC_LOG_PREFIX="run-tempest: "
DIR=${NOVA_ACC_CLOUD_DIR:-/var/tmp/nova-acc-cloud}
REGEX=${1:-nova_acc_tempest_plugin}
DEVICE_CONTEXT=${NOVA_ACC_TEMPEST_DEVICE_CONTEXT:-}
PROFILE_SATISFIABLE=${NOVA_ACC_TEMPEST_PROFILE_SATISFIABLE:-false}
LIBVIRT_URI=${NOVA_ACC_TEMPEST_LIBVIRT_URI:-qemu:///system}
LIBVIRT_HOST=${NOVA_ACC_TEMPEST_LIBVIRT_HOST:-}
VIRSH_COMMAND=virsh
VFIO_OPTIONS=""
BUILD_TIMEOUT=180
PROFILE_POOL_SIZE=0
if [[ ${NOVA_ACC_TEMPEST_VFIO_HOST:-0} == 1 ]]; then
    # What tools/run-vfio-host.sh gives its VM (DEVICES, DEVICE_SPECS).
    DEVICE_CONTEXT=resources:CUSTOM_RNG=1
    PROFILE_SATISFIABLE=true
    # The profile (edu) has one device in the VM.
    PROFILE_POOL_SIZE=1
    # Guests of a VM under TCG: slower to build, and the console scenario
    # waits for a nested guest to boot (minutes); a test's time limit
    # (run-tests.sh sets 300 s for its own tests) must allow it.
    BUILD_TIMEOUT=600
    export OS_TEST_TIMEOUT=1800
    LIBVIRT_URI=qemu:///system
    LIBVIRT_HOST=${NOVA_ACC_VFIO_HOST:-nova-acc-vfio}
    VIRSH_COMMAND="$ROOT/tools/run-vfio-host.sh --ssh virsh"
    VFIO_OPTIONS="device_pool_size = 2
device_pci_id = 0x1af4:0x1044
vf_context = resources:CUSTOM_NVME_VF=1
pf_context = resources:CUSTOM_NVME=1
no_reset_context = resources:CUSTOM_EDU=1
same_host_resize = true
manage_command = $ROOT/tools/run-vfio-host.sh --ssh /opt/nova-acc/venv/bin/nova-acc-manage --config-file /etc/nova/nova.conf
bitstream_context = resources:CUSTOM_RNG=1
bitstream_log_command = $ROOT/tools/run-vfio-host.sh --stand-in-log"
fi

rc=0
checked=$(nova_acc_state_dir "$DIR" NOVA_ACC_CLOUD_DIR) || rc=$?
((rc != 2)) || die "no cloud in $DIR: run $ROOT/tools/run-cloud.sh first"
((rc == 0)) || exit 1
DIR=$checked
WORKSPACE=$DIR/tempest
TEMPEST=$DIR/venv/tempest/bin/tempest
OPENSTACK=$DIR/venv/nova/bin/openstack

[[ -x $TEMPEST && -f $DIR/admin-openrc ]] \
    || die "no cloud in $DIR: run $ROOT/tools/run-cloud.sh first"
# shellcheck disable=SC1091
source "$DIR/admin-openrc"
"$ROOT/tools/run-cloud.sh" --status >/dev/null \
    || die "the cloud in $DIR is not up ($ROOT/tools/run-cloud.sh --status)"

# The plugin from this checkout (run-cloud.sh installs it the same way).
"$DIR/venv/tempest/bin/pip" install -q --no-deps --force-reinstall "$ROOT" \
    >>"$DIR/logs/pip-tempest.log" 2>&1 \
    || die "installing nova-acc into tempest's venv failed; see $DIR/logs/pip-tempest.log"

image=$("$OPENSTACK" image show nova-acc-guest -f value -c id)
[[ -n $image ]] || die "no image nova-acc-guest"
# The profile the cloud's nova.conf names first (tools/lib/nova_conf.py
# wrote it there): profile:NAME must reach the scheduler.
profile=$(python3 "$ROOT/tools/lib/nova_conf.py" get "$DIR/etc/nova/nova.conf" \
    nova_acc profile | sed -n 1p) \
    || die "the cloud's $DIR/etc/nova/nova.conf has no [nova_acc] profile"
# Its resource class: tests that use the profile's devices then do not
# overlap with other tests on devices of that class (DevicesHeld).
profile_resource_class=$(sed -n 's/^[^=]*=resources[0-9]*:\([A-Z0-9_]*\)=[0-9]*$/\1/p' <<<"$profile")
profile=${profile%%=*}
# nova-acc-api is there when the catalog has an endpoint of its type.
# The whole list first, asked up to 3 times: once, with "| grep -q ."
# under pipefail, the answer was false with the endpoint in the catalog
# and nothing on stderr, which skipped nova-acc-api's tests.
api_available=false
for _ in 1 2 3; do
    endpoints=$("$OPENSTACK" endpoint list --service device-context -f value -c ID \
        2>>"$DIR/logs/tempest-init.log") || endpoints=""
    if [[ -n $endpoints ]]; then
        api_available=true
        break
    fi
    sleep 5
done
log "nova-acc-api (service type device-context) in the catalog: $api_available"

if [[ ! -d $WORKSPACE/etc ]]; then
    (cd "$DIR" && "$TEMPEST" init --workspace-path "$DIR/tempest-workspaces.yaml" \
        --name nova-acc-cloud "$WORKSPACE") \
        >>"$DIR/logs/tempest-init.log" 2>&1 \
        || die "tempest init failed; see $DIR/logs/tempest-init.log"
fi

cat > "$WORKSPACE/etc/tempest.conf" <<EOT
# Written by nova-acc's tools/run-tempest.sh for the cloud of run-cloud.sh.
[DEFAULT]
log_dir = $DIR/logs
log_file = tempest.log

[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = $OS_PASSWORD
admin_project_name = admin
admin_domain_name = Default

[identity]
uri_v3 = $OS_AUTH_URL
auth_version = v3
region = RegionOne

[identity-feature-enabled]
api_v2 = false

[compute]
image_ref = $image
image_ref_alt = $image
flavor_ref = 42
flavor_ref_alt = 84
min_microversion = 2.1
max_microversion = latest
build_timeout = $BUILD_TIMEOUT

[validation]
run_validation = false

[service_available]
nova = true
glance = true
neutron = true
placement = true
cinder = false
swift = false
nova_acc = true
nova_acc_api = $api_available

[nova_acc]
unsatisfiable_context = resources:FPGA=1
profile = $profile
profile_satisfiable = $PROFILE_SATISFIABLE
profile_pool_size = $PROFILE_POOL_SIZE
profile_resource_class = $profile_resource_class
libvirt_uri = $LIBVIRT_URI
virsh_command = $VIRSH_COMMAND
openstack_command = $OPENSTACK
$VFIO_OPTIONS
EOT
if [[ -n $LIBVIRT_HOST ]]; then
    echo "libvirt_host = $LIBVIRT_HOST" >> "$WORKSPACE/etc/tempest.conf"
fi
if [[ -n $DEVICE_CONTEXT ]]; then
    echo "device_context = $DEVICE_CONTEXT" >> "$WORKSPACE/etc/tempest.conf"
fi
# It holds the admin password (an existing file keeps its mode).
chmod 600 "$WORKSPACE/etc/tempest.conf"

log "tempest run --regex '$REGEX' in $WORKSPACE"
start=$(date +%s)
rc=0
(cd "$WORKSPACE" && "$TEMPEST" run --regex "$REGEX" --concurrency 2) || rc=$?
log "tempest run took $(($(date +%s) - start)) s; exit status $rc"
if [[ -n ${NOVA_ACC_TEMPEST_SUBUNIT:-} ]]; then
    # tempest run keeps the run in the workspace's stestr repository.
    (cd "$WORKSPACE" && "$DIR/venv/tempest/bin/stestr" last --subunit) \
        > "$NOVA_ACC_TEMPEST_SUBUNIT" || rc=1
fi
exit "$rc"
