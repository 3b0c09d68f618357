from cinder import exception

from cinder_driver import qos
from tests import base


class TestQoS(base.TestCase):
    def test_translation_and_rounding(self):
        self.assertEqual(
            {'rw_ios_per_sec': 3000, 'rw_mbytes_per_sec': 2,
             'r_mbytes_per_sec': 1, 'w_mbytes_per_sec': 10},
            qos.limits_from_specs({'total_iops_sec': '2001',
                                   'total_bytes_sec': str(1024 ** 2 + 1),
                                   'read_bytes_sec': '1',
                                   'write_bytes_sec': str(10 * 1024 ** 2)}))

    def test_unsupported_keys_are_named(self):
        exc = self.assertRaises(exception.InvalidInput,
                                qos.limits_from_specs,
                                {'read_iops_sec': '5', 'total_iops_sec': '1'})
        self.assertIn('read_iops_sec', str(exc))

    def test_bad_values(self):
        for value in ('abc', '-1', None):
            self.assertRaises(exception.InvalidInput, qos.limits_from_specs,
                              {'total_iops_sec': value})

    def test_zero_means_unlimited(self):
        self.assertEqual({'rw_ios_per_sec': 0},
                         qos.limits_from_specs({'total_iops_sec': '0'}))
