"""Without SPDK, ``tools/cloud up`` (and the main job) stop at once with
one line saying how to provide it, before installing anything."""

import os
import shutil
import subprocess
import time

from spdk_common import binaries
from tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))


class TestWithoutSPDK(base.TestCase):

    def _run_hiding_spdk(self, command):
        """Run ``command`` in a mount namespace where the conventional SPDK
        directories are empty, so this works on hosts that have SPDK.
        """
        if os.geteuid() != 0 or shutil.which('unshare') is None:
            self.skipTest('needs root and unshare to hide SPDK')
        hide = ' '.join('mount -t tmpfs none %s;' % d
                        for d in binaries.CONVENTIONAL_DIRS
                        if os.path.isdir(d))
        env = {k: v for k, v in os.environ.items() if k != 'SPDK_BIN_DIR'}
        env['PATH'] = '/usr/sbin:/usr/bin:/sbin:/bin'
        start = time.monotonic()
        result = subprocess.run(
            ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
             '%s exec %s' % (hide, command)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        return result, time.monotonic() - start

    def _assert_one_line_quick_failure(self, command):
        result, took = self._run_hiding_spdk(command)
        self.assertNotEqual(0, result.returncode)
        self.assertLess(took, 10)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(1, len(lines), result.stderr)
        self.assertIn('SPDK nvmf_tgt and vhost not found', lines[0])
        self.assertIn('SPDK_BIN_DIR', lines[0])
        self.assertEqual('', result.stdout)

    def test_cloud_up(self):
        self._assert_one_line_quick_failure('tools/cloud up')

    def test_main_job(self):
        self._assert_one_line_quick_failure('tools/run-main')
