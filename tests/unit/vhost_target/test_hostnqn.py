import os

import fixtures

from spdk_common import exception
from tests import base
from tests.unit import vhost_target as helpers
from vhost_target import hostnqn

NQN = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'


class TestHostNQN(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.machine_id = os.path.join(self.dir, 'machine-id')
        with open(self.machine_id, 'w') as f:
            f.write('4f9c7b8e2d1a4e6b9c3d5e7f8a1b2c3d\n')
        self.nqn_file = os.path.join(self.dir, 'hostnqn')

    def resolve(self, **options):
        conf = helpers.make_conf(self, host_nqn_file=self.nqn_file,
                                 **options)
        return hostnqn.resolve(conf, self.machine_id)

    def test_order(self):
        derived = self.resolve()
        self.assertTrue(derived.startswith(
            'nqn.2014-08.org.nvmexpress:uuid:'))
        self.assertEqual(derived, self.resolve())   # stable
        with open(self.nqn_file, 'w') as f:
            f.write(NQN + '\n')
        self.assertEqual(NQN, self.resolve())
        other = 'nqn.2010-10.org.example:compute-1'
        self.assertEqual(other, self.resolve(host_nqn=other))

    def test_malformed(self):
        self.assertRaises(exception.InvalidNQN, self.resolve,
                          host_nqn='nqn.bad')
