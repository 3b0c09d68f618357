"""QoS specs to SPDK limits, and SPDK limits checked before SPDK sees them."""

from spdk_common import exception as spdk_exc
from spdk_common import qos
from tests import base


class TestLimitsFromSpecs(base.TestCase):
    def test_translation_rounds_up_to_spdk_steps(self):
        self.assertEqual(
            {'rw_ios_per_sec': 3000, 'rw_mbytes_per_sec': 2},
            qos.limits_from_specs({'total_iops_sec': '2001',
                                   'total_bytes_sec': 1024 ** 2 + 1}))

    def test_large_values_keep_their_digits(self):
        # Float division would round 2**60 + 1 bytes/s down a MiB.
        self.assertEqual({'rw_mbytes_per_sec': 2 ** 40 + 1},
                         qos.limits_from_specs(
                             {'total_bytes_sec': str(2 ** 60 + 1)}))

    def test_bad_specs_name_key_and_value(self):
        cases = [
            ({'total_iops_sec': True}, 'total_iops_sec=True is not an '
             'integer'),
            ({'total_iops_sec': 1.9}, 'total_iops_sec=1.9 is not an '
             'integer'),
            ({'total_iops_sec': '1.5'}, 'is not an integer'),
            ({'total_iops_sec': '1_000'}, 'is not an integer'),
            ({'total_iops_sec': '\u0661\u0660\u0660\u0660'},
             'is not an integer'),
            ({'total_iops_sec': '-5'}, "total_iops_sec='-5' is negative"),
            ({'total_iops_sec': -5}, 'is negative'),
            ({'total_iops_sec': None}, 'is not an integer'),
            ({'total_iops_sec': str(2 ** 64)}, 'beyond what SPDK can '
             'enforce'),
            ({'total_bytes_sec': 2 ** 90}, 'beyond'),
            ({'read_iops_sec': '5'}, 'read_iops_sec are not supported'),
            (['total_iops_sec'], 'not a dict'),
        ]
        for specs, words in cases:
            exc = self.assertRaises(spdk_exc.InvalidQoS, qos.limits_from_specs,
                                    specs)
            self.assertIn(words, str(exc))

    def test_surrounding_blanks_of_spec_strings_pass(self):
        self.assertEqual({'rw_ios_per_sec': 1000},
                         qos.limits_from_specs({'total_iops_sec': ' 1000 '}))


class TestValidateLimits(base.TestCase):
    def test_valid(self):
        limits = {'rw_ios_per_sec': 0, 'rw_mbytes_per_sec': 1,
                  'r_mbytes_per_sec': qos.LIMIT_MAX['r_mbytes_per_sec'],
                  'w_mbytes_per_sec': 7}
        self.assertEqual(limits, qos.validate_limits(limits))

    def test_invalid(self):
        cases = [
            ({'bogus': 1}, None, 'bogus are not supported'),
            ({'rw_ios_per_sec': '1000'}, 'rw_ios_per_sec', 'not an integer'),
            ({'rw_ios_per_sec': 1000.0}, 'rw_ios_per_sec', 'not an integer'),
            ({'rw_ios_per_sec': False}, 'rw_ios_per_sec', 'not an integer'),
            ({'rw_ios_per_sec': -1000}, 'rw_ios_per_sec', 'negative'),
            ({'rw_ios_per_sec': 999}, 'rw_ios_per_sec', 'multiple of 1000'),
            ({'w_mbytes_per_sec': 2 ** 64 - 1}, 'w_mbytes_per_sec',
             'beyond'),
            ('rw_ios_per_sec', None, 'not a dict'),
        ]
        for limits, key, words in cases:
            exc = self.assertRaises(spdk_exc.InvalidQoS, qos.validate_limits,
                                    limits)
            self.assertEqual(key, exc.kwargs.get('key'))
            self.assertIn(words, str(exc))


class TestChangeRefused(base.TestCase):
    def test_only_spdks_eagain_answer(self):
        def error(code, text):
            return spdk_exc.from_rpc_error('bdev_set_qos_limit',
                                           {'code': code, 'message': text})
        # SPDK's answer, as tests/spdk/test_contract_vhost.py pins it.
        self.assertTrue(qos.change_refused(error(
            -32602, 'Failed to configure rate limit: Resource temporarily '
                    'unavailable')))
        self.assertFalse(qos.change_refused(error(-32602, 'Invalid '
                                                          'parameters')))
        self.assertFalse(qos.change_refused(error(
            -19, 'Resource temporarily unavailable')))
        self.assertFalse(qos.change_refused(ValueError('x')))
