"""Every field of the agent's RPC requests, checked at the edge."""

from tests import base
from vhost_target import validation

VOLUME = '5e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'


class TestVolumeId(base.TestCase):
    def test_cinder_ids_pass(self):
        self.assertEqual(VOLUME, validation.volume_id(VOLUME))

    def test_bad_ids_name_field_and_value(self):
        for bad in (VOLUME + '\n', '\n' + VOLUME, 'a' * 300,
                    '../../etc/passwd', 'a/b', VOLUME.upper(),
                    VOLUME.replace('-', ''),
                    '{%s}' % VOLUME, 'urn:uuid:' + VOLUME, '', ' ' + VOLUME,
                    VOLUME[:-1] + '\u0663', VOLUME + '\x00'):
            exc = self.assertRaises(validation.Invalid,
                                    validation.volume_id, bad)
            self.assertEqual('volume_id', exc.field)
            self.assertIn('lower-case UUID', str(exc))
            self.assertLess(len(str(exc)), 200)
        exc = self.assertRaises(validation.Invalid, validation.volume_id,
                                VOLUME + '\n')
        self.assertIn(repr(VOLUME + '\n'), str(exc))
        exc = self.assertRaises(validation.Invalid, validation.volume_id,
                                'a' * 300)
        self.assertIn('(str, 300 long)', str(exc))

    def test_non_strings(self):
        for bad in (None, 1, ['x'], {'id': VOLUME}, b'x' * 36):
            exc = self.assertRaises(validation.Invalid,
                                    validation.volume_id, bad)
            self.assertIn('is not a string', str(exc))


class TestNUMANodes(base.TestCase):
    def test_valid(self):
        self.assertEqual([], validation.numa_nodes(None))
        self.assertEqual([0, 1], validation.numa_nodes([1, 0, 1]))

    def test_invalid(self):
        cases = [
            ({'0': 1}, 'numa_nodes', 'is not a list'),
            ('0', 'numa_nodes', 'is not a list'),
            (0, 'numa_nodes', 'is not a list'),
            ([-1], 'numa_nodes[0]', 'NUMA node number'),
            ([0, True], 'numa_nodes[1]', 'NUMA node number'),
            ([0.0], 'numa_nodes[0]', 'NUMA node number'),
            (['0'], 'numa_nodes[0]', 'NUMA node number'),
            ([None], 'numa_nodes[0]', 'NUMA node number'),
            ([2 ** 64], 'numa_nodes[0]', 'NUMA node number'),
            (list(range(2000)), 'numa_nodes', 'more than 1024'),
        ]
        for value, field, words in cases:
            exc = self.assertRaises(validation.Invalid,
                                    validation.numa_nodes, value)
            self.assertEqual(field, exc.field)
            self.assertIn(words, str(exc))
            self.assertLess(len(str(exc)), 250)


class TestQoS(base.TestCase):
    def test_valid(self):
        self.assertIsNone(validation.qos(None))
        self.assertEqual({}, validation.qos({}))
        limits = {'rw_ios_per_sec': 2000, 'rw_mbytes_per_sec': 0,
                  'r_mbytes_per_sec': 1, 'w_mbytes_per_sec': 10}
        self.assertEqual(limits, validation.qos(limits))

    def test_invalid_name_the_key(self):
        cases = [
            (['rw_ios_per_sec'], 'qos', 'is not a dict'),
            ({'bogus': 1}, 'qos', 'bogus'),
            ({'total_iops_sec': 1000}, 'qos', 'total_iops_sec'),
            ({'rw_ios_per_sec': -1000}, 'qos.rw_ios_per_sec', 'negative'),
            ({'rw_ios_per_sec': 1500}, 'qos.rw_ios_per_sec',
             'multiple of 1000'),
            ({'rw_ios_per_sec': 1000.0}, 'qos.rw_ios_per_sec',
             'not an integer'),
            ({'rw_ios_per_sec': '1000'}, 'qos.rw_ios_per_sec',
             'not an integer'),
            ({'rw_mbytes_per_sec': True}, 'qos.rw_mbytes_per_sec',
             'not an integer'),
            ({'rw_mbytes_per_sec': None}, 'qos.rw_mbytes_per_sec',
             'not an integer'),
            ({'rw_mbytes_per_sec': 2 ** 64}, 'qos.rw_mbytes_per_sec',
             'beyond'),
            ({'rw_ios_per_sec': (2 ** 64 // 1000 + 1) * 1000},
             'qos.rw_ios_per_sec',
             'beyond'),
        ]
        for value, field, words in cases:
            exc = self.assertRaises(validation.Invalid, validation.qos,
                                    value)
            self.assertEqual(field, exc.field, value)
            self.assertIn(words, str(exc), value)
