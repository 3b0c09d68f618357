import uuid

from spdk_common import exception
from spdk_common import naming
from tests import base


class TestNQN(base.TestCase):
    def test_valid(self):
        for nqn in ('nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid4(),
                    'nqn.2010-10.org.openstack:volume-1',
                    'nqn.2016-06.io.spdk:cnode1'):
            self.assertEqual(nqn, naming.validate_nqn(nqn))

    def test_invalid(self):
        for nqn in ('', None, 'iqn.2010-10.org.openstack:x',
                    'nqn.2014-08.org.nvmexpress:uuid:not-a-uuid',
                    'nqn.2014-13.org.x:y', 'nqn.2014-08.:x',
                    'nqn.2014-08.org.nvmexpress.discovery',
                    'nqn.2014-08.org.x:' + 'a' * 300):
            self.assertRaises(exception.InvalidNQN, naming.validate_nqn, nqn)

    def test_volume_nqn(self):
        self.assertEqual('nqn.2010-10.org.openstack:volume-abc',
                         naming.volume_nqn('nqn.2010-10.org.openstack',
                                           'abc'))

    def test_key_name_stable_and_distinct(self):
        a = naming.host_key_name('s1', 'h1')
        self.assertEqual(a, naming.host_key_name('s1', 'h1'))
        self.assertNotEqual(a, naming.host_key_name('s1', 'h2'))
        self.assertNotIn('/', a)
