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

DEFAULT_STATE_DIR = '/var/lib/spdk-openstack-cloud'
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

    # Kept by ``down``: logs for post-mortems, the built guest image.
    KEPT = ('log', 'cache')

    def url(self, service, path=''):
        return 'http://%s:%d%s' % (HOST, PORTS[service], path)

    @property
    def keystone_url(self):
        return self.url('keystone', '/v3')

    @property
    def transport_url(self):
        return 'rabbit://guest:guest@%s:%d/' % (HOST, PORTS['rabbitmq'])

    def database_url(self, name, secret):
        return ('mysql+pymysql://aio:%s@%s:%d/%s?charset=utf8'
                % (secret['database'], HOST, PORTS['mariadb'], name))


def load_or_create_secrets(layout):
    """Passwords of the database user, admin and service users, generated
    at the first ``up`` and kept 0600.
    """
    path = layout.secrets_file
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    values = {name: secrets.token_hex(12)
              for name in ('database', 'admin') + SERVICE_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(values, f)
    return values
