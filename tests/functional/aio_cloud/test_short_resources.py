"""With too few free 2 MiB hugepages, ``tools/cloud up`` refuses in one
line, in seconds, before installing or starting anything: shown in a
private mount namespace where the hugepage pool's sysfs files are the
test's own (nothing of the host's pool is taken or changed).
"""

import os
import shutil
import subprocess
import time

import fixtures

from spdk_common import binaries
from tests import base
from tools.aio_cloud import capacity

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))


class TestUpRefusesShortHugepages(base.TestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or shutil.which('unshare') is None:
            self.skipTest('needs root and unshare for a private sysfs view')
        if binaries.missing_message():
            self.skipTest('needs SPDK (tools/cloud up checks it first)')
        if not os.path.isdir(capacity.POOL_DIR):
            self.skipTest('no 2 MiB hugepage pool on this kernel')
        if capacity.busy_ports():
            self.skipTest('the cloud\'s ports are in use')
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.state = os.path.join(self.dir, 'cloud')

    def _fake_pool(self, total, free):
        pool = os.path.join(self.dir, 'pool')
        os.makedirs(pool)
        for name, value in (('nr_hugepages', total),
                            ('free_hugepages', free),
                            ('resv_hugepages', 0),
                            ('surplus_hugepages', 0)):
            with open(os.path.join(pool, name), 'w') as f:
                f.write('%d\n' % value)
        return pool

    def test_up(self):
        # A pool as big as the cloud needs, nearly all of it held.
        need = sum(mib for _t, mib in capacity.up_needs())
        pool = self._fake_pool(capacity.pages(need), 10)
        start = time.monotonic()
        result = subprocess.run(
            ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
             'mount --bind %s %s && exec tools/cloud --state-dir %s up'
             % (pool, capacity.POOL_DIR, self.state)],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - start
        self.assertNotEqual(0, result.returncode)
        self.assertLess(took, 10)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(1, len(lines), result.stderr)
        self.assertIn('tools/cloud up: 2 MiB hugepages short for the cloud: '
                      'need %d MiB free' % need, lines[0])
        self.assertIn('20 MiB free', lines[0])
        self.assertEqual('', result.stdout)
        # Nothing was made.
        self.assertFalse(os.path.exists(self.state))

    def test_a_raised_pool_is_recorded_for_down(self):
        # Too small a pool: up raises it (here the test's file), keeps the
        # size it had, then refuses as the pages did not come.
        need = sum(mib for _t, mib in capacity.up_needs())
        pool = self._fake_pool(10, 10)
        result = subprocess.run(
            ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
             'mount --bind %s %s && exec tools/cloud --state-dir %s up'
             % (pool, capacity.POOL_DIR, self.state)],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(0, result.returncode)
        with open(os.path.join(pool, 'nr_hugepages')) as f:
            self.assertEqual(capacity.pages(need), int(f.read()))
        with open(os.path.join(self.state, 'hugepages-raised-from')) as f:
            self.assertEqual('10', f.read())
