"""Functional tier: libvirt 9.0 live-migrates a guest whose disk is the
plugin's vhost-user disk, between two libvirtds on this machine, with
qemu-storage-daemon as the vhost-user peer on each side (the SPDK tier,
tests/spdk/test_two_hosts.py, puts the agents and SPDK there).

Each host's libvirtd has its own host UUID, TCP listener on loopback and
mount namespace, in which its own socket directory appears at the path
both use (as ``socket_dir`` is the same on every compute node). The disk
is the XML the plugin's volume driver writes; the guest writes and fsyncs
numbered records through the migration, and every one reads back after.
The live domain's XML is also what the hooks read to find a guest's
vhost-user disks before a migration.
"""

import os
import pwd
import time
import uuid

import fixtures
from lxml import etree

from nova_hooks import vhost_disk_xml
from nova_hooks import volume as spdk_volume
from spdk_common import connection
from spdk_common import naming
from tests import base
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import hugepages
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import net
from tests.fixtures import qsd

VOLUME = '3f1c2b7a-6d5e-4c8b-9a0f-1e2d3c4b5a69'
GUEST_MIB = 256
IO_SECONDS = 3


class Host:
    def __init__(self, libvirtd, serial_dir, port):
        self.libvirtd = libvirtd
        self.serial_dir = serial_dir
        self.uri = 'qemu+tcp://127.0.0.1:%d/system' % port


class TestLiveMigrationOfAVhostUserDisk(base.TestCase):
    def setUp(self):
        super().setUp()
        self.image = self.useFixture(guest_fixtures.Guest())
        top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        qemu = pwd.getpwnam('libvirt-qemu')
        self.sockets = os.path.join(top, 'sockets')
        self.serial = os.path.join(top, 'serial')
        os.mkdir(self.sockets)
        os.mkdir(self.serial)
        self.hosts = []
        self.exports = []
        image = None
        for name in ('host1', 'host2'):
            sockets = os.path.join(top, name, 'sockets')
            serial = os.path.join(top, name, 'serial')
            os.makedirs(sockets, 0o750)
            os.mkdir(serial)
            os.chown(sockets, -1, qemu.pw_gid)
            os.chown(serial, qemu.pw_uid, qemu.pw_gid)
            # Both hosts serve the one volume, as both agents attach it
            # for the duration of a migration.
            export = self.useFixture(qsd.VhostUserBlkExport(
                sockets, size_mib=64, image=image,
                name=naming.vhost_controller_name(VOLUME)))
            image = export.image
            port = net.closed_port()
            libvirtd = self.useFixture(libvirt_fixtures.Libvirtd(
                host_uuid=str(uuid.uuid4()), tcp_port=port,
                binds={sockets: self.sockets, serial: self.serial}))
            self.hosts.append(Host(libvirtd, serial, port))
            self.exports.append(export)

    def domain_xml(self, name):
        """The test guest with the disk the plugin's volume driver makes."""
        info = {'driver_volume_type': connection.SPDK_VHOST,
                'serial': VOLUME,
                'data': {connection.VHOST_SOCKET: os.path.join(
                             self.sockets,
                             naming.vhost_controller_name(VOLUME)),
                         connection.VHOST_QUEUES: 1}}
        disk = spdk_volume.LibvirtSPDKVhostVolumeDriver(None).get_config(
            info, {'dev': 'vda', 'bus': 'virtio', 'type': 'disk'})
        domain = etree.fromstring(libvirt_fixtures.vhost_user_guest_xml(
            name, self.image.kernel, self.image.initrd,
            os.path.join(self.serial, 'ttyS0'), memory_mib=GUEST_MIB))
        domain.find('devices').insert(0, etree.fromstring(disk.to_xml()))
        return etree.tostring(domain, encoding='unicode')

    def console(self, host):
        console = guest_fixtures.SerialConsole(
            os.path.join(host.serial_dir, 'ttyS0'))
        self.addCleanup(console.close)
        return console

    def run_in(self, console, command):
        status, output = console.run(command, timeout=300)
        self.assertEqual(0, status, output)
        return output

    def test_records_written_through_the_migration_all_read_back(self):
        source, dest = self.hosts
        name = 'spdk-functional-migration-%d' % os.getpid()
        source.libvirtd.start_domain(name, self.domain_xml(name))
        console = self.console(source)
        console.wait_ready()
        # What the hooks see of the running guest before they migrate it.
        self.assertEqual(
            {VOLUME: os.path.join(self.sockets,
                                  naming.vhost_controller_name(VOLUME))},
            vhost_disk_xml.vhost_user_disks(
                source.libvirtd.virsh('dumpxml', name).stdout))
        self.run_in(console, guest_fixtures.VERIFY_LOOP)
        time.sleep(IO_SECONDS)
        hugepages.reserve(GUEST_MIB, 'the migrated guest')
        # As Nova's libvirt driver asks it: live, peer to peer, persistent
        # on the destination, undefined at the source.
        migrated = source.libvirtd.virsh(
            'migrate', '--live', '--p2p', '--persistent', '--undefinesource',
            name, dest.uri, '--migrateuri', 'tcp://127.0.0.1', check=False,
            timeout=300)
        self.assertEqual(0, migrated.returncode, migrated.stderr)
        self.assertEqual([name], dest.libvirtd.virsh(
            'list', '--name').stdout.split())
        self.assertEqual([], source.libvirtd.virsh(
            'list', '--all', '--name').stdout.split())
        console = self.console(dest)
        time.sleep(IO_SECONDS)
        gap, written, errors, bad = self.run_in(
            console, guest_fixtures.VERIFY_REPORT).split()
        self.assertEqual(('0', '0'), (errors, bad))
        self.assertGreater(int(written), 10)
