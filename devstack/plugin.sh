#!/bin/bash
#
# devstack/plugin.sh - devstack plugin of nova-acc.
#
# NOT RUN in a devstack yet: checked with bash -n and shellcheck only; see
# README.rst next to this file.
#
# Enable in local.conf:
#
#   [[local|localrc]]
#   enable_plugin nova-acc <git url of nova-acc> [<branch>]
#
# What it does, by phase (devstack's doc/source/plugins.rst):
#
#   stack install      pip-installs nova-acc into Nova's Python environment
#                      (not editable, no dependencies, with constraints) and
#                      makes nova.virt.nova_acc importable next to devstack's
#                      editable Nova.
#   stack post-config  Nova is configured but not started yet (stack.sh
#                      calls start_nova after this phase): [DEFAULT]
#                      compute_driver, [nova_acc_sys_admin] helper_command,
#                      nova-acc's rootwrap filter (compute hosts), and
#                      [nova_acc] device_spec / profile in $NOVA_CONF and
#                      every cell conductor's nova_cell<N>.conf. With the
#                      service nova-acc-api: its configuration, uwsgi file
#                      and database (db sync), its Keystone user, service
#                      (type device-context) and endpoint, the service role
#                      for Nova's user, and [device_context_api] in Nova's
#                      files.
#   stack extra        Starts nova-acc-api (uwsgi) and waits for its
#                      /healthcheck; restarts n-sch as nova-acc-scheduler
#                      and n-cond / n-super-cond / n-cond-cell<N> as
#                      nova-acc-conductor, with the arguments lib/nova gives
#                      nova-scheduler and nova-conductor; checks n-cpu's
#                      compute_driver.
#   stack test-config  nova-acc into tempest's venv; [service_available]
#                      nova_acc (and nova_acc_api) and the [nova_acc] group
#                      in tempest.conf.
#   unstack            Stops the services it started or restarted.
#   clean              Removes the rootwrap filter, the driver shim it put
#                      into Nova's source tree and nova-acc-api's uwsgi
#                      site.
#
# This file is sourced by stack.sh / unstack.sh / clean.sh after lib/nova
# and devstack/settings: the NOVA_* (lib/nova), TEMPEST_* (lib/tempest) and
# NOVA_ACC_* (settings) variables and devstack's functions come from there.
# It only defines functions with a nova_acc prefix and runs nothing outside
# the dispatch at the end.

# Why n-sch / n-cond are restarted in the extra phase, under their own
# devstack names, rather than disabled in favour of new services:
#
# * lib/nova keys more than start-up on n-cond: create_nova_conf writes the
#   cell conductors' nova_cell<N>.conf (used by init_nova for the cell
#   databases) only if n-cond is enabled, and stack.sh waits for nova-compute
#   to register (is_nova_ready, before the extra phase), which nova-compute
#   only does once a conductor answers. A disabled n-cond with
#   nova-acc-conductor started in the extra phase would fail stack.sh.
# * lib/nova hard-codes $NOVA_BIN_DIR/nova-scheduler and nova-conductor in
#   start_nova_rest / start_nova_conductor; devstack has no variable for
#   another binary, and redefining lib/nova's functions from a plugin is
#   outside the plugin contract (phases, run_process, stop_process).
# * Keeping the names means unstack.sh's stop_nova stops nova-acc's
#   services too, and a second stack.sh first starts the stock binaries
#   again (start_nova rewrites the units) and this plugin swaps them again.
#
# Between start_nova and the extra phase the stock scheduler and conductors
# run; stack.sh only creates flavors and discovers hosts then, it boots no
# server, and no device context reaches them. The nova-acc binaries read the
# same configuration files; the [nova_acc] options are in them from the
# post-config phase on.

# nova-acc's settings are written by the tool tools/run-cloud.sh and
# tools/run-vfio-host.sh use too (tools/lib/nova_conf.py, standard library
# only): _nova_acc_conf FILE SETTINGS... merges SETTINGS into FILE, keeping
# every other line. A --device-spec or --profile of several lines is one
# entry a line and replaces all of the option's values, in order (the
# first matching device_spec entry wins); an empty one writes nothing, so
# values set another way (e.g. a post-config section of local.conf, merged
# after this phase) stay.
function _nova_acc_conf {
    local file=$1
    shift
    "${PYTHON:-python3}" "$NOVA_ACC_DIR/tools/lib/nova_conf.py" set "$file" "$@" \
        || die $LINENO "nova-acc: writing its settings into $file failed"
}

# Writes the [nova_acc] options of devstack/settings into FILE, if it exists.
# Both go into every file: the operator guide asks for identical values on
# every service (device_spec is read by nova-compute, profile by the
# scheduler and the conductors).
function _nova_acc_write_options {
    local file=$1
    if [[ -z "$file" || ! -f "$file" ]]; then
        return 0
    fi
    _nova_acc_conf "$file" --device-spec "$NOVA_ACC_DEVICE_SPEC" \
        --profile "$NOVA_ACC_PROFILES"
}

# Sets NOVA_ACC_PYTHON to the interpreter of Nova's console scripts (the
# environment pip_install installed nova-acc into).
function _nova_acc_find_python {
    NOVA_ACC_PYTHON=$(sed -n '1s/^#![[:space:]]*//p' "$NOVA_BIN_DIR/nova-manage")
    if [[ -z "$NOVA_ACC_PYTHON" || ! -x "${NOVA_ACC_PYTHON%% *}" ]]; then
        die $LINENO "nova-acc: no Python interpreter in $NOVA_BIN_DIR/nova-manage"
    fi
}

# Runs tools/lib/install_check.py with Nova's Python and arguments "$@",
# from /: a checkout in the working directory (nova-acc's own nova/ or
# nova_acc.egg-info) must not be what is found.
function _nova_acc_install_check {
    (cd / && $NOVA_ACC_PYTHON "$NOVA_ACC_DIR/tools/lib/install_check.py" "$@")
}

function install_nova_acc {
    # Not editable: nova-acc ships nova/virt/nova_acc into Nova's package.
    # --no-deps: all of nova-acc's requirements are Nova's, and pip must not
    # replace the Nova devstack installed from git (its pbr version may be
    # a 34.0.0 pre-release, outside nova>=34.0.0,<35.0.0). --force-reinstall
    # as tools/run-cloud.sh, so that a re-stack installs the checkout as it
    # is now. pip_install adds devstack's upper-constraints itself; the
    # repository's constraints.txt is passed too.
    pip_install --no-deps --force-reinstall -c "$NOVA_ACC_DIR/constraints.txt" "$NOVA_ACC_DIR"

    _nova_acc_find_python
    # devstack installs Nova editable, from $NOVA_DIR (setup_develop), so
    # Nova's package is not in site-packages, where pip just put nova-acc's
    # nova/virt/nova_acc. There that directory is no part of Nova's package,
    # and worse, a "nova" directory without __init__.py on sys.path is a
    # namespace package that hides the editable Nova (setuptools'
    # editable finder comes after the path finder). So: take it out of
    # site-packages and put the shim into the nova/virt directory Nova is
    # really imported from. With a Nova installed into site-packages (its
    # nova/virt/__init__.py next to the shim) nothing is moved.
    local site_shim
    site_shim=$(_nova_acc_install_check locate nova-acc nova/virt/nova_acc)
    if [[ "$site_shim" == /* && -d "$site_shim" && ! -f "$(dirname "$site_shim")/__init__.py" ]]; then
        sudo rm -rf "$site_shim"
        sudo rmdir --ignore-fail-on-non-empty "$(dirname "$site_shim")" "$(dirname "$(dirname "$site_shim")")"
        local virt_dir
        virt_dir=$(_nova_acc_install_check package-dir nova.virt)
        if [[ -z "$virt_dir" || ! -f "$virt_dir/__init__.py" ]]; then
            die $LINENO "nova-acc: cannot find the nova/virt directory of Nova"
        fi
        echo_summary "nova-acc: installing the driver shim into $virt_dir/nova_acc"
        sudo install -D -m 0644 -o "$STACK_USER" \
            "$NOVA_ACC_DIR/nova/virt/nova_acc/__init__.py" "$virt_dir/nova_acc/__init__.py"
    fi
    # The operator guide's check; the driver (nova.virt.nova_acc imports
    # Nova's libvirt driver) imported only where n-cpu runs and
    # libvirt-python is installed, elsewhere only found.
    local check=(check --import nova --import nova_acc --import os_acc
                 --find nova.virt.nova_acc)
    if is_service_enabled n-cpu; then
        check=(check --import nova.virt.nova_acc --import nova_acc --import os_acc)
    fi
    if ! _nova_acc_install_check "${check[@]}"; then
        die $LINENO "nova-acc: not installed right in $NOVA_ACC_PYTHON's environment (above)"
    fi

    local version
    version=$("$NOVA_BIN_DIR/nova-manage" --version 2>&1 | tail -n 1)
    if [[ "$version" != 34.* ]]; then
        warn $LINENO "nova-acc supports Nova 34 (nova>=34.0.0,<35.0.0); this devstack's Nova reports version '$version'"
    fi
}

function configure_nova_acc {
    # configure_neutron_nova runs in the background from init_nova on and
    # edits $NOVA_CONF and the nova_cell<N>.conf files; stack.sh waits for
    # it only after this phase. Wait now so that the two never rewrite one
    # file at the same time (stack.sh's own wait then just says it was
    # waited for already).
    async_wait configure_neutron_nova

    if is_service_enabled n-cpu; then
        if [[ "$VIRT_DRIVER" != "libvirt" ]]; then
            die $LINENO "nova-acc needs VIRT_DRIVER=libvirt, not '$VIRT_DRIVER'"
        fi
        # In $NOVA_CONF: start_nova_compute creates $NOVA_CPU_CONF by
        # copying $NOVA_CONF (then merges local.conf's post-config section
        # of $NOVA_CPU_CONF), so whatever is written into $NOVA_CPU_CONF now
        # would be lost. The driver is set before n-cpu ever starts: the
        # tool's (nova_acc.LibvirtAccDriver) unless NOVA_ACC_COMPUTE_DRIVER
        # names another.
        local settings=(--compute-driver)
        if [[ -n "$NOVA_ACC_COMPUTE_DRIVER" ]]; then
            settings=(--compute-driver "$NOVA_ACC_COMPUTE_DRIVER")
        fi
        # nova-compute resets released devices through nova-acc's own
        # privsep daemon. tools/run-cloud.sh sets its helper_command
        # explicitly (privsep-helper with the compute's config file); here
        # with sudo, since n-cpu runs as $STACK_USER. Or, with
        # NOVA_ACC_PRIVSEP_ROOTWRAP=True, through nova-rootwrap and the
        # filter below, like Nova's own privsep daemons in devstack.
        if [[ "$(trueorfalse False NOVA_ACC_PRIVSEP_ROOTWRAP)" == "True" ]]; then
            settings+=(--no-privsep-helper)
        else
            settings+=(--privsep-helper
                "sudo $NOVA_BIN_DIR/privsep-helper --config-file $NOVA_CPU_CONF")
        fi
        _nova_acc_conf "$NOVA_CONF" "${settings[@]}"
        # configure_nova (before the install phase) recreated rootwrap.d.
        sudo install -m 0644 -o root -g root \
            "$NOVA_ACC_DIR/etc/nova/rootwrap.d/nova-acc.filters" \
            "$NOVA_CONF_DIR/rootwrap.d/nova-acc.filters"
    fi

    # The scheduler, the superconductor (or single conductor) and
    # nova-compute read $NOVA_CONF; each cell conductor reads only its
    # nova_cell<N>.conf.
    _nova_acc_write_options "$NOVA_CONF"
    local i
    for i in $(seq 1 "${NOVA_NUM_CELLS:-1}"); do
        _nova_acc_write_options "$(conductor_conf "$i")"
    done

    if is_service_enabled nova-acc-api; then
        configure_nova_acc_api
        init_nova_acc_api
        _nova_acc_write_api_auth "$NOVA_CONF"
        for i in $(seq 1 "${NOVA_NUM_CELLS:-1}"); do
            _nova_acc_write_api_auth "$(conductor_conf "$i")"
        done
    fi
}

# nova-acc-api, the device-context API, the way lib/placement runs
# placement-api: uwsgi behind Apache at $NOVA_ACC_API_URL_PATH, a database
# of its own, a Keystone user of its own for keystonemiddleware, Keystone
# service type device-context. Nova's services call it as Nova's service
# user ([device_context_api], the credentials of $NOVA_ACC_API_AUTH_SECTION
# copied by tools/lib/nova_conf.py), who needs the service role: the API's
# policy lets only it (or an admin) bind contexts to servers.
function _nova_acc_api_url {
    echo "$SERVICE_PROTOCOL://$SERVICE_HOST$NOVA_ACC_API_URL_PATH"
}

function configure_nova_acc_api {
    sudo install -d -o "$STACK_USER" -m 0755 "$NOVA_ACC_API_CONF_DIR"
    rm -f "$NOVA_ACC_API_CONF"
    iniset "$NOVA_ACC_API_CONF" DEFAULT debug "$ENABLE_DEBUG_LOG_LEVEL"
    iniset "$NOVA_ACC_API_CONF" api auth_strategy keystone
    iniset "$NOVA_ACC_API_CONF" database connection \
        "$(database_connection_url "$NOVA_ACC_API_DB")"
    configure_keystone_authtoken_middleware "$NOVA_ACC_API_CONF" nova-acc-api
    # Attach and detach read the server from Nova's API as this service
    # (an admin: the server's host is an admin attribute); the message bus
    # they cast to is written when nova-acc-api starts (start_nova_acc_api).
    iniset "$NOVA_ACC_API_CONF" nova auth_type password
    iniset "$NOVA_ACC_API_CONF" nova auth_url "$KEYSTONE_SERVICE_URI"
    iniset "$NOVA_ACC_API_CONF" nova username nova-acc-api
    iniset "$NOVA_ACC_API_CONF" nova password "$SERVICE_PASSWORD"
    iniset "$NOVA_ACC_API_CONF" nova user_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$NOVA_ACC_API_CONF" nova project_name "$SERVICE_PROJECT_NAME"
    iniset "$NOVA_ACC_API_CONF" nova project_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$NOVA_ACC_API_CONF" nova region_name "$REGION_NAME"
    write_uwsgi_config "$NOVA_ACC_API_UWSGI_CONF" "$NOVA_ACC_API_UWSGI_MODULE" \
        "$NOVA_ACC_API_URL_PATH" "" nova-acc-api
    # devstack's write_uwsgi_config sets "module" (newer) or "wsgi-file"
    # (older) from its second argument: nova-acc-api is a module either way.
    inidelete "$NOVA_ACC_API_UWSGI_CONF" uwsgi wsgi-file
    iniset "$NOVA_ACC_API_UWSGI_CONF" uwsgi module "$NOVA_ACC_API_UWSGI_MODULE"
}

function init_nova_acc_api {
    recreate_database "$NOVA_ACC_API_DB"
    "$NOVA_BIN_DIR/nova-acc-api-manage" --config-file "$NOVA_ACC_API_CONF" db sync \
        || die $LINENO "nova-acc: nova-acc-api-manage db sync failed"
    create_service_user nova-acc-api admin
    get_or_create_role service
    get_or_add_user_project_role service nova "$SERVICE_PROJECT_NAME" \
        "$SERVICE_DOMAIN_NAME" "$SERVICE_DOMAIN_NAME"
    local service
    service=$(get_or_create_service nova-acc-api device-context \
        "Device contexts (nova-acc)")
    get_or_create_endpoint "$service" "$REGION_NAME" "$(_nova_acc_api_url)"
}

# [device_context_api] in FILE, with the credentials of its
# $NOVA_ACC_API_AUTH_SECTION; a file without that section (a cell
# conductor's, if lib/nova wrote none there) is left alone, with a warning.
function _nova_acc_write_api_auth {
    local file=$1
    if [[ -z "$file" || ! -f "$file" ]]; then
        return 0
    fi
    if [[ -z "$(iniget "$file" "$NOVA_ACC_API_AUTH_SECTION" username)" ]]; then
        warn $LINENO "nova-acc: $file has no [$NOVA_ACC_API_AUTH_SECTION] credentials: no [device_context_api] written there"
        return 0
    fi
    _nova_acc_conf "$file" --device-context-api-auth-from "$NOVA_ACC_API_AUTH_SECTION"
}

function start_nova_acc_api {
    # The computes' message bus (their cell's), where attach and detach
    # cast to nova-acc's endpoint on the server's compute: by now Nova's
    # configuration is complete.
    local bus
    bus=$(iniget "$NOVA_CPU_CONF" DEFAULT transport_url)
    if [[ -n "$bus" ]]; then
        iniset "$NOVA_ACC_API_CONF" DEFAULT transport_url "$bus"
    else
        warn $LINENO "nova-acc: $NOVA_CPU_CONF has no transport_url: nova-acc-api casts attach and detach to oslo.messaging's default bus"
    fi
    run_process nova-acc-api "$(which uwsgi) --procname-prefix nova-acc-api --ini $NOVA_ACC_API_UWSGI_CONF"
    if ! wait_for_service "$SERVICE_TIMEOUT" "$(_nova_acc_api_url)/healthcheck"; then
        die $LINENO "nova-acc: nova-acc-api did not answer $(_nova_acc_api_url)/healthcheck"
    fi
}

# Sets NOVA_ACC_SERVICES to "<devstack service> <nova-acc binary> <config
# file>" for each service lib/nova runs as nova-scheduler or nova-conductor,
# with the --config-file start_nova_rest / start_nova_conductor give it.
function _nova_acc_services {
    NOVA_ACC_SERVICES=()
    if is_service_enabled n-sch; then
        NOVA_ACC_SERVICES+=("n-sch nova-acc-scheduler $NOVA_CONF")
    fi
    if [[ "$CELLSV2_SETUP" == "singleconductor" ]]; then
        if is_service_enabled n-cond; then
            NOVA_ACC_SERVICES+=("n-cond nova-acc-conductor $NOVA_COND_CONF")
        fi
        return 0
    fi
    local i
    # What lib/nova's enable_nova_fleet does before it starts or stops them
    # (in unstack.sh, these names are not enabled yet).
    if is_service_enabled n-cond; then
        enable_service n-super-cond
        for i in $(seq 1 "$NOVA_NUM_CELLS"); do
            enable_service "n-cond-cell$i"
        done
    fi
    # The superconductor binds devices on first boots, the cell conductors
    # on reschedules: all of them run nova-acc-conductor.
    if is_service_enabled n-super-cond; then
        NOVA_ACC_SERVICES+=("n-super-cond nova-acc-conductor $NOVA_COND_CONF")
    fi
    for i in $(seq 1 "$NOVA_NUM_CELLS"); do
        if is_service_enabled "n-cond-cell$i"; then
            NOVA_ACC_SERVICES+=("n-cond-cell$i nova-acc-conductor $(conductor_conf "$i")")
        fi
    done
}

function start_nova_acc {
    if is_service_enabled nova-acc-api; then
        start_nova_acc_api
    fi
    _nova_acc_services
    local entry service binary conf
    # As lib/nova's start functions: rootwrap is found through the PATH
    # that run_process writes into the unit.
    local old_path=$PATH
    export PATH=$NOVA_BIN_DIR:$PATH
    for entry in "${NOVA_ACC_SERVICES[@]}"; do
        read -r service binary conf <<< "$entry"
        if [[ ! -x "$NOVA_BIN_DIR/$binary" ]]; then
            die $LINENO "nova-acc: $NOVA_BIN_DIR/$binary not found; is nova-acc installed in Nova's environment?"
        fi
        echo_summary "nova-acc: restarting $service as $binary"
        stop_process "$service"
        run_process "$service" "$NOVA_BIN_DIR/$binary --config-file $conf"
    done
    export PATH=$old_path

    # n-cpu started with $NOVA_CPU_CONF, a copy of $NOVA_CONF (where the
    # post-config phase wrote nova-acc's driver) with local.conf's
    # post-config section of $NOVA_CPU_CONF merged in; the latter may have
    # set another driver.
    if is_service_enabled n-cpu; then
        local driver want
        driver=$(iniget "$NOVA_CPU_CONF" DEFAULT compute_driver)
        want=$(iniget "$NOVA_CONF" DEFAULT compute_driver)
        if [[ "$driver" != "$want" ]]; then
            die $LINENO "nova-acc: n-cpu runs compute_driver '$driver' ($NOVA_CPU_CONF), not $want; check local.conf's post-config sections"
        fi
    fi
}

function stop_nova_acc {
    _nova_acc_services
    local entry service binary conf
    for entry in "${NOVA_ACC_SERVICES[@]}"; do
        read -r service binary conf <<< "$entry"
        stop_process "$service"
    done
    stop_process nova-acc-api
}

function configure_tempest_nova_acc {
    if ! is_service_enabled tempest; then
        return 0
    fi
    # Tempest finds the plugin (entry point tempest.test_plugins) in its own
    # venv. Not through TEMPEST_PLUGINS: that installs with dependencies,
    # which would pull Nova from PyPI into tempest's venv; the plugin only
    # needs tempest (as tools/run-cloud.sh, which installs nova-acc into its
    # tempest venv with --no-deps too).
    local venv=$TEMPEST_DIR/.tox/tempest
    if [[ ! -x "$venv/bin/pip" ]]; then
        die $LINENO "nova-acc: no tempest venv in $venv"
    fi
    PIP_VIRTUAL_ENV=$venv pip_install --no-deps --force-reinstall "$NOVA_ACC_DIR"

    iniset "$TEMPEST_CONFIG" service_available nova_acc True
    if is_service_enabled nova-acc-api; then
        iniset "$TEMPEST_CONFIG" service_available nova_acc_api True
    fi
    local profile=$NOVA_ACC_TEMPEST_PROFILE
    if [[ -z "$profile" ]]; then
        profile=$(echo "$NOVA_ACC_PROFILES" | sed -n -e 's/^[[:space:]]*\([^=[:space:]]*\)=.*/\1/p' | head -n 1)
    fi
    if [[ -n "$profile" ]]; then
        iniset "$TEMPEST_CONFIG" nova_acc profile "$profile"
    fi
    iniset "$TEMPEST_CONFIG" nova_acc profile_satisfiable \
        "$(trueorfalse False NOVA_ACC_TEMPEST_PROFILE_SATISFIABLE)"
    if [[ -n "$NOVA_ACC_TEMPEST_DEVICE_CONTEXT" ]]; then
        iniset "$TEMPEST_CONFIG" nova_acc device_context "$NOVA_ACC_TEMPEST_DEVICE_CONTEXT"
    fi
    if [[ -n "$NOVA_ACC_TEMPEST_UNSATISFIABLE_CONTEXT" ]]; then
        iniset "$TEMPEST_CONFIG" nova_acc unsatisfiable_context "$NOVA_ACC_TEMPEST_UNSATISFIABLE_CONTEXT"
    fi
    if [[ -n "$NOVA_ACC_TEMPEST_LIBVIRT_URI" ]]; then
        iniset "$TEMPEST_CONFIG" nova_acc libvirt_uri "$NOVA_ACC_TEMPEST_LIBVIRT_URI"
    fi
    # The CLI tests need an openstack command with nova-acc's hook: the one
    # of Nova's environment, into which the install phase put nova-acc.
    if [[ -x "$NOVA_BIN_DIR/openstack" ]]; then
        iniset "$TEMPEST_CONFIG" nova_acc openstack_command "$NOVA_BIN_DIR/openstack"
    fi
}

function cleanup_nova_acc {
    sudo rm -f "$NOVA_CONF_DIR/rootwrap.d/nova-acc.filters"
    # nova-acc-api's Apache site and uwsgi file; its database goes with
    # devstack's database server, its configuration stays in
    # $NOVA_ACC_API_CONF_DIR (rewritten by the next stack.sh).
    remove_uwsgi_config "$NOVA_ACC_API_UWSGI_CONF" nova-acc-api
    # The shim the install phase put into Nova's source tree (never a file
    # Nova's git tracks). The device ledger ($NOVA_STATE_PATH/nova_acc) goes
    # with $NOVA_STATE_PATH in lib/nova's cleanup_nova.
    local shim=$NOVA_DIR/nova/virt/nova_acc
    if [[ -f "$shim/__init__.py" ]] && \
            ! git -C "$NOVA_DIR" ls-files --error-unmatch nova/virt/nova_acc/__init__.py >/dev/null 2>&1; then
        sudo rm -rf "$shim"
    fi
}

if is_service_enabled nova-acc; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-acc"
        install_nova_acc
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring Nova for nova-acc"
        configure_nova_acc
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting nova-acc's services"
        start_nova_acc
    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        echo_summary "Configuring tempest for nova-acc"
        configure_tempest_nova_acc
    fi

    if [[ "$1" == "unstack" ]]; then
        echo_summary "Stopping nova-acc's services"
        stop_nova_acc
    fi

    if [[ "$1" == "clean" ]]; then
        echo_summary "Cleaning up nova-acc"
        cleanup_nova_acc
    fi
fi
