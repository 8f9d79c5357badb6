#!/bin/bash
#
# devstack/plugin.sh - devstack plugin of nova-acc.
#
# NOT TESTED in a devstack run yet: see README.rst next to this file.
#
# Enable in local.conf:
#
#   [[local|localrc]]
#   enable_plugin nova-acc <git url of nova-acc> [<branch>]
#
# What it does, by stack.sh phase:
#
#   stack install      pip-installs nova-acc into Nova's environment: not
#                      editable (it ships nova/virt/nova_acc into the nova
#                      package) and without dependencies (all of them are
#                      Nova's, and pip must not replace devstack's Nova).
#   stack post-config  [DEFAULT] compute_driver (on compute nodes) and
#                      [nova_acc] device_spec / profile in $NOVA_CONF and
#                      $NOVA_CPU_CONF, from NOVA_ACC_DEVICE_SPEC and
#                      NOVA_ACC_PROFILES (devstack/settings).
#   stack extra        Nova is running by now. Restarts n-sch as
#                      nova-acc-scheduler and n-cond / n-super-cond /
#                      n-cond-cell<N> as nova-acc-conductor, with the
#                      arguments devstack gave them, after writing the
#                      [nova_acc] options into their config files; restarts
#                      n-cpu if its configuration had to be changed.
#
# This file is sourced by stack.sh, so it only defines functions with a
# nova_acc prefix and runs nothing outside the phase dispatch at the end.

# Writes the multi-valued option [nova_acc] OPTION of FILE from VALUES, a
# newline-separated list (blank lines ignored), keeping the order: the first
# matching device_spec entry wins. Nothing is written for an empty list, so
# values set another way (e.g. a post-config section of local.conf) stay.
function _nova_acc_set_multi {
    local file=$1
    local option=$2
    local values=$3
    local lines=()
    local line
    local i
    while IFS= read -r line; do
        line=$(echo "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
        if [[ -n "$line" ]]; then
            lines+=("$line")
        fi
    done <<< "$values"
    if [[ ${#lines[@]} -eq 0 ]]; then
        return 0
    fi
    if ! grep -q '^\[nova_acc\]' "$file"; then
        printf '\n[nova_acc]\n' >> "$file"
    fi
    inidelete "$file" nova_acc "$option"
    # iniadd_literal inserts right below the section header (and, unlike
    # iniset_multiline, keeps values with spaces whole): add the values last
    # to first so that they end up in order.
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
        iniadd_literal "$file" nova_acc "$option" "${lines[$i]}"
    done
}

# Writes the [nova_acc] options of devstack/settings into FILE, if it exists.
function _nova_acc_write_options {
    local file=$1
    if [[ -z "$file" || ! -f "$file" ]]; then
        return 0
    fi
    _nova_acc_set_multi "$file" device_spec "$NOVA_ACC_DEVICE_SPEC"
    _nova_acc_set_multi "$file" profile "$NOVA_ACC_PROFILES"
}

# Sets NOVA_ACC_UNIT_COMMAND to the ExecStart command of the systemd unit
# of devstack service $1 (not a $(...) function: die must stop stack.sh).
function _nova_acc_read_unit_command {
    local service=$1
    local unit=$SYSTEMD_DIR/devstack@$service.service
    if [[ ! -f "$unit" ]]; then
        die $LINENO "nova-acc: no systemd unit $unit; the plugin needs USE_SYSTEMD=True"
    fi
    NOVA_ACC_UNIT_COMMAND=$(iniget "$unit" Service ExecStart)
    if [[ -z "$NOVA_ACC_UNIT_COMMAND" ]]; then
        die $LINENO "nova-acc: no ExecStart in $unit"
    fi
}

# Prints the --config-file arguments of command $1, one per line.
function _nova_acc_config_files {
    local -a words
    local i
    read -r -a words <<< "$1"
    for ((i = 0; i < ${#words[@]}; i++)); do
        case "${words[$i]}" in
            --config-file) echo "${words[$((i + 1))]}" ;;
            --config-file=*) echo "${words[$i]#--config-file=}" ;;
        esac
    done
}

function install_nova_acc {
    pip_install --no-deps "$NOVA_ACC_DIR"
    local version
    version=$("$NOVA_BIN_DIR/nova-manage" --version 2>&1 | tail -n 1)
    if [[ "$version" != 34.* ]]; then
        warn $LINENO "nova-acc supports Nova 34 (nova>=34.0.0,<35.0.0); this devstack's Nova reports version '$version'"
    fi
}

function configure_nova_acc {
    if is_service_enabled n-cpu; then
        if [[ "$VIRT_DRIVER" != "libvirt" ]]; then
            die $LINENO "nova-acc needs VIRT_DRIVER=libvirt, not '$VIRT_DRIVER'"
        fi
        iniset "$NOVA_CONF" DEFAULT compute_driver "$NOVA_ACC_COMPUTE_DRIVER"
        if [[ -n "$NOVA_CPU_CONF" && -f "$NOVA_CPU_CONF" ]]; then
            iniset "$NOVA_CPU_CONF" DEFAULT compute_driver "$NOVA_ACC_COMPUTE_DRIVER"
        fi
        # nova-compute resets released devices through nova-acc's privsep
        # daemon, started through nova-rootwrap with this filter.
        sudo install -m 0644 "$NOVA_ACC_DIR/etc/nova/rootwrap.d/nova-acc.filters" \
            "$NOVA_CONF_DIR/rootwrap.d/nova-acc.filters"
    fi
    _nova_acc_write_options "$NOVA_CONF"
    if [[ -n "$NOVA_CPU_CONF" && "$NOVA_CPU_CONF" != "$NOVA_CONF" ]]; then
        _nova_acc_write_options "$NOVA_CPU_CONF"
    fi
}

# Restarts devstack service $1, which runs Nova's command $2 (e.g.
# nova-scheduler), as nova-acc's command $3 (e.g. nova-acc-scheduler) with
# the same arguments, from the same directory.
function _nova_acc_swap_service {
    local service=$1
    local stock=$2
    local ours=$3
    if ! is_service_enabled "$service"; then
        return 0
    fi
    _nova_acc_read_unit_command "$service"
    local cmd=$NOVA_ACC_UNIT_COMMAND
    local conf
    for conf in $(_nova_acc_config_files "$cmd"); do
        _nova_acc_write_options "$conf"
    done
    local bin=${cmd%% *}
    local args=${cmd#"$bin"}
    case "$(basename "$bin")" in
        "$ours")
            ;;  # swapped by an earlier stack.sh run: just restart it
        "$stock")
            bin=$(dirname "$bin")/$ours
            ;;
        *)
            die $LINENO "nova-acc: devstack@$service runs '$bin', expected $stock"
            ;;
    esac
    if [[ ! -x "$bin" ]]; then
        die $LINENO "nova-acc: $bin not found; is nova-acc installed in Nova's environment?"
    fi
    echo_summary "nova-acc: restarting $service as $ours"
    stop_process "$service"
    run_process "$service" "$bin$args"
}

# nova-compute normally starts with the driver and options of the
# post-config phase; if not (e.g. its config file was regenerated), set them
# and restart it.
function _nova_acc_check_compute {
    if ! is_service_enabled n-cpu; then
        return 0
    fi
    _nova_acc_read_unit_command n-cpu
    local cmd=$NOVA_ACC_UNIT_COMMAND
    local conf
    local before
    local changed=False
    for conf in $(_nova_acc_config_files "$cmd"); do
        before=$(md5sum "$conf")
        if [[ "$(iniget "$conf" DEFAULT compute_driver)" != "$NOVA_ACC_COMPUTE_DRIVER" ]]; then
            iniset "$conf" DEFAULT compute_driver "$NOVA_ACC_COMPUTE_DRIVER"
        fi
        _nova_acc_write_options "$conf"
        if [[ "$(md5sum "$conf")" != "$before" ]]; then
            changed=True
        fi
    done
    if [[ "$changed" == "True" ]]; then
        echo_summary "nova-acc: restarting n-cpu with $NOVA_ACC_COMPUTE_DRIVER"
        sudo systemctl restart devstack@n-cpu.service
    fi
}

function start_nova_acc {
    _nova_acc_swap_service n-sch nova-scheduler nova-acc-scheduler
    # Single-conductor layout, superconductor, cell conductors: all of them,
    # the superconductor binds devices on first boot, cell conductors on
    # reschedules.
    _nova_acc_swap_service n-cond nova-conductor nova-acc-conductor
    _nova_acc_swap_service n-super-cond nova-conductor nova-acc-conductor
    local i
    for i in $(seq 1 "${NOVA_NUM_CELLS:-1}"); do
        _nova_acc_swap_service "n-cond-cell$i" nova-conductor nova-acc-conductor
    done
    _nova_acc_check_compute
}

if is_service_enabled nova-acc; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-acc"
        install_nova_acc
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-acc"
        configure_nova_acc
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting Nova services with nova-acc"
        start_nova_acc
    fi
    # unstack / clean: nothing of its own; unstack.sh stops the devstack@
    # units, whatever command they run.
fi
