"""Guests on SPDK volumes: data written survives reboots, moves between
servers through vhost-user-blk attachments, follows online extends, and
stays the snapshot's in every clone."""

from tempest import config
from tempest.lib import decorators

from tempest_tests.tests import base

CONF = config.CONF


class SPDKGuestDataTest(base.SPDKScenarioTest):

    @decorators.idempotent_id('f6c4e7c1-3301-43f7-a751-51dbe3214302')
    def test_boot_from_volume_data_survives_reboot(self):
        boot = self.create_volume(imageRef=CONF.compute.image_ref)
        data = self.create_volume()
        server = self.create_server(block_device_mapping_v2=[{
            'uuid': boot['id'], 'source_type': 'volume',
            'destination_type': 'volume', 'boot_index': 0,
            'delete_on_termination': False}])
        self.attach(server['id'], data['id'])
        written = self.guest(server).write(data['id'])
        self.servers_client.reboot_server(server['id'], type='HARD')
        self.wait_server(server['id'])
        self.assertEqual(written, self.guest(server).read(data['id']))

    @decorators.idempotent_id('d91505ee-f974-44b4-b849-d014b0bf4ea4')
    def test_vhost_volume_moves_between_servers(self):
        self.require_vhost()
        volume = self.create_volume(
            volume_type=CONF.spdk_openstack.vhost_volume_type)
        first = self.create_server()
        second = self.create_server()
        self.attach(first['id'], volume['id'])
        written = self.guest(first).write(volume['id'])
        self.detach(first['id'], volume['id'])
        self.attach(second['id'], volume['id'])
        self.assertEqual(written, self.guest(second).read(volume['id']))

    @decorators.idempotent_id('e75552c9-1264-46cd-a058-7950a42ed35a')
    def test_online_extend_seen_by_guest(self):
        _server, volume, guest = self.vhost_volume_on_server()
        before = guest.size(volume['id'])
        self.extend_volume(volume['id'], volume['size'] + 1)
        self.wait_volume(volume['id'], 'in-use')
        wanted = before + (1 << 30)
        self.assertEqual(wanted, guest.size(volume['id'], at_least=wanted))

    @decorators.idempotent_id('90a39c5d-8373-4078-a75e-547f36ff5570')
    def test_snapshot_data_in_every_clone(self):
        volume = self.create_volume()
        server = self.create_server()
        self.attach(server['id'], volume['id'])
        written = self.guest(server).write(volume['id'])
        self.detach(server['id'], volume['id'])
        snapshot = self.create_snapshot(volume['id'])
        clones = [self.create_volume(snapshot_id=snapshot['id'])
                  for _ in range(2)]
        for clone in clones:
            self.attach(server['id'], clone['id'])
            # The clone carries the source's pattern, named after the
            # source volume: the guest finds it under the clone's serial.
            self.assertEqual(written, self.guest(server).read(clone['id']))
            self.detach(server['id'], clone['id'])
