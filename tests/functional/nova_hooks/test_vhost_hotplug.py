"""Functional tier: the Nova hooks' volume driver hot-attaches a
vhost-user-blk disk into a running TCG guest through real libvirt and
Nova's own Guest class; qemu-storage-daemon is the vhost-user peer (the
SPDK tier puts the real agent and SPDK there)."""

import hashlib
import os
import pwd
from unittest import mock

import fixtures
import libvirt

from nova import objects
from nova.virt.libvirt import guest as libvirt_guest

from nova_hooks import agent_client
from nova_hooks import volume as spdk_volume
from tests import base
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import qsd as qsd_fixtures

objects.register_all()

VOLUME = '0c3f5a2e-7d41-4b8e-9f6a-2b1c3d4e5f60'
MIB = 1024 * 1024


class QSDAgent:
    """Stands in for spdk-vhost-target where SPDK is absent: hands out the
    qemu-storage-daemon socket (the real agent runs in the SPDK tier)."""

    def __init__(self, export):
        self.export = export
        self.detached = []

    def attach_volume(self, volume_id, info, numa_nodes=None, qos=None):
        return self.export.socket

    def detach_volume(self, volume_id):
        self.detached.append(volume_id)

    def extend_volume(self, volume_id):
        return os.path.getsize(self.export.image)


class TestHotplugThroughNova(base.TestCase):
    def setUp(self):
        super().setUp()
        image = self.useFixture(guest_fixtures.Guest())
        self.libvirtd = self.useFixture(libvirt_fixtures.Libvirtd())
        top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        qemu = pwd.getpwnam('libvirt-qemu')
        sockets = os.path.join(top, 'sockets')
        os.mkdir(sockets, 0o750)
        os.chown(sockets, -1, qemu.pw_gid)
        self.export = self.useFixture(
            qsd_fixtures.VhostUserBlkExport(sockets))
        serial_dir = os.path.join(top, 'serial')
        os.mkdir(serial_dir)
        os.chown(serial_dir, qemu.pw_uid, qemu.pw_gid)
        serial = os.path.join(serial_dir, 'ttyS0')
        name = 'nova-hooks-%d' % os.getpid()
        self.libvirtd.start_domain(name, libvirt_fixtures.vhost_user_guest_xml(
            name, image.kernel, image.initrd, serial))
        self.console = guest_fixtures.SerialConsole(serial)
        self.addCleanup(self.console.close)
        self.console.wait_ready()
        connection = libvirt.open(self.libvirtd.uri)
        self.addCleanup(connection.close)
        self.guest = libvirt_guest.Guest(connection.lookupByName(name))
        self.agent = QSDAgent(self.export)
        patcher = mock.patch.object(agent_client, 'get',
                                    return_value=self.agent)
        patcher.start()
        self.addCleanup(patcher.stop)

    def run_in_guest(self, command):
        status, output = self.console.run(command)
        self.assertEqual(0, status, output)
        return output.strip()

    def wait_in_guest(self, condition, timeout=60):
        self.run_in_guest('i=0; until %s; do i=$((i+1)); [ $i -gt %d ] && '
                          'exit 1; sleep 0.2; done; true'
                          % (condition, timeout * 5))

    def test_attach_write_read_detach(self):
        instance = objects.Instance(uuid=VOLUME, numa_topology=None,
                                    flavor=objects.Flavor(vcpus=1))
        info = {'driver_volume_type': 'spdk_vhost', 'serial': VOLUME,
                'data': {'vol_uuid': VOLUME}}
        driver = spdk_volume.LibvirtSPDKVhostVolumeDriver(None)
        driver.connect_volume(info, instance)
        disk = driver.get_config(info, {'dev': 'vdb', 'bus': 'virtio',
                                        'type': 'disk'})
        self.guest.attach_device(disk, persistent=True, live=True)
        self.wait_in_guest('[ -e /sys/block/vda ]')
        self.assertEqual(str(64 * MIB // 512),
                         self.run_in_guest('cat /sys/block/vda/size'))
        written = self.run_in_guest(
            'dd if=/dev/urandom of=/p bs=1M count=2 2>/dev/null && '
            'dd if=/p of=/dev/vda bs=1M conv=fsync 2>/dev/null && '
            'sha256sum /p').split()[0]
        read = self.run_in_guest(
            'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=1M '
            'count=2 2>/dev/null | sha256sum').split()[0]
        self.assertEqual(written, read)
        with open(self.export.image, 'rb') as f:
            self.assertEqual(written,
                             hashlib.sha256(f.read(2 * MIB)).hexdigest())

        self.guest.detach_device(disk, persistent=True, live=True)
        self.wait_in_guest('[ ! -e /sys/block/vda ]', timeout=20)
        driver.disconnect_volume(info, instance)
        self.assertEqual([VOLUME], self.agent.detached)
        self.assertNotIn('vhostuser', self.guest.get_xml_desc())
