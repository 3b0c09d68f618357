"""Servers with SPDK vhost-user volumes move between compute nodes: live
migration keeps the guest running on its data; evacuation from a host
taken for dead rebuilds it elsewhere on the same data, and the volume is
attached to the new host only.
"""

from oslo_log import log as logging
from tempest.common import waiters
from tempest import config
from tempest.lib.common import api_microversion_fixture
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from tempest_tests.tests import base

CONF = config.CONF
LOG = logging.getLogger(__name__)

# os-services by id with forced_down; evacuate needs no host from 2.29.
FORCE_DOWN_MICROVERSION = '2.53'
# block_migration='auto' (Nova decides), without disk_over_commit.
AUTO_BLOCK_MIGRATION_MICROVERSION = '2.25'


class SPDKMigrationTest(base.SPDKScenarioTest):

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if CONF.compute.min_compute_nodes < 2:
            raise cls.skipException(
                'Fewer than two compute nodes ([compute] min_compute_nodes)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.admin_servers_client = cls.os_admin.compute.ServersClient()
        cls.admin_services_client = cls.os_admin.compute.ServicesClient()
        cls.admin_migrations_client = cls.os_admin.compute.MigrationsClient()

    def host_of(self, server_id):
        return self.admin_servers_client.show_server(server_id)['server'][
            'OS-EXT-SRV-ATTR:host']

    def server_with_vhost_volume(self):
        """A server booted from a volume (Nova migrates and evacuates
        those on any storage) with a data volume on vhost-user; returns
        (server, data volume, guest, what the guest wrote on it).
        """
        self.require_vhost()
        vhost_type = CONF.spdk_openstack.vhost_volume_type
        boot = self.create_volume(volume_type=vhost_type,
                                  imageRef=CONF.compute.image_ref)
        volume = self.create_volume(volume_type=vhost_type)
        server = self.create_server(block_device_mapping_v2=[{
            'uuid': boot['id'], 'source_type': 'volume',
            'destination_type': 'volume', 'boot_index': 0,
            'delete_on_termination': False}])
        self.attach(server['id'], volume['id'])
        guest = self.guest(server)
        return server, volume, guest, guest.write(volume['id'])

    def attached_hosts(self, volume_id):
        volume = self.admin_volumes_client.show_volume(volume_id)['volume']
        return sorted(a['host_name'] for a in volume['attachments'])

    @decorators.idempotent_id('6a1e7c02-9a55-4c59-bd76-0f8f3d7c2b11')
    def test_live_migration_keeps_the_guest_on_its_data(self):
        if not (CONF.compute_feature_enabled.live_migration and
                CONF.compute_feature_enabled.volume_backed_live_migration):
            raise self.skipException(
                'Live migration of volume-backed servers is not enabled')
        server, volume, guest, written = self.server_with_vhost_volume()
        source = self.host_of(server['id'])
        mark = guest.mark()
        self.useFixture(api_microversion_fixture.APIMicroversionFixture(
            compute_microversion=AUTO_BLOCK_MIGRATION_MICROVERSION))
        self.admin_servers_client.live_migrate_server(
            server['id'], host=None, block_migration='auto')
        waiters.wait_for_server_status(self.servers_client, server['id'],
                                       'ACTIVE')
        dest = self.host_of(server['id'])
        self.assertNotEqual(source, dest)
        migrations = self.admin_migrations_client.list_migrations(
            instance_uuid=server['id'])['migrations']
        self.assertEqual(['completed'], [m['status'] for m in migrations
                                         if m['migration_type'] ==
                                         'live-migration'])
        self.assertEqual(written,
                         self.guest(server).read(volume['id'], since=mark))
        # Only the destination's attachment is left.
        self.assertEqual([dest], self.attached_hosts(volume['id']))

    @decorators.idempotent_id('0c9d4b7e-5f3a-4a8e-9e21-7b6d5c4f3e22')
    def test_evacuation_rebuilds_on_the_same_data(self):
        """Run it last, alone: Nova refuses to force the evacuated host up
        again until its nova-compute has restarted (and removed the
        evacuated guest), which a test cannot do; the job does it after
        (``tools/cloud tempest`` does).
        """
        if not CONF.spdk_openstack.evacuate_enabled:
            raise self.skipException(
                'Evacuation not enabled ([spdk_openstack] evacuate_enabled)')
        server, volume, guest, written = self.server_with_vhost_volume()
        source = self.host_of(server['id'])
        # One microversion for the force-down, the evacuation and the
        # clean-up that sets forced_down back.
        self.useFixture(api_microversion_fixture.APIMicroversionFixture(
            compute_microversion=FORCE_DOWN_MICROVERSION))
        self.force_down(source)
        self.admin_servers_client.evacuate_server(server['id'])
        waiters.wait_for_server_status(self.servers_client, server['id'],
                                       'ACTIVE')
        dest = self.host_of(server['id'])
        self.assertNotEqual(source, dest)
        self.assertEqual(written, self.guest(server).read(volume['id']))
        # The dead host's attachment is gone (and with it its access to
        # the volume: Cinder's terminate_connection took its NQN off the
        # export's ACL).
        self.assertEqual([dest], self.attached_hosts(volume['id']))

    def force_down(self, host):
        service, = self.admin_services_client.list_services(
            host=host, binary='nova-compute')['services']
        self.admin_services_client.update_service(service['id'],
                                                  forced_down=True)
        self.addCleanup(self.force_up, host, service['id'])

    def force_up(self, host, service_id):
        try:
            self.admin_services_client.update_service(service_id,
                                                      forced_down=False)
        except lib_exc.BadRequest as exc:
            # After an evacuation Nova keeps the host down until its
            # nova-compute restarts: the job's part.
            LOG.warning('nova-compute on %s stays forced down until it '
                        'restarts: %s', host, exc)
