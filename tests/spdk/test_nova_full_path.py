"""SPDK tier, the whole path: a volume created by the Cinder driver on a
real nvmf_tgt; connection_info from ``initialize_connection`` with the
connector the Nova plugin makes; attached by the plugin in a nova-compute
process (Nova's own libvirt driver code, a private libvirtd, a TCG guest on
hugepages with dedicated CPUs) through the agent over RabbitMQ and a real
SPDK vhost; written and read by the guest, extended, detached; the
export's host ACL removed."""

import uuid

from tests.fixtures import nova_process
from tests.spdk import test_vhost_agent

GIB = 1024 ** 3
HOST = 'compute1'


class TestCinderToGuestThroughNova(test_vhost_agent.AgentTestBase):
    socket_group = 'libvirt-qemu'

    def setUp(self):
        super().setUp()
        self.serve_rpc(HOST)
        self.nova = self.useFixture(
            nova_process.NovaComputeProcess(self.transport_url))
        self.vhost_type = self.make_type(
            'vhost-%s' % uuid.uuid4(), {'spdk:vhost_attach': '<is> True'})

    def attach_info(self, volume, connector):
        """What Cinder's attachment API asks of the driver."""
        self.driver.create_export(self.ctxt, volume, connector)
        info = self.driver.initialize_connection(volume, connector)
        info['serial'] = volume.id
        return info

    def guest(self, instance, command):
        status, output = self.nova.call('run', instance, command)
        self.assertEqual(0, status, output)
        return output.strip()

    def wait_in_guest(self, instance, condition, timeout=60):
        self.guest(instance, 'i=0; until %s; do i=$((i+1)); [ $i -gt %d ] && '
                   'exit 1; sleep 0.2; done; true' % (condition, timeout * 5))

    def test_volume_from_cinder_to_guest_and_back(self):
        instance = self.nova.call('new_instance', vcpus=2)
        connector = self.nova.call('connector', instance)
        self.assertEqual([0], connector['spdk_vhost']['numa_nodes'])

        root = self.create_volume(volume_type=self.vhost_type)
        root_info = self.attach_info(root, connector)
        self.assertEqual('spdk_vhost', root_info['driver_volume_type'])
        self.nova.call('spawn', instance, root_info)

        data = self.create_volume(volume_type=self.vhost_type)
        data_info = self.attach_info(data, connector)
        host_nqn = data_info['data']['host_nqn']
        self.assertEqual([host_nqn], [h['nqn'] for h in
                                      self.subsystem(data)['hosts']])
        self.nova.call('attach', instance, data_info, '/dev/vdb')
        self.wait_in_guest(instance, '[ -e /sys/block/vdb ]')
        self.assertEqual(str(GIB // 512),
                         self.guest(instance, 'cat /sys/block/vdb/size'))
        # The serial stock Nova gives volume disks, so guests find them the
        # same way.
        self.assertEqual(data.id[:20],
                         self.guest(instance, 'cat /sys/block/vdb/serial'))
        written = self.guest(
            instance, 'dd if=/dev/urandom of=/p bs=1M count=4 2>/dev/null && '
            'dd if=/p of=/dev/vdb bs=1M conv=fsync 2>/dev/null && '
            'sha256sum /p').split()[0]
        read = self.guest(
            instance, 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vdb '
            'bs=1M count=4 2>/dev/null | sha256sum').split()[0]
        self.assertEqual(written, read)

        # Cinder extends the lvol, then Nova's volume-extended event.
        self.driver.extend_volume(data, 2)
        self.nova.call('extend', instance, data_info, 2 * GIB)
        self.wait_in_guest(instance,
                           '[ "$(cat /sys/block/vdb/size)" = %d ]'
                           % (2 * GIB // 512))

        self.nova.call('detach', instance, data_info, '/dev/vdb')
        self.wait_in_guest(instance, '[ ! -e /sys/block/vdb ]', timeout=20)
        self.assertNotIn(data.id, [a['volume_id'] for a in
                                   self.agent.get_status()['attachments']])
        self.driver.terminate_connection(data, connector)
        self.assertEqual([], self.subsystem(data)['hosts'])
        self.driver.remove_export(self.ctxt, data)
        self.assertIsNone(self.subsystem(data))

        self.nova.call('destroy', instance)
        self.assertEqual([], self.agent.get_status()['attachments'])
