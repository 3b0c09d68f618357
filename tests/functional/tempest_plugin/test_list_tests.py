"""tempest, installed beside this package, lists the plugin's tests."""

import os
import re
import subprocess
import sys

import fixtures

from tests import base

TEMPEST = os.path.join(os.path.dirname(sys.executable), 'tempest')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
PLUGIN_DIR = os.path.join(REPO, 'tempest_tests')
IDEMPOTENT_ID = re.compile(r"idempotent_id\('([0-9a-f-]{36})'\)")


def _ids_in_source():
    ids = set()
    for root, _dirs, files in os.walk(PLUGIN_DIR):
        for name in files:
            if name.startswith('test_') and name.endswith('.py'):
                with open(os.path.join(root, name)) as f:
                    ids.update(IDEMPOTENT_ID.findall(f.read()))
    return ids


class TestTempestListsThePlugin(base.TestCase):
    def test_every_test_is_listed_with_its_id(self):
        workspace = self.useFixture(fixtures.TempDir()).path
        subprocess.run([TEMPEST, 'init', 'workspace'], cwd=workspace,
                       check=True, capture_output=True, timeout=120)
        listed = subprocess.run(
            [TEMPEST, 'run', '--list-tests', '--regex', '^tempest_tests\\.'],
            cwd=os.path.join(workspace, 'workspace'), check=True,
            capture_output=True, text=True, timeout=300).stdout
        tests = [line for line in listed.splitlines()
                 if line.startswith('tempest_tests.tests.')]
        expected = _ids_in_source()
        self.assertNotEqual(set(), expected)
        self.assertEqual(len(expected), len(tests), listed)
        self.assertEqual(expected,
                         {re.search(r'\[id-([0-9a-f-]{36})', t).group(1)
                          for t in tests})
