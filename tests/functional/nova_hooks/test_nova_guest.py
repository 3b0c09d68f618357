"""Functional tier: guests built and booted by Nova's libvirt driver (the
plugin's subclass) for a hugepage flavor with dedicated CPUs, on real
libvirt and QEMU (TCG), with spdk_vhost volumes served by
qemu-storage-daemon behind a stand-in agent (the SPDK tier puts the real
agent and SPDK there): boot from volume, hot-attach, write and read back,
detach, extend, hard reboot, power off and on, destroy."""

import hashlib
import os
import pwd

import fixtures
from lxml import etree

from nova_hooks import agent_client
from tests import base
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import nova_compute
from tests.fixtures import qsd

ROOT = '0c3f5a2e-7d41-4b8e-9f6a-2b1c3d4e5f60'
DATA = '5b2d7e1f-9c3a-4e6b-8d0f-1a2b3c4d5e6f'
MIB = 1024 * 1024


def connection_info(volume_id):
    """What Cinder's SPDK driver answers for a vhost-attach volume."""
    return {'driver_volume_type': 'spdk_vhost', 'serial': volume_id,
            'data': {'vol_uuid': volume_id}}


class TestGuestBuiltByNova(base.TestCase):
    def setUp(self):
        super().setUp()
        # Before the compute fixture: its clean-up destroys instances
        # through the agent.
        top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        sockets = os.path.join(top, 'sockets')
        os.mkdir(sockets, 0o750)
        os.chown(sockets, -1, pwd.getpwnam('libvirt-qemu').pw_gid)
        self.agent = qsd.AgentStandIn(sockets)
        self.useFixture(fixtures.MockPatchObject(
            agent_client, 'get', return_value=self.agent))
        self.compute = self.useFixture(nova_compute.NovaCompute())
        for volume_id, name, size in ((ROOT, 'root', 32), (DATA, 'data', 64)):
            self.agent.serve(volume_id, self.useFixture(
                qsd.VhostUserBlkExport(sockets, size_mib=size, name=name)))
        self.instance = self.compute.new_instance(vcpus=2)

    def run_in_guest(self, console, command):
        status, output = console.run(command)
        self.assertEqual(0, status, output)
        return output.strip()

    def wait_in_guest(self, console, condition, timeout=60):
        self.run_in_guest(console, 'i=0; until %s; do i=$((i+1)); '
                          '[ $i -gt %d ] && exit 1; sleep 0.2; done; true'
                          % (condition, timeout * 5))

    def write_pattern(self, console, device, mib=2):
        return self.run_in_guest(
            console, 'dd if=/dev/urandom of=/p bs=1M count=%d 2>/dev/null && '
            'dd if=/p of=/dev/%s bs=1M conv=fsync 2>/dev/null && sha256sum /p'
            % (mib, device)).split()[0]

    def read_pattern(self, console, device, mib=2):
        return self.run_in_guest(
            console, 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/%s bs=1M '
            'count=%d 2>/dev/null | sha256sum' % (device, mib)).split()[0]

    def test_nova_builds_a_hugepage_pinned_guest_on_a_vhost_root_volume(self):
        console = self.compute.spawn(self.instance, connection_info(ROOT))
        domain = etree.fromstring(self.compute.guest_xml(self.instance))
        # Nova's own memory and CPU configuration, untouched by the plugin.
        self.assertIsNotNone(domain.find('memoryBacking/hugepages/page'))
        self.assertEqual(['shared'], [c.get('memAccess') for c in
                                      domain.findall('cpu/numa/cell')])
        self.assertEqual(2, len(domain.findall('cputune/vcpupin')))
        self.assertIsNotNone(domain.find('numatune/memnode'))
        disk = domain.find("devices/disk[@type='vhostuser']")
        self.assertEqual(self.agent.exports[ROOT].socket,
                         disk.find('source').get('path'))
        self.assertEqual('2', disk.find('driver').get('queues'))
        self.assertEqual('ua-' + ROOT, disk.find('alias').get('name'))
        self.assertEqual(str(32 * MIB // 512),
                         self.run_in_guest(console, 'cat /sys/block/vda/size'))

    def test_hot_attach_write_read_detach_and_extend(self):
        console = self.compute.spawn(self.instance, connection_info(ROOT))
        data = connection_info(DATA)
        self.compute.attach(self.instance, data, '/dev/vdb')
        self.wait_in_guest(console, '[ -e /sys/block/vdb ]')
        self.assertEqual(str(64 * MIB // 512),
                         self.run_in_guest(console, 'cat /sys/block/vdb/size'))
        written = self.write_pattern(console, 'vdb')
        self.assertEqual(written, self.read_pattern(console, 'vdb'))
        with open(self.agent.exports[DATA].image, 'rb') as f:
            self.assertEqual(written,
                             hashlib.sha256(f.read(2 * MIB)).hexdigest())

        # Nova's extend asks the agent (SPDK tells the guest itself; the
        # SPDK tier shows the guest seeing it) and never libvirt's
        # block resize, which vhost-user disks do not have.
        self.compute.extend(self.instance, data, 64 * MIB)
        self.assertEqual([DATA], self.agent.extended)

        self.compute.detach(self.instance, data, '/dev/vdb')
        self.wait_in_guest(console, '[ ! -e /sys/block/vdb ]', timeout=20)
        self.assertEqual([DATA], self.agent.detached)
        self.assertNotIn(self.agent.exports[DATA].socket,
                         self.compute.guest_xml(self.instance))

    def test_hard_reboot_power_cycle_and_destroy(self):
        console = self.compute.spawn(self.instance, connection_info(ROOT))
        written = self.write_pattern(console, 'vda')

        console = self.compute.hard_reboot(self.instance)
        self.assertEqual(written, self.read_pattern(console, 'vda'))

        self.compute.power_off(self.instance)
        console = self.compute.power_on(self.instance)
        self.assertEqual(written, self.read_pattern(console, 'vda'))

        self.compute.destroy(self.instance)
        self.assertIn(ROOT, self.agent.detached)
        self.assertEqual(set(), self.agent.attached)

    def test_cold_migration_reconnects_the_volumes(self):
        console = self.compute.spawn(self.instance, connection_info(ROOT))
        written = self.write_pattern(console, 'vda')
        console = self.compute.cold_migrate(self.instance)
        # Disconnected on the source, connected again on the destination.
        self.assertEqual([ROOT], self.agent.detached)
        self.assertEqual({ROOT}, self.agent.attached)
        self.assertEqual(written, self.read_pattern(console, 'vda'))
