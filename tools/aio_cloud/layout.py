"""Where the cloud keeps everything, and on which loopback ports it listens.

All state is under one directory (``--state-dir``, default
:data:`DEFAULT_STATE_DIR`): configuration, databases, logs, sockets, the
SPDK lvstore file, instances. QEMU runs as ``libvirt-qemu`` and must reach
the instances and vhost-user sockets in it, so the default is outside
``/root`` (0700 on Debian).
"""

import json
import os
import secrets

from tools.aio_cloud import fabric

DEFAULT_STATE_DIR = '/var/lib/spdk-openstack-cloud'
# The one-host cloud's address; a multi-node cloud's control plane is on
# its bridge (fabric.CONTROL_ADDRESS), where the nodes' namespaces reach it.
HOST = '127.0.0.1'

# All >= 13000: the test suites use 4420 and 4520-4540.
PORTS = {
    'mariadb': 13306,
    'rabbitmq': 13672,
    'rabbitmq-dist': 13673,
    'epmd': 13369,
    'keystone': 13500,
    'placement': 13778,
    'nova-api': 13774,
    'neutron-api': 13696,
    'glance-api': 13292,
    'cinder-api': 13776,
    'nvmf-tcp': 13420,
}

# The cloud's RabbitMQ user (its password is in the secrets).
RABBITMQ_USER = 'aio'
SERVICE_USERS = ('placement', 'nova', 'neutron', 'glance', 'cinder')
DATABASES = ('keystone', 'placement', 'nova_api', 'nova', 'nova_cell0',
             'neutron', 'glance', 'cinder')
REGION = 'RegionOne'

# Hugepage memory (-s) of the two SPDK processes; nova-compute reserves it.
# nvmf_tgt's 512 MiB: its buffer pools and ~90 attachments from SPDK
# initiators (spdk_deploy.storage.target_memory_mib); exports nobody is
# connected to cost next to nothing, and its startup config allows 8191.
NVMF_MEM_MIB = 512
VHOST_MEM_MIB = 256
# The spdk_dd the Cinder driver runs for an image -> volume copy, while
# guests may run (its buffer pools are sized to it: it maps this much).
SPDK_DD_MEM_MIB = 128
# The hugepage flavor's RAM, and how many such guests the demo and the
# tempest plugin's tests run at once (a volume moved between two servers).
FLAVOR_RAM_MB = 256
MAX_GUESTS = 2


class Layout:

    def __init__(self, state_dir):
        self.root = os.path.abspath(state_dir)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def etc(self, *parts):
        return self.path('etc', *parts)

    def run(self, *parts):
        return self.path('run', *parts)

    def log(self, name):
        return self.path('log', name + '.log')

    def lib(self, *parts):
        return self.path('lib', *parts)

    def lock(self, service):
        return self.path('lock', service)

    @property
    def process_table(self):
        return self.run('processes.tsv')

    @property
    def secrets_file(self):
        return self.etc('secrets.json')

    @property
    def adminrc(self):
        return self.path('adminrc')

    # Kept by ``down``: logs for post-mortems, the built guest image; and
    # kept by ``up`` (``down`` uses and removes them): the hugepage pool's
    # size before ``up`` raised it, and that ``up`` mounted hugetlbfs.
    POOL_RECORD = 'hugepages-raised-from'
    HUGETLBFS_RECORD = 'hugetlbfs-mounted-by-up'
    KEPT = ('log', 'cache', POOL_RECORD, HUGETLBFS_RECORD)

    @property
    def pool_record(self):
        return self.path(self.POOL_RECORD)

    @property
    def hugetlbfs_record(self):
        return self.path(self.HUGETLBFS_RECORD)

    @property
    def multi_node(self):
        return node_counts(self) != (1, 1)

    @property
    def host(self):
        """Where the control plane listens."""
        return fabric.CONTROL_ADDRESS if self.multi_node else HOST

    @property
    def database_clients(self):
        """The MariaDB host pattern of the cloud's services."""
        if self.multi_node:
            return str(fabric.SUBNET.network_address).rsplit('.', 1)[0] + '.%'
        return HOST

    def url(self, service, path=''):
        return 'http://%s:%d%s' % (self.host, PORTS[service], path)

    @property
    def keystone_url(self):
        return self.url('keystone', '/v3')

    def transport_url(self, secret):
        return rabbit_url(RABBITMQ_USER, secret['rabbitmq'], self.host,
                          PORTS['rabbitmq'])

    def database_url(self, name, secret):
        return ('mysql+pymysql://aio:%s@%s:%d/%s?charset=utf8'
                % (secret['database'], self.host, PORTS['mariadb'], name))


def rabbit_url(user, password, host, port):
    """An oslo.messaging transport URL."""
    return 'rabbit://%s:%s@%s:%d/' % (user, password, host, port)


def load_or_create_secrets(layout):
    """Passwords of the database user, admin and service users, generated
    at the first ``up`` and kept 0600.
    """
    path = layout.secrets_file
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    values = {name: secrets.token_hex(12)
              for name in ('database', 'rabbitmq', 'admin') + SERVICE_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(values, f)
    return values


# Several compute and storage nodes on this one machine (``tools/cloud up
# --compute-nodes N --storage-nodes M``), each in network, mount and UTS
# namespaces of its own with an address on a private bridge
# (:mod:`tools.aio_cloud.fabric`).
LIBVIRT_TCP_PORT = 16509
NODES_FILE = 'nodes.json'
MAX_NODES = 8


class ComputeNode:
    """Where one compute node keeps its libvirtd, agent and nova-compute.

    ``index`` 0 is the one-host cloud's node, in the places it always had,
    on the host's own hostname, without a namespace of its own; nodes 1..N
    of a multi-node cloud each run in network, mount and UTS namespaces of
    their own (:class:`tools.aio_cloud.daemons.NodeNamespace`) where the
    agent's ``socket_dir`` (the same path on every node, as live migration
    needs) is a bind of the node's own directory.
    """

    def __init__(self, layout, index=0):
        self.layout = layout
        self.index = index
        self.namespaced = index > 0
        self.name = 'compute%d' % index if index else None
        self.address = fabric.compute_address(index) if index else HOST

    def suffix(self, service):
        """A process's name in the table: ``nova-compute@compute2``."""
        return '%s@%s' % (service, self.name) if self.name else service

    def path(self, *parts):
        """This node's own state: ``nodes/<name>/...`` or, for the
        one-host cloud, the state directory itself.
        """
        if self.name:
            return self.layout.path('nodes', self.name, *parts)
        return self.layout.path(*parts)

    def etc(self, *parts):
        return self.layout.etc(*((self.name,) if self.name else ()) + parts)

    @property
    def socket_dir(self):
        """The agent's ``socket_dir``: one path for every node."""
        return self.layout.path('vhost-sockets')

    @property
    def own_socket_dir(self):
        """What this node sees at :attr:`socket_dir`."""
        return self.path('vhost-sockets')

    @property
    def libvirt_dir(self):
        return self.path('libvirt')

    @property
    def agent_conf(self):
        return (self.etc('agent.conf') if self.name
                else self.layout.etc('spdk-vhost-target', 'agent.conf'))

    @property
    def nova_conf(self):
        return (self.etc('nova-compute.conf') if self.name
                else self.layout.etc('nova', 'nova-compute.conf'))

    @property
    def provider_dir(self):
        return (self.etc('provider_config') if self.name
                else self.layout.etc('nova', 'provider_config'))

    @property
    def state_path(self):
        return self.path('lib', 'nova')

    @property
    def agent_state_dir(self):
        return self.path('lib', 'spdk-vhost-target')

    @property
    def agent_rpc_socket(self):
        return self.path('run', 'spdk-vhost', 'spdk.sock')

    def log(self, service):
        return self.layout.log(self.suffix(service))


class StorageNode:
    """One SPDK ``nvmf_tgt`` with its ``cinder-volume``; ``index`` 0 is
    the one-host cloud's, with its files where they always were; nodes
    1..M of a multi-node cloud run in namespaces of their own, as compute
    nodes do.
    """

    def __init__(self, layout, index=0):
        self.layout = layout
        self.index = index
        self.namespaced = index > 0
        self.name = 'storage%d' % index if index else None
        self.address = fabric.storage_address(index) if index else HOST

    def path(self, *parts):
        """This node's own directory (a multi-node cloud's nodes only)."""
        return self.layout.path('nodes', self.name, *parts)

    def suffix(self, service):
        return '%s@%s' % (service, self.name) if self.name else service

    @property
    def spdk_dir(self):
        if self.name:
            return self.layout.path('nodes', self.name, 'spdk')
        return self.layout.path('spdk')

    @property
    def rpc_socket(self):
        return os.path.join(self.spdk_dir, 'nvmf.sock')

    @property
    def cinder_conf(self):
        return self.layout.etc('cinder', '%s.conf' % (self.name or 'cinder'))

    def lib(self, *parts):
        if self.name:
            return self.layout.lib('cinder', self.name, *parts)
        return self.layout.lib('cinder', *parts)

    def log(self, service):
        return self.layout.log(self.suffix(service))


def save_nodes(layout, compute_nodes, storage_nodes):
    with open(layout.run(NODES_FILE), 'w') as f:
        json.dump({'compute': compute_nodes, 'storage': storage_nodes}, f)


def node_counts(layout):
    """(compute nodes, storage nodes) of the cloud ``up`` made: (1, 1)
    for the one-host cloud.
    """
    try:
        with open(layout.run(NODES_FILE)) as f:
            counts = json.load(f)
    except FileNotFoundError:
        return 1, 1
    return counts['compute'], counts['storage']


def compute_nodes(layout, count=None):
    count = node_counts(layout)[0] if count is None else count
    if count == 1:
        return [ComputeNode(layout)]
    return [ComputeNode(layout, k) for k in range(1, count + 1)]


def storage_nodes(layout, count=None):
    count = node_counts(layout)[1] if count is None else count
    if count == 1:
        return [StorageNode(layout)]
    return [StorageNode(layout, k) for k in range(1, count + 1)]
