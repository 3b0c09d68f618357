#!/bin/bash
# The devstack functions plugin.sh calls, as recording stand-ins: each call
# is one line of tab-separated words in $HARNESS_LOG. Privileged commands
# (sudo, see below) and services (run_process) are only recorded; ini files are
# really written (ini.py) into the test's directory.

function _record {
    local IFS=$'\t'
    echo "$*" >> "$HARNESS_LOG"
}

function die {
    _record die "${@:2}"
    echo "die: ${*:2}" >&2
    exit 1
}

function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ,$ENABLED_SERVICES, == *,$service,* ]] && return 0
    done
    return 1
}

function trueorfalse {
    local default=$1 value=${!2:-$1}
    case ${value,,} in
        true|yes|1|on) echo True ;;
        false|no|0|off) echo False ;;
        *) echo "$default" ;;
    esac
}

function iniset {
    _record iniset "$@"
    "$HARNESS_PYTHON" "$HARNESS_DIR/ini.py" set "$@"
}

function iniset_multiline {
    _record iniset_multiline "$@"
    "$HARNESS_PYTHON" "$HARNESS_DIR/ini.py" set "$@"
}

function iniget {
    "$HARNESS_PYTHON" "$HARNESS_DIR/ini.py" get "$@"
}

function get_python_exec_prefix {
    echo "$HARNESS_BIN"
}

for _recorded in define_plugin enable_service echo_summary pip_install \
        run_process stop_process; do
    eval "function $_recorded { _record $_recorded \"\$@\"; }"
done

# Records; of what it would run as root, only creates directories (without
# their owner, group and mode): later steps write into them. `sudo tee`
# reads its input as the real one does, and records it last: a writer such
# as `echo N | sudo tee FILE` whose reader has exited dies of SIGPIPE (exit
# 141 under pipefail), which a stub that ignores stdin made intermittent.
function sudo {
    if [[ $1 == tee ]]; then
        _record sudo "$@" "$(cat)"
        return 0
    fi
    _record sudo "$@"
    if [[ $1 == install && $2 == -d ]]; then
        local arg dirs=()
        shift 2
        while [[ $# -gt 0 ]]; do
            arg=$1
            shift
            case $arg in
                -o|-g|-m) shift ;;
                *) dirs+=("$arg") ;;
            esac
        done
        mkdir -p "${dirs[@]}"
    fi
}

function openstack {
    _record openstack "$@"
    # Nothing exists yet; flavors have the id "id-<name>".
    case "$*" in
        *"flavor show -f value -c id "*) echo "id-${*: -1}" ;;
        *" show "*) return 1 ;;
    esac
}
