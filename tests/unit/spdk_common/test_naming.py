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

    def test_newline_and_control_characters_are_refused(self):
        # '$' in a regex matches before a final newline: such an NQN used
        # to pass and reach the subsystem ACL.
        good = ('nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid4(),
                'nqn.2010-10.org.openstack:volume-1')
        for nqn in good:
            for bad in (nqn + '\n', nqn + '\r\n', '\n' + nqn, nqn + ' ',
                        nqn.replace(':', ': ', 1), nqn + '\x00',
                        nqn.replace('-', '\t', 1), nqn + '\u2028',
                        nqn + '\u200b', nqn + '\x7f'):
                exc = self.assertRaises(exception.InvalidNQN,
                                        naming.validate_nqn, bad)
                self.assertIn(repr(bad), str(exc))
        exc = self.assertRaises(exception.InvalidNQN, naming.validate_nqn,
                                good[1] + '\n')
        self.assertIn("character '\\n'", str(exc))

    def test_not_a_string(self):
        for nqn in (42, ['nqn.2010-10.org.openstack:x'], b'nqn.2010-10.o:x'):
            exc = self.assertRaises(exception.InvalidNQN,
                                    naming.validate_nqn, nqn)
            self.assertIn('not a string', str(exc))

    def test_utf8_user_part_is_fine(self):
        nqn = 'nqn.2010-10.org.openstack:volume-\u00e9t\u00e9'
        self.assertEqual(nqn, naming.validate_nqn(nqn))

    def test_volume_nqn(self):
        self.assertEqual('nqn.2010-10.org.openstack:volume-abc',
                         naming.volume_nqn('nqn.2010-10.org.openstack',
                                           'abc'))

    def test_key_name_stable_and_distinct(self):
        a = naming.host_key_name('s1', 'h1')
        self.assertEqual(a, naming.host_key_name('s1', 'h1'))
        self.assertNotEqual(a, naming.host_key_name('s1', 'h2'))
        self.assertNotIn('/', a)
