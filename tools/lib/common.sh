# shellcheck shell=bash
# The shell helpers of tools/*.sh, in this one file: sourced, it defines
# functions (and the password keys) and nothing else. The scripts keep no
# copies of their own of these (log, die, waiting, pidfiles, signals).
#
# These scripts run as root and keep their state (venvs they execute,
# configuration with passwords, pidfiles) in a directory under /var/tmp, a
# directory every user can write to. So:
#
# * nova_acc_state_dir: the state directory must belong to the uid that
#   runs the script, must not be writable by anyone else, must not be a
#   symlink, and every directory above it must be one only root (or that
#   uid) can change; a missing one is created 0700. Nothing in it may be
#   executed before this check.
# * nova_acc_passwords: random passwords per cloud, kept in a 0600 file in
#   the state directory and reused by later runs.
# * nova_acc_service_pid, nova_acc_stop_pid: a pidfile is only believed
#   when the process it names has the command line of the service it is
#   for; only then is it (or the process group it leads) signalled.
#
# Messages go to stderr, prefixed with $NOVA_ACC_LOG_PREFIX.

nova_acc_log() {
    printf '%s %s%s\n' "$(date +%H:%M:%S)" "${NOVA_ACC_LOG_PREFIX:-}" "$*" >&2
}

nova_acc_error() { nova_acc_log "ERROR: $*"; }

# The scripts' short names for the two above: log MESSAGE, die MESSAGE
# (exits with status 1).
log() { nova_acc_log "$@"; }
die() {
    nova_acc_error "$@"
    exit 1
}

# ---------------------------------------------------------------------------
# Waiting.

# nova_acc_wait TIMEOUT INTERVAL [--alive CMD... --] CHECK...: runs CHECK
# (its output discarded) every INTERVAL seconds until it succeeds (returns
# 0). Returns 1 when TIMEOUT seconds have passed: bash's SECONDS, not a
# count of tries, so that a check that itself takes seconds (an openstack
# command, ssh) does not stretch the limit. With --alive, CMD (its stdout
# discarded) runs after each failed check and must succeed: the process
# being waited for is still there; otherwise returns 2 at once.
nova_acc_wait() {
    local timeout=$1 interval=$2 deadline alive=()
    shift 2
    if [[ ${1:-} == --alive ]]; then
        shift
        while (($#)) && [[ $1 != -- ]]; do
            alive+=("$1")
            shift
        done
        shift  # the --
    fi
    deadline=$((SECONDS + timeout))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        if ((${#alive[@]})) && ! "${alive[@]}" >/dev/null; then
            return 2
        fi
        ((SECONDS < deadline)) || return 1
        sleep "$interval"
    done
}

# nova_acc_output_has REGEX CMD...: CMD succeeds and a line of its output
# matches REGEX (grep -E). Not "CMD | grep -q REGEX": under pipefail that
# pipeline fails whenever grep, done at the first match, exits before CMD
# has written all it has to write (CMD then dies of SIGPIPE). It failed a
# CI run: the cloud listed a second hypervisor after the one that was up,
# and run-cloud.sh waited for "up" until it gave up.
nova_acc_output_has() {
    local regex=$1 out
    shift
    out=$("$@") || return 1
    grep -Eq -- "$regex" <<<"$out"
}

# ---------------------------------------------------------------------------
# The state directory.

# nova_acc_mode PATH: "UID GID MODE" of PATH itself (octal mode, e.g. 1777).
nova_acc_mode() { stat -c '%u %g %a' -- "$1"; }

# nova_acc_check_ancestors DIR FOR VAR: every directory from DIR (a physical
# path, no symlinks) up to / is owned by root or by this uid, and is either
# not writable by group and others or sticky (as /tmp and /var/tmp are: then
# nobody else can rename or remove what root made in it). Otherwise another
# user could swap FOR for a directory of their own.
nova_acc_check_ancestors() {
    local p=$1 for=$2 var=$3 uid owner group perms
    uid=$(id -u)
    while :; do
        read -r owner group perms <<<"$(nova_acc_mode "$p" 2>/dev/null)"
        if [[ -z $perms ]]; then
            nova_acc_error "cannot stat $p (above $for)"
            return 1
        fi
        if ((owner != 0 && owner != uid)); then
            nova_acc_error "$p, above the state directory $for, is owned" \
                "by uid $owner: that user could replace $for. Set $var" \
                "to a directory under one that only root controls" \
                "(e.g. /var/tmp/NAME or /var/lib/NAME)."
            return 1
        fi
        if ((8#$perms & 8#022 && !(8#$perms & 8#1000))); then
            nova_acc_error "$p, above the state directory $for, is" \
                "writable by group or others (mode $perms) and not sticky:" \
                "another user could replace $for. Set $var to a directory" \
                "under one that only root can write to (e.g. /var/tmp/NAME)."
            return 1
        fi
        [[ $p == / ]] && return 0
        p=${p%/*}
        [[ -n $p ]] || p=/
    done
}

# nova_acc_state_dir DIR VAR [create]: checks the state directory DIR (named
# by the environment variable VAR in messages) and prints its physical path
# (symlinks above it resolved, so that nothing can be swapped in later).
# With "create", a missing DIR is made with mode 0700 (and missing parents
# 0700 too); without, a missing DIR returns 2 without a message. Refused,
# with a message saying what to do (return 1): a relative path, a symlink,
# not a directory, owned by another uid, writable by group or others, or a
# parent another user controls. Group and other permissions an older
# version left (0755) are taken away: only group search permission, which
# tools/run-cloud.sh grants to the group QEMU runs as, is kept.
nova_acc_state_dir() {
    local dir=$1 var=$2 create=${3:-} uid parent base owner group perms
    uid=$(id -u)
    if [[ $dir != /* ]]; then
        nova_acc_error "$var=$dir is not an absolute path: set it to one."
        return 1
    fi
    while [[ $dir == */ ]]; do dir=${dir%/}; done
    base=${dir##*/}
    parent=${dir%/*}
    [[ -n $parent ]] || parent=/
    if [[ -z $base || $base == . || $base == .. ]]; then
        nova_acc_error "$var=$1 does not name a directory of its own."
        return 1
    fi
    if [[ ! -d $parent ]]; then
        [[ $create == create ]] || return 2
        # With umask 077 missing parents are made 0700.
        (umask 077 && mkdir -p -- "$parent") || {
            nova_acc_error "cannot create $parent (for $var=$dir)"
            return 1
        }
    fi
    parent=$(cd -P -- "$parent" && pwd) || {
        nova_acc_error "cannot enter $parent (for $var=$dir)"
        return 1
    }
    nova_acc_check_ancestors "$parent" "$dir" "$var" || return 1
    dir=${parent%/}/$base
    if [[ -L $dir ]]; then
        nova_acc_error "the state directory $dir ($var) is a symbolic link" \
            "(to $(readlink -- "$dir")): refusing to use it, another user" \
            "may have put it there. Remove the link (rm $dir) or set $var" \
            "to another directory."
        return 1
    fi
    if [[ ! -e $dir ]]; then
        [[ $create == create ]] || return 2
        # Not -p: if someone made it meanwhile, this fails and says so.
        mkdir -m 0700 -- "$dir" || {
            nova_acc_error "cannot create the state directory $dir ($var)"
            return 1
        }
        nova_acc_log "created the state directory $dir (mode 0700)"
    fi
    if [[ ! -d $dir ]]; then
        nova_acc_error "the state directory $dir ($var) is not a directory:" \
            "remove it or set $var to another path."
        return 1
    fi
    read -r owner group perms <<<"$(nova_acc_mode "$dir")"
    if [[ $owner != "$uid" ]]; then
        nova_acc_error "the state directory $dir ($var) is owned by uid" \
            "$owner, not by uid $uid that runs this script: another user" \
            "may have put programs there that this script would run as" \
            "uid $uid. Refusing to use it. Remove it (rm -rf $dir, after" \
            "looking at what is in it) or set $var to a new path."
        return 1
    fi
    if ((8#$perms & 8#022)); then
        nova_acc_error "the state directory $dir ($var) is writable by" \
            "group or others (mode $perms): another user may have changed" \
            "what is in it. Refusing to use it. Remove it (rm -rf $dir)" \
            "or, if you are sure of its contents, chmod go-w $dir."
        return 1
    fi
    # Tighten what an older version of the scripts left (mode 0755): the
    # group keeps its search permission only when it is not uid's own.
    local keep=0
    [[ $group == "$(id -g)" ]] || keep=8#010
    if ((8#$perms & 8#077 & ~keep)); then
        if ((keep)); then
            chmod g-rw,o-rwx -- "$dir"
        else
            chmod go-rwx -- "$dir"
        fi
        nova_acc_log "the state directory $dir was mode $perms:" \
            "now $(stat -c %a -- "$dir")"
    fi
    printf '%s\n' "$dir"
}

# ---------------------------------------------------------------------------
# Passwords.

# The passwords of one cloud, each a line KEY_PASSWORD=VALUE in the file.
# A Keystone user's key is its name in capitals without dashes
# (nova-acc-api: NOVAACCAPI; tools/cloud_resources.py reads it so).
NOVA_ACC_PASSWORD_KEYS=(ADMIN DEMO NOVA PLACEMENT GLANCE NEUTRON NOVAACCAPI DB RABBIT)
# Letters, digits and URL-safe punctuation only: the passwords go into
# database and transport URLs, ini files and shell files unquoted.
NOVA_ACC_PASSWORD_RE='^[A-Za-z0-9._~-]+$'

# nova_acc_random_password: 32 random letters and digits.
nova_acc_random_password() {
    local pw
    pw=$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
    if ((${#pw} < 32)); then
        nova_acc_error "could not read random bytes from /dev/urandom"
        return 1
    fi
    printf '%s\n' "${pw:0:32}"
}

# nova_acc_passwords FILE [OVERRIDE]: sets NOVA_ACC_<KEY>_PASSWORD for each
# of NOVA_ACC_PASSWORD_KEYS from FILE (mode 0600), adding a random password
# for each key FILE lacks and writing FILE (atomically) when it is new or
# changed. OVERRIDE (NOVA_ACC_CLOUD_PASSWORD) sets every password to itself
# and is kept in FILE, so later runs without it keep it.
nova_acc_passwords() {
    local file=$1 override=${2:-} line n=0 key value changed='' tmp
    local -A have=()
    if [[ -n $override && ! $override =~ $NOVA_ACC_PASSWORD_RE ]]; then
        nova_acc_error "NOVA_ACC_CLOUD_PASSWORD may only contain letters," \
            "digits and . _ ~ - (it goes into URLs and configuration files)."
        return 1
    fi
    if [[ -L $file || (-e $file && ! -f $file) ]]; then
        nova_acc_error "$file is not a regular file: remove it (a new one" \
            "is made; the cloud's users then get new passwords)."
        return 1
    fi
    if [[ -e $file ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            n=$((n + 1))
            [[ -z $line || $line == '#'* ]] && continue
            key='' value=''
            if [[ $line =~ ^([A-Z]+)_PASSWORD=(.*)$ ]]; then
                key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
            fi
            if [[ -n $key && $value =~ $NOVA_ACC_PASSWORD_RE ]]; then
                have[$key]=$value
            else
                nova_acc_error "line $n of $file is not KEY_PASSWORD=VALUE" \
                    "(VALUE of letters, digits, . _ ~ -): fix or remove it."
                return 1
            fi
        done <"$file"
    fi
    for key in "${NOVA_ACC_PASSWORD_KEYS[@]}"; do
        if [[ -n $override ]]; then
            value=$override
        else
            value=${have[$key]:-}
            [[ -n $value ]] || value=$(nova_acc_random_password) || return 1
        fi
        [[ ${have[$key]:-} == "$value" ]] || changed=1
        have[$key]=$value
    done
    if [[ -n $changed ]]; then
        tmp=$(umask 077 && mktemp -- "$file.XXXXXX") || return 1
        {
            echo "# Passwords of this cloud (tools/run-cloud.sh), made once and"
            echo "# reused. Keep this file mode 0600."
            for key in "${NOVA_ACC_PASSWORD_KEYS[@]}"; do
                echo "${key}_PASSWORD=${have[$key]}"
            done
            # Keys of another version of the script, kept.
            for key in "${!have[@]}"; do
                [[ " ${NOVA_ACC_PASSWORD_KEYS[*]} " == *" $key "* ]] ||
                    echo "${key}_PASSWORD=${have[$key]}"
            done
        } >"$tmp" || {
            rm -f -- "$tmp"
            nova_acc_error "cannot write $file"
            return 1
        }
        mv -f -- "$tmp" "$file" || {
            rm -f -- "$tmp"
            nova_acc_error "cannot write $file"
            return 1
        }
        if [[ -n $override ]]; then
            nova_acc_log "passwords: NOVA_ACC_CLOUD_PASSWORD for every" \
                "user (kept in $file)"
        else
            nova_acc_log "passwords: new random ones in $file"
        fi
    elif [[ $(stat -c %a -- "$file") != 600 ]]; then
        chmod 600 -- "$file"
    fi
    for key in "${NOVA_ACC_PASSWORD_KEYS[@]}"; do
        printf -v "NOVA_ACC_${key}_PASSWORD" '%s' "${have[$key]}"
    done
}

# ---------------------------------------------------------------------------
# Pidfiles and signals.

# nova_acc_cmdline PID: the command line of PID, its NULs as spaces; fails
# when PID is no (live, non-zombie) process.
nova_acc_cmdline() {
    local cmd
    [[ $1 =~ ^[1-9][0-9]*$ ]] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ -n $cmd ]] || return 1
    printf '%s\n' "${cmd% }"
}

# nova_acc_pid_is PID PATTERN...: PID is alive and its command line contains
# every PATTERN (a plain substring).
nova_acc_pid_is() {
    local pid=$1 cmd p
    shift
    cmd=$(nova_acc_cmdline "$pid") || return 1
    for p in "$@"; do
        [[ $cmd == *"$p"* ]] || return 1
    done
}

# nova_acc_pid_gone PID PATTERN...: the opposite of nova_acc_pid_is (to
# wait for with nova_acc_wait).
nova_acc_pid_gone() { ! nova_acc_pid_is "$@"; }

# nova_acc_pgrp PID: the process group of PID.
nova_acc_pgrp() {
    local stat rest pgrp
    stat=$(cat -- "/proc/$1/stat" 2>/dev/null) || return 1
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
    rest=${stat##*) }
    read -r _ _ pgrp _ <<<"$rest"
    printf '%s\n' "$pgrp"
}

# nova_acc_service_pid [--keep] NAME PIDFILE PATTERN...: prints the pid in
# PIDFILE when that process is alive and its command line has every
# PATTERN (it is NAME); otherwise fails, and removes PIDFILE with a note
# when it names no process or another one (unless --keep: a pidfile the
# script does not own).
nova_acc_service_pid() {
    local keep='' name pidfile pid cmd why=''
    if [[ $1 == --keep ]]; then
        keep=1
        shift
    fi
    name=$1 pidfile=$2
    shift 2
    [[ -f $pidfile && ! -L $pidfile ]] || return 1
    pid=$(head -n 1 -- "$pidfile" 2>/dev/null | tr -d '[:space:]')
    if [[ ! $pid =~ ^[1-9][0-9]*$ ]]; then
        why="it holds no pid"
    elif ! cmd=$(nova_acc_cmdline "$pid"); then
        why="$name (pid $pid) is gone"
    elif ! nova_acc_pid_is "$pid" "$@"; then
        why="pid $pid is not $name but: ${cmd:0:160}"
    else
        printf '%s\n' "$pid"
        return 0
    fi
    if [[ -z $keep ]]; then
        nova_acc_log "removing the stale pidfile $pidfile: $why"
        rm -f -- "$pidfile"
    fi
    return 1
}

# nova_acc_signal SIG PID PATTERN...: sends SIG to the process group PID
# leads, or to PID alone when it leads none, and only while PID's command
# line has every PATTERN.
nova_acc_signal() {
    local sig=$1 pid=$2
    shift 2
    nova_acc_pid_is "$pid" "$@" || return 0
    if [[ $(nova_acc_pgrp "$pid") == "$pid" ]]; then
        kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    else
        kill -"$sig" "$pid" 2>/dev/null || true
    fi
}

# nova_acc_stop_pid NAME PID PATTERN...: SIGTERM to NAME (PID, checked as in
# nova_acc_signal), wait up to 20 s, then SIGKILL. A PID that is not NAME
# is left alone.
nova_acc_stop_pid() {
    local name=$1 pid=$2
    shift 2
    if ! nova_acc_pid_is "$pid" "$@"; then
        nova_acc_log "not stopping pid $pid: it is not $name (gone, or" \
            "another process)"
        return 0
    fi
    nova_acc_log "stopping $name (pid $pid)"
    nova_acc_signal TERM "$pid" "$@"
    nova_acc_wait 20 0.5 nova_acc_pid_gone "$pid" "$@" && return 0
    nova_acc_log "$name (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
    nova_acc_signal KILL "$pid" "$@"
    nova_acc_wait 10 0.5 nova_acc_pid_gone "$pid" "$@" && return 0
    nova_acc_log "WARNING: $name (pid $pid) is still there after SIGKILL"
}
