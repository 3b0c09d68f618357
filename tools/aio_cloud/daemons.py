"""The private RabbitMQ and libvirtd that the all-in-one cloud and the
test fixtures (``tests/fixtures/rabbitmq.py``, ``libvirt.py``) start.

Each runs from a directory of its own, listens on loopback or on sockets
only root reaches, and is started through a :class:`processes.ProcessTable`
so that it is stopped by PID: other engineers' tests and clouds run the
same programs on this host, so nothing is ever found or stopped by name.
"""

import os
import shutil
import subprocess
import time

from tools.aio_cloud import capacity
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes

RABBITMQ_BIN = '/usr/lib/rabbitmq/bin'
LIBVIRT_PROGRAMS = ('libvirtd', 'virtlogd', 'virsh', 'qemu-system-x86_64',
                    'unshare')
# What the log of a service that did not come up ends with, in the error.
LOG_TAIL = 3000


class ServiceError(Exception):
    """A service did not come up; the message names it and its log."""


def _tail(log):
    try:
        with open(log, 'rb') as f:
            f.seek(max(os.fstat(f.fileno()).st_size - LOG_TAIL, 0))
            return f.read().decode(errors='replace')
    except OSError:
        return ''


def port_open(port, address=layout_mod.HOST):
    return bool(capacity.busy_ports({'': port}, address))


def wait_for(what, check, timeout, log=None, proc=None, interval=0.3):
    """Return once ``check()`` is true; raise ServiceError with the end of
    ``log`` (a test's log goes with its temporary directory) when ``proc``
    exits or ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            problem = 'exited with status %s' % proc.returncode
        elif time.monotonic() > deadline:
            problem = 'not ready after %ds' % timeout
        else:
            time.sleep(interval)
            continue
        raise ServiceError('%s %s; see %s, which ends:\n%s'
                           % (what, problem, log, _tail(log)) if log
                           else '%s %s' % (what, problem))


class _Daemon:
    """Started into ``table`` under the names in ``NAMES``."""

    NAMES = ()

    def __init__(self, table):
        self.table = table
        self._children = []

    def _start(self, name, argv, log, **kwargs):
        proc = self.table.start(name, argv, log, **kwargs)
        self._children.append(proc)
        return proc

    def stop(self):
        """Stop this daemon's process groups by PID, newest first (the
        fixtures' clean-up; ``tools/cloud down`` stops the cloud's with the
        rest of its table).
        """
        stuck = [e.name for e in processes.stop_order(self.table.entries())
                 if e.name in self.NAMES and not self.table.stop(e)]
        for proc in self._children:
            proc.poll()  # no zombie left in a long test run
        if stuck:
            raise ServiceError('%s would not stop' % ', '.join(stuck))


def rabbitmq_available():
    return (os.access(os.path.join(RABBITMQ_BIN, 'rabbitmq-server'), os.X_OK)
            and shutil.which('epmd') is not None)


class RabbitMQ(_Daemon):
    """A RabbitMQ node with its own epmd: distribution and epmd ports on
    loopback, the AMQP port on loopback and on ``extra_address`` (a
    multi-node cloud's bridge, where a user of its own with a password is
    needed: RabbitMQ's ``guest`` is for loopback only), configuration and
    data in ``directory``, logs in ``log_dir``.
    """

    NAMES = ('epmd', 'rabbitmq')
    STARTUP_TIMEOUT = 90

    def __init__(self, table, directory, log_dir, node, port, dist_port,
                 epmd_port, extra_address=None, user='guest',
                 password='guest'):
        super().__init__(table)
        self.directory = directory
        self.log_dir = log_dir
        self.node = node
        self.port = port
        self.dist_port = dist_port
        self.epmd_port = epmd_port
        self.addresses = [layout_mod.HOST] + (
            [extra_address] if extra_address else [])
        self.user = user
        self.password = password

    @property
    def url(self):
        """The oslo.messaging transport URL (on loopback)."""
        return layout_mod.rabbit_url(self.user, self.password,
                                     layout_mod.HOST, self.port)

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _log(self, name):
        return os.path.join(self.log_dir, name + '.log')

    def env(self):
        return dict(
            os.environ, HOME=self.directory,
            ERL_EPMD_ADDRESS=layout_mod.HOST,
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=self._path('mnesia'),
            RABBITMQ_LOG_BASE=os.path.join(self.log_dir, 'rabbitmq'),
            RABBITMQ_CONFIG_FILE=self._path('rabbitmq'),
            RABBITMQ_ADVANCED_CONFIG_FILE=self._path('advanced.config'),
            RABBITMQ_ENABLED_PLUGINS_FILE=self._path('enabled_plugins'),
            RABBITMQ_PID_FILE=self._path('rabbitmq.pid'),
            # Every Erlang program (rabbitmqctl too) that finds no epmd on
            # its port starts a daemon one otherwise, which nothing stops:
            # the one epmd is start()'s.
            ERL_FLAGS='-start_epmd false')

    def ctl(self, *args, timeout=30):
        return subprocess.run(
            [os.path.join(RABBITMQ_BIN, 'rabbitmqctl'), '-n', self.node]
            + list(args), env=self.env(), capture_output=True,
            timeout=timeout)

    def ready(self):
        # await_startup fails at once until the node is known to epmd:
        # polled.
        return self.ctl('await_startup', '--timeout', '5').returncode == 0

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        listeners = ''.join(
            'listeners.tcp.%d = %s:%d\n' % (i, address, self.port)
            for i, address in enumerate(self.addresses, 1))
        # The user is made when the node first starts (its data is new).
        files = {'rabbitmq.conf': 'loopback_users.guest = true\n'
                                  'default_user = %s\ndefault_pass = %s\n%s'
                                  % (self.user, self.password, listeners),
                 'enabled_plugins': '[].\n',
                 # The distribution port listens on all addresses otherwise.
                 'advanced.config':
                     '[{kernel,[{inet_dist_use_interface,{127,0,0,1}}]}].\n'}
        for name, text in files.items():
            fd = os.open(self._path(name),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w') as f:
                f.write(text)
        env = self.env()
        epmd = self._start('epmd', ['epmd', '-address', layout_mod.HOST,
                                    '-port', str(self.epmd_port)],
                           self._log('epmd'), env=env, port=self.epmd_port,
                           stop_timeout=5)
        wait_for('epmd', lambda: port_open(self.epmd_port), 10,
                 self._log('epmd'), epmd, interval=0.1)
        log = self._log('rabbitmq-server')
        proc = self._start(
            'rabbitmq', [os.path.join(RABBITMQ_BIN, 'rabbitmq-server')], log,
            env=env, port=self.port, stop_timeout=30)
        wait_for('rabbitmq', self.ready, self.STARTUP_TIMEOUT, log, proc,
                 interval=1)

    def shutdown(self):
        """``rabbitmqctl stop``: TERM to its process group loses queued
        state. The process groups are stopped by PID after it.
        """
        try:
            self.ctl('stop', timeout=60)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        try:
            self.shutdown()
        finally:
            super().stop()


def libvirt_available():
    return all(shutil.which(p) for p in LIBVIRT_PROGRAMS)


def libvirt_uri(directory):
    """The URI of the libvirtd :class:`Libvirtd` runs from ``directory``."""
    return 'qemu+unix:///system?socket=%s' % os.path.join(
        directory, 'sock', 'libvirt-sock')


class Libvirtd(_Daemon):
    """libvirtd and its virtlogd (one process group) in a mount namespace
    that gives them private /etc/libvirt/qemu, /run/libvirt,
    /var/lib/libvirt and /var/log/libvirt under ``directory``: no
    definition, pid file or socket of the host's or of another private
    libvirtd is shared, and the mounts vanish with the last process. Its
    sockets are in a 0700 directory, mode 0700.

    /var/cache/libvirt stays the host's: its QEMU capabilities (keyed by
    the binaries) save each start the 8 s of probing QEMU again.
    """

    STARTUP_TIMEOUT = 60
    PRIVATE = {'etc-qemu': '/etc/libvirt/qemu', 'run': '/run/libvirt',
               'lib': '/var/lib/libvirt', 'log': '/var/log/libvirt'}

    def __init__(self, table, directory, log, host_uuid=None,
                 tcp_port=None, binds=None, name='libvirtd',
                 listen_addr=layout_mod.HOST, prefix=()):
        """``host_uuid`` and ``tcp_port`` make it one host of several on
        this machine: libvirt refuses to migrate to a libvirtd with its
        own host UUID, and a migration's peer connects to libvirtd over
        TCP (on loopback here, without authentication). ``binds`` maps
        directories to where this host sees them (its vhost-user socket
        directory at the path every host uses); such a host also gets a
        hugetlbfs mount of its own, as a host has.

        ``name`` is its name in ``table``; ``prefix`` the command that
        runs it in a node's namespaces (``NodeNamespace.prefix``), and
        ``listen_addr`` that node's address for the TCP listener.
        """
        super().__init__(table)
        self.NAMES = (name,)
        self.name = name
        self.listen_addr = listen_addr
        self.prefix = list(prefix)
        self.directory = directory
        self.log = log
        self.host_uuid = host_uuid
        self.tcp_port = tcp_port
        self.binds = dict(binds or {})

    @property
    def uri(self):
        return libvirt_uri(self.directory)

    def _path(self, *parts):
        return os.path.join(self.directory, *parts)

    def virsh(self, *args, check=True, timeout=120):
        result = subprocess.run(['virsh', '-c', self.uri] + list(args),
                                capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise ServiceError('virsh %s: %s' % (' '.join(args),
                                                 result.stderr.strip()))
        return result

    def start(self):
        for sub in self.PRIVATE:
            os.makedirs(self._path(sub), exist_ok=True)
        os.makedirs(self._path('sock'), mode=0o700, exist_ok=True)
        conf = self._path('libvirtd.conf')
        with open(conf, 'w') as f:
            f.write('unix_sock_dir = "%s"\nunix_sock_rw_perms = "0700"\n'
                    'unix_sock_ro_perms = "0700"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    % self._path('sock'))
            if self.host_uuid:
                f.write('host_uuid = "%s"\n' % self.host_uuid)
            if self.tcp_port:
                f.write('listen_tls = 0\nlisten_tcp = 1\n'
                        'listen_addr = "%s"\n'
                        'tcp_port = "%d"\nauth_tcp = "none"\n'
                        % (self.listen_addr, self.tcp_port))
        binds = dict((self._path(sub), target)
                     for sub, target in self.PRIVATE.items())
        binds.update(self.binds)
        # A mount point the host lacks (/run/libvirt before the host's
        # libvirtd ever ran) is made: an empty directory, as the package's
        # own libvirtd would make it.
        mounts = ''.join('[ -e %s ] || mkdir -p %s\nmount --bind %s %s\n'
                         % (target, target, source, target)
                         for source, target in binds.items())
        if self.binds:
            mounts += ('mkdir -p /dev/hugepages\n'
                       'mount -t hugetlbfs hugetlbfs /dev/hugepages\n')
        script = self._path('ns-start.sh')
        # virtlogd in the background, not --daemon: it stays in libvirtd's
        # process group and is stopped with it, even when libvirtd never
        # answers.
        with open(script, 'w') as f:
            f.write('#!/bin/sh\n# Runs in a private mount namespace.\n'
                    'set -e\n%s'
                    'mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu\n'
                    'chown libvirt-qemu:kvm /var/lib/libvirt/qemu\n'
                    'virtlogd --pid-file %s &\n'
                    'exec libvirtd --config %s --pid-file %s%s\n'
                    % (mounts, self._path('virtlogd.pid'), conf,
                       self._path('libvirtd.pid'),
                       ' --listen' if self.tcp_port else ''))
        proc = self._start(self.name, self.prefix + [
            'unshare', '-m', '--propagation', 'private', 'sh', script],
            self.log, stop_timeout=15)
        wait_for('libvirtd', lambda: self.virsh(
            'version', check=False).returncode == 0, self.STARTUP_TIMEOUT,
            self.log, proc, interval=0.2)

    def destroy_domains(self):
        """Destroy and undefine every domain: all are this libvirtd's own."""
        for name in self.virsh('list', '--all', '--name',
                               check=False).stdout.split():
            self.virsh('destroy', name, check=False)
            self.virsh('undefine', name, check=False)

    def stop(self):
        try:
            self.destroy_domains()
        finally:
            super().stop()


class NodeNamespace:
    """The namespaces of one node of the multi-node cloud: its network
    namespace (``netns``, a path under /run/netns that
    :mod:`tools.aio_cloud.fabric` made) and mount and UTS namespaces, held
    by a keeper process (``sleep``) recorded in the table as ``name``; the
    node's daemons enter them with :meth:`prefix`.

    In them ``binds`` ({directory: where the node sees it}) are mounted,
    and the hostname is the node's: libvirt names the hypervisor (and so
    Nova's compute node and its placement provider) after it, which must
    differ from node to node.
    """

    def __init__(self, table, name, directory, hostname, binds, netns):
        self.table = table
        self.name = name
        self.directory = directory
        self.hostname = hostname
        self.binds = dict(binds)
        self.netns = netns

    def start(self, log):
        os.makedirs(self.directory, exist_ok=True)
        ready = os.path.join(self.directory, 'namespace-ready')
        if os.path.exists(ready):
            os.unlink(ready)
        script = os.path.join(self.directory, 'namespace.sh')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\n# Runs in the node\'s own namespaces.\n'
                    'set -e\n%shostname %s\ntouch %s\nexec sleep infinity\n'
                    % (''.join('mount --bind %s %s\n' % item
                               for item in self.binds.items()),
                       self.hostname, ready))
        proc = self.table.start(self.name, [
            'nsenter', '--net=' + self.netns, 'unshare', '-m', '-u',
            '--propagation', 'private', 'sh', script], log, stop_timeout=5)
        wait_for(self.name, lambda: os.path.exists(ready), 20, log, proc,
                 interval=0.1)

    def prefix(self):
        """What runs a command in the node's namespaces (nsenter execs
        it: the process table records the command's own PID).
        """
        entry = self.table.get(self.name)
        if entry is None:
            raise ServiceError('%s is not running' % self.name)
        return ['nsenter', '-t', str(entry.pid), '-n', '-m', '-u', '--']
