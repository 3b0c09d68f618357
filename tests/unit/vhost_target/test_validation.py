"""Every field of the agent's RPC requests, checked at the edge."""

import base64
import zlib

from cinder_driver import dhchap
from tests import base
from vhost_target import validation

VOLUME = '5e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
TARGET = 'nqn.2010-10.org.openstack:volume-%s' % VOLUME


def info(**data):
    base_data = {'target_nqn': TARGET, 'host_nqn': HOST,
                 'portals': [['10.0.0.1', 4420, 'tcp']]}
    base_data.update(data)
    return {'driver_volume_type': 'spdk_vhost', 'data': base_data}


def secret(key_bytes=32, hash_id='00', crc=None):
    key = b'k' * key_bytes
    crc = zlib.crc32(key).to_bytes(4, 'little') if crc is None else crc
    return 'DHHC-1:%s:%s:' % (hash_id,
                              base64.b64encode(key + crc).decode('ascii'))


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


class TestPortals(base.TestCase):
    def test_valid_are_normalized(self):
        self.assertEqual(
            [('10.0.0.1', '4420', 'tcp'), ('fd00::1', '4421', 'tcp')],
            validation.portals([['10.0.0.1', '4420', 'TCP'],
                                ('fd00:0::1', 4421, 'tcp')]))

    def test_bad_portals(self):
        cases = [
            (None, 'portals', 'is not a list'),
            ({'a': 1}, 'portals', 'is not a list'),
            ('10.0.0.1', 'portals', 'is not a list'),
            ([], 'portals', 'is empty'),
            ([['10.0.0.1', 4420]], 'portals[0]', 'triple'),
            (['10.0.0.1:4420'], 'portals[0]', 'triple'),
            ([['not-an-ip', 4420, 'tcp']], 'portals[0] address',
             'IPv4 or IPv6 address'),
            ([['storage.example.org', 4420, 'tcp']], 'portals[0] address',
             'not a name'),
            ([['10.0.0.01', 4420, 'tcp']], 'address', 'IPv4 or IPv6'),
            ([['fe80::1%eth0', 4420, 'tcp']], 'address', 'IPv4 or IPv6'),
            ([['0.0.0.0', 4420, 'tcp']], 'address', 'unicast'),
            ([['224.0.0.1', 4420, 'tcp']], 'address', 'unicast'),
            ([[167772161, 4420, 'tcp']], 'address', 'not a string'),
            ([['10.0.0.1', 70000, 'tcp']], 'portals[0] port', '1-65535'),
            ([['10.0.0.1', '70000', 'tcp']], 'port', '1-65535'),
            ([['10.0.0.1', 0, 'tcp']], 'port', '1-65535'),
            ([['10.0.0.1', -1, 'tcp']], 'port', '1-65535'),
            ([['10.0.0.1', '-1', 'tcp']], 'port', 'not a port'),
            ([['10.0.0.1', ' 4420', 'tcp']], 'port', 'not a port'),
            ([['10.0.0.1', '\u0664\u0664\u0662\u0660', 'tcp']], 'port',
             'not a port'),
            ([['10.0.0.1', 4420.0, 'tcp']], 'port', 'not a port'),
            ([['10.0.0.1', True, 'tcp']], 'port', 'not a port'),
            ([['10.0.0.1', None, 'tcp']], 'port', 'not a port'),
            ([['10.0.0.1', 4420, 'rdma']], 'transport', 'is not tcp'),
            ([['10.0.0.1', 4420, None]], 'transport', 'is not tcp'),
            ([['10.0.0.1', 4420, 'tcp']] * 17, 'portals',
             'more than 16'),
        ]
        for value, field, words in cases:
            exc = self.assertRaises(validation.Invalid, validation.portals,
                                    value)
            self.assertIn(field, exc.field, value)
            self.assertIn(words, str(exc), value)


class TestDHCHAPSecret(base.TestCase):
    def test_valid(self):
        made = dhchap.make_secret()   # as the storage side makes them
        self.assertEqual(made, validation.dhchap_secret(made))
        self.assertIsNone(validation.dhchap_secret(None))
        for size in (32, 48, 64):
            for hash_id in ('00', '01', '02', '03'):
                validation.dhchap_secret(secret(size, hash_id))

    def test_invalid_never_shows_the_secret(self):
        good = secret()
        cases = [
            ('', 'DHHC-1'),
            (good + '\n', 'DHHC-1'),
            (good[:-1], 'DHHC-1'),
            (good.replace('DHHC-1:00', 'DHHC-1:04'), 'DHHC-1'),
            (good.replace('DHHC-1', 'DHHC-2'), 'DHHC-1'),
            (secret(16), '16-byte key'),
            (secret(crc=b'\0\0\0\0'), 'CRC-32'),
            ('DHHC-1:00:a===:', 'base64'),
            (42, 'not a string'),
            (['x'], 'not a string'),
        ]
        for value, words in cases:
            exc = self.assertRaises(validation.Invalid,
                                    validation.dhchap_secret, value)
            self.assertIn(words, str(exc))
            self.assertIn('withheld', str(exc))
            if isinstance(value, str) and len(value) > 12:
                self.assertNotIn(value[10:30], str(exc))


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


class TestConnectionInfo(base.TestCase):
    def test_valid(self):
        self.assertEqual(
            (TARGET, [('10.0.0.1', '4420', 'tcp')], HOST, None),
            validation.connection_info(VOLUME, dict(
                info(vol_uuid=VOLUME, qos_specs={'x': 1}, discard=True),
                serial=VOLUME)))

    def test_invalid(self):
        cases = [
            (None, 'connection_info', 'is not a dict'),
            ('spdk_vhost', 'connection_info', 'is not a dict'),
            (dict(info(), driver_volume_type='nvmeof'),
             'connection_info.driver_volume_type', 'is not spdk_vhost'),
            ({'driver_volume_type': 'spdk_vhost'}, 'connection_info.data',
             'is not a dict'),
            ({'driver_volume_type': 'spdk_vhost', 'data': [1]},
             'connection_info.data', 'is not a dict'),
            (info(target_nqn=None), 'connection_info.data.target_nqn',
             'not a valid NQN'),
            (info(target_nqn=7), 'target_nqn', 'not a valid NQN'),
            (info(target_nqn='x'), 'target_nqn', 'not a valid NQN'),
            (info(host_nqn='bad'), 'connection_info.data.host_nqn',
             'not a valid NQN'),
            (info(host_nqn=['x']), 'host_nqn', 'not a valid NQN'),
            (info(host_nqn=HOST[:-1] + 'X'), 'host_nqn', 'not a valid NQN'),
            (info(portals=None), 'connection_info.data.portals',
             'not a list'),
            (info(dhchap_secret=5), 'connection_info.data.dhchap_secret',
             'not a string'),
            (info(vol_uuid='6e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'),
             'connection_info.data.vol_uuid', 'is not the volume_id'),
        ]
        for value, field, words in cases:
            exc = self.assertRaises(validation.Invalid,
                                    validation.connection_info, VOLUME,
                                    value)
            self.assertIn(field, exc.field, value)
            self.assertIn(words, str(exc), value)

    def test_huge_values_are_refused_in_short_messages(self):
        huge = 'x' * 1000000
        for value, field in (
                (info(host_nqn='nqn.2014-08.org.x:' + huge), 'host_nqn'),
                (info(target_nqn=huge), 'target_nqn'),
                (info(portals=[[huge, 4420, 'tcp']]), 'address'),
                (info(portals=[['10.0.0.1', huge, 'tcp']]), 'port'),
                (info(portals=[['10.0.0.1', 4420, huge]]), 'transport'),
                (info(dhchap_secret=huge), 'dhchap_secret')):
            exc = self.assertRaises(validation.Invalid,
                                    validation.connection_info, VOLUME,
                                    value)
            self.assertIn(field, exc.field)
            self.assertLess(len(str(exc)), 400)

    def test_nqn_with_a_trailing_newline(self):
        # naming.validate_nqn is the one NQN check; it must not take the
        # newline '$' lets through.
        exc = self.assertRaises(validation.Invalid,
                                validation.connection_info, VOLUME,
                                info(target_nqn=TARGET + '\n'))
        self.assertEqual('connection_info.data.target_nqn', exc.field)


class TestShown(base.TestCase):
    def test_long_values_are_cut(self):
        text = validation.shown('x' * 10000)
        self.assertLess(len(text), 140)
        self.assertIn('10000 long', text)
        self.assertLess(len(validation.shown(list(range(10000)))), 140)
        self.assertEqual("'a\\nb'", validation.shown('a\nb'))

    def test_secrets_are_withheld(self):
        self.assertEqual('(withheld, 5 characters)',
                         validation.shown('hello', secret=True))
        self.assertEqual('(withheld, a int)',
                         validation.shown(5, secret=True))
