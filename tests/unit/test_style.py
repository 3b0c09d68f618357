"""The Python code passes OpenStack's hacking flake8 rules (the [flake8]
section of tox.ini, as tox -e pep8 runs them)."""

import os
import subprocess
import sys

from tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class TestHacking(base.TestCase):
    def test_flake8_with_hacking_is_clean(self):
        result = subprocess.run([sys.executable, '-m', 'flake8'], cwd=REPO,
                                capture_output=True, text=True, timeout=600)
        self.assertEqual('', result.stderr)
        self.assertEqual(0, result.returncode, result.stdout)
