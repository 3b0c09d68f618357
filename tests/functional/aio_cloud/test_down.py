"""``down`` stops what ``up`` started, by the process table, and leaves
nothing behind: shown with the cloud's first two services, MariaDB and
RabbitMQ from Debian, started exactly as ``up`` starts them."""

import os
import shutil
import sys

import fixtures

from aio_cloud import cloud
from aio_cloud import layout as layout_mod
from aio_cloud import processes
from aio_cloud import services
from tests import base

RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'


class TestDownLeavesNothing(base.TestCase):

    def setUp(self):
        super().setUp()
        if not (shutil.which('mariadbd') and os.path.exists(RABBITMQ_SERVER)):
            self.skipTest('needs mariadb-server-core and rabbitmq-server '
                          '(tools/setup-env installs them)')
        busy = [name for name, port in layout_mod.PORTS.items()
                if services.port_open(port)]
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
        svc.start_rabbitmq()
        table = processes.ProcessTable(self.layout.process_table)
        entries = table.entries()
        self.assertEqual(['mariadb', 'epmd', 'rabbitmq'],
                         [e.name for e in entries])
        self.assertEqual(3, len(table.running()))
        self.assertTrue(services.port_open(layout_mod.PORTS['mariadb']))

        cloud.down(self.layout, delete_resources=False)

        for entry in entries:
            self.assertFalse(processes.group_alive(entry.pgid), entry.name)
        self.assertEqual([], cloud.leftovers(self.layout))
        self.assertEqual(sorted(self.layout.KEPT),
                         sorted(os.listdir(self.layout.root)))
