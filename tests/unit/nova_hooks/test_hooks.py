"""The Nova hooks with Nova 34's own classes (no libvirt connection)."""

from unittest import mock

import fixtures
from lxml import etree
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import oslo_messaging as messaging
from oslo_serialization import jsonutils

from nova import exception as nova_exception
from nova import objects
from nova.virt import driver as virt_driver
from nova.virt.libvirt import driver as libvirt_driver

from nova_hooks import agent_client
from nova_hooks import driver as hooks_driver
from nova_hooks import vhost_disk_xml
from nova_hooks import volume as spdk_volume
from spdk_common import exception as spdk_exc
from tests import base

objects.register_all()

VOLUME = '6d16b505-c3c4-45ff-8b82-8733c204a56a'
AGENT_NQN = ('nqn.2014-08.org.nvmexpress:uuid:'
             '7e1c9a42-5b1d-4f0e-9c3a-1d2e3f4a5b6c')


def instance(pagesize=2048, vcpus=2, nodes=(0,)):
    topology = None
    if pagesize is not None:
        topology = objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(id=node, cpuset=set(), pcpuset=set(),
                                     memory=256, pagesize=pagesize)
            for node in nodes])
    return objects.Instance(uuid='a7b1c2d3-0000-4000-8000-000000000001',
                            numa_topology=topology,
                            flavor=objects.Flavor(vcpus=vcpus))


def connection_info(**data):
    info = {'driver_volume_type': 'spdk_vhost', 'serial': VOLUME,
            'data': {'target_nqn': 'nqn.2010-10.org.openstack:volume-1',
                     'host_nqn': 'nqn.2014-08.org.nvmexpress:uuid:'
                                 '0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11',
                     'portals': [('10.0.0.2', '4420', 'tcp')],
                     'vol_uuid': VOLUME}}
    info['data'].update(data)
    return info


class RecordingAgent:
    """Stands in for the agent's RPC client (the agent itself runs for
    real in the SPDK tier).
    """

    def __init__(self):
        self.calls = []
        self.down = False
        # detach_volume answers VolumeBusy this many times.
        self.busy = 0

    def attach_volume(self, volume_id, info, numa_nodes=None, qos=None):
        self.calls.append(('attach', volume_id, numa_nodes, qos))
        return '/var/lib/spdk-vhost-target/sockets/vhost-' + volume_id

    def detach_volume(self, volume_id):
        self.calls.append(('detach', volume_id))
        if self.busy:
            self.busy -= 1
            raise spdk_exc.VolumeBusy(volume=volume_id, sessions=1,
                                      socket='/sockets/vhost-' + volume_id)

    def extend_volume(self, volume_id):
        return 2 * 1024 ** 3

    def get_status(self, timeout=None):
        if self.down:
            raise messaging.MessagingTimeout('no agent')
        return {'version': '1.0', 'host_nqn': AGENT_NQN,
                'socket_dir': '/var/lib/spdk-vhost-target/sockets'}


class TestHooks(base.TestCase):
    def setUp(self):
        super().setUp()
        self.agent = RecordingAgent()
        patcher = mock.patch.object(agent_client, 'get',
                                    return_value=self.agent)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.volume_driver = spdk_volume.LibvirtSPDKVhostVolumeDriver(None)
        self.conf = self.useFixture(config_fixture.Config(cfg.CONF))

    def test_connect_then_config_renders_a_vhost_user_disk(self):
        info = connection_info(qos_specs={'total_iops_sec': '1500'})
        self.volume_driver.connect_volume(info, instance(vcpus=12))
        self.assertEqual([('attach', VOLUME, [0],
                           {'rw_ios_per_sec': 2000})], self.agent.calls)
        disk = self.volume_driver.get_config(
            info, {'dev': 'vdb', 'bus': 'virtio', 'type': 'disk'})
        xml = etree.fromstring(disk.to_xml())
        self.assertEqual(('vhostuser', 'disk'),
                         (xml.get('type'), xml.get('device')))
        self.assertEqual({'name': 'qemu', 'type': 'raw', 'queues': '8'},
                         dict(xml.find('driver').attrib))
        source = xml.find('source')
        self.assertEqual('unix', source.get('type'))
        self.assertTrue(source.get('path').endswith('vhost-' + VOLUME))
        self.assertEqual({'enabled': 'yes', 'timeout': '1'},
                         dict(source.find('reconnect').attrib))
        self.assertEqual({'dev': 'vdb', 'bus': 'virtio'},
                         dict(xml.find('target').attrib))
        # Nova's alias for volume disks, by which it finds them to detach.
        self.assertEqual('ua-' + VOLUME, xml.find('alias').get('name'))
        # Nothing libvirt refuses on vhost-user disks.
        for tag in ('serial', 'iotune', 'blockio', 'readonly', 'shareable',
                    'encryption'):
            self.assertIsNone(xml.find(tag), tag)
        self.assertNotIn('cache', xml.find('driver').attrib)
        parsed = vhost_disk_xml.LibvirtConfigGuestVhostUserDisk()
        parsed.parse_str(disk.to_xml())
        self.assertEqual((source.get('path'), 8, 'vdb'),
                         (parsed.source_path, parsed.queues,
                          parsed.target_dev))

    def test_disconnect_and_extend(self):
        info = connection_info()
        self.volume_driver.disconnect_volume(info, instance())
        self.assertEqual([('detach', VOLUME)], self.agent.calls)
        self.assertEqual(2 * 1024 ** 3, self.volume_driver.extend_volume(
            info, instance(), 2 * 1024 ** 3))

    def test_disconnect_waits_briefly_for_qemu_to_let_go(self):
        self.useFixture(fixtures.MockPatch('time.sleep'))
        self.agent.busy = 2
        self.volume_driver.disconnect_volume(connection_info(), instance())
        self.assertEqual([('detach', VOLUME)] * 3, self.agent.calls)

    def test_disconnect_of_a_disk_the_guest_keeps_fails_the_detach(self):
        clock = iter(range(0, 1000, 1))
        self.useFixture(fixtures.MockPatch('time.sleep'))
        self.useFixture(fixtures.MockPatch(
            'time.monotonic', side_effect=lambda: next(clock)))
        self.agent.busy = 1000
        exc = self.assertRaises(spdk_exc.VolumeBusy,
                                self.volume_driver.disconnect_volume,
                                connection_info(), instance())
        self.assertIn('the guest still has the disk open', str(exc))
        self.assertEqual(5, len(self.agent.calls))

    def test_the_subclass_maps_spdk_vhost_only(self):
        # Built without __init__: no libvirt connection is needed here.
        drv = hooks_driver.SPDKLibvirtDriver.__new__(
            hooks_driver.SPDKLibvirtDriver)
        drv.volume_drivers, drv._host = {}, None
        vhost_info = {'driver_volume_type': 'spdk_vhost'}
        with mock.patch.object(hooks_driver.utils, 'synchronized',
                               wraps=hooks_driver.utils.synchronized) as lock:
            found = drv._get_volume_driver(vhost_info)
        # Cached under Nova's own lock, as Nova caches its drivers.
        lock.assert_called_once_with('cache_volume_driver')
        self.assertIsInstance(found, spdk_volume.LibvirtSPDKVhostVolumeDriver)
        self.assertIs(found, drv._get_volume_driver(vhost_info))
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               '_get_volume_driver') as stock:
            drv._get_volume_driver({'driver_volume_type': 'nvmeof'})
        stock.assert_called_once()

    @mock.patch.object(libvirt_driver.LibvirtDriver, 'get_volume_connector',
                       side_effect=lambda instance: {'nqn': 'nqn.x'})
    def test_connector_offers_spdk_vhost_only_when_it_can_work(self, _stock):
        def connector(inst):
            return hooks_driver.SPDKLibvirtDriver.get_volume_connector(
                hooks_driver.SPDKLibvirtDriver.__new__(
                    hooks_driver.SPDKLibvirtDriver), inst)
        offered = connector(instance(pagesize=2048, nodes=(0, 1)))
        # 1.1: the agent mirrors the copies of replicated volumes.
        self.assertEqual({'version': '1.1', 'host_nqn': AGENT_NQN,
                          'numa_nodes': [0, 1], 'max_replicas': 3},
                         offered['spdk_vhost'])
        self.assertNotIn('spdk_vhost', connector(instance(pagesize=4)))
        self.assertNotIn('spdk_vhost', connector(instance(pagesize=None)))
        self.agent.down = True
        self.assertNotIn('spdk_vhost', connector(instance()))

    def test_extend_goes_to_the_agent_not_to_libvirt_block_resize(self):
        drv = hooks_driver.SPDKLibvirtDriver.__new__(
            hooks_driver.SPDKLibvirtDriver)
        drv.volume_drivers, drv._host = {}, None
        self.assertEqual(2 * 1024 ** 3, drv.extend_volume(
            None, connection_info(), instance(), 2 * 1024 ** 3))
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'extend_volume') as stock:
            drv.extend_volume(None, {'driver_volume_type': 'nvmeof'},
                              instance(), 1)
        stock.assert_called_once()

    def bare_driver(self):
        return hooks_driver.SPDKLibvirtDriver.__new__(
            hooks_driver.SPDKLibvirtDriver)

    def test_post_copy_live_migration_is_refused_up_front(self):
        drv = self.bare_driver()
        bdi = {'block_device_mapping': [
            {'connection_info': {'driver_volume_type': 'nvmeof'}},
            {'connection_info': connection_info()}]}
        self.conf.config(live_migration_permit_post_copy=True,
                         group='libvirt')
        exc = self.assertRaises(
            nova_exception.MigrationPreCheckError,
            drv.check_can_live_migrate_source, None, instance(), None, bdi)
        self.assertIn('live_migration_permit_post_copy = False', str(exc))
        self.conf.config(live_migration_permit_post_copy=False,
                         group='libvirt')
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'check_can_live_migrate_source',
                               return_value='ok') as stock:
            self.assertEqual('ok', drv.check_can_live_migrate_source(
                None, instance(), None, bdi))
        stock.assert_called_once()

    def check_destination(self, source_socket):
        bdms = objects.BlockDeviceMappingList(objects=[
            objects.BlockDeviceMapping(
                volume_id=VOLUME, connection_info=jsonutils.dumps(
                    connection_info(vhost_socket=source_socket))),
            objects.BlockDeviceMapping(
                volume_id='other', connection_info=jsonutils.dumps(
                    {'driver_volume_type': 'nvmeof', 'data': {}}))])
        with mock.patch.object(
                objects.BlockDeviceMappingList, 'get_by_instance_uuid',
                return_value=bdms), mock.patch.object(
                libvirt_driver.LibvirtDriver,
                'check_can_live_migrate_destination',
                return_value='dest data') as stock:
            result = self.bare_driver().check_can_live_migrate_destination(
                None, instance(), {}, {})
        stock.assert_called_once()
        return result

    def test_destination_serves_vhost_volumes_at_the_same_path(self):
        self.assertEqual('dest data', self.check_destination(
            '/var/lib/spdk-vhost-target/sockets/vhost-' + VOLUME))

    def test_destination_with_another_socket_dir_is_refused(self):
        exc = self.assertRaises(
            nova_exception.MigrationPreCheckError, self.check_destination,
            '/srv/sockets/vhost-' + VOLUME)
        self.assertIn('socket_dir must be the same', str(exc))

    def test_destination_without_an_answering_agent_is_refused(self):
        self.agent.down = True
        exc = self.assertRaises(
            nova_exception.MigrationPreCheckError, self.check_destination,
            '/var/lib/spdk-vhost-target/sockets/vhost-' + VOLUME)
        self.assertIn('does not answer', str(exc))

    def driver_with_domain(self):
        """A driver whose host has a domain using VOLUME over vhost-user."""
        drv = self.bare_driver()
        disk = spdk_volume.LibvirtSPDKVhostVolumeDriver(None).get_config(
            connection_info(vhost_socket='/sockets/vhost-' + VOLUME),
            {'dev': 'vdb', 'bus': 'virtio', 'type': 'disk'})
        domain = ('<domain><devices>%s</devices></domain>'
                  % disk.to_xml())
        drv._host = mock.Mock()
        drv._host.get_guest.return_value.get_xml_desc.return_value = domain
        return drv

    def destroy(self, drv, block_device_info):
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'destroy') as stock:
            drv.destroy('ctxt', instance(), [], block_device_info)
        stock.assert_called_once()

    def test_destroy_detaches_vhost_disks_nova_did_not_name(self):
        # An evacuated guest whose instance was deleted: Nova passes no
        # block devices.
        drv = self.driver_with_domain()
        self.agent.busy = 1
        self.destroy(drv, {})
        self.assertEqual([('detach', VOLUME)] * 2, self.agent.calls)

    def test_destroy_leaves_named_disks_to_nova(self):
        drv = self.driver_with_domain()
        self.destroy(drv, {'block_device_mapping': [
            {'connection_info': connection_info()}]})
        self.assertEqual([], self.agent.calls)

    def test_destroy_without_a_domain_detaches_nothing(self):
        drv = self.bare_driver()
        drv._host = mock.Mock()
        drv._host.get_guest.side_effect = nova_exception.InstanceNotFound(
            instance_id='x')
        self.destroy(drv, {})
        self.assertEqual([], self.agent.calls)

    def migrate(self, answers):
        drv = self.driver_with_domain()
        data = objects.LibvirtLiveMigrateData(bdms=[
            objects.LibvirtLiveMigrateBDMInfo(
                serial=VOLUME, connection_info=info) for info in answers])
        recover = mock.Mock()
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'live_migration') as stock:
            drv.live_migration('ctxt', instance(), 'dest', mock.Mock(),
                               recover, migrate_data=data)
        return stock, recover

    def test_live_migration_runs_when_the_destination_serves_the_path(self):
        stock, recover = self.migrate(
            [connection_info(vhost_socket='/sockets/vhost-' + VOLUME)])
        stock.assert_called_once()
        recover.assert_not_called()

    def test_live_migration_rolls_back_before_libvirt_otherwise(self):
        for answers in ([connection_info(vhost_socket='/other/vhost-x')],
                        [{'driver_volume_type': 'nvmeof', 'data': {}}],
                        []):
            stock, recover = self.migrate(answers)
            stock.assert_not_called()
            recover.assert_called_once_with('ctxt', mock.ANY, 'dest',
                                            mock.ANY)

    def test_destination_connects_on_the_numa_nodes_it_gets(self):
        arriving = instance(nodes=(0,))
        arriving.host = 'source-host'
        arriving.migration_context = objects.MigrationContext(
            new_numa_topology=instance(nodes=(1,)).numa_topology)
        self.assertEqual([1], spdk_volume.host_numa_nodes(arriving))
        self.conf.config(host='source-host')
        self.assertEqual([0], spdk_volume.host_numa_nodes(arriving))

    def test_shim_is_what_nova_loads(self):
        with mock.patch.object(libvirt_driver.LibvirtDriver, '__init__',
                               return_value=None):
            loaded = virt_driver.load_compute_driver(
                mock.Mock(), 'spdk_libvirt.SPDKLibvirtDriver')
        self.assertIsInstance(loaded, hooks_driver.SPDKLibvirtDriver)
