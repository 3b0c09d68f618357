import os
import subprocess
import sys

import fixtures

from cinder_driver import opts
from cinder_driver import spdk
from tests import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class TestOptions(base.TestCase):
    def test_entry_point_lists_every_driver_option(self):
        (group, listed), = opts.list_opts()
        self.assertEqual({o.name for o in spdk.spdk_opts},
                         {o.name for o in listed})
        self.assertLessEqual(
            {o.name for o in spdk.spdk_opts},
            {o.name for o in spdk.SPDKDriver.get_driver_options()})

    def test_committed_samples_are_current(self):
        out = self.useFixture(fixtures.TempDir()).path
        generators = os.path.join(ROOT, 'etc', 'oslo-config-generator')
        for name in sorted(os.listdir(generators)):
            sample = os.path.join(out, name)
            subprocess.run(
                [sys.executable, '-m', 'oslo_config.generator',
                 '--config-file', os.path.join(generators, name),
                 '--output-file', sample],
                check=True, cwd=ROOT, capture_output=True)
            committed = os.path.join(
                ROOT, 'etc', name.replace('.conf', '.conf.sample'))
            with open(sample) as new, open(committed) as old:
                self.assertEqual(old.read(), new.read(),
                                 'regenerate with tox -e genconfig')
