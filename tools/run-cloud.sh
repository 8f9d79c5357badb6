#!/usr/bin/env bash
# A real multi-process OpenStack cloud on this one machine, with nova-acc.
#
#   tools/run-cloud.sh            install what is missing, start what is not
#                                 running, create images/flavors/users; a
#                                 second run with the cloud up only checks it
#   tools/run-cloud.sh --status   which services run, which answer
#   tools/run-cloud.sh --stop     stop everything this script started
#                                 (SIGTERM, wait, then SIGKILL)
#
# Everything lives under NOVA_ACC_CLOUD_DIR (default /var/tmp/nova-acc-cloud):
# venvs in venv/, configuration in etc/, pidfiles in run/, data in data/,
# every log in logs/, the cloud's passwords in passwords. Everything listens
# on 127.0.0.1 only.
#
# That directory must belong to root (the uid running this) and be
# writable by nobody else, and must not be a symlink: it is refused
# otherwise (this script runs its venvs as root); a missing one is made
# 0700. The passwords (Keystone admin and demo, each service user,
# MariaDB, RabbitMQ) are random, made once per cloud in its passwords file
# (0600) and reused; NOVA_ACC_CLOUD_PASSWORD=VALUE sets them all to VALUE
# (kept in that file). Configuration files and openrc files are 0600.
#
# Services: MariaDB, RabbitMQ, Keystone (:5000), Placement (:8778), Glance
# (:9292), a Neutron API server without agents (:9696), nova-api (:8774),
# nova-acc-api, the device-context API (:8790, Keystone service type
# device-context, its own database nova_acc_api; it reads servers from
# nova-api and casts attaches to nova-compute over RabbitMQ), nova-acc-scheduler,
# nova-acc-conductor, virtlogd, virtlockd, libvirtd and nova-compute with
# nova_acc.LibvirtAccDriver (QEMU TCG).
#
# See "A real cloud on one machine" in doc/source/operator-guide.rst.
set -euo pipefail
# What this script writes (configuration, openrc, logs) is for root only;
# services are started with umask 022 (see start).
umask 077

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"
NOVA_ACC_LOG_PREFIX="run-cloud: "
# set_dirs (below) checks this before anything uses it.
DIR=${NOVA_ACC_CLOUD_DIR:-/var/tmp/nova-acc-cloud}
PYTHON=${PYTHON:-python3}
HOST=127.0.0.1
RABBIT_USER=nova_acc
NOVA_VERSION=34.0.0
TEMPEST_VERSION=47.0.0
# nova-acc's settings in nova.conf come from this tool (write_configs),
# as they do for tools/run-vfio-host.sh and devstack/plugin.sh.
NOVA_CONF_TOOL=$ROOT/tools/lib/nova_conf.py

APT_PACKAGES=(
    mariadb-server rabbitmq-server
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils busybox-static cpio
    libvirt-dev pkg-config build-essential python3-dev python3-venv
    curl shellcheck
)

# name port wsgi-module venv. nova-acc-api runs in Nova's venv, where
# nova-acc is installed (install_nova_acc); its libraries are Nova's.
API_SERVICES=(
    "keystone 5000 keystone.wsgi.api:application keystone"
    "placement 8778 placement.wsgi.api:application placement"
    "glance 9292 glance.wsgi.api:application glance"
    "neutron 9696 neutron.wsgi.api:application neutron"
    "nova-api 8774 nova.wsgi.osapi_compute:application nova"
    "nova-acc-api 8790 nova_acc.api.wsgi_app:application nova"
)

START_TIME=$(date +%s)
STARTED=0  # set to 1 when this run starts anything

elapsed() { echo $(($(date +%s) - START_TIME)); }

# set_dirs [create]: checks the state directory (tools/lib/common.sh:
# owned by this uid, writable by nobody else, no symlink, parents only
# root controls; made 0700 with "create") and sets the paths under it.
# Nothing under $DIR is read or run before this. Returns 2 when $DIR is
# missing and not to be created.
set_dirs() {
    local dir rc=0
    dir=$(nova_acc_state_dir "$DIR" NOVA_ACC_CLOUD_DIR "${1:-}") || rc=$?
    ((rc != 2)) || return 2
    ((rc == 0)) || exit 1
    DIR=$dir
    LOGS=$DIR/logs
    RUN=$DIR/run
    ETC=$DIR/etc
    DATA=$DIR/data
    VENVS=$DIR/venv
    PASSWORDS=$DIR/passwords
}

# load_passwords: the cloud's passwords from $PASSWORDS (made on the first
# run; NOVA_ACC_CLOUD_PASSWORD overrides them all).
load_passwords() {
    nova_acc_passwords "$PASSWORDS" "${NOVA_ACC_CLOUD_PASSWORD:-}" || exit 1
    DB_PASSWORD=$NOVA_ACC_DB_PASSWORD
    RABBIT_PASSWORD=$NOVA_ACC_RABBIT_PASSWORD
    ADMIN_PASSWORD=$NOVA_ACC_ADMIN_PASSWORD
}

# password_of USER: the Keystone password of USER (admin, demo or a
# service user).
password_of() {
    case $1 in
        admin) echo "$NOVA_ACC_ADMIN_PASSWORD" ;;
        demo) echo "$NOVA_ACC_DEMO_PASSWORD" ;;
        nova) echo "$NOVA_ACC_NOVA_PASSWORD" ;;
        placement) echo "$NOVA_ACC_PLACEMENT_PASSWORD" ;;
        glance) echo "$NOVA_ACC_GLANCE_PASSWORD" ;;
        neutron) echo "$NOVA_ACC_NEUTRON_PASSWORD" ;;
        nova-acc-api) echo "$NOVA_ACC_NOVAACCAPI_PASSWORD" ;;
        *) die "no password for user $1" ;;
    esac
}

# The users, databases and configuration files have the passwords of
# $PASSWORDS when $DATA/.passwords-applied holds its hash.
passwords_hash() { sha256sum <"$PASSWORDS" | cut -d' ' -f1; }
passwords_applied() {
    [[ "$(cat "$DATA/.passwords-applied" 2>/dev/null)" == "$(passwords_hash)" ]]
}

# ---------------------------------------------------------------------------
# Processes: pidfiles in $RUN, logs in $LOGS.

# service_matches NAME: what the command line of service NAME contains, one
# line per form it may have: its program in this cloud's venv (and this
# cloud's nova.conf or port), or MariaDB's data directory; for an API also
# the title uwsgi gave it when an older version of this script started it
# with --procname-prefix (so that --stop stops such a cloud too). A pidfile
# naming any other process is stale, and that process is never signalled.
service_matches() {
    local line name port module venv
    for line in "${API_SERVICES[@]}"; do
        read -r name port module venv <<< "$line"
        if [[ $name == "$1" ]]; then
            echo "$VENVS/$venv/bin/uwsgi --http-socket $HOST:$port"
            echo "$name-uWSGI master"
            return 0
        fi
    done
    case $1 in
        nova-*) echo "$VENVS/nova/bin/$1 --config-file $ETC/nova/nova.conf" ;;
        mariadb) echo "--datadir=$DATA/mysql" ;;
        *) die "no command line known for service $1" ;;
    esac
}

# find_service NAME: when the pidfile $RUN/NAME.pid names a process of
# service NAME, sets SERVICE_PID and SERVICE_MATCH (its form, as in
# service_matches); otherwise fails, and a stale pidfile is removed with a
# note.
find_service() {
    local name=$1 match pid
    SERVICE_PID='' SERVICE_MATCH=''
    while IFS= read -r match; do
        if pid=$(nova_acc_service_pid --keep "$name" "$RUN/$name.pid" "$match"); then
            SERVICE_PID=$pid SERVICE_MATCH=$match
            return 0
        fi
    done < <(service_matches "$name")
    nova_acc_service_pid "$name" "$RUN/$name.pid" \
        "$(service_matches "$name" | head -n 1)" >/dev/null || true
    return 1
}

# running NAME: succeeds when service NAME runs (see find_service).
running() { find_service "$1"; }

# start NAME CMD...: runs CMD in the background with its output in
# $LOGS/NAME.log and its pid in $RUN/NAME.pid, unless already running.
# Each service leads a process group of its own (setsid: its workers and
# privsep daemons are stopped with it) and runs with umask 022: nova-compute
# makes instance directories that QEMU's user must enter (the state
# directory above keeps everyone else out).
start() {
    local name=$1
    shift
    if running "$name"; then
        log "$name is already running (pid $(<"$RUN/$name.pid"))"
        return 0
    fi
    log "starting $name (log $LOGS/$name.log)"
    STARTED=1
    (umask 022 && exec setsid "$@") >>"$LOGS/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}

# stop_service NAME: stops NAME if its pidfile names it (see find_service).
stop_service() {
    local name=$1
    find_service "$name" || return 0
    nova_acc_stop_pid "$name" "$SERVICE_PID" "$SERVICE_MATCH"
    rm -f "$RUN/$name.pid"
}

# not_gone NAME: NAME runs, or this script has no pidfile of it (libvirtd,
# which may be the machine's own).
not_gone() { [[ ! -e $RUN/$1.pid ]] || running "$1"; }

# wait_for NAME LOG SECONDS CMD...: waits until CMD succeeds (every 0.5 s,
# at most SECONDS: nova_acc_wait); fails naming the log when the time is up
# or the service's process died.
wait_for() {
    local name=$1 logfile=$2 timeout=$3 rc=0
    shift 3
    nova_acc_wait "$timeout" 0.5 --alive not_gone "$name" -- "$@" || rc=$?
    ((rc != 0)) || return 0
    tail -n 20 "$logfile" >&2 || true
    ((rc != 2)) || die "$name exited during start-up; see $logfile"
    die "$name did not answer within $timeout s; see $logfile"
}

http_up() { curl -sf -o /dev/null --max-time 5 "$1"; }

# health_url NAME PORT: what says API NAME is up: nova-acc-api's
# /healthcheck (oslo.middleware, no token); the others' version document.
health_url() {
    case $1 in
        nova-acc-api) echo "http://$HOST:$2/healthcheck" ;;
        *) echo "http://$HOST:$2/" ;;
    esac
}

# ---------------------------------------------------------------------------
# Installation: Debian packages, venvs (each only when missing or changed).

install_debian_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        # shellcheck disable=SC2016  # dpkg-query's format, not bash's
        if ! nova_acc_output_has 'install ok installed' \
                dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing Debian packages: ${missing[*]} (log $LOGS/apt.log)"
    # Another user of this machine may be running apt: wait for its lock.
    apt-get -o DPkg::Lock::Timeout=600 update >>"$LOGS/apt.log" 2>&1 \
        || die "apt-get update failed; see $LOGS/apt.log"
    # policy-rc.d: the packages' scripts must not start their daemons; this
    # script starts them itself, bound to 127.0.0.1.
    local policy=/usr/sbin/policy-rc.d had_policy=
    if [[ -e $policy ]]; then
        had_policy=1
    else
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y --no-install-recommends "${missing[@]}" \
        >>"$LOGS/apt.log" 2>&1 || {
        [[ -n $had_policy ]] || rm -f "$policy"
        die "apt-get install failed; see $LOGS/apt.log"
    }
    [[ -n $had_policy ]] || rm -f "$policy"
}

# Hash of the nova-acc source this script installs.
source_hash() {
    local paths=() p
    for p in setup.cfg setup.py requirements.txt nova_acc os_acc nova \
            nova_acc_tempest_plugin etc; do
        [[ -e $ROOT/$p ]] && paths+=("$p")
    done
    (cd "$ROOT" && find "${paths[@]}" -type f ! -name '*.pyc' -print0 \
        | sort -z | xargs -0 md5sum | md5sum | cut -d' ' -f1)
}

# make_venv NAME PACKAGE...: creates $VENVS/NAME with PACKAGEs (pip, with
# the repository's constraints), unless its stamp says it has them already.
make_venv() {
    local name=$1
    shift
    local venv=$VENVS/$name want
    want=$(printf '%s\n' "$@" | cat - "$ROOT/constraints.txt" | md5sum | cut -d' ' -f1)
    if [[ -x $venv/bin/python && "$(cat "$venv/.stamp" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    log "creating venv $venv (log $LOGS/pip-$name.log)"
    rm -rf "$venv"
    {
        "$PYTHON" -m venv "$venv" &&
        "$venv/bin/pip" install -U pip wheel &&
        "$venv/bin/pip" install --find-links "$DIR/wheels" \
            -c "$ROOT/constraints.txt" "$@"
    } >"$LOGS/pip-$name.log" 2>&1 || return 1
    echo "$want" > "$venv/.stamp"
}

# install_nova_acc VENV: nova-acc from this checkout, without dependencies
# (not editable: it ships nova/virt/nova_acc into Nova's package).
install_nova_acc() {
    local venv=$VENVS/$1 want
    want=$(source_hash)
    if [[ "$(cat "$venv/.nova-acc-stamp" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    log "installing nova-acc from $ROOT into $venv"
    if [[ -n ${2:-} ]]; then
        log "WARNING: nova-acc changed while the cloud runs; restart it" \
            "(--stop, then run again) to use the new code"
    fi
    "$venv/bin/pip" install --no-deps --force-reinstall "$ROOT" \
        >>"$LOGS/pip-$1.log" 2>&1 \
        || die "pip install of nova-acc failed; see $LOGS/pip-$1.log"
    echo "$want" > "$venv/.nova-acc-stamp"
}

install_venvs() {
    mkdir -p "$VENVS" "$DIR/wheels"
    # uwsgi builds from source: once, as a wheel the venvs share.
    if ! ls "$DIR"/wheels/uwsgi-*.whl >/dev/null 2>&1; then
        log "building a uwsgi wheel (log $LOGS/pip-uwsgi.log)"
        "$PYTHON" -m pip wheel --no-deps -w "$DIR/wheels" uwsgi \
            >"$LOGS/pip-uwsgi.log" 2>&1 \
            || die "building uwsgi failed; see $LOGS/pip-uwsgi.log"
    fi
    local pids=() names=() i failed=
    make_venv keystone keystone==30.0.0 PyMySQL uwsgi & pids+=($!); names+=(keystone)
    make_venv placement openstack-placement==16.0.0 PyMySQL uwsgi & pids+=($!); names+=(placement)
    make_venv glance glance==33.0.0 PyMySQL uwsgi & pids+=($!); names+=(glance)
    make_venv neutron neutron==29.0.0 PyMySQL uwsgi & pids+=($!); names+=(neutron)
    make_venv nova "nova==$NOVA_VERSION" PyMySQL uwsgi libvirt-python \
        python-openstackclient osc-placement & pids+=($!); names+=(nova)
    make_venv tempest "tempest==$TEMPEST_VERSION" & pids+=($!); names+=(tempest)
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            log "ERROR: venv ${names[$i]} failed; see $LOGS/pip-${names[$i]}.log"
            tail -n 5 "$LOGS/pip-${names[$i]}.log" >&2 || true
            failed=1
        fi
    done
    [[ -z $failed ]] || die "installing the venvs failed"
    local up=
    if running nova-compute || running nova-acc-scheduler; then
        up=1
    fi
    install_nova_acc nova "$up"
    install_nova_acc tempest
}

# ---------------------------------------------------------------------------
# Configuration files (rewritten on every run; they only depend on $DIR).

auth_section() {  # auth_section SECTION USER: keystoneauth password options
    cat <<EOT
[$1]
auth_type = password
auth_url = http://$HOST:5000/v3
www_authenticate_uri = http://$HOST:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $(password_of "$2")
region_name = RegionOne

EOT
}

db_url() { echo "mysql+pymysql://nova_acc:$DB_PASSWORD@$HOST:$DB_PORT/$1?charset=utf8"; }
rabbit_url() { echo "rabbit://$RABBIT_USER:$RABBIT_PASSWORD@$HOST:5672/"; }

# The group QEMU's processes run as (libvirt's qemu.conf; Debian builds
# libvirt with libvirt-qemu).
qemu_group() {
    local g
    g=$(sed -n 's/^[[:space:]]*group[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
        /etc/libvirt/qemu.conf 2>/dev/null | tail -n 1)
    echo "${g:-libvirt-qemu}"
}

# QEMU, run by libvirtd as libvirt-qemu, opens the disk, kernel and initrd
# under $DATA/nova/instances: the directories above it are 0710 with QEMU's
# group (search only, no listing), everything else in $DIR stays 0700.
grant_qemu_search() {
    local group d
    group=$(qemu_group)
    if [[ $group == root || $group == +0 || $group == 0 ]]; then
        return 0
    fi
    getent group "${group#+}" >/dev/null || [[ $group == +* ]] \
        || die "libvirt's QEMU group '$group' (/etc/libvirt/qemu.conf) does not exist"
    for d in "$DIR" "$DATA" "$DATA/nova" "$DATA/nova/instances"; do
        if ! { chgrp "$group" "$d" && chmod 0710 "$d"; }; then
            die "cannot give QEMU's group $group search permission on $d"
        fi
    done
}

write_configs() {
    local nova_venv=$VENVS/nova helper
    mkdir -p "$ETC"/{keystone,placement,glance,neutron,nova,nova-acc} \
        "$DATA"/{keystone-fernet,keystone-credential,glance-images,neutron} \
        "$DATA/nova/instances"

    # Keystone.
    cat > "$ETC/keystone/keystone.conf" <<EOT
[DEFAULT]
use_stderr = true
[database]
connection = $(db_url keystone)
[fernet_tokens]
key_repository = $DATA/keystone-fernet
[credential]
key_repository = $DATA/keystone-credential
[token]
provider = fernet
EOT

    # Placement.
    {
        cat <<EOT
[DEFAULT]
use_stderr = true
[api]
auth_strategy = keystone
[placement_database]
connection = $(db_url placement)
EOT
        auth_section keystone_authtoken placement
    } > "$ETC/placement/placement.conf"

    # Glance: file store, served by uwsgi (no glance-api server in 33).
    {
        cat <<EOT
[DEFAULT]
use_stderr = true
bind_host = $HOST
enabled_backends = file:file
[database]
connection = $(db_url glance)
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $DATA/glance-images
[os_glance_tasks_store]
filesystem_store_datadir = $DATA/glance-tasks
[os_glance_staging_store]
filesystem_store_datadir = $DATA/glance-staging
[paste_deploy]
flavor = keystone
[oslo_concurrency]
lock_path = $DATA/glance-lock
EOT
        auth_section keystone_authtoken glance
    } > "$ETC/glance/glance-api.conf"
    cp "$VENVS/glance/etc/glance/glance-api-paste.ini" "$ETC/glance/"

    # Neutron: API only (ML2, no mechanism drivers, no agents).
    {
        cat <<EOT
[DEFAULT]
use_stderr = true
bind_host = $HOST
core_plugin = ml2
service_plugins = router,port_forwarding
auth_strategy = keystone
transport_url = $(rabbit_url)
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_paste_config = $ETC/neutron/api-paste.ini
state_path = $DATA/neutron
[database]
connection = $(db_url neutron)
[oslo_concurrency]
lock_path = $DATA/neutron/lock
[ml2]
type_drivers = local,flat
tenant_network_types = local
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
EOT
        auth_section keystone_authtoken neutron
        auth_section nova neutron
    } > "$ETC/neutron/neutron.conf"
    cp "$VENVS/neutron/etc/neutron/api-paste.ini" "$ETC/neutron/"

    # Nova: one file for every Nova service (single cell).
    helper="$nova_venv/bin/privsep-helper --config-file $ETC/nova/nova.conf"
    {
        cat <<EOT
[DEFAULT]
use_stderr = true
my_ip = $HOST
state_path = $DATA/nova
transport_url = $(rabbit_url)
enabled_apis = osapi_compute
osapi_compute_listen = $HOST
metadata_listen = $HOST
# The VFIO host VM (tools/run-vfio-host.sh) is the one host with devices:
# tempest's resize scenarios resize on it.
allow_resize_to_same_host = true
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
[api_database]
connection = $(db_url nova_api)
[database]
connection = $(db_url nova)
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 30
[conductor]
workers = 1
[oslo_concurrency]
lock_path = $DATA/nova/lock
EOT
        auth_section keystone_authtoken nova
        auth_section placement nova
        auth_section neutron nova
        auth_section service_user nova
    } > "$ETC/nova/nova.conf"
    # nova-acc's part: its driver under TCG; every privsep daemon (Nova's
    # and nova-acc's, device resets) started directly, as root without
    # sudo or rootwrap; the edu device (1234:11e8), which no device of this
    # machine is (they are its disk and network: here nova-acc reports no
    # devices, a compute VM with "-device edu" one), and its profile; and
    # [device_context_api], nova-acc-api reached as Nova's service user
    # (admin and service roles: tools/cloud_resources.py).
    "$PYTHON" "$NOVA_CONF_TOOL" set "$ETC/nova/nova.conf" \
        --compute-driver --tcg-compute --every-privsep-helper "$helper" \
        --edu-device --edu-profile --device-context-api-auth-from service_user \
        || die "writing nova-acc's settings into $ETC/nova/nova.conf failed"
    cp "$nova_venv/etc/nova/api-paste.ini" "$ETC/nova/"

    # nova-acc-api: its own database; keystonemiddleware checks tokens as
    # the nova-acc-api user. Policy: the defaults in code. Attach and
    # detach (as devstack/plugin.sh configures them): [nova], Nova's API
    # read as the nova-acc-api user (admin in the service project: a
    # server's host is an admin attribute), and transport_url, the bus of
    # the one cell, where the API casts to the server's nova-compute (the
    # VFIO host VM's too: its nova-compute uses this RabbitMQ).
    {
        cat <<EOT
[DEFAULT]
use_stderr = true
transport_url = $(rabbit_url)
[api]
auth_strategy = keystone
[database]
connection = $(db_url nova_acc_api)
EOT
        auth_section keystone_authtoken nova-acc-api
        auth_section nova nova-acc-api
    } > "$ETC/nova-acc/nova-acc-api.conf"
    # Root's only (an existing file keeps its mode when rewritten, and an
    # older version of this script made them 0644).
    chmod -R go-rwx "$ETC"
}

# Take away what an older version of this script left readable to others
# (it ran with umask 022): logs, pidfiles, configuration, the tempest
# workspace and data other than the instances QEMU must reach.
tighten_state_dir() {
    local d
    for d in "$LOGS" "$RUN" "$ETC" "$DIR/tempest" "$DIR"/*-openrc; do
        [[ -e $d ]] && chmod -R go-rwx "$d"
    done
    for d in "$DATA"/*; do
        [[ -e $d && $d != "$DATA/nova" ]] && chmod go-rwx "$d"
    done
    return 0
}

# ---------------------------------------------------------------------------
# Infrastructure: MariaDB, RabbitMQ, libvirt (Debian's, started by hand: no
# systemd here). A marker in $RUN says this script started them.

# MariaDB: an instance of its own, its data in $DATA/mysql, on port
# $DB_PORT of $HOST and a socket in $RUN (not Debian's instance).
DB_PORT=13306
mysql_up() { mysqladmin --socket="$RUN/mysqld.sock" -u root ping; }

start_mariadb() {
    if [[ ! -d $DATA/mysql/mysql ]]; then
        log "creating MariaDB's data directory $DATA/mysql (log $LOGS/mariadb.log)"
        rm -rf "$DATA/mysql"
        mariadb-install-db --user=root --datadir="$DATA/mysql" \
            --auth-root-authentication-method=socket --skip-test-db \
            >>"$LOGS/mariadb.log" 2>&1 \
            || die "mariadb-install-db failed; see $LOGS/mariadb.log"
    fi
    start mariadb mariadbd --no-defaults --user=root --datadir="$DATA/mysql" \
        --socket="$RUN/mysqld.sock" --pid-file="$RUN/mysqld-own.pid" \
        --bind-address="$HOST" --port="$DB_PORT" --max-connections=1000 \
        --log-error="$LOGS/mariadb.log" --skip-name-resolve
    wait_for mariadb "$LOGS/mariadb.log" 60 mysql_up
    # The user's password is set on every run (ALTER USER): a data
    # directory of an earlier cloud may have another. The SQL goes on
    # stdin, not the command line, which every user can read.
    local db sql="CREATE USER IF NOT EXISTS 'nova_acc'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';"
    sql+="ALTER USER 'nova_acc'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';"
    for db in keystone placement glance neutron nova_api nova nova_cell0 \
            nova_acc_api; do
        sql+="CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8mb4;"
        sql+="GRANT ALL PRIVILEGES ON $db.* TO 'nova_acc'@'127.0.0.1';"
    done
    mysql --socket="$RUN/mysqld.sock" -u root <<<"$sql" \
        || die "creating the databases failed; see $LOGS/mariadb.log"
}

rabbit_up() { rabbitmqctl -q status; }

start_rabbitmq() {
    mkdir -p /etc/rabbitmq
    # 0644: RabbitMQ reads it as its own user; nothing secret in it.
    cat > /etc/rabbitmq/rabbitmq-env.conf <<EOT
# Written by nova-acc's tools/run-cloud.sh: listen on $HOST only.
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=$HOST
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=$HOST
EOT
    chmod 644 /etc/rabbitmq/rabbitmq-env.conf
    export ERL_EPMD_ADDRESS=$HOST
    if rabbit_up >/dev/null 2>&1; then
        log "RabbitMQ is up"
    else
        log "starting RabbitMQ (log $LOGS/rabbitmq.log)"
        (umask 022 && /etc/init.d/rabbitmq-server start) >>"$LOGS/rabbitmq.log" 2>&1 \
            || die "RabbitMQ did not start; see $LOGS/rabbitmq.log and /var/log/rabbitmq"
        touch "$RUN/rabbitmq.started"
        STARTED=1
        rabbitmqctl await_startup >>"$LOGS/rabbitmq.log" 2>&1 \
            || die "RabbitMQ did not start; see $LOGS/rabbitmq.log and /var/log/rabbitmq"
    fi
    # The password on stdin, not on the command line. A user of an earlier
    # cloud gets the password of $PASSWORDS.
    if ! nova_acc_output_has "^$RABBIT_USER\b" rabbitmqctl -q list_users; then
        rabbitmqctl add_user "$RABBIT_USER" <<<"$RABBIT_PASSWORD" >>"$LOGS/rabbitmq.log" 2>&1 \
            || die "RabbitMQ: add_user failed; see $LOGS/rabbitmq.log"
    elif ! passwords_applied; then
        rabbitmqctl change_password "$RABBIT_USER" <<<"$RABBIT_PASSWORD" >>"$LOGS/rabbitmq.log" 2>&1 \
            || die "RabbitMQ: change_password failed; see $LOGS/rabbitmq.log"
    fi
    rabbitmqctl set_permissions "$RABBIT_USER" '.*' '.*' '.*' >>"$LOGS/rabbitmq.log" 2>&1 \
        || die "RabbitMQ: set_permissions failed; see $LOGS/rabbitmq.log"
}

libvirt_up() { virsh -c qemu:///system version; }

start_libvirt() {
    # No udev: /dev/kvm is root:root 0600, and libvirt then re-probes QEMU
    # on every domain define (about a minute per boot).
    if [[ -e /dev/kvm ]]; then
        chgrp kvm /dev/kvm 2>/dev/null || true
        chmod 660 /dev/kvm
    fi
    local d
    mkdir -p "$ETC/libvirt"
    grant_qemu_search
    for d in virtlogd virtlockd libvirtd; do
        # Debian's configuration, logging to $LOGS (no syslog here).
        { cat "/etc/libvirt/$d.conf"
          echo "log_outputs = \"3:file:$LOGS/$d.log\""
        } > "$ETC/libvirt/$d.conf"
        chmod 600 "$ETC/libvirt/$d.conf"
        # Running already (this script's or the machine's): keep it.
        if nova_acc_service_pid --keep "$d" "/run/$d.pid" "$d" >/dev/null; then
            continue
        fi
        log "starting $d (log $LOGS/$d.log)"
        (umask 022 && exec "$d" -d -f "$ETC/libvirt/$d.conf") >>"$LOGS/$d.log" 2>&1 \
            || die "$d did not start; see $LOGS/$d.log"
        touch "$RUN/$d.started"
        STARTED=1
    done
    wait_for libvirtd "$LOGS/libvirtd.log" 60 libvirt_up
}

# ---------------------------------------------------------------------------
# OpenStack services.

# sync_once NAME CMD...: runs a database sync (or any set-up step) once.
sync_once() {
    local name=$1
    shift
    [[ -e $DATA/.done-$name ]] && return 0
    log "$name (log $LOGS/setup-$name.log)"
    "$@" >>"$LOGS/setup-$name.log" 2>&1 || return 1
    touch "$DATA/.done-$name"
}

# sync_always NAME CMD...: a set-up step run on every run.
sync_always() {
    local name=$1
    shift
    log "$name (log $LOGS/setup-$name.log)"
    "$@" >>"$LOGS/setup-$name.log" 2>&1
}

sync_keystone() {
    local k=$VENVS/keystone/bin/keystone-manage c=(--config-file "$ETC/keystone/keystone.conf")
    "$k" "${c[@]}" db_sync &&
    "$k" "${c[@]}" fernet_setup --keystone-user root --keystone-group root &&
    "$k" "${c[@]}" credential_setup --keystone-user root --keystone-group root
}

# bootstrap_keystone: the admin user, project, role and identity endpoint;
# run again when the passwords changed, it sets admin's password. The
# password goes in the environment (OS_BOOTSTRAP_PASSWORD), not on the
# command line.
bootstrap_keystone() {
    if [[ -e $DATA/.done-keystone-bootstrap ]] && passwords_applied; then
        return 0
    fi
    log "keystone-manage bootstrap (log $LOGS/setup-keystone-bootstrap.log)"
    OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD \
        "$VENVS/keystone/bin/keystone-manage" \
        --config-file "$ETC/keystone/keystone.conf" bootstrap \
        --bootstrap-admin-url "http://$HOST:5000/v3/" \
        --bootstrap-internal-url "http://$HOST:5000/v3/" \
        --bootstrap-public-url "http://$HOST:5000/v3/" \
        --bootstrap-region-id RegionOne \
        >>"$LOGS/setup-keystone-bootstrap.log" 2>&1 \
        || die "keystone-manage bootstrap failed; see $LOGS/setup-keystone-bootstrap.log"
    touch "$DATA/.done-keystone-bootstrap"
}

# identity_resources: service users, projects, catalog (once), and every
# user's password from $PASSWORDS (again whenever it changed). Then the
# passwords are applied everywhere: $DATA/.passwords-applied says so.
identity_resources() {
    if [[ -e $DATA/.done-identity-resources ]] && passwords_applied; then
        return 0
    fi
    log "users and the catalog (log $LOGS/setup-keystone-resources.log)"
    "$VENVS/nova/bin/python" "$ROOT/tools/cloud_resources.py" identity \
        "$HOST" "$PASSWORDS" >>"$LOGS/setup-keystone-resources.log" 2>&1 \
        || die "creating users and the catalog failed; see $LOGS/setup-keystone-resources.log"
    touch "$DATA/.done-identity-resources"
    passwords_hash > "$DATA/.passwords-applied"
}

sync_nova() {
    local m=$VENVS/nova/bin/nova-manage c=(--config-file "$ETC/nova/nova.conf")
    # map_cell0 derives cell0's URL from [database] connection (database
    # nova_cell0): no password on the command line.
    "$m" "${c[@]}" api_db sync &&
    "$m" "${c[@]}" cell_v2 map_cell0 &&
    { nova_acc_output_has ' cell1 ' "$m" "${c[@]}" cell_v2 list_cells ||
      "$m" "${c[@]}" cell_v2 create_cell --name cell1; } &&
    "$m" "${c[@]}" db sync
}

CELL0_UUID=00000000-0000-0000-0000-000000000000

# update_cell_mappings: nova_api's cell mappings hold each cell's database
# and transport URLs, passwords included; when the passwords changed they
# get the new ones. nova-manage takes them from configuration files, not
# from its command line (cell0's from a file of its own).
update_cell_mappings() {
    passwords_applied && return 0
    local m=$VENVS/nova/bin/nova-manage conf=$ETC/nova/nova.conf
    local cell0_conf=$ETC/nova/cell0-database.conf cell1
    log "cell mappings get the new passwords (log $LOGS/setup-cells.log)"
    printf '[database]\nconnection = %s\n' "$(db_url nova_cell0)" > "$cell0_conf"
    "$m" --config-file "$conf" --config-file "$cell0_conf" cell_v2 update_cell \
        --cell_uuid "$CELL0_UUID" --transport-url none:/// \
        >>"$LOGS/setup-cells.log" 2>&1 \
        || die "nova-manage cell_v2 update_cell (cell0) failed; see $LOGS/setup-cells.log"
    rm -f "$cell0_conf"
    cell1=$("$m" --config-file "$conf" cell_v2 list_cells 2>>"$LOGS/setup-cells.log" \
        | awk -F'|' '$2 ~ /^ *cell1 *$/ {gsub(/ /, "", $3); print $3}')
    [[ -n $cell1 ]] || die "no cell1 in nova-manage cell_v2 list_cells; see $LOGS/setup-cells.log"
    "$m" --config-file "$conf" cell_v2 update_cell --cell_uuid "$cell1" \
        >>"$LOGS/setup-cells.log" 2>&1 \
        || die "nova-manage cell_v2 update_cell (cell1) failed; see $LOGS/setup-cells.log"
}

sync_databases() {
    local pids=() names=() i failed=
    sync_once keystone-db sync_keystone & pids+=($!); names+=(keystone-db)
    sync_once placement-db "$VENVS/placement/bin/placement-manage" \
        --config-file "$ETC/placement/placement.conf" db sync & pids+=($!); names+=(placement-db)
    sync_once glance-db "$VENVS/glance/bin/glance-manage" \
        --config-file "$ETC/glance/glance-api.conf" db_sync & pids+=($!); names+=(glance-db)
    sync_once neutron-db "$VENVS/neutron/bin/neutron-db-manage" \
        --config-file "$ETC/neutron/neutron.conf" upgrade heads & pids+=($!); names+=(neutron-db)
    sync_once nova-db sync_nova & pids+=($!); names+=(nova-db)
    # On every run, not once: nova-acc may have been upgraded since (the
    # migrations already applied are skipped).
    sync_always nova-acc-api-db "$VENVS/nova/bin/nova-acc-api-manage" \
        --config-file "$ETC/nova-acc/nova-acc-api.conf" db sync \
        & pids+=($!); names+=(nova-acc-api-db)
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            tail -n 10 "$LOGS/setup-${names[$i]}.log" >&2 || true
            log "ERROR: ${names[$i]} failed; see $LOGS/setup-${names[$i]}.log"
            failed=1
        fi
    done
    [[ -z $failed ]] || die "setting up the databases failed"
}

# start_api NAME PORT MODULE VENV: the service's WSGI app under uwsgi.
# No --procname-prefix: uwsgi would replace its command line, which
# --stop checks (service_matches) before it signals the pid of a pidfile.
start_api() {
    local name=$1 port=$2 module=$3 venv=$VENVS/$4 processes=1
    [[ $name == nova-api || $name == keystone ]] && processes=2
    # Keep a stale pidfile from hiding a dead service.
    start "$name" env \
        OS_KEYSTONE_CONFIG_DIR="$ETC/keystone" \
        OS_PLACEMENT_CONFIG_DIR="$ETC/placement" \
        OS_GLANCE_CONFIG_DIR="$ETC/glance" \
        OS_NEUTRON_CONFIG_DIR="$ETC/neutron" OS_NEUTRON_CONFIG_FILES=neutron.conf \
        OS_NOVA_CONFIG_DIR="$ETC/nova" \
        NOVA_ACC_API_CONFIG_DIR="$ETC/nova-acc" \
        "$venv/bin/uwsgi" --http-socket "$HOST:$port" --module "$module" \
        --home "$venv" --master --processes "$processes" --threads 1 \
        --enable-threads --lazy-apps --die-on-term --need-app \
        --buffer-size 65535 \
        --add-header "Connection: close"
    wait_for "$name" "$LOGS/$name.log" 120 http_up "$(health_url "$name" "$port")"
}

NOVA_SERVICES=(nova-acc-conductor nova-acc-scheduler nova-compute)

start_nova_services() {
    local s
    for s in "${NOVA_SERVICES[@]}"; do
        start "$s" "$VENVS/nova/bin/$s" --config-file "$ETC/nova/nova.conf"
    done
    # Up when the compute service reports to the API, host mapped to the cell.
    wait_for nova-compute "$LOGS/nova-compute.log" 180 compute_up
    "$VENVS/nova/bin/nova-manage" --config-file "$ETC/nova/nova.conf" \
        cell_v2 discover_hosts >>"$LOGS/setup-discover-hosts.log" 2>&1 \
        || die "nova-manage cell_v2 discover_hosts failed; see $LOGS/setup-discover-hosts.log"
    # ... and its node is a resource provider with inventory.
    wait_for nova-compute "$LOGS/nova-compute.log" 120 compute_node_up
    local s2
    for s2 in nova-acc-conductor nova-acc-scheduler; do
        running "$s2" || die "$s2 exited; see $LOGS/$s2.log"
    done
}

osc() { (source_openrc admin && "$VENVS/nova/bin/openstack" "$@"); }

compute_up() {
    local binary
    for binary in nova-compute nova-scheduler nova-conductor; do
        nova_acc_output_has '^up$' \
            osc compute service list --service "$binary" -f value -c State \
            || return 1
    done
}

compute_node_up() {
    nova_acc_output_has . osc resource provider list -f value -c name &&
    nova_acc_output_has '^up$' osc hypervisor list -f value -c State
}

# The openrc files: 0600, they hold the user's password.
write_openrc() {
    local who
    for who in admin demo; do
        cat > "$DIR/$who-openrc" <<EOT
# source me: the $who user of the nova-acc cloud (tools/run-cloud.sh)
export OS_AUTH_URL=http://$HOST:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=$who
export OS_PASSWORD=$(password_of "$who")
export OS_PROJECT_NAME=$who
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_INTERFACE=public
export PATH=$VENVS/nova/bin:\$PATH
EOT
        chmod 600 "$DIR/$who-openrc"
    done
}

source_openrc() {
    # shellcheck disable=SC1090
    source "$DIR/$1-openrc"
}

# ---------------------------------------------------------------------------
# The guest image, from Debian packages: the kernel of linux-image-*-amd64
# and the probe initramfs (tools/lib/build-probe-initramfs.sh: busybox
# printing the guest's PCI devices to its serial console, then sleeping).
# Uploaded as aki/ari/ami (the ami is an empty disk).

build_image() {
    local d=$DATA/image pkg deb
    if [[ -s $d/vmlinuz && -s $d/initrd && -e $d/disk ]]; then
        return 0
    fi
    log "building the guest image in $d (log $LOGS/setup-image.log)"
    rm -rf "$d"
    mkdir -p "$d/deb" "$d/kernel"
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [[ -n $pkg ]] || die "no linux-image-*-amd64 package found (apt-cache depends linux-image-amd64)"
    (cd "$d/deb" && apt-get download "$pkg") >>"$LOGS/setup-image.log" 2>&1 \
        || die "apt-get download $pkg failed; see $LOGS/setup-image.log"
    deb=$(ls "$d"/deb/*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$d/kernel" ./boot
    cp "$d"/kernel/boot/vmlinuz-* "$d/vmlinuz"
    "$ROOT/tools/lib/build-probe-initramfs.sh" /bin/busybox "$d/initrd" \
        >>"$LOGS/setup-image.log" 2>&1 \
        || die "building the probe initramfs failed; see $LOGS/setup-image.log"
    truncate -s 1M "$d/disk"
    rm -rf "$d/deb" "$d/kernel"
}

create_resources() {
    build_image
    log "images and flavors (log $LOGS/setup-resources.log)"
    "$VENVS/nova/bin/python" "$ROOT/tools/cloud_resources.py" compute \
        "$HOST" "$PASSWORDS" "$DATA/image" >>"$LOGS/setup-resources.log" 2>&1 \
        || die "creating images and flavors failed; see $LOGS/setup-resources.log"
}

# ---------------------------------------------------------------------------
# Commands.

# Is any OpenStack service of this cloud running?
any_service_running() {
    local line s
    for line in "${API_SERVICES[@]}"; do
        running "${line%% *}" && return 0
    done
    for s in "${NOVA_SERVICES[@]}"; do
        running "$s" && return 0
    done
    return 1
}

# Would the passwords of a running cloud stay what they are? Not when its
# passwords file is missing or was never applied (an older version of this
# script made the cloud) or NOVA_ACC_CLOUD_PASSWORD changes them.
passwords_stay() {
    [[ -f $PASSWORDS ]] && passwords_applied || return 1
    [[ -z ${NOVA_ACC_CLOUD_PASSWORD:-} ]] && return 0
    # Every password in the file is NOVA_ACC_CLOUD_PASSWORD already.
    awk '/^[A-Z]+_PASSWORD=/ && substr($0, index($0, "=") + 1) != ENVIRON["NOVA_ACC_CLOUD_PASSWORD"] {
             differ = 1 }
         END { exit differ }' "$PASSWORDS"
}

cmd_up() {
    set_dirs create
    mkdir -p "$LOGS" "$RUN" "$ETC" "$DATA"
    tighten_state_dir
    # Checked before the passwords file changes: a running cloud's
    # services hold the passwords they started with.
    if any_service_running && ! passwords_stay; then
        die "the cloud in $DIR runs with other passwords than" \
            "NOVA_ACC_CLOUD_PASSWORD or $PASSWORDS would give it (or was made" \
            "by an older version of this script): stop it ($0 --stop)," \
            "then run this again"
    fi
    load_passwords
    install_debian_packages
    install_venvs
    log "installed ($(elapsed) s)"
    write_configs
    write_openrc
    # Cell mappings made by an earlier run may hold other passwords.
    local cells_mapped=
    [[ -e $DATA/.done-nova-db ]] && cells_mapped=1
    start_mariadb
    start_rabbitmq
    sync_databases
    [[ -z $cells_mapped ]] || update_cell_mappings
    bootstrap_keystone
    log "databases ready ($(elapsed) s)"
    local line name port module venv
    for line in "${API_SERVICES[@]}"; do
        read -r name port module venv <<< "$line"
        start_api "$name" "$port" "$module" "$venv"
        if [[ $name == keystone ]]; then
            identity_resources
        fi
        if [[ $name == neutron ]]; then
            # Neutron 29 under uwsgi: list networks before the first port
            # listing (ORM backrefs).
            osc network list >/dev/null \
                || die "neutron does not answer GET /v2.0/networks; see $LOGS/neutron.log"
        fi
    done
    log "APIs up ($(elapsed) s)"
    start_libvirt
    start_nova_services
    log "nova services up ($(elapsed) s)"
    create_resources
    local profile device_spec
    profile=$("$PYTHON" "$NOVA_CONF_TOOL" get "$ETC/nova/nova.conf" nova_acc profile | sed -n 1p)
    device_spec=$("$PYTHON" "$NOVA_CONF_TOOL" get "$ETC/nova/nova.conf" nova_acc device_spec | sed -n 1p)
    if ((STARTED)); then
        log "the cloud is up ($(elapsed) s)"
    else
        log "the cloud was already up: nothing started ($(elapsed) s)"
    fi
    cat <<EOT

nova-acc cloud in $DIR (logs in $LOGS, passwords in $PASSWORDS):
  source $DIR/admin-openrc    # or demo-openrc
  openstack server create --flavor m1.nano --image nova-acc-guest --nic none \\
      --hint device_context=profile:${profile%%=*} vm1
  openstack server show vm1 -c status -c fault
  $ROOT/tools/run-cloud.sh --status | --stop
Profile: $profile; device_spec: $device_spec (no such device here)
Tempest: $ROOT/tools/run-tempest.sh
EOT
}

cmd_status() {
    local line name port module venv s rc=0
    if ! set_dirs; then
        echo "no cloud in $DIR"
        return 1
    fi
    for line in "${API_SERVICES[@]}"; do
        read -r name port module venv <<< "$line"
        if running "$name" && http_up "$(health_url "$name" "$port")"; then
            echo "$name: up (pid $(<"$RUN/$name.pid"), http://$HOST:$port)"
        else
            echo "$name: DOWN"; rc=1
        fi
    done
    for s in "${NOVA_SERVICES[@]}"; do
        if running "$s"; then
            echo "$s: running (pid $(<"$RUN/$s.pid"))"
        else
            echo "$s: DOWN"; rc=1
        fi
    done
    for s in mariadb:mysql_up rabbitmq:rabbit_up libvirtd:libvirt_up; do
        if "${s#*:}" >/dev/null 2>&1; then
            echo "${s%%:*}: up"
        else
            echo "${s%%:*}: DOWN"; rc=1
        fi
    done
    return $rc
}

cmd_stop() {
    local i s dom pid
    if ! set_dirs; then
        log "no cloud in $DIR: nothing to stop"
        return 0
    fi
    # The OpenStack services all at once (nova-compute may take its 20 s).
    local pids=()
    for s in "${NOVA_SERVICES[@]}"; do
        stop_service "$s" & pids+=($!)
    done
    for i in "${!API_SERVICES[@]}"; do
        stop_service "${API_SERVICES[$i]%% *}" & pids+=($!)
    done
    wait "${pids[@]}"
    if libvirt_up >/dev/null 2>&1; then
        # Guests of this cloud left behind: Nova names them instance-*, and
        # their disks are in this cloud's instances directory (a guest of
        # another cloud on this machine is left alone).
        for dom in $(virsh -c qemu:///system list --name | grep '^instance-' || true); do
            nova_acc_output_has "$DATA/nova/instances/" \
                virsh -c qemu:///system dumpxml "$dom" 2>/dev/null || continue
            log "destroying leftover guest $dom"
            virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
        done
    fi
    for s in libvirtd virtlockd virtlogd; do
        if [[ -e $RUN/$s.started ]]; then
            # Only the daemon this script started (its configuration file).
            if pid=$(nova_acc_service_pid --keep "$s" "/run/$s.pid" \
                    "$s" "$ETC/libvirt/$s.conf"); then
                nova_acc_stop_pid "$s" "$pid" "$s" "$ETC/libvirt/$s.conf"
            fi
            rm -f "$RUN/$s.started"
        fi
    done
    if [[ -e $RUN/rabbitmq.started ]]; then
        log "stopping RabbitMQ"
        /etc/init.d/rabbitmq-server stop >>"$LOGS/rabbitmq.log" 2>&1 || true
        # ... and the Erlang port mapper it started.
        epmd -kill >>"$LOGS/rabbitmq.log" 2>&1 || true
        rm -f "$RUN/rabbitmq.started"
    fi
    stop_service mariadb
    log "stopped ($(elapsed) s)"
}

# Sourcing this file (tests, debugging) defines the functions only.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    return 0
fi

case "${1:-}" in
    "") cmd_up ;;
    --status) cmd_status ;;
    --stop) cmd_stop ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac
