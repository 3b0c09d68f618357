"""The spdk_vhost connection contract: its fields, versions and formats."""

import base64
import zlib

from spdk_common import connection
from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from tests import base

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


def parse(value):
    props = connection.SPDKVhostConnProps(value, VOLUME)
    return (props.target_nqn, props.portals, props.host_nqn,
            props.dhchap_secret)


class TestPortals(base.TestCase):
    def test_valid_are_normalized(self):
        self.assertEqual(
            [('10.0.0.1', '4420', 'tcp'), ('fd00::1', '4421', 'tcp')],
            connection.portals([['10.0.0.1', '4420', 'TCP'],
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
            exc = self.assertRaises(spdk_exc.InvalidField, connection.portals,
                                    value)
            self.assertIn(field, exc.field, value)
            self.assertIn(words, str(exc), value)


class TestDHCHAPSecret(base.TestCase):
    def test_valid(self):
        made = dhchap.make_secret()   # as the storage side makes them
        self.assertEqual(made, connection.dhchap_secret(made))
        self.assertIsNone(connection.dhchap_secret(None))
        for size in (32, 48, 64):
            for hash_id in ('00', '01', '02', '03'):
                connection.dhchap_secret(secret(size, hash_id))

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
            exc = self.assertRaises(spdk_exc.InvalidField,
                                    connection.dhchap_secret, value)
            self.assertIn(words, str(exc))
            self.assertIn('withheld', str(exc))
            if isinstance(value, str) and len(value) > 12:
                self.assertNotIn(value[10:30], str(exc))


class TestConnectionInfo(base.TestCase):
    def test_valid(self):
        self.assertEqual(
            (TARGET, [('10.0.0.1', '4420', 'tcp')], HOST, None),
            parse(dict(
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
            exc = self.assertRaises(spdk_exc.InvalidField,
                                    parse,
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
            exc = self.assertRaises(spdk_exc.InvalidField,
                                    parse,
                                    value)
            self.assertIn(field, exc.field)
            self.assertLess(len(str(exc)), 400)

    def test_nqn_with_a_trailing_newline(self):
        # naming.validate_nqn is the one NQN check; it must not take the
        # newline '$' lets through.
        exc = self.assertRaises(spdk_exc.InvalidField,
                                parse,
                                info(target_nqn=TARGET + '\n'))
        self.assertEqual('connection_info.data.target_nqn', exc.field)


class TestShown(base.TestCase):
    def test_long_values_are_cut(self):
        text = spdk_exc.shown('x' * 10000)
        self.assertLess(len(text), 140)
        self.assertIn('10000 long', text)
        self.assertLess(len(spdk_exc.shown(list(range(10000)))), 140)
        self.assertEqual("'a\\nb'", spdk_exc.shown('a\nb'))

    def test_secrets_are_withheld(self):
        self.assertEqual('(withheld, 5 characters)',
                         spdk_exc.shown('hello', secret=True))
        self.assertEqual('(withheld, a int)',
                         spdk_exc.shown(5, secret=True))


class TestVersions(base.TestCase):
    def test_data_without_a_version_reads_as_1_0(self):
        self.assertEqual('1.0', connection.SPDKVhostConnProps(
            info(), VOLUME).version)
        self.assertEqual('1.7', connection.SPDKVhostConnProps(
            info(version='1.7'), VOLUME).version)

    def test_another_major_version_is_refused_by_name(self):
        for value in ('3.0', '0.9'):
            exc = self.assertRaises(spdk_exc.InvalidField, parse,
                                    info(version=value))
            self.assertEqual('connection_info.data.version', exc.field)
            self.assertIn('is not a version this side speaks (1.x, 2.x)',
                          str(exc))
        exc = self.assertRaises(spdk_exc.InvalidField, parse,
                                info(version=1))
        self.assertIn('is not a version (major.minor)', str(exc))

    def test_capability_round_trip_and_checks(self):
        offer = connection.capability(HOST, [1, 0])
        self.assertEqual({'version': '1.1', 'host_nqn': HOST,
                          'numa_nodes': [1, 0], 'max_replicas': 3}, offer)
        self.assertEqual(3, connection.max_replicas(offer))
        # Offered before 1.1: one copy.
        self.assertEqual(1, connection.max_replicas(
            {'version': '1.0', 'host_nqn': HOST}))
        self.assertIs(offer, connection.offered(
            {'nqn': HOST, connection.SPDK_VHOST: offer}))
        self.assertIsNone(connection.offered({'nqn': HOST}))
        self.assertIsNone(connection.offered(None))
        for bad, field in (('x', 'spdk_vhost'),
                           (dict(offer, version='2.0'), 'spdk_vhost.version'),
                           (dict(offer, host_nqn='nope'),
                            'spdk_vhost.host_nqn'),
                           (dict(offer, max_replicas=0),
                            'spdk_vhost.max_replicas'),
                           (dict(offer, max_replicas='2'),
                            'spdk_vhost.max_replicas')):
            exc = self.assertRaises(spdk_exc.InvalidField,
                                    connection.offered,
                                    {connection.SPDK_VHOST: bad})
            self.assertEqual(field, exc.field)


class TestBuilt(base.TestCase):
    def test_spdk_vhost_info_parses_back(self):
        made = dhchap.make_secret()
        built = connection.spdk_vhost_info(
            TARGET, [('10.0.0.1', '4420', 'tcp')], VOLUME, HOST, made)
        self.assertEqual('spdk_vhost', built['driver_volume_type'])
        self.assertEqual('1.1', built['data']['version'])
        self.assertEqual((TARGET, [('10.0.0.1', '4420', 'tcp')], HOST, made),
                         parse(built))

    def test_nvmeof_info_is_os_brick_v2(self):
        # os-brick's own parser reads the kernel attach's answer.
        from os_brick.initiator.connectors import nvmeof
        built = connection.nvmeof_info(
            TARGET, [('10.0.0.1', '4420', 'tcp')], VOLUME, HOST)
        self.assertEqual('nvmeof', built['driver_volume_type'])
        props = nvmeof.NVMeOFConnProps(built['data'])
        self.assertEqual([VOLUME], [t.uuid for t in props.targets])
        self.assertEqual(TARGET, props.targets[0].nqn)
        self.assertEqual([('10.0.0.1', '4420', 'tcp')],
                         [(p.address, p.port, p.transport)
                          for p in props.targets[0].portals])


# Two copies, on two storage nodes.
COPIES = [('%s:node-a' % TARGET, [('10.0.0.1', '4420', 'tcp')],
           '0d7e5c2a-1f1b-4bde-8c43-0a5a0c0ffee1'),
          ('%s:node-b' % TARGET, [('10.0.0.2', '4420', 'tcp')],
           '0d7e5c2a-1f1b-4bde-8c43-0a5a0c0ffee2')]


def replicated(**data):
    built = connection.spdk_vhost_replicated_info(COPIES, VOLUME, HOST)
    built['data'].update(data)
    return built


class TestReplicated(base.TestCase):
    def test_spdk_vhost_replicated_info_parses_back(self):
        made = dhchap.make_secret()
        built = connection.spdk_vhost_replicated_info(COPIES, VOLUME, HOST,
                                                      made)
        self.assertEqual('2.0', built['data']['version'])
        props = connection.SPDKVhostConnProps(built, VOLUME)
        self.assertEqual([(nqn, portals) for nqn, portals, _u in COPIES],
                         props.replicas)
        self.assertIsNone(props.target_nqn)
        self.assertEqual((HOST, made), (props.host_nqn, props.dhchap_secret))
        # A single-copy connection has none.
        self.assertIsNone(connection.SPDKVhostConnProps(
            info(), VOLUME).replicas)

    def test_nvmeof_replicated_info_is_os_brick_replicated(self):
        # os-brick's own parser: the kernel path assembles MD RAID1 over
        # the copies (it cannot run here: no kernel NVMe/TCP or mdadm).
        from os_brick.initiator.connectors import nvmeof
        built = connection.nvmeof_replicated_info(COPIES, VOLUME, HOST)
        self.assertEqual('nvmeof', built['driver_volume_type'])
        props = nvmeof.NVMeOFConnProps(built['data'])
        self.assertTrue(props.is_replicated)
        self.assertEqual(2, props.replica_count)
        self.assertEqual(VOLUME.replace('-', ''), props.alias)
        self.assertEqual(VOLUME, props.cinder_volume_id)
        self.assertEqual([c[0] for c in COPIES],
                         [t.nqn for t in props.targets])
        self.assertEqual([c[2] for c in COPIES],
                         [t.uuid for t in props.targets])
        self.assertEqual([('10.0.0.2', '4420', 'tcp')],
                         [(p.address, p.port, p.transport)
                          for p in props.targets[1].portals])

    def test_invalid_replicated_data_names_the_field(self):
        copies = replicated()['data']['volume_replicas']
        field = 'connection_info.data.volume_replicas'
        for data, where, why in (
                ({'volume_replicas': copies[:1], 'replica_count': 1}, field,
                 'fewer than 2 copies'),
                ({'volume_replicas': copies * 2, 'replica_count': 4}, field,
                 'more than 3 entries'),
                ({'volume_replicas': [copies[0], copies[0]]}, field + '[1]',
                 'the same copy as an earlier entry'),
                ({'replica_count': 3}, 'connection_info.data.replica_count',
                 'is not the 2 entries'),
                ({'volume_replicas': None}, field, 'is not a list'),
                ({'volume_replicas': [copies[0], 'x']}, field + '[1]',
                 'is not a dict'),
                ({'volume_replicas': [copies[0], dict(
                    copies[1], target_nqn='nope')]},
                 field + '[1].target_nqn', 'is not a valid NQN'),
                ({'volume_replicas': [copies[0], dict(
                    copies[1], portals=[['h', 1, 'tcp']])]},
                 field + '[1].portals[0] address', 'IPv4 or IPv6')):
            exc = self.assertRaises(spdk_exc.InvalidField,
                                    connection.SPDKVhostConnProps,
                                    replicated(**data), VOLUME)
            self.assertEqual(where, exc.field)
            self.assertIn(why, str(exc))

    def test_copies_in_1_x_data_are_refused(self):
        # An older sender's 1.x data never carries copies; mixing them
        # would let a 1.x reader serve one copy alone.
        exc = self.assertRaises(spdk_exc.InvalidField, parse,
                                replicated(version='1.1'))
        self.assertEqual('connection_info.data.volume_replicas', exc.field)
        self.assertIn('needs version 2.0, not 1.1', str(exc))
