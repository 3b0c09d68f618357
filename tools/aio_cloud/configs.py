"""The cloud's configuration files, as ``{section: {option: value}}``.

Pure functions of the layout and the secrets, so they are unit tested;
:func:`write_ini` puts them on disk. Every service logs to its own file
under ``log/`` (a WSGI service without ``log_file`` would name it from
``sys.argv[0]``), uses one worker, and talks to the others on loopback
(a multi-node cloud's: on its bridge).
"""

import os

from tools.aio_cloud import daemons
from tools.aio_cloud import layout as layout_mod

PORTS = layout_mod.PORTS

# The subsystem NQNs' prefix of every storage node (the driver's default,
# written out: the demos find a volume's subsystem by it).
NQN_PREFIX = 'nqn.2010-10.org.openstack'


def write_ini(path, sections, mode=0o600):
    """Write an ini file; values that are lists become repeated lines."""
    lines = []
    for section, options in sections.items():
        lines.append('[%s]' % section)
        for option, value in options.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, bool):
                    item = 'true' if item else 'false'
                lines.append('%s = %s' % (option, item))
        lines.append('')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as f:
        f.write('\n'.join(lines))


def auth(layout, secret, user):
    """A keystoneauth password section for a service user."""
    return {'auth_url': layout.keystone_url, 'auth_type': 'password',
            'project_domain_name': 'Default', 'user_domain_name': 'Default',
            'region_name': layout_mod.REGION, 'project_name': 'service',
            'username': user, 'password': secret[user]}


def authtoken(layout, secret, user):
    section = auth(layout, secret, user)
    section['www_authenticate_uri'] = layout.keystone_url
    return section


def service_user(layout, secret, user):
    section = auth(layout, secret, user)
    section['send_service_user_token'] = True
    return section


# glance-api reads chunked uploads (cinder's upload-to-image, nova's
# snapshots: the body's size is unknown) with uWSGI's chunked input API.
# Its buffer is 1 MB by default and glanceclient sends 1 MiB chunks, and
# it waits socket-timeout (4 s) for a chunk: both failed with HTTP 500
# "unable to receive chunked part".
CHUNKED_INPUT = {
    'http-chunked-input': True,
    'chunked-input-limit': 16 * 1024 * 1024,
    'chunked-input-timeout': 60,
    'socket-timeout': 60,
}


def uwsgi(layout, venv, name, module, env=None, pyargv=None,
          chunked_input=False):
    """A uwsgi ini serving one WSGI app; no command-line arguments reach
    the app (nova's parses sys.argv).
    """
    options = {
        'module': module,
        'virtualenv': venv,
        'http-socket': '%s:%d' % (layout.host, PORTS[name]),
        'master': True, 'processes': 1, 'threads': 1, 'lazy-apps': True,
        'die-on-term': True, 'need-app': True,
        'pidfile': layout.run(name + '.pid'),
        'buffer-size': 65535,
        # http-socket does not keep connections alive but does not say so;
        # clients reusing one got "connection reset".
        'add-header': 'Connection: close',
    }
    if env:
        options['env'] = env
    if pyargv:
        options['pyargv'] = pyargv
    if chunked_input:
        options.update(CHUNKED_INPUT)
    return {'uwsgi': options}


def mariadb(layout):
    return {'mysqld': {
        'datadir': layout.path('mysql'),
        'socket': layout.run('mysqld.sock'),
        'pid-file': layout.run('mysqld.pid'),
        'port': PORTS['mariadb'],
        'bind-address': layout.host,
        'user': 'root',
        'log-error': layout.log('mariadb'),
        'skip-log-bin': '',
        'innodb_buffer_pool_size': '64M',
        'max_connections': 300,
        'performance_schema': 'OFF',
        'character-set-server': 'utf8mb4',
        'collation-server': 'utf8mb4_general_ci',
    }}


def keystone(layout, secret):
    return {
        'DEFAULT': {'log_file': layout.log('keystone')},
        'database': {'connection': layout.database_url('keystone', secret)},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {
            'key_repository': layout.etc('keystone', 'fernet-keys')},
        'credential': {
            'key_repository': layout.etc('keystone', 'credential-keys')},
    }


def placement(layout, secret):
    return {
        'DEFAULT': {'log_file': layout.log('placement')},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken(layout, secret, 'placement'),
        'placement_database': {
            'connection': layout.database_url('placement', secret)},
    }


def _oslo_common(layout, secret, service):
    return {'transport_url': layout.transport_url(secret)}, {
        'oslo_concurrency': {'lock_path': layout.lock(service)},
        'oslo_messaging_notifications': {'driver': 'noop'},
    }


def nova(layout, secret):
    """nova.conf of the API, conductor and scheduler."""
    default, common = _oslo_common(layout, secret, 'nova')
    default.update({'state_path': layout.lib('nova'),
                    'my_ip': layout.host})
    sections = {
        'DEFAULT': default,
        'api': {'auth_strategy': 'keystone'},
        'api_database': {'connection': layout.database_url('nova_api',
                                                           secret)},
        'database': {'connection': layout.database_url('nova', secret)},
        'keystone_authtoken': authtoken(layout, secret, 'nova'),
        'wsgi': {'api_paste_config': layout.etc('nova', 'api-paste.ini')},
        'scheduler': {'workers': 1},
        'conductor': {'workers': 1},
    }
    sections.update(_nova_clients(layout, secret))
    sections.update(common)
    return sections


def _nova_clients(layout, secret):
    return {
        'service_user': service_user(layout, secret, 'nova'),
        'placement': auth(layout, secret, 'placement'),
        'neutron': auth(layout, secret, 'neutron'),
        'cinder': {'os_region_name': layout_mod.REGION},
        'vnc': {'enabled': False},
        'serial_console': {'enabled': False},
    }


def nova_compute(layout, secret, venv, node=None):
    """nova-compute's own file: no database sections (nova-compute must
    not see them), the plugin's driver, TCG, the private libvirtd, and a
    config drive on every server (the guest has no network for a metadata
    service).

    A node of the multi-node cloud is its own Nova host with state of its
    own; live migrations reach its libvirtd, and QEMU's incoming stream,
    on its address on the bridge over plain TCP. The instances directory is
    shared by all nodes, as an NFS-mounted one is: Nova then migrates a
    server's image-backed root disk without copying it (no block
    migration), and its console log stays readable.
    """
    node = node or layout_mod.ComputeNode(layout)
    default, common = _oslo_common(layout, secret, 'nova')
    default.update({
        'state_path': node.state_path,
        'instances_path': layout.lib('nova', 'instances'),
        'my_ip': node.address,
        'compute_driver': 'spdk_libvirt.SPDKLibvirtDriver',
        'force_config_drive': True,
        'log_file': node.log('nova-compute'),
        # Stop within the down's grace instead of waiting a minute for
        # in-flight RPC.
        'graceful_shutdown_timeout': 5,
    })
    libvirt = {
        'virt_type': 'qemu', 'cpu_mode': 'none',
        'connection_uri': daemons.libvirt_uri(node.libvirt_dir),
    }
    if node.name:
        default['host'] = node.name
        libvirt.update({'live_migration_scheme': 'tcp',
                        'live_migration_inbound_addr': node.address})
    sections = {'DEFAULT': default, 'libvirt': libvirt}
    sections.update(privsep_helpers(
        venv, 'nova_sys_admin', 'privsep_osbrick',
        'vif_plug_linux_bridge_privileged', 'vif_plug_ovs_privileged'))
    sections.update(_nova_clients(layout, secret))
    sections.update(common)
    return sections


def neutron(layout, secret):
    default, common = _oslo_common(layout, secret, 'neutron')
    default.update({
        'log_file': layout.log('neutron-api'),
        'state_path': layout.lib('neutron'),
        'core_plugin': 'ml2', 'service_plugins': '',
        'auth_strategy': 'keystone',
        'api_paste_config': layout.etc('neutron', 'api-paste.ini'),
        'notify_nova_on_port_status_changes': False,
        'notify_nova_on_port_data_changes': False,
        'api_workers': 1, 'rpc_workers': 0,
    })
    sections = {
        'DEFAULT': default,
        'database': {'connection': layout.database_url('neutron', secret)},
        'keystone_authtoken': authtoken(layout, secret, 'neutron'),
        'nova': auth(layout, secret, 'nova'),
    }
    sections.update(common)
    return sections


def neutron_ml2():
    """ML2 with no mechanism drivers: the API only, enough for servers
    with no network (``--nic none``).
    """
    return {'ml2': {'type_drivers': 'flat', 'tenant_network_types': '',
                    'mechanism_drivers': '',
                    'extension_drivers': 'port_security'},
            'ml2_type_flat': {'flat_networks': '*'}}


def glance(layout, secret):
    return {
        'DEFAULT': {'log_file': layout.log('glance-api'),
                    'enabled_backends': 'fs:file'},
        'database': {'connection': layout.database_url('glance', secret)},
        'paste_deploy': {'flavor': 'keystone',
                         'config_file': layout.etc('glance',
                                                   'glance-api-paste.ini')},
        'keystone_authtoken': authtoken(layout, secret, 'glance'),
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': layout.lib('glance', 'images')},
        'os_glance_staging_store': {
            'filesystem_store_datadir': layout.lib('glance', 'staging')},
        'os_glance_tasks_store': {
            'filesystem_store_datadir': layout.lib('glance', 'tasks')},
        'oslo_concurrency': {'lock_path': layout.lock('glance')},
        'wsgi': {'task_pool_threads': 4},
    }


SPDK_BACKEND = 'spdk'
# With two storage nodes or more: a back end of all of them, which keeps
# copies of replicated volumes (volume type spdk-replicated) one per node,
# served by the first storage node's cinder-volume.
REPLICATED_BACKEND = 'spdk-replicated'


def replicated_backend(layout, node):
    """The replicated back end's section, for the node that serves it;
    None for the others and a cloud of one storage node.
    """
    nodes = layout_mod.storage_nodes(layout)
    if len(nodes) < 2 or node.name != nodes[0].name:
        return None
    return {'volume_backend_name': REPLICATED_BACKEND,
            'volume_driver': 'cinder_driver.spdk.SPDKDriver',
            'spdk_storage_nodes': ','.join(n.name for n in nodes),
            'spdk_lvstores': '',
            'spdk_nqn_prefix': NQN_PREFIX,
            'spdk_state_dir': node.lib('spdk-replicated'),
            'spdk_keyring_dir': node.lib('spdk-keys')}


def storage_node_service(layout, secret, node):
    """spdk-storage-node's config on a storage node: its nvmf_tgt, the
    node's export address, the cloud's message bus.
    """
    return {'DEFAULT': {'host': node.name,
                        'transport_url': layout.transport_url(secret)},
            'spdk_storage_node': {'rpc_socket': node.rpc_socket,
                                  'target_addresses': node.address,
                                  'target_port': PORTS['nvmf-tcp']}}


def cinder_volume(layout, secret, venv, node):
    """The cinder.conf of a storage node's cinder-volume: Cinder host
    ``storage<k>``, its back end on the node's own nvmf_tgt and address.
    Every node's back end has the same ``volume_backend_name``: the
    volume types match them all and the scheduler picks one. The first
    node's also serves the replicated back end (replicated_backend).
    """
    sections = cinder(layout, secret, venv)
    sections['DEFAULT'].update({'host': node.name,
                                'my_ip': node.address,
                                'state_path': node.lib(),
                                'image_conversion_dir': node.lib(
                                    'conversion')})
    sections[SPDK_BACKEND].update({
        'spdk_rpc_socket': node.rpc_socket,
        'spdk_target_addresses': node.address,
        'spdk_state_dir': node.lib('spdk'),
        'spdk_keyring_dir': node.lib('spdk-keys'),
    })
    replicated = replicated_backend(layout, node)
    if replicated is not None:
        sections[REPLICATED_BACKEND] = replicated
        sections['DEFAULT']['enabled_backends'] = '%s,%s' % (
            SPDK_BACKEND, REPLICATED_BACKEND)
    return sections


def privsep_helpers(venv, *sections):
    """As root, privsep needs neither sudo nor rootwrap."""
    helper = os.path.join(venv, 'bin', 'privsep-helper')
    return {section: {'helper_command': helper} for section in sections}


def cinder(layout, secret, venv):
    """cinder.conf of the API, scheduler and volume service, with the SPDK
    back end as the devstack plugin configures it.
    """
    default, common = _oslo_common(layout, secret, 'cinder')
    default.update({
        'state_path': layout.lib('cinder'),
        'auth_strategy': 'keystone',
        'api_paste_config': layout.etc('cinder', 'api-paste.ini'),
        'resource_query_filters_file': layout.etc('cinder',
                                                  'resource_filters.json'),
        'my_ip': layout.host,
        'osapi_volume_workers': 1,
        'glance_api_servers': layout.url('glance-api'),
        'enabled_backends': SPDK_BACKEND,
        'default_volume_type': 'spdk-vhost',
        'image_conversion_dir': layout.lib('cinder', 'conversion'),
    })
    sections = {
        'DEFAULT': default,
        'database': {'connection': layout.database_url('cinder', secret)},
        'keystone_authtoken': authtoken(layout, secret, 'cinder'),
        # Cinder asks nova to approve attachment deletes unless the
        # request carries a service token.
        'service_user': service_user(layout, secret, 'cinder'),
        'nova': auth(layout, secret, 'nova'),
        'coordination': {'backend_url': 'file://' + layout.lock('cinder')},
        SPDK_BACKEND: {
            'volume_backend_name': SPDK_BACKEND,
            'volume_driver': 'cinder_driver.spdk.SPDKDriver',
            'spdk_rpc_socket': layout.path('spdk', 'nvmf.sock'),
            'spdk_lvstores': '',
            'spdk_target_addresses': layout_mod.HOST,
            'spdk_target_port': PORTS['nvmf-tcp'],
            'spdk_nqn_prefix': NQN_PREFIX,
            'spdk_state_dir': layout.lib('cinder', 'spdk'),
            'spdk_keyring_dir': layout.lib('cinder', 'spdk-keys'),
            'spdk_dd_mem_mib': layout_mod.SPDK_DD_MEM_MIB,
        },
    }
    sections.update(privsep_helpers(venv, 'cinder_sys_admin',
                                    'privsep_osbrick'))
    sections.update(common)
    return sections


def vhost_agent(layout, secret, vhost_binary, host_nqn, reactor_cpu,
                hugepage_mib, node=None):
    """agent.conf of the compute node's spdk-vhost-target.

    The nodes of a multi-node cloud all run their SPDK vhost on the same
    CPU (``share_reactor_cpus``: SPDK's CPU locks off; each polls its
    share of it), serve as their node's Nova host, and use the one
    ``socket_dir`` path, which each sees as its own directory.
    """
    node = node or layout_mod.ComputeNode(layout)
    default = {'transport_url': layout.transport_url(secret),
               'log_file': node.log('spdk-vhost-target')}
    group = {
        'spdk_vhost_binary': vhost_binary,
        'rpc_socket': node.agent_rpc_socket,
        'socket_dir': node.socket_dir,
        'socket_group': 'libvirt-qemu',
        'reactor_cpus': str(reactor_cpu),
        'hugepage_mib_per_node': hugepage_mib,
        'nova_conf': node.nova_conf,
        'host_nqn': host_nqn,
        'state_dir': node.agent_state_dir,
    }
    if node.name:
        default['host'] = node.name
        group['share_reactor_cpus'] = True
    return {'DEFAULT': default, 'spdk_vhost_target': group}
