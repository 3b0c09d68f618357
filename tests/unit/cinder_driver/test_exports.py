"""NVMe-oF exports against the in-process SPDK double."""

from cinder_driver import exports
from spdk_common import exception as spdk_exc
from tests import base
from tests.fixtures import spdk as spdk_fixtures

HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
VOL = '9b1c7d5e-2f4a-4c3b-8d6e-1a2b3c4d5e6f'


class TestExports(base.TestCase):
    def setUp(self):
        super().setUp()
        self.target = self.useFixture(spdk_fixtures.FakeSPDKTarget())
        self.target.client.call('bdev_lvol_create', {
            'lvs_name': self.target.lvstore, 'lvol_name': 'v',
            'size_in_mib': 1024, 'thin_provision': True})
        self.exports = exports.NVMeoFExports(
            self.target.client, 'nqn.2010-10.org.openstack',
            ['127.0.0.1', '::1'], 4420)
        self.exports.ensure_transport()
        self.bdev = self.target.lvstore + '/v'

    def subsystem(self):
        for sub in self.target.client.call('nvmf_get_subsystems'):
            if sub['nqn'] == self.exports.nqn(VOL):
                return sub

    def test_export_shape(self):
        self.exports.export(VOL, self.bdev, {'rw_ios_per_sec': 1000})
        sub = self.subsystem()
        self.assertFalse(sub['allow_any_host'])
        self.assertEqual([], sub['hosts'])
        self.assertEqual({('127.0.0.1', 'IPv4'), ('::1', 'IPv6')},
                         {(la['traddr'], la['adrfam'])
                          for la in sub['listen_addresses']})
        (ns,) = sub['namespaces']
        self.assertEqual(VOL, ns['uuid'])
        self.assertEqual(VOL.replace('-', '').upper(), ns['nguid'])
        bdev = self.target.client.call('bdev_get_bdevs',
                                       {'name': self.bdev})[0]
        self.assertEqual(1000, bdev['assigned_rate_limits']['rw_ios_per_sec'])

    def test_export_is_idempotent_and_hosts_too(self):
        self.exports.export(VOL, self.bdev)
        self.exports.export(VOL, self.bdev)
        self.exports.allow_host(VOL, HOST)
        self.exports.allow_host(VOL, HOST)
        self.assertEqual([HOST], [h['nqn'] for h in self.subsystem()['hosts']])
        self.exports.disallow_host(VOL, HOST)
        self.exports.disallow_host(VOL, HOST)
        self.assertEqual([], self.subsystem()['hosts'])

    def test_bad_host_nqn_refused_before_spdk(self):
        self.exports.export(VOL, self.bdev)
        self.target.calls.clear()
        self.assertRaises(spdk_exc.InvalidNQN, self.exports.allow_host, VOL,
                          'nqn.bad')
        self.assertEqual(0, sum(self.target.calls.values()))

    def test_failed_export_leaves_no_subsystem(self):
        self.assertRaises(spdk_exc.SPDKRPCError, self.exports.export, VOL,
                          'lvs0/missing')
        self.assertIsNone(self.subsystem())

    def test_replay_after_restart_restores_only_what_is_missing(self):
        self.exports.export(VOL, self.bdev, {'rw_ios_per_sec': 2000})
        self.exports.allow_host(VOL, HOST)
        self.assertEqual(([], 0), self.exports.replay())
        self.target.restart()
        self.exports._client = self.target.client
        self.assertFalse(self.exports.transport_present())
        self.assertEqual(([self.exports.nqn(VOL)], 0), self.exports.replay())
        self.assertEqual([HOST], [h['nqn'] for h in self.subsystem()['hosts']])
        bdev = self.target.client.call('bdev_get_bdevs',
                                       {'name': self.bdev})[0]
        self.assertEqual(2000, bdev['assigned_rate_limits']['rw_ios_per_sec'])

    def test_a_host_let_in_later_is_exported_and_allowed_by_the_replay(self):
        # Recorded while the target does not answer: no RPC.
        self.target.calls.clear()
        self.exports.allow_host_later(VOL, self.bdev, HOST)
        self.exports.allow_host_later(VOL, self.bdev, HOST)
        self.assertEqual(0, sum(self.target.calls.values()))
        self.assertEqual({HOST}, self.exports.hosts(VOL))
        self.assertEqual(([self.exports.nqn(VOL)], 0), self.exports.replay())
        self.assertEqual([HOST], [h['nqn'] for h in self.subsystem()['hosts']])
        self.assertRaises(spdk_exc.InvalidNQN, self.exports.allow_host_later,
                          VOL, self.bdev, 'nqn.bad')

    def test_an_export_that_could_not_be_deleted_stays_wanted(self):
        # A detach while the target does not answer: the host goes off
        # the ACL the replay sets, which needs the export still wanted.
        self.exports.export(VOL, self.bdev)
        self.exports.allow_host(VOL, HOST)
        self.exports.forget_host(VOL, HOST)
        self.target.stop()
        self.assertRaises(spdk_exc.SPDKUnavailable, self.exports.unexport,
                          VOL)
        self.assertTrue(self.exports.is_exported(VOL))

    def test_unexport_forgets(self):
        self.exports.export(VOL, self.bdev)
        self.exports.unexport(VOL)
        self.exports.unexport(VOL)
        self.assertIsNone(self.subsystem())
        self.assertFalse(self.exports.is_exported(VOL))
