"""Bring-up of each service, in the order ``up`` runs them.

Each ``start_*`` writes the service's configuration, prepares its
database, starts its processes through the process table and returns once
the service answers. The order matters: MariaDB and RabbitMQ first,
keystone before anything that authenticates, SPDK's storage target before
cinder-volume, libvirtd and the agent before nova-compute.
"""

import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

from spdk_common import binaries
from tools.aio_cloud import configs
from tools.aio_cloud import daemons
from tools.aio_cloud import fabric
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes
from tools.aio_cloud import resources

PORTS = layout_mod.PORTS

NVMF_MEM_MIB = layout_mod.NVMF_MEM_MIB
VHOST_MEM_MIB = layout_mod.VHOST_MEM_MIB
LVSTORE_FILE_SIZE = '8G'
# SPDK's storage target sleeps between requests (--interrupt-mode) on CPU
# 0; the compute node's vhost polls the last CPU.
NVMF_CPU = 0
HOST_QEMU_CONF = '/etc/libvirt/qemu.conf'


def http_answers(url):
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True  # 300 (version lists) and 401 are answers
    except OSError:
        return False
    return True


class Services:

    def __init__(self, layout, venv, secret):
        self.layout = layout
        self.venv = venv
        self.secret = secret
        self.table = processes.ProcessTable(layout.process_table)
        self.rabbitmq = daemons.RabbitMQ(
            self.table, layout.path('rabbit'), layout.path('log'),
            'aio@localhost', PORTS['rabbitmq'], PORTS['rabbitmq-dist'],
            PORTS['epmd'],
            extra_address=layout.host if layout.multi_node else None,
            user=layout_mod.RABBITMQ_USER,
            password=secret.get('rabbitmq', ''))
        counts = layout_mod.node_counts(layout)
        self.compute_nodes = layout_mod.compute_nodes(layout, counts[0])
        self.storage_nodes = layout_mod.storage_nodes(layout, counts[1])

    def libvirtd(self, node, prefix=()):
        """The node's libvirtd; a node of several listens for migrations
        on its address, with a host UUID and hugetlbfs mount of its own,
        and gives QEMU's incoming migrations that address too
        (``migration_address`` in its own qemu.conf: libvirt's default is
        every address).
        """
        if not node.name:
            return daemons.Libvirtd(self.table, node.libvirt_dir,
                                    node.log('libvirtd'))
        qemu_conf = node.path('qemu.conf')
        return daemons.Libvirtd(
            self.table, node.libvirt_dir, node.log('libvirtd'),
            host_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL,
                                     self.layout.root + '/' + node.name)),
            tcp_port=layout_mod.LIBVIRT_TCP_PORT,
            binds={qemu_conf: HOST_QEMU_CONF}, name=node.suffix('libvirtd'),
            listen_addr=node.address, prefix=prefix)

    def namespace(self, node):
        """The node's namespaces; the agent's socket_dir path is the
        node's own directory in them.
        """
        binds = ({node.own_socket_dir: node.socket_dir}
                 if isinstance(node, layout_mod.ComputeNode) else {})
        return daemons.NodeNamespace(
            self.table, node.suffix('namespaces'), node.path(), node.name,
            binds, fabric.netns_path(node.name))

    def prefix(self, node):
        """What runs a command in the node's namespaces."""
        return self.namespace(node).prefix() if node.namespaced else []

    # Helpers

    def bin(self, name):
        return os.path.join(self.venv, 'bin', name)

    def run(self, argv, log_name, **kwargs):
        """A set-up command; its output goes to the log of its service."""
        with open(self.layout.log(log_name), 'ab') as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, **kwargs)
        if result.returncode != 0:
            raise daemons.ServiceError(
                '%s failed (status %d); see %s'
                % (' '.join(argv[:3]), result.returncode,
                   self.layout.log(log_name)))

    def write(self, sections, *parts):
        path = self.layout.etc(*parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        configs.write_ini(path, sections)
        return path

    def copy_venv_etc(self, service, name):
        shutil.copy(os.path.join(self.venv, 'etc', service, name),
                    self.layout.etc(service, name))

    def start_uwsgi(self, name, module, env=None, pyargv=None,
                    chunked_input=False):
        ini = self.write(configs.uwsgi(self.layout, self.venv, name, module,
                                       env=env, pyargv=pyargv,
                                       chunked_input=chunked_input),
                         name, 'uwsgi.ini')
        log = self.layout.log(name + '-uwsgi')
        proc = self.table.start(name, [self.bin('uwsgi'), '--ini', ini],
                                log, port=PORTS[name], stop_timeout=10)
        daemons.wait_for(name, lambda: http_answers(self.layout.url(name)),
                         60, log, proc)

    def start_daemon(self, name, argv, env=None, stop_timeout=15):
        log = self.layout.log(name)
        return self.table.start(name, argv, log, env=env,
                                stop_timeout=stop_timeout)

    # Services

    def start_mariadb(self):
        cnf = self.layout.path('my.cnf')
        configs.write_ini(cnf, configs.mariadb(self.layout))
        datadir = self.layout.path('mysql')
        if not os.path.isdir(datadir):
            self.run(['mariadb-install-db', '--no-defaults',
                      '--datadir=' + datadir, '--user=root',
                      '--auth-root-authentication-method=socket'],
                     'mariadb')
        log = self.layout.log('mariadb')
        proc = self.table.start('mariadb', ['mariadbd',
                                            '--defaults-file=' + cnf],
                                log, port=PORTS['mariadb'], stop_timeout=30)
        sock = self.layout.run('mysqld.sock')
        daemons.wait_for('mariadb', lambda: subprocess.run(
            ['mariadb-admin', '--no-defaults', '-S', sock, 'ping'],
            capture_output=True).returncode == 0, 60, log, proc)
        clients = self.layout.database_clients
        statements = ["CREATE USER IF NOT EXISTS 'aio'@'%s' IDENTIFIED BY "
                      "'%s'" % (clients, self.secret['database']),
                      "GRANT ALL PRIVILEGES ON *.* TO 'aio'@'%s'" % clients]
        statements += ['CREATE DATABASE IF NOT EXISTS %s' % db
                       for db in layout_mod.DATABASES]
        subprocess.run(['mariadb', '--no-defaults', '-S', sock, '-u', 'root'],
                       input=';\n'.join(statements) + ';\n', text=True,
                       check=True, capture_output=True)

    def start_keystone(self):
        conf = self.write(configs.keystone(self.layout, self.secret),
                          'keystone', 'keystone.conf')
        manage = [self.bin('keystone-manage'), '--config-file', conf]
        self.run(manage + ['db_sync'], 'keystone')
        for setup in ('fernet_setup', 'credential_setup'):
            self.run(manage + [setup, '--keystone-user', 'root',
                               '--keystone-group', 'root'], 'keystone')
        url = self.layout.keystone_url
        self.run(manage + ['bootstrap', '--bootstrap-password',
                           self.secret['admin'],
                           '--bootstrap-admin-url', url,
                           '--bootstrap-internal-url', url,
                           '--bootstrap-public-url', url,
                           '--bootstrap-region-id', layout_mod.REGION],
                 'keystone')
        self.start_uwsgi('keystone', 'keystone.wsgi.api:application',
                         env='OS_KEYSTONE_CONFIG_DIR=' +
                         self.layout.etc('keystone'))

    def start_placement(self):
        conf = self.write(configs.placement(self.layout, self.secret),
                          'placement', 'placement.conf')
        self.run([self.bin('placement-manage'), '--config-file', conf,
                  'db', 'sync'], 'placement')
        self.start_uwsgi('placement', 'placement.wsgi.api:application',
                         env='OS_PLACEMENT_CONFIG_DIR=' +
                         self.layout.etc('placement'))

    def start_glance(self):
        os.makedirs(self.layout.etc('glance'), exist_ok=True)
        self.copy_venv_etc('glance', 'glance-api-paste.ini')
        conf = self.write(configs.glance(self.layout, self.secret),
                          'glance', 'glance-api.conf')
        self.run([self.bin('glance-manage'), '--config-file', conf,
                  'db_sync'], 'glance-api')
        self.start_uwsgi('glance-api', 'glance.wsgi.api:application',
                         env='OS_GLANCE_CONFIG_DIR=' +
                         self.layout.etc('glance'), chunked_input=True)

    def start_neutron(self):
        os.makedirs(self.layout.etc('neutron'), exist_ok=True)
        self.copy_venv_etc('neutron', 'api-paste.ini')
        conf = self.write(configs.neutron(self.layout, self.secret),
                          'neutron', 'neutron.conf')
        ml2 = self.write(configs.neutron_ml2(), 'neutron', 'plugins', 'ml2',
                         'ml2_conf.ini')
        self.run([self.bin('neutron-db-manage'), '--config-file', conf,
                  '--config-file', ml2, 'upgrade', 'heads'], 'neutron-api')
        self.start_uwsgi('neutron-api', 'neutron.wsgi.api:application',
                         env='OS_NEUTRON_CONFIG_DIR=' +
                         self.layout.etc('neutron'))
        # neutron 29 fails every port list ("Port has no attribute
        # port_forwardings") until some other query has configured its
        # database mappers: make one, as a first user would.
        conn = resources.connect(self.layout, self.secret)
        try:
            list(conn.network.networks())
            list(conn.network.ports())
        finally:
            conn.close()

    def nova_manage(self, *args):
        self.run([self.bin('nova-manage'), '--config-file',
                  self.layout.etc('nova', 'nova.conf')] + list(args),
                 'nova-manage')

    def start_nova_control(self):
        os.makedirs(self.layout.etc('nova'), exist_ok=True)
        self.copy_venv_etc('nova', 'api-paste.ini')
        conf = configs.nova(self.layout, self.secret)
        conf['DEFAULT']['log_file'] = self.layout.log('nova-api')
        path = self.write(conf, 'nova', 'nova.conf')
        self.nova_manage('api_db', 'sync')
        self.nova_manage('cell_v2', 'map_cell0', '--database_connection',
                         self.layout.database_url('nova_cell0', self.secret))
        self.nova_manage('cell_v2', 'create_cell', '--name', 'cell1')
        self.nova_manage('db', 'sync')
        self.start_uwsgi('nova-api', 'nova.wsgi.osapi_compute:application',
                         env='OS_NOVA_CONFIG_DIR=' + self.layout.etc('nova'))
        for name in ('nova-conductor', 'nova-scheduler'):
            self.start_daemon(name, [self.bin(name), '--config-file', path,
                                     '--log-file', self.layout.log(name)])

    def start_cinder_control(self):
        os.makedirs(self.layout.etc('cinder'), exist_ok=True)
        for name in ('api-paste.ini', 'resource_filters.json'):
            self.copy_venv_etc('cinder', name)
        conf = self.write(configs.cinder(self.layout, self.secret, self.venv),
                          'cinder', 'cinder.conf')
        self.run([self.bin('cinder-manage'), '--config-file', conf,
                  'db', 'sync'], 'cinder-manage')
        # cinder's WSGI app reads only sys.argv.
        self.start_uwsgi('cinder-api', 'cinder.wsgi.api:application',
                         pyargv='--config-file %s --log-file %s'
                         % (conf, self.layout.log('cinder-api')))
        self.start_daemon('cinder-scheduler', [
            self.bin('cinder-scheduler'), '--config-file', conf,
            '--log-file', self.layout.log('cinder-scheduler')])

    # SPDK: the storage node's nvmf_tgt and cinder-volume

    def spdk_config(self, *args):
        self.run([self.bin('spdk-openstack-config')] + list(args), 'spdk')

    def start_storage_target(self, node=None):
        node = node or self.storage_nodes[0]
        spdk_dir = node.spdk_dir
        # SPDK RPC has no authentication: root only.
        os.makedirs(spdk_dir, mode=0o700, exist_ok=True)
        aio_file = os.path.join(spdk_dir, 'lvstore.img')
        subprocess.run(['truncate', '-s', LVSTORE_FILE_SIZE, aio_file],
                       check=True)
        target_config = os.path.join(spdk_dir, 'nvmf.json')
        self.spdk_config('storage-target-config', '--output', target_config,
                         '--aio-file', aio_file)
        binary = binaries.find('nvmf_tgt')
        sock = node.rpc_socket
        proc = self.table.start(
            node.suffix('nvmf_tgt'), self.prefix(node) + [
                binary, '-m', '[%d]' % NVMF_CPU, '-s', str(NVMF_MEM_MIB),
                '-r', sock, '--json', target_config, '--interrupt-mode',
                # The test suites' SPDK apps claim CPU 0 too (and every
                # storage node's does): one that holds its lock would
                # make this one exit.
                '--no-pci', '--disable-cpumask-locks'],
            node.log('nvmf_tgt'), env=binaries.environment(binary),
            port=PORTS['nvmf-tcp'], stop_timeout=20)
        self.spdk_config('storage-target-ready', '--target-config',
                         target_config, '--rpc-socket', sock,
                         '--socket-group', 'root', '--socket-mode', '0600')
        if proc.poll() is not None:
            raise daemons.ServiceError('nvmf_tgt exited; see %s'
                                       % node.log('nvmf_tgt'))

    def start_cinder_volume(self, node=None):
        node = node or self.storage_nodes[0]
        for sub in ('spdk', 'spdk-keys', 'spdk-replicated', 'conversion'):
            os.makedirs(node.lib(sub), mode=0o700, exist_ok=True)
        if node.name:
            self.write(configs.cinder_volume(self.layout, self.secret,
                                             self.venv, node),
                       'cinder', os.path.basename(node.cinder_conf))
        self.start_daemon(node.suffix('cinder-volume'), self.prefix(node) + [
            self.bin('cinder-volume'), '--config-file', node.cinder_conf,
            '--log-file', node.log('cinder-volume')], stop_timeout=30)

    def start_storage_service(self, node):
        """spdk-storage-node: the node's SPDK for the replicated back end
        (over the message bus; SPDK's RPC socket stays the node's).
        """
        conf = self.write(configs.storage_node_service(self.layout,
                                                       self.secret, node),
                          'spdk', 'storage-node-%s.conf' % node.name)
        self.start_daemon(node.suffix('spdk-storage-node'),
                          self.prefix(node) + [
                              self.bin('spdk-storage-node'),
                              '--config-file', conf,
                              '--log-file', node.log('spdk-storage-node')])

    def start_storage_node(self, node):
        self.start_namespaces(node)
        self.start_storage_target(node)
        self.start_storage_service(node)

    def start_namespaces(self, node):
        """A node's network namespace on the bridge, and the namespaces
        its daemons run in.
        """
        fabric.add_node(node.name, node.address)
        namespace = self.namespace(node)
        for source, target in namespace.binds.items():
            os.makedirs(source, exist_ok=True)
            os.makedirs(target, exist_ok=True)
        namespace.start(node.log('namespaces'))

    # The compute node: libvirtd, the agent with SPDK vhost, nova-compute

    def start_libvirtd(self, node=None):
        node = node or self.compute_nodes[0]
        if node.name:
            with open(HOST_QEMU_CONF) as f:
                text = f.read()
            with open(node.path('qemu.conf'), 'w') as f:
                f.write(text + '\n# The node\'s own address for incoming '
                        'migrations.\nmigration_address = "%s"\n'
                        % node.address)
        self.libvirtd(node, self.prefix(node)).start()

    def start_vhost_agent(self, node=None):
        node = node or self.compute_nodes[0]
        binary = binaries.find('vhost')
        host_nqn = 'nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid5(
            uuid.NAMESPACE_URL, self.layout.root + (
                '/' + node.name if node.name else ''))
        reactor_cpu = (os.cpu_count() or 1) - 1
        agent_conf = node.agent_conf
        os.makedirs(os.path.dirname(agent_conf), exist_ok=True)
        configs.write_ini(agent_conf, configs.vhost_agent(
            self.layout, self.secret, binary, host_nqn, reactor_cpu,
            VHOST_MEM_MIB, node))
        sockets = node.own_socket_dir
        os.makedirs(sockets, exist_ok=True)
        shutil.chown(sockets, group='libvirt-qemu')
        os.chmod(sockets, 0o750)
        self.write_nova_compute_conf(node)
        env = binaries.environment(binary)
        prefix = self.prefix(node)
        name = node.suffix('spdk-vhost-target')
        log = node.log('spdk-vhost-target')
        self.start_daemon(name, prefix + [
            self.bin('spdk-vhost-target'), '--config-file', agent_conf,
            'run'], env=env, stop_timeout=30)
        # Ready once its SPDK vhost answers RPC. Not "check": with Nova
        # importable it fails (DuplicateOptError: host) since the agent
        # registers [DEFAULT] host itself.
        status = prefix + [self.bin('spdk-vhost-target'), '--config-file',
                           agent_conf, 'status']
        daemons.wait_for(name, lambda: subprocess.run(
            status, capture_output=True, env=env).returncode == 0, 60, log)
        # The agent runs SPDK vhost (under its privsep daemon) in a session
        # of its own and stops it itself; recorded too, so that nothing
        # outlives a killed agent.
        agent = self.table.get(name)

        def spdk_vhost():
            return [pid for pid in processes.descendants([agent.pid])
                    if processes.program(pid) == binary]

        daemons.wait_for('SPDK vhost', spdk_vhost, 30, log)
        for pid in spdk_vhost():
            self.table.record(node.suffix('spdk-vhost'), pid,
                              os.getpgid(pid), log=log, stop_timeout=10)

    def other_spdk_mib(self, node):
        """Hugepages of the SPDK processes beside this node's vhost on
        this machine, which its Nova must not give guests: every storage
        node's nvmf_tgt and the other compute nodes' vhost.
        """
        return (len(self.storage_nodes) * NVMF_MEM_MIB +
                (len(self.compute_nodes) - 1) * VHOST_MEM_MIB)

    def write_nova_compute_conf(self, node):
        """nova-compute.conf, with the CPU sets and reserved hugepages
        ``spdk-openstack-config nova-options`` computes, as devstack does.
        """
        conf = configs.nova_compute(self.layout, self.secret, self.venv,
                                    node)
        provider_dir = node.provider_dir
        os.makedirs(provider_dir, exist_ok=True)
        cmd = [self.bin('spdk-openstack-config'), '--config-file',
               node.agent_conf]
        options = subprocess.run(
            cmd + ['nova-options', '--provider-config-dir', provider_dir,
                   '--storage-target-cpus', str(NVMF_CPU),
                   '--storage-target-mib', str(self.other_spdk_mib(node))],
            capture_output=True, text=True, check=True).stdout
        for line in options.splitlines():
            section, option, *values = line.split()
            conf.setdefault(section, {})[option] = (
                values if len(values) > 1 else values[0])
        self.run(cmd + ['provider-config', os.path.join(
            provider_dir, 'spdk-openstack.yaml')], 'spdk')
        configs.write_ini(node.nova_conf, conf)

    def start_nova_compute(self, node=None):
        node = node or self.compute_nodes[0]
        os.makedirs(self.layout.lib('nova', 'instances'), exist_ok=True)
        os.makedirs(node.state_path, exist_ok=True)
        # Nova-compute waits on the conductor at shutdown: a short TERM
        # grace, then its group (with privsep daemons) is killed.
        self.start_daemon(node.suffix('nova-compute'), self.prefix(node) + [
            self.bin('nova-compute'), '--config-file', node.nova_conf],
            stop_timeout=15)

    def start_compute_node(self, node):
        """A node of the multi-node cloud, in the order ``up`` starts
        the one-host cloud's.
        """
        self.start_namespaces(node)
        self.start_libvirtd(node)
        self.start_vhost_agent(node)
        self.start_nova_compute(node)

    def discover_compute_host(self):
        """Map the compute nodes into cell1 once they have registered."""
        wanted = [node.name or socket.gethostname()
                  for node in self.compute_nodes]

        def mapped():
            self.nova_manage('cell_v2', 'discover_hosts')
            hosts = subprocess.run(
                [self.bin('nova-manage'), '--config-file',
                 self.layout.etc('nova', 'nova.conf'), 'cell_v2',
                 'list_hosts'], capture_output=True, text=True).stdout.split()
            return all(host in hosts for host in wanted)

        daemons.wait_for('nova-compute registered', mapped, 120,
                         self.compute_nodes[0].log('nova-compute'),
                         interval=3)
