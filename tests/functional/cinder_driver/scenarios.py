"""The driver as cinder-volume runs it, against an SPDK target.

These scenarios load the driver through Cinder's own VolumeManager (its
configuration objects, init_host, do_setup, check_for_setup_error, stats)
and drive Cinder's flows (create, snapshot, clone, extend, attach, delete)
on a real Cinder database. The functional tier runs them against the SPDK
test double; the SPDK tier runs the very same scenarios against real SPDK.
"""

import time
import uuid

import fixtures
from oslo_config import cfg
from oslo_utils import importutils

from cinder import context
from cinder.db import api as db_api
from cinder import exception
from cinder import objects
from cinder.tests.unit import test as cinder_test
from cinder.tests.unit import utils as cinder_utils
from cinder.volume import qos_specs
from cinder.volume import volume_types

import cinder_driver.spdk  # noqa: F401  (registers the driver options)
from spdk_common import naming

CONF = cfg.CONF
HOST = 'node1@spdk'
HOST_NQN = ('nqn.2014-08.org.nvmexpress:uuid:'
            '0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11')
OTHER_NQN = ('nqn.2014-08.org.nvmexpress:uuid:'
             '5b3f4c2e-8d7a-4e61-b0c9-2d4e6f8a1b3c')


class CinderTestCase(cinder_test.TestCase):
    """Cinder's own TestCase (database, config, policy fixtures).

    Cinder's cleanup deletes every public attribute of the test, pytest's
    included; keep only the part that stops services.
    """

    def _common_cleanup(self):
        for service in self._services:
            service.stop()


class DriverTestBase:
    """Mix into a CinderTestCase that defines ``make_target()``."""

    def setUp(self):
        super().setUp()
        self.target = self.useFixture(self.make_target())
        self.lvs = self.target.lvstore
        self.prepare_backend()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.flags(volume_driver='cinder_driver.spdk.SPDKDriver',
                   spdk_rpc_socket=self.target.socket_path,
                   spdk_target_addresses=['127.0.0.1'],
                   spdk_target_port=self.target_port(),
                   spdk_lvstores=[self.lvs],
                   spdk_state_dir=self.state_dir,
                   volume_backend_name='spdk',
                   group='backend_defaults', **self.driver_flags())
        self.manager = importutils.import_object(CONF.volume_manager,
                                                 host=HOST)
        self.manager.init_host(service_id=None)
        self.driver = self.manager.driver
        # Their export-recovery watchers would outlive the test's targets.
        for node in self.driver._nodes.values():
            self.addCleanup(node.stop)
        self.assertTrue(self.driver.initialized)
        self.ctxt = context.get_admin_context()
        self.rpc = self.target.client
        self.default_type = self.make_type('spdk')

    def target_port(self):
        return 4420

    def driver_flags(self):
        """More back-end options for a test class."""
        return {}

    def prepare_backend(self):
        """What a test class starts before the driver (Cinder's own set-up
        done).
        """

    # -- helpers ------------------------------------------------------------

    def make_type(self, name, extra_specs=None, qos=None):
        vtype = volume_types.create(self.ctxt, name, extra_specs or {})
        if qos:
            spec = qos_specs.create(self.ctxt, name + '-qos', qos)
            qos_specs.associate_qos_with_type(self.ctxt, spec.id,
                                              vtype['id'])
        return vtype

    def new_volume(self, pool=None, **kwargs):
        """A volume row in Cinder's database (the driver not called)."""
        kwargs.setdefault('volume_type_id', self.default_type['id'])
        return cinder_utils.create_volume(
            self.ctxt, host=HOST + '#' + (pool or self.lvs), **kwargs)

    def create_volume(self, size=1, volume_type=None, **kwargs):
        """A volume made by Cinder's create flow."""
        volume = self.new_volume(
            size=size, volume_type_id=(volume_type or self.default_type)['id'],
            **kwargs)
        if 'snapshot_id' in kwargs or 'source_volid' in kwargs:
            return volume
        self.manager.create_volume(self.ctxt, volume)
        volume.refresh()
        self.assertEqual('available', volume.status)
        return volume

    def create_volume_from(self, snapshot, size=1):
        volume = self.new_volume(size=size, snapshot_id=snapshot.id)
        self.driver.create_volume_from_snapshot(volume, snapshot)
        return volume

    def exported_vhost_volume(self):
        """A volume of a vhost-attach type, exported to HOST_NQN; returns
        (volume, spdk_vhost connection_info).
        """
        vtype = self.make_type('vhost-%s' % uuid.uuid4(),
                               {'spdk:vhost_attach': '<is> True'})
        volume = self.create_volume(volume_type=vtype)
        connector = self.connector(spdk_vhost={'version': '1.0'})
        self.driver.create_export(self.ctxt, volume, connector)
        info = self.driver.initialize_connection(volume, connector)
        assert info['driver_volume_type'] == 'spdk_vhost', info
        return volume, info

    def lvol(self, name):
        found = self.rpc.call('bdev_get_bdevs') or []
        for bdev in found:
            aliases = bdev.get('aliases') or []
            if naming.lvol_alias(self.lvs, name) in aliases:
                return bdev
        return None

    def vol_lvol(self, volume):
        return self.lvol(naming.volume_lvol_name(volume.id))

    def subsystem(self, volume):
        nqn = self.driver._exports.nqn(volume.id)
        for sub in self.rpc.call('nvmf_get_subsystems'):
            if sub['nqn'] == nqn:
                return sub
        return None

    def connector(self, nqn=HOST_NQN, **extra):
        return dict({'nqn': nqn, 'host': 'compute1',
                     'initiator': 'iqn.x', 'multipath': False}, **extra)

    def snapshot_of(self, volume):
        snapshot = cinder_utils.create_snapshot(self.ctxt, volume.id)
        self.manager.create_snapshot(self.ctxt, snapshot)
        snapshot.refresh()
        self.assertEqual('available', snapshot.status)
        return snapshot


class DriverScenarios(DriverTestBase):
    """Every driver operation, through Cinder where Cinder has a flow."""

    def test_stats_report_one_pool_per_lvstore(self):
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual('NVMe-TCP', stats['storage_protocol'])
        self.assertEqual('spdk', stats['volume_backend_name'])
        (pool,) = stats['pools']
        self.assertEqual(self.lvs, pool['pool_name'])
        for key in ('thin_provisioning_support',
                    'thick_provisioning_support', 'QoS_support',
                    'multiattach', 'online_extend_support'):
            self.assertTrue(pool[key], key)
        self.assertGreater(pool['total_capacity_gb'], 0)
        self.assertLessEqual(pool['free_capacity_gb'],
                             pool['total_capacity_gb'])
        self.assertIn('location_info', pool)
        self.create_volume(size=2)
        pool = self.driver.get_volume_stats(refresh=True)['pools'][0]
        self.assertEqual(2, pool['provisioned_capacity_gb'])

    def test_thin_and_thick_volumes_and_idempotent_delete(self):
        thin = self.create_volume()
        thick_type = self.make_type('thick',
                                    {'provisioning:type': 'thick'})
        thick = self.create_volume(volume_type=thick_type)
        self.assertTrue(
            self.vol_lvol(thin)['driver_specific']['lvol']['thin_provision'])
        self.assertFalse(
            self.vol_lvol(thick)['driver_specific']['lvol']['thin_provision'])
        self.assertEqual(1024 ** 3, self.vol_lvol(thin)['num_blocks'] *
                         self.vol_lvol(thin)['block_size'])
        self.manager.delete_volume(self.ctxt, thin)
        self.assertIsNone(self.vol_lvol(thin))
        self.driver.delete_volume(thin)  # already gone: no error

    def test_extend(self):
        volume = self.create_volume()
        self.manager.extend_volume(self.ctxt, volume, 3, None)
        bdev = self.vol_lvol(volume)
        self.assertEqual(3 * 1024 ** 3,
                         bdev['num_blocks'] * bdev['block_size'])

    def lvol_bytes(self, volume):
        bdev = self.vol_lvol(volume)
        return bdev['num_blocks'] * bdev['block_size']

    def count_rpcs(self):
        """RPCs per method since the last call (the double only)."""
        calls = getattr(self.target, 'calls', None)
        if calls is None:
            return None
        counted = dict(calls)
        calls.clear()
        return counted

    def test_extend_never_shrinks(self):
        """bdev_lvol_resize shrinks as readily as it grows: an extend to a
        smaller size must be refused with nothing touched.
        """
        volume = self.create_volume(size=2)
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.extend_volume, volume, 1)
        for part in (volume.id, 'new_size=1 GiB', 'is 2 GiB'):
            self.assertIn(part, str(exc))
        self.assertEqual(2 * 1024 ** 3, self.lvol_bytes(volume))
        # Through Cinder's manager: the volume is marked, not shrunk.
        self.manager.extend_volume(self.ctxt, volume, 1, None)
        volume.refresh()
        self.assertEqual('error_extending', volume.status)
        self.assertEqual(2 * 1024 ** 3, self.lvol_bytes(volume))
        # The same size is nothing to do, and costs no RPC.
        self.count_rpcs()
        self.driver.extend_volume(volume, 2)
        self.assertIn(self.count_rpcs(), (None, {}))
        self.assertEqual(2 * 1024 ** 3, self.lvol_bytes(volume))
        # Thick too, and a lvol bigger than Cinder's size (grown by an
        # extend whose database update was lost) is not cut back either.
        thick = self.create_volume(volume_type=self.make_type(
            'thick-shrink', {'provisioning:type': 'thick'}))
        self.assertRaises(exception.InvalidInput, self.driver.extend_volume,
                          thick, 0)
        self.driver.extend_volume(volume, 3)
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.extend_volume, volume, 2)
        self.assertIn('is 3 GiB', str(exc))
        self.assertEqual(3 * 1024 ** 3, self.lvol_bytes(volume))

    def test_newline_nqn_never_reaches_the_acl(self):
        volume = self.create_volume()
        vtype = self.make_type('vhost-nl', {'spdk:vhost_attach': '<is> True'})
        vhost_volume = self.create_volume(volume_type=vtype)
        for vol in (volume, vhost_volume):
            self.driver.create_export(self.ctxt, vol, self.connector())
        bad = HOST_NQN + '\n'
        cases = (
            (volume, self.connector(bad), 'nqn'),
            (volume, self.connector(HOST_NQN + ' '), 'nqn'),
            (volume, self.connector(HOST_NQN.replace(':', ':\x00', 1)),
             'nqn'),
            (vhost_volume, self.connector(
                spdk_vhost={'version': '1.0', 'host_nqn': bad}),
             'spdk_vhost.host_nqn'),
        )
        for vol, connector, field in cases:
            for call in (lambda: self.driver.validate_connector(connector),
                         lambda: self.driver.initialize_connection(
                             vol, connector)):
                exc = self.assertRaises(exception.InvalidInput, call)
                self.assertIn('connector field %s %r is not a valid NQN'
                              % (field, connector.get('nqn') if field == 'nqn'
                                 else bad), str(exc))
            self.assertEqual([], self.subsystem(vol)['hosts'])
        for connector, what in (
                (['nqn', HOST_NQN], 'connector='),
                (self.connector(spdk_vhost='yes'),
                 "spdk_vhost 'yes' is not a dict"),
                (self.connector(spdk_vhost={'version': '2.0',
                                            'host_nqn': HOST_NQN}),
                 "spdk_vhost.version '2.0' is not a version this side "
                 "speaks (1.x)")):
            exc = self.assertRaises(exception.InvalidInput,
                                    self.driver.initialize_connection,
                                    vhost_volume, connector)
            self.assertIn(what, str(exc))
        # The ACL takes only what validates, exactly as given.
        self.driver.initialize_connection(volume, self.connector())
        self.assertEqual([HOST_NQN],
                         [h['nqn'] for h in self.subsystem(volume)['hosts']])

    def test_detach_works_after_the_type_went_bad(self):
        """An admin sets spdk:vhost_attach to garbage on a type in use:
        new attaches are refused, but detach still removes the host that
        was allowed (the agent's NQN here, not the kernel's).
        """
        vtype = self.make_type('vhost-typo',
                               {'spdk:vhost_attach': '<is> True'})
        volume = self.create_volume(volume_type=vtype)
        connector = self.connector(spdk_vhost={'version': '1.0',
                                               'host_nqn': OTHER_NQN})
        self.driver.initialize_connection(volume, connector)
        self.assertEqual([OTHER_NQN],
                         [h['nqn'] for h in self.subsystem(volume)['hosts']])
        db_api.volume_type_extra_specs_update_or_create(
            self.ctxt, vtype['id'], {'spdk:vhost_attach': 'perhaps'})
        volume = objects.Volume.get_by_id(self.ctxt, volume.id)
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.initialize_connection, volume,
                                self.connector(spdk_vhost={'version': '1.0'}))
        self.assertIn("spdk:vhost_attach='perhaps'", str(exc))
        self.assertEqual([OTHER_NQN],
                         [h['nqn'] for h in self.subsystem(volume)['hosts']])
        self.driver.terminate_connection(volume, connector)
        self.assertEqual([], self.subsystem(volume)['hosts'])

    def test_attachment_recorded_with_a_bad_nqn_is_not_replayed(self):
        volume = self.create_volume()
        for nqn in (HOST_NQN, OTHER_NQN + '\n'):
            objects.VolumeAttachment(
                self.ctxt, volume_id=volume.id, attach_status='attached',
                connector=self.connector(nqn),
                attached_host='compute1').create()
        volume.refresh()
        self.driver.ensure_export(self.ctxt, volume)
        self.assertEqual({HOST_NQN}, self.driver._exports.hosts(volume.id))

    def fill_lvstore(self):
        lvs = self.rpc.call('bdev_lvol_get_lvstores',
                            {'lvs_name': self.lvs})[0]
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': 'filler', 'thin_provision':
            False, 'size_in_mib': lvs['free_clusters'] * lvs['cluster_size']
            // 2 ** 20})

    def test_space_is_checked_on_fresh_figures(self):
        """The lvstore fills up after the last stats refresh (a guest's
        writes, another thick volume): creates decide on what SPDK says
        now, not on the cached figures.
        """
        grown = self.create_volume()
        thick_type = self.make_type('thick-fresh',
                                    {'provisioning:type': 'thick'})
        thick = self.create_volume(volume_type=thick_type)
        pool = self.driver.get_volume_stats(refresh=True)['pools'][0]
        self.assertGreater(pool['free_capacity_gb'], 0)
        self.fill_lvstore()
        before = sorted(a for b in self.rpc.call('bdev_get_bdevs')
                        for a in b.get('aliases', []))
        thin = self.new_volume(size=1)
        self.count_rpcs()
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume, thin)
        self.assertIn('lvstore %s is full' % self.lvs, str(exc))
        # One look at that lvstore, nothing made.
        self.assertIn(self.count_rpcs(), (None, {'bdev_lvol_get_lvstores': 1}))
        self.assertIsNone(self.vol_lvol(thin))
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume,
                                self.new_volume(size=1,
                                                volume_type_id=thick_type.id))
        self.assertIn('lvstore %s has 0.00 GiB free' % self.lvs, str(exc))
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.extend_volume, thick, 2)
        self.assertIn('extending thick volume %s to 2 GiB' % thick.id,
                      str(exc))
        self.assertEqual(1024 ** 3, self.lvol_bytes(thick))
        self.assertEqual(before, sorted(
            a for b in self.rpc.call('bdev_get_bdevs')
            for a in b.get('aliases', [])))
        # A thin extend takes no cluster: it stays allowed.
        self.driver.extend_volume(grown, 2)
        # Room again: the next create sees it without a stats refresh.
        self.rpc.call('bdev_lvol_delete',
                      {'name': naming.lvol_alias(self.lvs, 'filler')})
        self.driver.create_volume(thin)
        self.assertIsNotNone(self.vol_lvol(thin))

    def test_create_costs_one_rpc_thick_and_two_thin(self):
        if not hasattr(self.target, 'calls'):
            self.skipTest('the double counts RPCs')
        thick_type = self.make_type('thick-cost',
                                    {'provisioning:type': 'thick'})
        self.count_rpcs()
        self.driver.create_volume(self.new_volume(size=1))
        self.assertEqual({'bdev_lvol_get_lvstores': 1, 'bdev_lvol_create': 1},
                         self.count_rpcs())
        self.driver.create_volume(self.new_volume(
            size=1, volume_type_id=thick_type.id))
        self.assertEqual({'bdev_lvol_create': 1}, self.count_rpcs())

    def test_bad_sizes_and_specs_are_refused_before_spdk(self):
        before = sorted(a for b in self.rpc.call('bdev_get_bdevs')
                        for a in b.get('aliases', []))
        self.count_rpcs()
        # Past what SPDK's size_in_mib * 2**20 can hold without wrapping,
        # and past anything the pool could hold thin.
        for size, what in ((2 ** 34 + 1, 'SPDK can address'),
                           (10 ** 6, 'max_over_subscription_ratio')):
            exc = self.assertRaises(exception.InvalidInput,
                                    self.driver.create_volume,
                                    self.new_volume(size=size))
            self.assertIn('size=%d GiB' % size, str(exc))
            self.assertIn(what, str(exc))
        volume = self.create_volume()
        self.count_rpcs()
        for new_size in (2 ** 34 + 1, 10 ** 6):
            exc = self.assertRaises(exception.InvalidInput,
                                    self.driver.extend_volume, volume,
                                    new_size)
            self.assertIn('new_size=%d GiB' % new_size, str(exc))
        for specs, name in (({'provisioning:type': 'thikc'},
                             'provisioning:type'),
                            ({'spdk:vhost_attach': 'maybe'},
                             'spdk:vhost_attach')):
            vtype = self.make_type('bad-%s' % uuid.uuid4(), specs)
            exc = self.assertRaises(
                exception.InvalidInput, self.driver.create_volume,
                self.new_volume(size=1, volume_type_id=vtype['id']))
            self.assertIn('extra spec %s=' % name, str(exc))
            diff, _same = volume_types.volume_types_diff(
                self.ctxt, self.default_type['id'], vtype['id'])
            self.assertRaises(exception.InvalidInput, self.driver.retype,
                              self.ctxt, volume, vtype, diff,
                              {'host': volume.host})
        self.assertIn(self.count_rpcs(), (None, {}))
        # A clone smaller than its source would cut the source's data off.
        big = self.create_volume(size=2)
        snapshot = self.snapshot_of(big)
        small = self.new_volume(size=1, snapshot_id=snapshot.id)
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.create_volume_from_snapshot,
                                small, snapshot)
        self.assertIn('smaller than its source snapshot', str(exc))
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.create_cloned_volume,
                                self.new_volume(size=1, source_volid=big.id),
                                big)
        self.assertIn('smaller than its source volume', str(exc))
        after = sorted(a for b in self.rpc.call('bdev_get_bdevs')
                       for a in b.get('aliases', []))
        made = [naming.lvol_alias(self.lvs, naming.volume_lvol_name(v.id))
                for v in (volume, big)] + [naming.lvol_alias(
                    self.lvs, naming.snapshot_lvol_name(snapshot.id))]
        self.assertEqual(sorted(before + made), after)

    def test_bad_manage_references_are_refused(self):
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': 'image-%s' % uuid.uuid4(),
            'size_in_mib': 1024, 'thin_provision': True})
        temp = [lv for lv in self.rpc.call('bdev_lvol_get_lvols')
                if lv['name'].startswith('image-')][0]
        volume = self.new_volume(size=0)
        for ref in ({'source-name': 'legacy\n'}, {'source-name': 42},
                    {'source-name': 'a' * 64}, {'source-name': 'x/y/z'},
                    {'source-name': '/x'}, {'source-id': ['x']},
                    {'source-name': temp['name']},
                    {'source-id': temp['uuid']}, {}, 'legacy'):
            self.assertRaises(exception.ManageExistingInvalidReference,
                              self.driver.manage_existing_get_size, volume,
                              ref)
            self.assertRaises(exception.ManageExistingInvalidReference,
                              self.driver.manage_existing, volume, ref)
        self.assertIsNotNone(self.lvol(temp['name']))
        self.assertIsNone(self.vol_lvol(volume))

    def test_snapshots_clones_and_deleting_a_snapshot_with_clones(
            self, restart_driver=False):
        volume = self.create_volume()
        snapshot = self.snapshot_of(volume)
        self.assertTrue(self.lvol(naming.snapshot_lvol_name(snapshot.id))
                        ['driver_specific']['lvol']['snapshot'])
        from_snap = self.new_volume(size=2, snapshot_id=snapshot.id)
        self.driver.create_volume_from_snapshot(from_snap, snapshot)
        self.assertEqual(2 * 1024 ** 3,
                         self.vol_lvol(from_snap)['num_blocks'] *
                         self.vol_lvol(from_snap)['block_size'])
        clone = self.new_volume(size=1, source_volid=volume.id)
        self.driver.create_cloned_volume(clone, volume)
        self.assertIsNotNone(self.vol_lvol(clone))
        # The snapshot backs the volume and from_snap: SPDK refuses to
        # delete it, Cinder must not notice.
        self.driver.delete_snapshot(snapshot)
        snapshot.destroy()
        self.assertIsNotNone(self.lvol(naming.snapshot_lvol_name(snapshot.id)))
        if restart_driver:
            # cinder-volume restarts: the hidden snapshot is recognised from
            # Cinder's database (its snapshot is deleted there).
            self.manager = importutils.import_object(CONF.volume_manager,
                                                     host=HOST)
            self.manager.init_host(service_id=None)
            self.driver = self.manager.driver
        for vol in (from_snap, clone, volume):
            self.driver.delete_volume(vol)
        leftovers = [a for b in self.rpc.call('bdev_get_bdevs')
                     for a in b.get('aliases', []) if a.startswith(self.lvs)]
        self.assertEqual([], leftovers)

    def test_hidden_snapshots_found_again_after_a_driver_restart(self):
        self.test_snapshots_clones_and_deleting_a_snapshot_with_clones(
            restart_driver=True)

    def test_revert_to_snapshot(self):
        volume = self.create_volume()
        snapshot = self.snapshot_of(volume)
        self.driver.revert_to_snapshot(self.ctxt, volume, snapshot)
        bdev = self.vol_lvol(volume)
        self.assertEqual(naming.snapshot_lvol_name(snapshot.id),
                         bdev['driver_specific']['lvol']['base_snapshot'])

    def test_attach_flow_adds_and_removes_the_host_acl(self):
        volume = self.create_volume()
        self.driver.create_export(self.ctxt, volume, self.connector())
        info = self.driver.initialize_connection(volume, self.connector())
        self.assertEqual('nvmeof', info['driver_volume_type'])
        data = info['data']
        self.assertEqual(volume.id, data['vol_uuid'])
        self.assertEqual([('127.0.0.1', str(self.target_port()), 'tcp')],
                         data['portals'])
        self.assertEqual(HOST_NQN, data['host_nqn'])
        sub = self.subsystem(volume)
        self.assertFalse(sub['allow_any_host'])
        self.assertEqual([HOST_NQN], [h['nqn'] for h in sub['hosts']])
        self.assertEqual(volume.id, sub['namespaces'][0]['uuid'])
        # A second attachment of another host, then its detach.
        self.driver.initialize_connection(volume, self.connector(OTHER_NQN))
        self.driver.terminate_connection(volume, self.connector(OTHER_NQN))
        self.assertEqual([HOST_NQN],
                         [h['nqn'] for h in self.subsystem(volume)['hosts']])
        self.driver.remove_export(self.ctxt, volume)
        self.assertIsNotNone(self.subsystem(volume))  # HOST still there
        self.driver.terminate_connection(volume, self.connector())
        self.driver.remove_export(self.ctxt, volume)
        self.assertIsNone(self.subsystem(volume))

    def test_vhost_mode_only_when_type_and_connector_agree(self):
        vtype = self.make_type('vhost', {'spdk:vhost_attach': '<is> True'})
        volume = self.create_volume(volume_type=vtype)
        plain = self.create_volume()
        vhost_connector = self.connector(spdk_vhost={'version': '1.0'})
        self.assertEqual('spdk_vhost', self.driver.initialize_connection(
            volume, vhost_connector)['driver_volume_type'])
        self.assertEqual('nvmeof', self.driver.initialize_connection(
            plain, vhost_connector)['driver_volume_type'])
        self.assertEqual('nvmeof', self.driver.initialize_connection(
            volume, self.connector(OTHER_NQN))['driver_volume_type'])

    def test_vhost_acl_names_the_agents_nqn(self):
        """The compute node's SPDK connects for vhost attachments: the ACL
        takes the NQN its agent reported, not the kernel initiator's (which
        a node without nvme-cli does not even have).
        """
        vtype = self.make_type('vhost', {'spdk:vhost_attach': '<is> True'})
        volume = self.create_volume(volume_type=vtype)
        plain = self.create_volume()
        connector = self.connector(spdk_vhost={'version': '1.0',
                                               'host_nqn': OTHER_NQN})
        del connector['nqn']
        info = self.driver.initialize_connection(volume, connector)
        self.assertEqual(OTHER_NQN, info['data']['host_nqn'])
        self.assertEqual([OTHER_NQN], [h['nqn'] for h in
                                       self.subsystem(volume)['hosts']])
        self.assertRaises(exception.InvalidConnectorException,
                          self.driver.initialize_connection, plain, connector)
        self.driver.terminate_connection(volume, connector)
        self.assertEqual([], self.subsystem(volume)['hosts'])

    def test_qos_applied_at_export_and_retype(self):
        limited = self.make_type('gold', qos={'total_iops_sec': '2500',
                                              'write_bytes_sec': '10485760'})
        volume = self.create_volume(volume_type=limited)
        # SPDK changes limits only on an opened bdev: they come with the
        # export.
        self.driver.create_export(self.ctxt, volume, self.connector())
        limits = self.vol_lvol(volume)['assigned_rate_limits']
        self.assertEqual(3000, limits['rw_ios_per_sec'])
        self.assertEqual(10, limits['w_mbytes_per_sec'])
        plain = self.make_type('plain')
        diff, _same = volume_types.volume_types_diff(
            self.ctxt, limited['id'], plain['id'])
        self.assertEqual((True, None), self.driver.retype(
            self.ctxt, volume, plain, diff, {'host': volume.host}))
        limits = self.vol_lvol(volume)['assigned_rate_limits']
        self.assertEqual(0, limits['rw_ios_per_sec'])

    def test_retype_thin_to_thick_inflates_and_thick_to_thin_migrates(self):
        volume = self.create_volume()
        thin, thick = self.make_type('thin2'), self.make_type(
            'thick2', {'provisioning:type': 'thick'})
        diff, _ = volume_types.volume_types_diff(self.ctxt, thin['id'],
                                                 thick['id'])
        self.assertEqual((True, None), self.driver.retype(
            self.ctxt, volume, thick, diff, {'host': volume.host}))
        self.assertFalse(
            self.vol_lvol(volume)['driver_specific']['lvol']['thin_provision'])
        back, _ = volume_types.volume_types_diff(self.ctxt, thick['id'],
                                                 thin['id'])
        self.assertFalse(self.driver.retype(self.ctxt, volume, thin, back,
                                            {'host': volume.host}))

    def test_manage_and_unmanage(self):
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': 'legacy', 'size_in_mib': 1536,
            'thin_provision': True})
        volume = self.new_volume(size=0)
        ref = {'source-name': 'legacy'}
        self.assertEqual(2, self.driver.manage_existing_get_size(volume, ref))
        self.driver.manage_existing(volume, ref)
        bdev = self.vol_lvol(volume)
        self.assertEqual(2 * 1024 ** 3,
                         bdev['num_blocks'] * bdev['block_size'])
        self.assertIsNone(self.lvol('legacy'))
        self.assertRaises(exception.ManageExistingInvalidReference,
                          self.driver.manage_existing_get_size, volume,
                          {'source-name': 'nope'})
        self.driver.unmanage(volume)
        self.assertIsNotNone(self.vol_lvol(volume))

    def test_manage_existing_snapshot_keeps_its_name(self):
        volume = self.create_volume()
        other = self.create_volume()
        for vol, snap in ((volume, 'legacy-snap'), (other, 'other-snap')):
            self.rpc.call('bdev_lvol_snapshot', {
                'lvol_name': naming.lvol_alias(
                    self.lvs, naming.volume_lvol_name(vol.id)),
                'snapshot_name': snap})
        snapshot = cinder_utils.create_snapshot(self.ctxt, volume.id)
        self.assertEqual(1, self.driver.manage_existing_snapshot_get_size(
            snapshot, {'source-name': 'legacy-snap'}))
        self.assertRaises(exception.ManageExistingInvalidReference,
                          self.driver.manage_existing_snapshot, snapshot,
                          {'source-name': 'other-snap'})
        update = self.driver.manage_existing_snapshot(
            snapshot, {'source-name': 'legacy-snap'})
        self.assertEqual({'provider_id': 'legacy-snap'}, update)
        snapshot.provider_id = 'legacy-snap'
        snapshot.save()
        clone = self.create_volume_from(snapshot)
        self.assertEqual('legacy-snap', self.vol_lvol(clone)[
            'driver_specific']['lvol']['base_snapshot'])

    def test_bad_input_is_refused_cleanly(self):
        volume = self.create_volume()
        before = len(self.rpc.call('bdev_get_bdevs'))
        self.assertRaises(exception.InvalidConnectorException,
                          self.driver.initialize_connection, volume,
                          {'host': 'x'})
        self.assertRaises(exception.InvalidInput,
                          self.driver.initialize_connection, volume,
                          self.connector('not-an-nqn'))
        elsewhere = self.new_volume(pool='nolvs', size=1)
        self.assertRaises(exception.InvalidInput,
                          self.driver.create_volume, elsewhere)
        thick = self.make_type('thick3', {'provisioning:type': 'thick'})
        huge_thick = self.new_volume(size=10 ** 5, volume_type_id=thick['id'])
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.driver.create_volume, huge_thick)
        clash = objects.Volume(self.ctxt, id=volume.id, host=volume.host,
                               size=1, volume_type_id=None)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume, clash)
        self.assertIn('already exists', str(exc))
        empty = self.new_volume(size=0)
        self.assertRaises(exception.InvalidInput, self.driver.create_volume,
                          empty)
        bad_qos = self.make_type('badqos', qos={'read_iops_sec': '100'})
        exc = self.assertRaises(
            exception.InvalidInput, self.driver.create_volume,
            self.new_volume(size=1, volume_type_id=bad_qos['id']))
        self.assertIn('read_iops_sec', str(exc))
        ghost = self.new_volume(size=1)
        snapshot = cinder_utils.create_snapshot(self.ctxt, ghost.id)
        self.assertRaises(exception.VolumeNotFound,
                          self.driver.create_snapshot, snapshot)
        self.assertEqual(before, len(self.rpc.call('bdev_get_bdevs')))
        self.assertIsNotNone(self.vol_lvol(volume))  # the clash survived

    def test_full_thin_pool_refuses_new_volumes(self):
        lvs = self.rpc.call('bdev_lvol_get_lvstores')[0]
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': 'filler',
            'size_in_mib': lvs['free_clusters'] * lvs['cluster_size'] // 2 **
            20, 'thin_provision': False})
        pool = self.driver.get_volume_stats(refresh=True)['pools'][0]
        self.assertEqual(0, pool['free_capacity_gb'])
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume,
                                self.new_volume(size=1))
        self.assertIn('full', str(exc))

    def test_unknown_lvstore_keeps_the_driver_uninitialized(self):
        self.flags(spdk_lvstores=['nope'], group='backend_defaults')
        manager = importutils.import_object(CONF.volume_manager, host=HOST)
        with self.assertLogs('cinder.volume.manager', 'ERROR') as logs:
            manager.init_host(service_id=None)
        self.assertFalse(manager.driver.initialized)
        self.assertIn('lvstore(s) nope not found', '\n'.join(logs.output))

    def test_two_attachments_of_one_host_share_the_acl(self):
        volume = self.create_volume()
        for _ in range(2):
            attachment = objects.VolumeAttachment(
                self.ctxt, volume_id=volume.id, attach_status='attached',
                connector=self.connector(), attached_host='compute1')
            attachment.create()
        volume.refresh()
        self.driver.initialize_connection(volume, self.connector())
        self.assertTrue(self.driver.terminate_connection(
            volume, self.connector()))
        self.assertEqual([HOST_NQN],
                         [h['nqn'] for h in self.subsystem(volume)['hosts']])

    def test_spdk_down_gives_a_clear_error(self):
        volume = self.create_volume()
        self.target.stop()
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.extend_volume, volume, 2)
        self.assertIn(self.target.socket_path, str(exc))

    def test_restart_restores_exports_hosts_and_qos(self):
        limited = self.make_type('silver', qos={'total_iops_sec': '5000'})
        volume = self.create_volume(volume_type=limited)
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.driver.initialize_connection(volume, self.connector())
        self.target.restart()
        # No stats poll: the driver's watcher saw its connection end and
        # replayed as soon as the target answered.
        sub = self.wait_for_subsystem(volume)
        self.assertEqual([HOST_NQN], [h['nqn'] for h in sub['hosts']])
        self.assertEqual(1, len(sub['namespaces']))
        self.assertEqual(5000, self.vol_lvol(volume)['assigned_rate_limits']
                         ['rw_ios_per_sec'])

    def wait_for_subsystem(self, volume, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            sub = self.subsystem(volume)
            if sub is not None and sub['hosts']:
                return sub
            self.assertLess(time.monotonic(), deadline,
                            'the export of %s did not come back' % volume.id)
            time.sleep(0.05)

    def test_an_attach_meeting_a_restarted_target_restores_first(self):
        # The attach of one volume does not wait for, nor depend on, the
        # replay of every other: it restores the transport and its own
        # export (with its hosts) itself, then allows the new host.
        volume = self.create_volume()
        other = self.create_volume()
        for vol in (volume, other):
            self.driver.initialize_connection(vol, self.connector())
        self.driver._recovery.stop()
        self.target.restart()
        info = self.driver.initialize_connection(
            volume, self.connector(nqn=OTHER_NQN))
        self.assertEqual(self.driver._exports.nqn(volume.id),
                         info['data']['target_nqn'])
        sub = self.subsystem(volume)
        self.assertEqual({HOST_NQN, OTHER_NQN},
                         {h['nqn'] for h in sub['hosts']})
        self.assertEqual(1, len(sub['listen_addresses']))
        self.assertIsNone(self.subsystem(other))
        # The watcher's next check replays the rest.
        self.driver._recovery.check()
        self.assertEqual([HOST_NQN], [h['nqn'] for h in
                                      self.subsystem(other)['hosts']])

    def test_both_restarting_restores_in_use_exports_from_cinder(self):
        volume = self.create_volume()
        attachment = objects.VolumeAttachment(
            self.ctxt, volume_id=volume.id, attach_status='attached',
            connector=self.connector(), attached_host='compute1')
        attachment.create()
        volume.status = 'in-use'
        volume.save()
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.driver.initialize_connection(volume, self.connector())
        # The old cinder-volume is gone: only the new one may restore.
        self.driver._recovery.stop()
        self.target.restart()
        # cinder-volume restarts too: ensure_export from its database.
        manager = importutils.import_object(CONF.volume_manager, host=HOST)
        manager.init_host(service_id=None)
        self.addCleanup(manager.driver._recovery.stop)
        self.assertTrue(manager.driver.initialized)
        # ensure_export wakes the new driver's watcher: no interval wait.
        sub = self.wait_for_subsystem(volume, timeout=5)
        self.assertEqual([HOST_NQN], [h['nqn'] for h in sub['hosts']])
        self.assertEqual(volume.id, sub['namespaces'][0]['uuid'])
