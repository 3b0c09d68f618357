"""The Cinder driver's own decisions, one behaviour per test.

Each test builds an SPDKDriver as cinder-volume does (its back-end section
set through oslo.config overrides, then do_setup and
check_for_setup_error) on the in-process SPDK double, and checks what the
driver decides: the RPCs it sends or withholds, the answer it gives Cinder,
the error it raises and the field that error names. The scenarios of
tests/functional/cinder_driver run whole Cinder flows on a database; here
Cinder objects are built in memory and volume types come from a small
registry, so a test costs milliseconds.

Cinder's own ``cinder.tests.unit`` helpers are not imported: importing that
package monkey-patches the whole process with eventlet, which the rest of
the unit tier does not run under.
"""

import os
from unittest import mock
import uuid

import fixtures
from os_brick.initiator.connectors import nvmeof
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_utils import units

from cinder.common import constants
from cinder import context
from cinder import exception
from cinder import objects
from cinder.volume import configuration
from cinder.volume import driver as cinder_driver

from cinder_driver import recovery
from cinder_driver import spdk
from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import naming
from tests import base
from tests.fixtures import spdk as spdk_fixtures

objects.register_all()

CONF = cfg.CONF
# The back-end section these tests configure; the driver names its state
# file after it.
GROUP = 'spdk_unit'
HOST = 'node1@spdk'
HOST_NQN = ('nqn.2014-08.org.nvmexpress:uuid:'
            '0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11')
AGENT_NQN = ('nqn.2014-08.org.nvmexpress:uuid:'
             '5b3f4c2e-8d7a-4e61-b0c9-2d4e6f8a1b3c')
VHOST_SPECS = {'spdk:vhost_attach': '<is> True'}
THICK_SPECS = {'provisioning:type': 'thick'}
MIB = units.Mi


def spdk_error(cls, method):
    """An error as the driver's SPDK client raises it."""
    return cls(method=method, error='Internal error', code=-32603)


class DriverTestCase(base.TestCase):
    """A set-up driver on FakeSPDKTarget, and Cinder objects for it.

    ``sent()`` lists the RPCs the driver sent since the last call, with
    their parameters: what a decision withholds shows as well as what it
    sends.
    """

    def setUp(self):
        super().setUp()
        self.target = self.useFixture(
            spdk_fixtures.FakeSPDKTarget(size_mib=4096))
        self.lvs = self.target.lvstore
        self.rpc = self.target.client
        self.ctxt = context.get_admin_context()
        self.config = self.useFixture(config_fixture.Config(CONF))
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        # The export-recovery watcher is ExportRecovery's own business
        # (test_recovery); here it would only outlive the test's target.
        self.useFixture(fixtures.MockPatchObject(recovery.ExportRecovery,
                                                 'start'))
        self.types = {}
        self.useFixture(fixtures.MockPatch(
            'cinder.volume.volume_types.get_volume_type_extra_specs',
            side_effect=lambda type_id, key=False: dict(
                self.types[type_id][0].extra_specs)))
        self.useFixture(fixtures.MockPatch(
            'cinder.volume.volume_types.get_volume_type_qos_specs',
            side_effect=lambda type_id: {'qos_specs':
                                         self.types[type_id][1]}))
        self.driver = self.make_driver()

    def make_driver(self, **flags):
        """A driver of the back-end section GROUP, set up on the target."""
        conf = configuration.Configuration(spdk.spdk_opts,
                                           config_group=GROUP)
        driver = spdk.SPDKDriver(configuration=conf, host=HOST)
        settings = dict(spdk_rpc_socket=self.target.socket_path,
                        spdk_target_addresses=['127.0.0.1'],
                        spdk_state_dir=self.state_dir,
                        volume_backend_name='spdk')
        settings.update(flags)
        self.config.config(group=GROUP, **settings)
        driver.do_setup(self.ctxt)
        driver.check_for_setup_error()
        self.useFixture(fixtures.MockPatchObject(
            driver._client, 'call', wraps=driver._client.call))
        self.driver = driver
        return driver

    def sent(self):
        """(method, params) of each RPC the driver sent since last asked."""
        spy = self.driver._client.call
        calls = [(c.args[0], c.args[1] if len(c.args) > 1 else None)
                 for c in spy.call_args_list]
        spy.reset_mock()
        return calls

    def sent_methods(self):
        return [method for method, _params in self.sent()]

    # -- Cinder objects ---------------------------------------------------

    def make_type(self, extra_specs=None, qos=None, consumer='back-end'):
        type_id = str(uuid.uuid4())
        vtype = objects.VolumeType(self.ctxt, id=type_id,
                                   name='type-%s' % type_id,
                                   extra_specs=dict(extra_specs or {}))
        qos_specs = ({'consumer': consumer, 'specs': dict(qos)}
                     if qos is not None else None)
        self.types[type_id] = (vtype, qos_specs)
        return vtype

    def volume(self, size=1, vtype=None, pool=None, attachments=()):
        """A volume object as Cinder hands it over; nothing made."""
        volume = objects.Volume(
            self.ctxt, id=str(uuid.uuid4()), _name_id=None, size=size,
            host='%s#%s' % (HOST, pool or self.lvs),
            volume_type_id=vtype.id if vtype else None,
            volume_attachment=objects.VolumeAttachmentList(
                objects=list(attachments)))
        if vtype:
            volume.volume_type = vtype
        return volume

    def create(self, size=1, vtype=None, pool=None):
        volume = self.volume(size, vtype, pool)
        self.driver.create_volume(volume)
        self.sent()
        return volume

    def snapshot(self, volume, provider_id=None):
        return objects.Snapshot(self.ctxt, id=str(uuid.uuid4()),
                                volume_id=volume.id, volume_size=volume.size,
                                volume=volume, provider_id=provider_id)

    def attachment(self, connector, status='attached'):
        return objects.VolumeAttachment(self.ctxt, id=str(uuid.uuid4()),
                                        attach_status=status,
                                        connector=connector)

    @staticmethod
    def connector(nqn=HOST_NQN, **extra):
        return dict({'nqn': nqn, 'host': 'compute1', 'multipath': False},
                    **extra)

    @staticmethod
    def vhost_connector(nqn=HOST_NQN, **capability):
        capability.setdefault('version', connection.VERSION)
        return DriverTestCase.connector(nqn, spdk_vhost=capability)

    @staticmethod
    def diff(old_type, new_type):
        """The extra-spec part of volume_types.volume_types_diff()."""
        old = dict(old_type.extra_specs) if old_type else {}
        new = dict(new_type.extra_specs) if new_type else {}
        return {'extra_specs': {key: (old.get(key), new.get(key))
                                for key in set(old) | set(new)}}

    # -- SPDK's side --------------------------------------------------------

    def add_lvstore(self, name, size_mib):
        """A second lvstore on an AIO file of its own."""
        path = os.path.join(self.target.workdir, name + '.img')
        with open(path, 'wb') as f:
            f.truncate(size_mib * MIB)
        self.rpc.call('bdev_aio_create', {'name': 'aio-' + name,
                                          'filename': path,
                                          'block_size': 512})
        self.rpc.call('bdev_lvol_create_lvstore', {
            'bdev_name': 'aio-' + name, 'lvs_name': name,
            'cluster_sz': 4 * MIB})

    def make_lvol(self, name, size_mib=1024, lvstore=None, thin=True):
        return self.rpc.call('bdev_lvol_create', {
            'lvs_name': lvstore or self.lvs, 'lvol_name': name,
            'size_in_mib': size_mib, 'thin_provision': thin})

    def lvol(self, alias):
        try:
            found = self.rpc.call('bdev_get_bdevs', {'name': alias})
        except spdk_exc.SPDKNotFound:
            return None
        return found[0] if found else None

    def vol_lvol(self, volume, lvstore=None):
        return self.lvol(naming.lvol_alias(lvstore or self.lvs,
                                           naming.volume_lvol_name(volume.id)))

    def subsystem(self, volume):
        try:
            return self.rpc.call('nvmf_get_subsystems',
                                 {'nqn': self.driver._exports.nqn(volume.id)}
                                 )[0]
        except spdk_exc.SPDKException:
            return None

    def acl(self, volume):
        return {h['nqn']: h.get('dhchap_key')
                for h in self.subsystem(volume)['hosts']}


class TestSetup(DriverTestCase):
    def test_driver_options_add_the_generic_options_the_driver_reads(self):
        names = [opt.name for opt in spdk.SPDKDriver.get_driver_options()]
        self.assertEqual(sorted(set(names)), sorted(names))
        self.assertLessEqual({'reserved_percentage',
                              'max_over_subscription_ratio',
                              'volume_backend_name'}, set(names))

    def test_nqn_prefix_that_makes_no_valid_nqn_is_refused(self):
        for prefix in ('openstack', 'nqn.2010-13.org.openstack',
                       'nqn.2010-10.org.open stack'):
            exc = self.assertRaises(exception.InvalidConfigurationValue,
                                    self.make_driver, spdk_nqn_prefix=prefix)
            self.assertIn('"spdk_nqn_prefix"', str(exc))

    def test_target_addresses_that_are_not_ip_literals_are_refused(self):
        for addresses in ([], ['storage.example.org'],
                          ['127.0.0.1', ' 10.0.0.1']):
            exc = self.assertRaises(exception.InvalidConfigurationValue,
                                    self.make_driver,
                                    spdk_target_addresses=addresses)
            self.assertIn('"spdk_target_addresses"', str(exc))

    def test_target_addresses_hosts_cannot_connect_to_are_refused(self):
        # Hosts connect to these addresses: the spdk_vhost contract (and
        # the agent reading it) refuses a portal on an unspecified,
        # multicast or interface-scoped address, so such a back end would
        # hand out connection data no compute node can use.
        for address in ('0.0.0.0', '::', '224.0.0.1', 'fe80::1%eth0'):
            self.assertRaises(spdk_exc.InvalidField, connection.portals,
                              [(address, '4420', 'tcp')])
            exc = self.assertRaises(exception.InvalidConfigurationValue,
                                    self.make_driver,
                                    spdk_target_addresses=[address])
            self.assertIn('"spdk_target_addresses"', str(exc))

    def test_no_lvstore_at_all_says_how_to_make_one(self):
        self.rpc.call('bdev_aio_delete', {'name': spdk_fixtures.BASE_BDEV})
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.make_driver)
        self.assertIn('has no lvstore: create one with '
                      'bdev_lvol_create_lvstore', str(exc))

    def test_missing_lvstore_error_lists_the_lvstores_there_are(self):
        self.add_lvstore('lvs1', 64)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.make_driver,
                                spdk_lvstores=['lvs1', 'gone'])
        self.assertIn('lvstore(s) gone not found', str(exc))
        self.assertIn('it has: lvs0, lvs1', str(exc))

    def test_dhchap_keeps_its_keys_in_a_private_directory(self):
        keys = os.path.join(self.state_dir, 'keys')
        self.make_driver(spdk_dhchap=True, spdk_keyring_dir=keys)
        self.assertEqual(0o700, os.stat(keys).st_mode & 0o777)

    def test_state_file_is_named_after_the_backend_section(self):
        volume = self.create()
        snapshot = self.snapshot(volume)
        self.driver.create_snapshot(snapshot)
        for _ in range(2):
            self.driver.create_volume_from_snapshot(self.volume(), snapshot)
        # The snapshot backs two clones: SPDK keeps it, the driver hides
        # it and records that in its state file.
        self.driver.delete_snapshot(snapshot)
        self.assertEqual([GROUP + '.json'], os.listdir(self.state_dir))


class TestProvisioning(DriverTestCase):
    def lvol_create_params(self, vtype):
        self.driver.create_volume(self.volume(vtype=vtype))
        (params,) = [p for m, p in self.sent() if m == 'bdev_lvol_create']
        return params

    def test_thin_unless_the_type_says_thick(self):
        for specs, thin in ((None, True), ({'provisioning:type': 'thin'},
                                           True),
                            (THICK_SPECS, False)):
            vtype = self.make_type(specs) if specs else None
            self.assertIs(thin, self.lvol_create_params(vtype)[
                'thin_provision'], specs)

    def test_lvols_are_cleared_as_configured(self):
        self.make_driver(spdk_lvol_clear_method='write_zeroes')
        self.assertEqual('write_zeroes',
                         self.lvol_create_params(None)['clear_method'])

    def test_clones_are_thin_whatever_the_type(self):
        source = self.create(vtype=self.make_type(THICK_SPECS))
        clone = self.volume(vtype=self.make_type(THICK_SPECS))
        self.driver.create_cloned_volume(clone, source)
        self.assertTrue(self.vol_lvol(clone)['driver_specific']['lvol'][
            'thin_provision'])


class TestInitializeConnection(DriverTestCase):
    def test_vhost_type_and_capability_answer_the_spdk_vhost_contract(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(
            volume, self.vhost_connector(host_nqn=AGENT_NQN))
        # The agent's own parser reads it.
        props = connection.SPDKVhostConnProps(info, volume.id)
        self.assertEqual(connection.VERSION, props.version)
        self.assertEqual(self.driver._exports.nqn(volume.id),
                         props.target_nqn)
        self.assertEqual([('127.0.0.1', '4420', 'tcp')], props.portals)
        self.assertEqual(AGENT_NQN, props.host_nqn)
        self.assertIsNone(props.dhchap_secret)
        self.assertEqual({AGENT_NQN: None}, self.acl(volume))

    def test_kernel_answer_is_os_brick_nvmeof_on_the_configured_portals(self):
        self.make_driver(spdk_target_addresses=['127.0.0.1', '::1'],
                         spdk_target_port=4430)
        volume = self.create()
        info = self.driver.initialize_connection(volume, self.connector())
        self.assertEqual(connection.NVMEOF, info['driver_volume_type'])
        (target,) = nvmeof.NVMeOFConnProps(info['data']).targets
        self.assertEqual(volume.id, target.uuid)
        self.assertEqual(self.driver._exports.nqn(volume.id), target.nqn)
        self.assertEqual([('127.0.0.1', '4430', 'tcp'),
                          ('::1', '4430', 'tcp')],
                         [(p.address, p.port, p.transport)
                          for p in target.portals])
        self.assertEqual({HOST_NQN: None}, self.acl(volume))

    def test_type_saying_no_vhost_answers_nvmeof_to_a_vhost_connector(self):
        volume = self.create(vtype=self.make_type(
            {'spdk:vhost_attach': '<is> False'}))
        info = self.driver.initialize_connection(
            volume, self.vhost_connector(host_nqn=AGENT_NQN))
        self.assertEqual(connection.NVMEOF, info['driver_volume_type'])
        # The kernel initiator connects, not the agent's SPDK.
        self.assertEqual({HOST_NQN: None}, self.acl(volume))

    def test_vhost_attach_spec_is_read_as_a_cinder_boolean(self):
        for value, kind in (('<is> True', connection.SPDK_VHOST),
                            ('<is>true', connection.SPDK_VHOST),
                            ('True', connection.SPDK_VHOST),
                            ('<is> False', connection.NVMEOF),
                            ('false', connection.NVMEOF)):
            volume = self.create(vtype=self.make_type(
                {'spdk:vhost_attach': value}))
            self.assertEqual(kind, self.driver.initialize_connection(
                volume, self.vhost_connector(host_nqn=AGENT_NQN))[
                    'driver_volume_type'], value)
        for value in ('<is> maybe', '<in> True', 'Truee'):
            exc = self.assertRaises(
                exception.InvalidInput, self.driver.create_volume,
                self.volume(vtype=self.make_type(
                    {'spdk:vhost_attach': value})))
            self.assertIn('spdk:vhost_attach=%r' % value, str(exc))

    def test_empty_capability_is_no_capability(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(
            volume, self.connector(spdk_vhost={}))
        self.assertEqual(connection.NVMEOF, info['driver_volume_type'])

    def test_newer_minor_capability_version_is_served(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(
            volume, self.vhost_connector(version='1.9', host_nqn=AGENT_NQN,
                                         new_field='ignored'))
        self.assertEqual(connection.SPDK_VHOST, info['driver_volume_type'])
        self.assertEqual(connection.VERSION, info['data']['version'])

    def test_capability_version_errors_name_the_field(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        for version, why in ((1, 'is not a version (major.minor)'),
                             ('1', 'is not a version (major.minor)'),
                             ('0.9', 'is not a version this side speaks')):
            exc = self.assertRaises(
                exception.InvalidInput, self.driver.initialize_connection,
                volume, self.vhost_connector(version=version))
            self.assertIn('connector field spdk_vhost.version %r %s'
                          % (version, why), str(exc))
        self.assertIsNone(self.subsystem(volume))

    def test_capability_without_agent_nqn_allows_the_connector_nqn(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(volume,
                                                 self.vhost_connector())
        self.assertEqual(connection.SPDK_VHOST, info['driver_volume_type'])
        self.assertEqual(HOST_NQN, info['data']['host_nqn'])
        self.assertEqual({HOST_NQN: None}, self.acl(volume))

    def test_attach_of_a_volume_not_yet_exported_exports_it(self):
        volume = self.create(vtype=self.make_type(
            qos={'total_iops_sec': '3000'}))
        self.driver.initialize_connection(volume, self.connector())
        self.assertEqual(volume.id,
                         self.subsystem(volume)['namespaces'][0]['uuid'])
        self.assertEqual(3000, self.vol_lvol(volume)['assigned_rate_limits'][
            'rw_ios_per_sec'])

    def test_spdk_error_on_the_acl_is_a_backend_error(self):
        volume = self.create()
        self.driver.create_export(self.ctxt, volume, self.connector())
        with mock.patch.object(self.driver._exports, 'allow_host',
                               side_effect=spdk_error(
                                   spdk_exc.SPDKRPCError,
                                   'nvmf_subsystem_add_host')):
            self.assertRaises(exception.VolumeBackendAPIException,
                              self.driver.initialize_connection, volume,
                              self.connector())


class TestDHHMACCHAP(DriverTestCase):
    def setUp(self):
        super().setUp()
        self.keys = os.path.join(self.state_dir, 'keys')
        self.make_driver(spdk_dhchap=True, spdk_keyring_dir=self.keys)

    def test_vhost_attachment_gets_a_key_for_its_host(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(
            volume, self.vhost_connector(host_nqn=AGENT_NQN))
        secret = connection.SPDKVhostConnProps(info, volume.id).dhchap_secret
        self.assertIsNotNone(secret)
        (key,) = self.acl(volume).values()
        self.assertIsNotNone(key)
        with open(os.path.join(self.keys, key)) as f:
            self.assertEqual(secret, f.read().strip())

    def test_kernel_attachment_stays_acl_only(self):
        # os-brick's nvmeof connector cannot authenticate.
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(volume, self.connector())
        self.assertEqual(connection.NVMEOF, info['driver_volume_type'])
        self.assertNotIn(connection.DHCHAP_SECRET, info['data'])
        self.assertEqual({HOST_NQN: None}, self.acl(volume))
        self.assertEqual([], os.listdir(self.keys))

    def test_without_dhchap_vhost_attachments_get_no_key(self):
        self.make_driver(spdk_dhchap=False)
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        info = self.driver.initialize_connection(
            volume, self.vhost_connector(host_nqn=AGENT_NQN))
        self.assertNotIn(connection.DHCHAP_SECRET, info['data'])
        self.assertEqual({AGENT_NQN: None}, self.acl(volume))


class TestTerminateConnection(DriverTestCase):
    def attached(self, volume, *connectors):
        for connector in connectors:
            self.driver.initialize_connection(volume, connector)
        volume.volume_attachment = objects.VolumeAttachmentList(
            objects=[self.attachment(c) for c in connectors])

    def test_no_connector_is_a_force_detach_of_every_host(self):
        volume = self.create()
        self.attached(volume, self.connector(), self.connector(AGENT_NQN))
        self.assertFalse(self.driver.terminate_connection(volume, None))
        self.assertEqual({}, self.acl(volume))

    def test_attachments_not_attached_do_not_keep_the_host(self):
        volume = self.create()
        self.attached(volume, self.connector())
        for status in ('detached', 'attaching', 'reserved'):
            volume.volume_attachment.objects.append(
                self.attachment(self.connector(), status))
        self.assertFalse(self.driver.terminate_connection(
            volume, self.connector()))
        self.assertEqual({}, self.acl(volume))

    def test_other_hosts_attachments_do_not_keep_this_host(self):
        volume = self.create()
        self.attached(volume, self.connector(), self.connector(AGENT_NQN))
        self.assertFalse(self.driver.terminate_connection(
            volume, self.connector()))
        self.assertEqual({AGENT_NQN: None}, self.acl(volume))


class TestEnsureExport(DriverTestCase):
    def test_live_attachments_are_restored_with_their_connecting_nqn(self):
        vhost = self.make_type(VHOST_SPECS)
        volume = self.create(vtype=vhost)
        third = 'nqn.2014-08.org.nvmexpress:uuid:' + str(uuid.uuid4())
        volume.volume_attachment = objects.VolumeAttachmentList(objects=[
            # The agent's SPDK connects for a vhost attachment.
            self.attachment(self.vhost_connector(host_nqn=AGENT_NQN)),
            self.attachment(self.connector(), 'attaching'),
            self.attachment(self.connector(third), 'detached'),
            self.attachment(None, 'reserved')])
        self.driver.ensure_export(self.ctxt, volume)
        self.assertEqual([], self.sent_methods())
        # The recovery watcher's next look replays it.
        self.driver._recovery.check()
        self.assertEqual({AGENT_NQN: None, HOST_NQN: None}, self.acl(volume))


class TestRetype(DriverTestCase):
    def retype(self, volume, new_type, pool=None):
        old_type = volume.volume_type if volume.volume_type_id else None
        return self.driver.retype(
            self.ctxt, volume, new_type, self.diff(old_type, new_type),
            {'host': '%s#%s' % (HOST, pool or self.lvs)})

    def test_another_pool_is_a_migration(self):
        volume = self.create()
        self.assertFalse(self.retype(volume, self.make_type(), pool='lvs1'))
        self.assertEqual([], self.sent())

    def test_same_provisioning_without_qos_changes_nothing_in_spdk(self):
        volume = self.create(vtype=self.make_type(VHOST_SPECS))
        self.assertEqual((True, None), self.retype(volume, self.make_type()))
        self.assertEqual([], self.sent())

    def test_untyped_volume_to_thick_is_inflated_in_place(self):
        volume = self.create()
        self.assertEqual((True, None),
                         self.retype(volume, self.make_type(THICK_SPECS)))
        alias = naming.lvol_alias(self.lvs,
                                  naming.volume_lvol_name(volume.id))
        self.assertEqual([('bdev_lvol_inflate', {'name': alias})],
                         self.sent())

    def test_thick_to_a_type_without_provisioning_spec_migrates(self):
        # No spec means thin, and SPDK cannot give clusters back in place.
        volume = self.create(vtype=self.make_type(THICK_SPECS))
        self.assertFalse(self.retype(volume, self.make_type()))
        self.assertEqual([], self.sent())

    def test_front_end_qos_lifts_the_back_end_limits(self):
        volume = self.create(vtype=self.make_type(
            qos={'total_iops_sec': '3000'}))
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.assertEqual((True, None), self.retype(volume, self.make_type(
            qos={'total_iops_sec': '500'}, consumer='front-end')))
        self.assertEqual(0, self.vol_lvol(volume)['assigned_rate_limits'][
            'rw_ios_per_sec'])

    def test_type_with_unenforceable_qos_is_refused_before_any_change(self):
        volume = self.create()
        bad = self.make_type(THICK_SPECS, qos={'read_iops_sec': '100'})
        exc = self.assertRaises(exception.InvalidInput, self.retype, volume,
                                bad)
        self.assertIn('read_iops_sec', str(exc))
        # The refused retype left the volume as it was: still thin.
        self.assertEqual([], self.sent())


class TestManage(DriverTestCase):
    def assert_refused(self, ref, *parts):
        volume = self.volume(size=0)
        for call in (self.driver.manage_existing_get_size,
                     self.driver.manage_existing):
            exc = self.assertRaises(exception.ManageExistingInvalidReference,
                                    call, volume, ref)
            for part in parts:
                self.assertIn(part, str(exc))

    def test_malformed_references_are_refused_naming_the_field(self):
        temporary = 'image-%s' % uuid.uuid4()
        for ref, what in (
                ('legacy', 'the reference must be a dictionary'),
                ({}, 'give source-name (lvol name or lvstore/lvol) or '
                     'source-id (lvol UUID)'),
                ({'source-name': ''}, 'give source-name'),
                ({'source-name': 42}, 'source-name=42 is not an lvol name'),
                ({'source-id': ['x']}, "source-id=['x'] is not an lvol"),
                ({'source-name': 'x/y/z'}, "source-name='x/y/z' is not"),
                ({'source-name': '/x'}, "source-name='/x' is not"),
                ({'source-name': 'lvs0/'}, "source-name='lvs0/' is not"),
                ({'source-name': 'a' * 64}, 'source-name=%r is not'
                 % ('a' * 64)),
                ({'source-name': 'legacy\n'}, "source-name='legacy\\n' is"),
                ({'source-name': temporary}, "source-name=%r is one of the "
                 "driver's own temporary lvols" % temporary),
                ({'source-id': 'lvs0/hidden-x'}, "source-id='lvs0/hidden-x' "
                 "is one of the driver's own temporary lvols")):
            self.assert_refused(ref, what)
        # All refused on their form: SPDK was not asked.
        self.assertEqual([], self.sent())

    def test_a_type_this_back_end_cannot_honour_is_refused(self):
        self.make_lvol('legacy', 1024)
        bad = self.make_type(qos={'read_iops_sec': '100'})
        volume = self.volume(size=0, vtype=bad)
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.manage_existing, volume,
                                {'source-name': 'legacy'})
        self.assertIn('read_iops_sec', str(exc))
        self.assertEqual([], self.sent())

    def test_unknown_lvol_is_named_with_its_pool(self):
        self.assert_refused({'source-name': 'nope'}, 'no lvol lvs0/nope in '
                            'SPDK')

    def test_source_id_finds_the_lvol_by_uuid(self):
        lvol_uuid = self.make_lvol('legacy', 2048)
        volume = self.volume(size=0)
        ref = {'source-id': lvol_uuid}
        self.assertEqual(2, self.driver.manage_existing_get_size(volume, ref))
        self.driver.manage_existing(volume, ref)
        self.assertEqual(lvol_uuid, self.vol_lvol(volume)['name'])

    def test_source_name_wins_over_source_id(self):
        self.make_lvol('by-name', 1024)
        other = self.make_lvol('by-id', 2048)
        self.assertEqual(1, self.driver.manage_existing_get_size(
            self.volume(size=0),
            {'source-name': 'by-name', 'source-id': other}))

    def test_lvol_of_another_pool_is_refused(self):
        self.add_lvstore('lvs1', 64)
        lvol_uuid = self.make_lvol('legacy', 8, lvstore='lvs1')
        for ref in ({'source-name': 'lvs1/legacy'}, {'source-id': lvol_uuid}):
            self.assert_refused(ref, 'lvs1/legacy is not in pool lvs0')

    def test_lvol_of_another_cinder_volume_is_already_managed(self):
        other = self.create()
        name = naming.volume_lvol_name(other.id)
        exc = self.assertRaises(exception.ManageExistingAlreadyManaged,
                                self.driver.manage_existing,
                                self.volume(size=0), {'source-name': name})
        self.assertIn(naming.lvol_alias(self.lvs, name), str(exc))
        self.assertIsNotNone(self.vol_lvol(other))

    def test_snapshot_is_not_managed_as_a_volume(self):
        snapshot = self.snapshot(self.create())
        self.driver.create_snapshot(snapshot)
        name = naming.snapshot_lvol_name(snapshot.id)
        exc = self.assertRaises(exception.ManageExistingInvalidReference,
                                self.driver.manage_existing,
                                self.volume(size=0), {'source-name': name})
        self.assertIn('is a snapshot, not a volume', str(exc))

    def test_whole_gib_lvol_is_only_renamed(self):
        self.make_lvol('legacy', 2048)
        volume = self.volume(size=0)
        self.driver.manage_existing(volume, {'source-name': 'legacy'})
        self.assertEqual(['bdev_get_bdevs', 'bdev_lvol_rename'],
                         self.sent_methods())

    def test_volume_lvol_is_not_managed_as_a_snapshot(self):
        volume = self.create()
        exc = self.assertRaises(
            exception.ManageExistingInvalidReference,
            self.driver.manage_existing_snapshot, self.snapshot(volume),
            {'source-name': naming.volume_lvol_name(volume.id)})
        self.assertIn('is not a snapshot', str(exc))

    def test_unmanage_removes_the_export_and_keeps_the_lvol(self):
        volume = self.create()
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.driver.unmanage(volume)
        self.assertIsNone(self.subsystem(volume))
        self.assertIsNotNone(self.vol_lvol(volume))

    def test_unmanage_of_an_unexported_volume_sends_nothing(self):
        self.driver.unmanage(self.create())
        self.assertEqual([], self.sent())


class TestClones(DriverTestCase):
    def setUp(self):
        super().setUp()
        self.source = self.create()
        self.snap = self.snapshot(self.source)
        self.driver.create_snapshot(self.snap)
        self.sent()

    def test_clone_of_the_source_size_is_not_resized(self):
        self.driver.create_volume_from_snapshot(self.volume(), self.snap)
        self.assertEqual(['bdev_lvol_clone'], self.sent_methods())

    def test_bigger_clone_grows_once_cloned(self):
        clone = self.volume(size=3)
        self.driver.create_volume_from_snapshot(clone, self.snap)
        self.assertEqual(
            [('bdev_lvol_clone', mock.ANY), ('bdev_lvol_resize', {
                'name': naming.lvol_alias(
                    self.lvs, naming.volume_lvol_name(clone.id)),
                'size_in_mib': 3072})], self.sent())

    def test_clone_that_cannot_grow_is_removed(self):
        clone = self.volume(size=3)
        with mock.patch.object(self.driver._lvols, 'resize',
                               side_effect=spdk_error(spdk_exc.SPDKNoSpace,
                                                      'bdev_lvol_resize')):
            self.assertRaises(exception.VolumeBackendAPIException,
                              self.driver.create_cloned_volume, clone,
                              self.source)
        self.assertIsNone(self.vol_lvol(clone))

    def test_clone_stays_in_its_sources_pool_and_says_so(self):
        self.add_lvstore('lvs1', 64)
        self.make_driver()
        elsewhere = self.volume(pool='lvs1')
        self.assertEqual({'host': '%s#%s' % (HOST, self.lvs)},
                         self.driver.create_volume_from_snapshot(elsewhere,
                                                                 self.snap))
        self.assertIsNotNone(self.vol_lvol(elsewhere))
        self.assertIsNone(self.driver.create_cloned_volume(self.volume(),
                                                           self.source))

    def test_clone_of_a_missing_snapshot_is_snapshot_not_found(self):
        gone = self.snapshot(self.source)
        self.assertRaises(exception.SnapshotNotFound,
                          self.driver.create_volume_from_snapshot,
                          self.volume(), gone)

    def test_clone_of_a_missing_volume_is_volume_not_found(self):
        self.assertRaises(exception.VolumeNotFound,
                          self.driver.create_cloned_volume, self.volume(),
                          self.volume())

    def test_clone_of_a_type_whose_qos_spdk_cannot_enforce_is_refused(self):
        # As create_volume does: the type is refused before anything is
        # made, not at the first attach.
        bad = self.make_type(qos={'read_iops_sec': '100'})
        for make, source in ((self.driver.create_volume_from_snapshot,
                              self.snap),
                             (self.driver.create_cloned_volume,
                              self.source)):
            clone = self.volume(vtype=bad)
            exc = self.assertRaises(exception.InvalidInput, make, clone,
                                    source)
            self.assertIn('read_iops_sec', str(exc))
            self.assertIsNone(self.vol_lvol(clone))


class TestExtendAndDelete(DriverTestCase):
    def alias(self, volume):
        return naming.lvol_alias(self.lvs, naming.volume_lvol_name(volume.id))

    def test_extend_is_one_resize(self):
        volume = self.create()
        self.driver.extend_volume(volume, 2)
        self.assertEqual([('bdev_lvol_resize', {'name': self.alias(volume),
                                                'size_in_mib': 2048})],
                         self.sent())

    def test_extend_to_the_size_the_lvol_already_has_sends_nothing(self):
        # An earlier extend grew the lvol, and Cinder's update was lost.
        volume = self.create()
        self.driver.extend_volume(volume, 2)
        self.sent()
        self.driver.extend_volume(volume, 2)
        self.assertEqual([], self.sent())

    def test_delete_of_an_exported_volume_unexports_first(self):
        volume = self.create()
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.sent()
        self.driver.delete_volume(volume)
        self.assertEqual(['nvmf_delete_subsystem', 'bdev_lvol_delete'],
                         self.sent_methods())
        self.assertIsNone(self.subsystem(volume))

    def test_delete_of_a_volume_never_made_succeeds(self):
        self.driver.delete_volume(self.volume())
        self.assertEqual(['bdev_lvol_delete'], self.sent_methods())

    def test_busy_lvol_is_a_busy_volume(self):
        volume = self.create()
        with mock.patch.object(self.driver._lvols, 'delete',
                               side_effect=spdk_error(spdk_exc.SPDKBusy,
                                                      'bdev_lvol_delete')):
            self.assertRaises(exception.VolumeIsBusy,
                              self.driver.delete_volume, volume)


class TestSnapshots(DriverTestCase):
    def test_managed_snapshot_is_deleted_by_its_own_name(self):
        volume = self.create()
        self.rpc.call('bdev_lvol_snapshot', {
            'lvol_name': naming.lvol_alias(
                self.lvs, naming.volume_lvol_name(volume.id)),
            'snapshot_name': 'legacy-snap'})
        self.driver.delete_snapshot(self.snapshot(volume,
                                                  provider_id='legacy-snap'))
        self.assertIsNone(self.lvol(naming.lvol_alias(self.lvs,
                                                      'legacy-snap')))

    def test_snapshot_name_taken_is_a_backend_error_naming_it(self):
        volume = self.create()
        snapshot = self.snapshot(volume)
        name = naming.snapshot_lvol_name(snapshot.id)
        self.make_lvol(name, 4)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_snapshot, snapshot)
        self.assertIn('An lvol named %s already exists' % name, str(exc))


class TestStats(DriverTestCase):
    def test_one_pool_per_lvstore_with_its_own_figures(self):
        self.add_lvstore('lvs1', 2048)
        self.make_driver(reserved_percentage=10,
                         max_over_subscription_ratio='3.5')
        self.create(size=2)
        self.create(vtype=self.make_type(THICK_SPECS), pool='lvs1',
                    size=1)
        stats = self.driver.get_volume_stats(refresh=True)
        found = {lvs['name']: lvs
                 for lvs in self.rpc.call('bdev_lvol_get_lvstores')}
        self.assertEqual(['lvs0', 'lvs1'],
                         [p['pool_name'] for p in stats['pools']])
        for pool, provisioned in zip(stats['pools'], (2, 1)):
            lvs = found[pool['pool_name']]
            self.assertEqual(lvs['total_data_clusters'] *
                             lvs['cluster_size'] / units.Gi,
                             pool['total_capacity_gb'])
            self.assertEqual(lvs['free_clusters'] * lvs['cluster_size'] /
                             units.Gi, pool['free_capacity_gb'])
            self.assertEqual(provisioned, pool['provisioned_capacity_gb'])
            self.assertEqual(10, pool['reserved_percentage'])
            self.assertEqual(3.5, pool['max_over_subscription_ratio'])
            self.assertEqual('SPDKDriver:%s:%s' % (self.target.socket_path,
                                                   lvs['uuid']),
                             pool['location_info'])
        self.assertLess(stats['pools'][1]['free_capacity_gb'],
                        stats['pools'][1]['total_capacity_gb'])

    def test_spdk_lvstores_picks_the_pools(self):
        self.add_lvstore('lvs1', 64)
        self.make_driver(spdk_lvstores=['lvs1'])
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(['lvs1'], [p['pool_name'] for p in stats['pools']])
        self.assertRaises(exception.InvalidInput, self.driver.create_volume,
                          self.volume(pool=self.lvs))

    def test_backend_fields(self):
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(
            {'volume_backend_name': 'spdk', 'vendor_name': 'SPDK',
             'driver_version': spdk.SPDKDriver.VERSION,
             'storage_protocol': constants.NVMEOF_TCP,
             'sparse_copy_volume': True},
            {k: v for k, v in stats.items() if k != 'pools'})
        self.make_driver(volume_backend_name=None)
        self.assertEqual('SPDK', self.driver.get_volume_stats(
            refresh=True)['volume_backend_name'])


class TestImageCopy(DriverTestCase):
    def copy(self, method, vtype=None):
        self.make_driver(spdk_image_copy=method)
        volume = self.create(vtype=vtype)
        service = mock.Mock()
        with mock.patch.object(self.driver._images,
                               'image_to_volume') as spdk_copy, \
                mock.patch.object(cinder_driver.VolumeDriver,
                                  'copy_image_to_volume') as brick_copy:
            self.driver.copy_image_to_volume(self.ctxt, volume, service,
                                             'image-1')
        return volume, service, spdk_copy, brick_copy

    def test_spdk_copy_makes_the_volume_as_its_type_says(self):
        volume, service, spdk_copy, brick_copy = self.copy(
            'spdk', self.make_type(THICK_SPECS))
        spdk_copy.assert_called_once_with(
            self.ctxt, volume, self.lvs, False, service, 'image-1',
            self.driver.configuration.volume_dd_blocksize)
        brick_copy.assert_not_called()

    def test_os_brick_copy_is_cinders(self):
        _volume, _service, spdk_copy, brick_copy = self.copy('os-brick')
        spdk_copy.assert_not_called()
        brick_copy.assert_called_once()

    def test_auto_uses_os_brick_where_the_kernel_initiator_is(self):
        self.make_driver(spdk_image_copy='auto')
        for present in (True, False):
            with mock.patch('os.path.exists',
                            return_value=present) as exists:
                self.assertIs(not present,
                              self.driver._use_spdk_for_images())
            exists.assert_called_once_with('/dev/nvme-fabrics')

    def test_upload_through_spdk_reads_the_volumes_pool(self):
        self.make_driver(spdk_image_copy='spdk')
        volume = self.create()
        service, meta = mock.Mock(), {'id': 'image-1'}
        with mock.patch.object(self.driver._images,
                               'volume_to_image') as spdk_copy:
            self.driver.copy_volume_to_image(self.ctxt, volume, service, meta)
        spdk_copy.assert_called_once_with(self.ctxt, volume, self.lvs,
                                          service, meta)


class TestRevert(DriverTestCase):
    def test_revert_of_an_exported_volume_exports_the_reverted_lvol(self):
        volume = self.create(vtype=self.make_type(
            qos={'total_iops_sec': '3000'}))
        self.driver.initialize_connection(volume, self.connector())
        snapshot = self.snapshot(volume)
        self.driver.create_snapshot(snapshot)
        before = self.vol_lvol(volume)['uuid']
        self.driver.revert_to_snapshot(self.ctxt, volume, snapshot)
        after = self.vol_lvol(volume)
        self.assertNotEqual(before, after['uuid'])
        self.assertEqual([after['name']], [
            ns['bdev_name'] for ns in self.subsystem(volume)['namespaces']])
        self.assertEqual({HOST_NQN: None}, self.acl(volume))
        self.assertEqual(3000, after['assigned_rate_limits']['rw_ios_per_sec'])
