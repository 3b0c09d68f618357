"""API tests of the SPDK back end: what it reports and every volume
operation on the SPDK volume type."""

from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators

from tempest_tests.tests import base

CONF = config.CONF


class SPDKBackendTest(base.SPDKBaseTest):

    @decorators.idempotent_id('67e2db40-f116-4ecc-a7f0-15eb4f64f9a5')
    def test_backend_capabilities(self):
        pools = self.spdk_pools()
        self.assertNotEmpty(
            pools, 'No pool of back end %s' % CONF.spdk_openstack.backend_name)
        for pool in pools:
            caps = pool['capabilities']
            self.assertEqual(CONF.spdk_openstack.storage_protocol,
                             caps['storage_protocol'])
            self.assertTrue(caps['thin_provisioning_support'])
            self.assertTrue(caps['thick_provisioning_support'])
            self.assertTrue(caps['QoS_support'])
            self.assertTrue(caps['online_extend_support'])


class SPDKVolumeOperationsTest(base.SPDKBaseTest):

    @decorators.idempotent_id('c4d58698-45ec-4adc-9451-be47e36ab937')
    def test_create_lands_on_the_spdk_backend(self):
        volume = self.create_volume()
        host = self.admin_volumes_client.show_volume(volume['id'])[
            'volume']['os-vol-host-attr:host']
        self.assertEqual(CONF.spdk_openstack.backend_name,
                         host.split('@')[1].split('#')[0])

    @decorators.idempotent_id('3b03df77-de8c-4cb8-8616-5dfe0ef5e34f')
    def test_extend(self):
        volume = self.create_volume()
        self.extend_volume(volume['id'], volume['size'] + 1)
        self.assertEqual(volume['size'] + 1,
                         self.wait_volume(volume['id'])['size'])

    @decorators.idempotent_id('dff0064c-bdb7-47d9-a03b-6a5d8208909b')
    def test_snapshot_and_volume_from_it(self):
        volume = self.create_volume()
        snapshot = self.create_snapshot(volume['id'])
        clone = self.create_volume(snapshot_id=snapshot['id'],
                                   size=volume['size'] + 1)
        self.assertEqual(snapshot['id'], clone['snapshot_id'])
        self.assertEqual(volume['size'] + 1, clone['size'])

    @decorators.idempotent_id('136aefe7-788d-4d89-8f7d-c8f77cbc2dd6')
    def test_clone(self):
        volume = self.create_volume()
        clone = self.create_volume(source_volid=volume['id'])
        self.assertEqual(volume['id'], clone['source_volid'])

    @decorators.idempotent_id('0be6f6ce-e27e-4d51-bbed-2c0b374e60c6')
    def test_revert_to_snapshot(self):
        # Cinder reverts only to the latest snapshot, and only a volume of
        # the snapshot's size (the data checks are the scenario tests').
        volume = self.create_volume()
        self.create_snapshot(volume['id'])
        snapshot = self.create_snapshot(volume['id'])
        self.revert_volume(volume['id'], snapshot['id'])
        reverted = self.wait_volume(volume['id'])
        self.assertEqual(volume['size'], reverted['size'])

    @decorators.idempotent_id('285abd49-db14-45d0-87af-535aab97212e')
    def test_retype_thin_to_thick_in_place(self):
        thick = self.admin_types_client.create_volume_type(
            name=data_utils.rand_name('spdk-thick'),
            extra_specs={'volume_backend_name':
                         CONF.spdk_openstack.backend_name,
                         'provisioning:type': 'thick'})['volume_type']
        self.addCleanup(self.admin_types_client.delete_volume_type,
                        thick['id'])
        volume = self.create_volume()
        before = self.admin_volumes_client.show_volume(volume['id'])[
            'volume']['os-vol-host-attr:host']
        self.volumes_client.retype_volume(volume['id'],
                                          new_type=thick['name'],
                                          migration_policy='never')
        retyped = self.wait_volume(volume['id'])
        self.assertEqual(thick['name'], retyped['volume_type'])
        self.assertEqual(before, self.admin_volumes_client.show_volume(
            volume['id'])['volume']['os-vol-host-attr:host'])

    @decorators.idempotent_id('78fcf4fa-347e-4274-a150-fbb479b6da28')
    def test_qos_association(self):
        qos = self.admin_qos_client.create_qos(
            name=data_utils.rand_name('spdk-qos'), consumer='back-end',
            total_iops_sec='2000', total_bytes_sec='104857600')['qos_specs']
        self.addCleanup(self.admin_qos_client.delete_qos, qos['id'], True)
        volume_type = self.admin_types_client.create_volume_type(
            name=data_utils.rand_name('spdk-qos-type'),
            extra_specs={'volume_backend_name':
                         CONF.spdk_openstack.backend_name})['volume_type']
        self.addCleanup(self.admin_types_client.delete_volume_type,
                        volume_type['id'])
        self.admin_qos_client.associate_qos(qos['id'], volume_type['id'])
        self.addCleanup(self.admin_qos_client.disassociate_qos, qos['id'],
                        volume_type['id'])
        associations = self.admin_qos_client.show_association_qos(
            qos['id'])['qos_associations']
        self.assertIn(volume_type['id'], [a['id'] for a in associations])
        volume = self.create_volume(volume_type=volume_type['name'])
        self.assertEqual(volume_type['name'], volume['volume_type'])
