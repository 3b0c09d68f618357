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
        self.assertTrue({o.name for o in spdk.spdk_opts} <=
                        {o.name for o in spdk.SPDKDriver.get_driver_options()})

    def test_committed_sample_is_current(self):
        out = self.useFixture(fixtures.TempDir()).path
        sample = os.path.join(out, 'sample.conf')
        subprocess.run(
            [sys.executable, '-m', 'oslo_config.generator',
             '--namespace', 'spdk_openstack.cinder_driver',
             '--wrap-width', '79', '--output-file', sample],
            check=True, cwd=ROOT, capture_output=True)
        with open(sample) as f, open(os.path.join(
                ROOT, 'etc', 'cinder-spdk.conf.sample')) as committed:
            self.assertEqual(committed.read(), f.read(),
                             'regenerate with tox -e genconfig')
