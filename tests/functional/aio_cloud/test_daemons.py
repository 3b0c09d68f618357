"""The private RabbitMQ and libvirtd that the cloud and the test fixtures
share: loopback ports and root-only sockets, and nothing left once
stopped, also after a start that failed."""

import os
import re
import stat
import subprocess

import fixtures

from tests import base
from tests.fixtures import rabbitmq
from tools.aio_cloud import daemons
from tools.aio_cloud import processes


def _listeners(pids):
    """The local addresses on which ``pids`` listen (TCP)."""
    lines = subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return [line.split()[3] for line in lines
            if set(map(int, re.findall(r'pid=(\d+)', line))) & pids]


class DaemonTestBase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(180, gentle=True))
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.table = processes.ProcessTable(
            os.path.join(self.dir, 'processes.tsv'))

    def assertAllStopped(self):
        self.assertNotEqual([], self.table.entries())
        for entry in self.table.entries():
            self.assertFalse(processes.group_alive(entry.pgid), entry.name)
            self.assertFalse(processes.alive(entry.pid), entry.name)


class TestRabbitMQ(DaemonTestBase):

    def setUp(self):
        super().setUp()
        if not daemons.rabbitmq_available():
            self.skipTest(rabbitmq.SKIP_MESSAGE)
        self.broker = daemons.RabbitMQ(
            self.table, self.dir, self.dir,
            'daemontest%d@localhost' % os.getpid(),
            *(rabbitmq.free_port() for _ in range(3)))
        self.addCleanup(self.broker.stop)

    def test_on_loopback_only_and_stopped_by_pid(self):
        self.broker.start()
        listening = _listeners(self.table.known_pids())
        # The node, its distribution port and epmd.
        self.assertGreaterEqual(len(listening), 3, listening)
        for address in listening:
            self.assertTrue(address.startswith(('127.0.0.1:', '[::1]:')),
                            listening)

        self.broker.stop()

        self.assertEqual(['epmd', 'rabbitmq'],
                         [e.name for e in self.table.entries()])
        self.assertAllStopped()
        # rabbitmqctl with no epmd left does not start one of its own.
        self.broker.shutdown()
        self.assertFalse(daemons.port_open(self.broker.epmd_port))

    def test_stopped_after_a_start_that_failed(self):
        self.useFixture(fixtures.MockPatchObject(
            daemons.RabbitMQ, 'STARTUP_TIMEOUT', 0))
        self.assertRaises(daemons.ServiceError, self.broker.start)
        self.broker.stop()
        self.assertAllStopped()


class TestLibvirtd(DaemonTestBase):

    def setUp(self):
        super().setUp()
        if not daemons.libvirt_available() or os.geteuid() != 0:
            self.skipTest('needs root, libvirt and QEMU (tools/setup-env)')
        self.libvirtd = daemons.Libvirtd(
            self.table, os.path.join(self.dir, 'libvirt'),
            os.path.join(self.dir, 'libvirtd.log'))
        self.addCleanup(self.libvirtd.stop)

    def test_private_root_only_and_stopped_by_pid(self):
        self.libvirtd.start()
        self.assertEqual([], _listeners(self.table.known_pids()))
        sock_dir = os.path.join(self.libvirtd.directory, 'sock')
        self.assertEqual(0o700, stat.S_IMODE(os.stat(sock_dir).st_mode))
        sockets = os.listdir(sock_dir)
        self.assertIn('libvirt-sock', sockets)
        for name in sockets:
            mode = stat.S_IMODE(os.stat(os.path.join(sock_dir, name)).st_mode)
            self.assertEqual(0o700, mode, name)
        # virtlogd runs in libvirtd's process group: stopped with it.
        with open(os.path.join(self.libvirtd.directory,
                               'virtlogd.pid')) as f:
            virtlogd = int(f.read())
        entry = self.table.get('libvirtd')
        self.assertEqual(entry.pgid, os.getpgid(virtlogd))
        # Its /run/libvirt is its own: virtlogd's socket is not the host's.
        self.assertIn('virtlogd-sock', os.listdir(
            os.path.join(self.libvirtd.directory, 'run')))

        self.libvirtd.stop()

        self.assertAllStopped()
        self.assertFalse(processes.alive(virtlogd))

    def test_stopped_after_a_start_that_failed(self):
        self.useFixture(fixtures.MockPatchObject(
            daemons.Libvirtd, 'STARTUP_TIMEOUT', 0))
        self.assertRaises(daemons.ServiceError, self.libvirtd.start)
        self.libvirtd.stop()
        self.assertAllStopped()
