"""``up``'s last check and ``restart``'s refusals, on a process table of
real short-lived processes.
"""

import os

import fixtures

from tests import base
from tools.aio_cloud import cloud
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes


class TestCloudChecks(base.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.layout = layout_mod.Layout(root)
        os.makedirs(self.layout.run())
        self.table = processes.ProcessTable(self.layout.process_table)
        self.useFixture(fixtures.StringStream('stdout'))

    def _record(self, name, argv):
        proc = self.table.start(name, argv, self.layout.path(name + '.log'))
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def test_up_fails_when_a_process_died_after_its_start(self):
        self._record('alive', ['sleep', '300'])
        self._record('vhost', ['true']).wait()
        exc = self.assertRaises(cloud.CloudError, cloud._all_running,
                                self.layout)
        self.assertIn('stopped after starting: vhost', str(exc))

    def test_restart_refuses_an_unknown_name_listing_the_valid_ones(self):
        self._record('mariadb', ['sleep', '300'])
        self._record('nova-compute', ['sleep', '300'])
        exc = self.assertRaises(cloud.CloudError, cloud.restart,
                                self.layout, '/venv', 'nova')
        self.assertEqual("unknown service 'nova'; valid names: mariadb, "
                         "nova-compute", str(exc))

    def test_restart_without_a_cloud(self):
        exc = self.assertRaises(cloud.CloudError, cloud.restart,
                                self.layout, '/venv', 'nova-compute')
        self.assertIn('tools/cloud up first', str(exc))

    def test_restart_starts_the_recorded_command_again(self):
        first = self._record('worker', ['sleep', '300'])
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.layout.load_or_create_secrets', return_value={}))
        cloud.restart(self.layout, '/venv', 'worker')
        entry = self.table.get('worker')
        self.assertNotEqual(first.pid, entry.pid)
        self.assertIsNotNone(first.poll())
        self.assertTrue(processes.alive(entry.pid))
        self.assertEqual(['sleep', '300'], self.table.spec('worker')['argv'])
        self.assertEqual(1, len(self.table.entries()))
        self.assertTrue(self.table.stop(entry._replace(stop_timeout=1)))
