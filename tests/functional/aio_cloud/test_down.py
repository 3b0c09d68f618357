"""``down`` stops what ``up`` started, by the process table, and leaves
nothing behind: shown with the cloud's first two services, MariaDB and
RabbitMQ from Debian, started exactly as ``up`` starts them."""

import os
import shutil
import subprocess
import sys
import time

import fixtures

from tests import base
from tools.aio_cloud import cloud
from tools.aio_cloud import daemons
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes
from tools.aio_cloud import services

RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'


class TestDownLeavesNothing(base.TestCase):

    def setUp(self):
        super().setUp()
        if not (shutil.which('mariadbd') and os.path.exists(RABBITMQ_SERVER)):
            self.skipTest('needs mariadb-server-core and rabbitmq-server '
                          '(tools/setup-env installs them)')
        busy = [name for name, port in layout_mod.PORTS.items()
                if daemons.port_open(port)]
        if busy:
            self.skipTest('the cloud\'s ports are in use (%s): is a cloud '
                          'up on this host?' % ', '.join(busy))
        self.useFixture(fixtures.Timeout(240, gentle=True))
        root = self.useFixture(fixtures.TempDir()).path
        self.layout = layout_mod.Layout(os.path.join(root, 'cloud'))

    def test_mariadb_and_rabbitmq(self):
        cloud.prepare_state(self.layout)
        secret = layout_mod.load_or_create_secrets(self.layout)
        svc = services.Services(self.layout, sys.prefix, secret)
        # Stopped even when the test fails half-way.
        self.addCleanup(cloud.down, self.layout, delete_resources=False)
        svc.start_mariadb()
        svc.rabbitmq.start()
        table = processes.ProcessTable(self.layout.process_table)
        entries = table.entries()
        self.assertEqual(['mariadb', 'epmd', 'rabbitmq'],
                         [e.name for e in entries])
        self.assertEqual(3, len(table.running()))
        self.assertTrue(daemons.port_open(layout_mod.PORTS['mariadb']))

        cloud.down(self.layout, delete_resources=False)

        for entry in entries:
            self.assertFalse(processes.group_alive(entry.pgid), entry.name)
        self.assertEqual([], cloud.leftovers(self.layout))
        # The pool's record is gone with the pool given back.
        self.assertEqual(['cache', 'log'],
                         sorted(os.listdir(self.layout.root)))


class TestDownStopsStrays(base.TestCase):
    """A service an operator started again by hand is in no table; down
    finds it by the state directory it uses and stops it, naming it.
    """

    def setUp(self):
        super().setUp()
        busy = [name for name, port in layout_mod.PORTS.items()
                if daemons.port_open(port)]
        if busy:
            self.skipTest('the cloud\'s ports are in use (%s): is a cloud '
                          'up on this host?' % ', '.join(busy))
        self.useFixture(fixtures.Timeout(120, gentle=True))
        root = self.useFixture(fixtures.TempDir()).path
        self.layout = layout_mod.Layout(os.path.join(root, 'cloud'))
        cloud.prepare_state(self.layout)

    def _by_hand(self, ignore_term=False):
        ready = self.layout.run('ready-%d' % len(os.listdir(
            self.layout.run())))
        script = ('import signal, sys, time\n'
                  '%s\n'
                  'open(sys.argv[-1], "w").close()\n'
                  'time.sleep(300)\n'
                  % ('signal.signal(signal.SIGTERM, signal.SIG_IGN)'
                     if ignore_term else ''))
        proc = subprocess.Popen(
            [sys.executable, '-c', script, '--config-file',
             self.layout.etc('nova', 'nova-compute.conf'), ready],
            start_new_session=True)
        self.addCleanup(proc.wait)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        while not os.path.exists(ready):
            time.sleep(0.05)
        return proc

    def test_status_lists_and_down_stops_them(self):
        polite = self._by_hand()
        stubborn = self._by_hand(ignore_term=True)
        self.useFixture(fixtures.MockPatchObject(cloud, 'STRAY_GRACE', 1.0))
        output = self.useFixture(fixtures.StringStream('stdout')).stream
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', output))

        # python, python3 (not "pytest", whatever runs the tests).
        names = [(proc, processes.command_name(proc.pid))
                 for proc in (polite, stubborn)]
        self.assertFalse(cloud.status(self.layout))
        cloud.down(self.layout, delete_resources=False)

        self.assertIsNotNone(polite.poll())
        self.assertEqual(-9, stubborn.wait(timeout=5))
        output.seek(0)
        text = output.read()
        for proc, name in names:
            self.assertIn('stray: %s (pid %d) is not in the process table '
                          'but its command line names %s'
                          % (name, proc.pid, self.layout.root), text)
            self.assertIn('stop stray %s (pid %d, its command line names '
                          '%s)' % (name, proc.pid, self.layout.root), text)
        self.assertEqual([], cloud.strays(self.layout))
