#!/bin/bash
# devstack plugin for spdk-openstack: SPDK's nvmf_tgt and the Cinder
# driver on storage nodes, the spdk-vhost-target agent and the Nova hooks
# on compute nodes. Settings: devstack/settings; functions:
# devstack/lib/spdk-openstack.

SPDK_PLUGIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=devstack/lib/spdk-openstack
source "$SPDK_PLUGIN_DIR/lib/spdk-openstack"

if [[ "$1" == "stack" && "$2" == "pre-install" ]]; then
    echo_summary "Checking for SPDK binaries"
    check_spdk_binaries

elif [[ "$1" == "stack" && "$2" == "install" ]]; then
    echo_summary "Installing spdk-openstack"
    install_spdk_openstack
    configure_spdk_hugepages

elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
    if is_service_enabled spdk-nvmf; then
        echo_summary "Starting the SPDK storage target"
        configure_spdk_nvmf
        start_spdk_nvmf
    fi
    if is_service_enabled spdk-vhost; then
        echo_summary "Configuring spdk-vhost-target and Nova"
        configure_spdk_vhost_agent
        if is_service_enabled n-cpu; then
            configure_nova_for_spdk
        fi
    fi

elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
    if is_service_enabled spdk-vhost; then
        echo_summary "Starting spdk-vhost-target"
        start_spdk_vhost_agent
    fi
    if is_service_enabled c-api; then
        create_spdk_volume_types
    fi
    if is_service_enabled n-api; then
        create_spdk_flavors
    fi

elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
    if is_service_enabled tempest; then
        configure_tempest_for_spdk
    fi
fi

if [[ "$1" == "unstack" ]]; then
    stop_spdk_openstack
fi

if [[ "$1" == "clean" ]]; then
    cleanup_spdk_openstack
fi
