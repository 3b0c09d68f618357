"""The devstack plugin's and the tools' shell passes bashate and
shellcheck."""

import os
import shutil
import subprocess
import sys

from tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
SHELL_FILES = ['devstack/plugin.sh', 'devstack/settings',
               'devstack/override-defaults', 'devstack/lib/spdk-openstack',
               'tests/unit/devstack/stubs.sh', 'tools/cloud',
               'tools/check-spdk', 'tools/run-main', 'tools/run-benchmarks',
               'tools/run-tests', 'tools/setup-env']


class TestShellLint(base.TestCase):
    def test_bashate(self):
        bashate = os.path.join(os.path.dirname(sys.executable), 'bashate')
        result = subprocess.run([bashate, '--error', 'E', *SHELL_FILES],
                                cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        self.assertNotIn('warning(s) found', result.stdout, result.stdout)
        self.assertEqual(0, result.returncode, result.stdout)

    def test_shellcheck(self):
        # tools/setup-env installs it from Debian's packages.
        shellcheck = shutil.which('shellcheck')
        self.assertIsNotNone(shellcheck, 'shellcheck is not installed')
        result = subprocess.run(
            [shellcheck, '--external-sources', '--shell=bash', *SHELL_FILES],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stdout)
