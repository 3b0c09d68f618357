"""SPDK tier: a guest with a vhost-user volume moves between two compute
hosts on this machine: live migration; a migration aborted, and one whose
destination dies, rolling back to the source; evacuation from a host
taken for dead.

Each host has its own agent and SPDK vhost, and its own libvirtd (host
UUID, TCP listener on loopback, mount namespace) in which its socket
directory appears at the path every host uses, as ``socket_dir`` is the
same on every compute node; one nvmf_tgt, driven by the Cinder driver,
exports the volume to both hosts' NQNs for the duration. The sequence is
Nova's: the destination's agent attaches before the switch-over, libvirt
migrates the domain peer to peer, the source's agent detaches after and
the source host leaves the volume's ACL.

The guest writes and fsyncs a numbered record per block all along; after
the migration every record must read back, with no failed write.

Evacuation: the source host is taken for dead while its guest still runs
(the worst case: a host cut off from its control plane, not from its
storage). Nova's rebuild deletes the old attachment, so Cinder's
terminate_connection takes its host NQN off the ACL and SPDK drops its
connection: from then on nothing that host's guest writes may land, while
everything acknowledged before reads back on the new host.
"""

import os
import pwd
import re
import signal
import time
import uuid

import fixtures

from spdk_common import connection
from tests.fixtures import compute_host
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import hugepages
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import net
from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios
from tests.spdk import base as spdk_base

GUEST_MIB = 256
HOST_NQNS = ('nqn.2014-08.org.nvmexpress:uuid:'
             '5b0f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a51',
             'nqn.2014-08.org.nvmexpress:uuid:'
             '5b0f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a52')
# How long the guest writes before and after the switch-over.
IO_SECONDS = 3
MIGRATION_TIMEOUT = 300


class Host:
    """One compute host: its agent side and its libvirtd."""

    def __init__(self, name, compute, libvirtd, serial_dir, tcp_port):
        self.name = name
        self.compute = compute
        self.libvirtd = libvirtd
        self.serial_dir = serial_dir
        self.uri = 'qemu+tcp://127.0.0.1:%d/system' % tcp_port


class MigrationTestBase(spdk_base.OnRealSPDK, scenarios.DriverTestBase,
                        scenarios.CinderTestCase):

    def target_port(self):
        return 4540

    def setUp(self):
        super().setUp()
        if not spdk_fixtures.spdk_available('vhost'):
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        self.image = self.useFixture(guest_fixtures.Guest())
        top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        # The paths every host uses; each host binds its own there.
        self.sockets = os.path.join(top, 'sockets')
        self.serial = os.path.join(top, 'serial')
        os.mkdir(self.sockets)
        os.mkdir(self.serial)
        self.hosts = [self.make_host(top, 'host%d' % n, nqn)
                      for n, nqn in enumerate(HOST_NQNS, 1)]
        vtype = self.make_type('vhost-%s' % uuid.uuid4(),
                               {'spdk:vhost_attach': '<is> True'})
        self.volume = self.create_volume(volume_type=vtype)

    def make_host(self, top, name, host_nqn):
        home = os.path.join(top, name)
        os.mkdir(home)
        # Both hosts' SPDKs poll on the same CPU, as hosts of the
        # multi-node dev cloud do.
        compute = self.useFixture(compute_host.ComputeHost(
            home, host_nqn, socket_group='libvirt-qemu',
            share_reactor_cpus=True))
        os.makedirs(compute.group.socket_dir, exist_ok=True)
        serial_dir = os.path.join(home, 'serial')
        os.mkdir(serial_dir)
        qemu = pwd.getpwnam('libvirt-qemu')
        os.chown(serial_dir, qemu.pw_uid, qemu.pw_gid)
        port = net.closed_port()
        libvirtd = self.useFixture(libvirt_fixtures.Libvirtd(
            host_uuid=str(uuid.uuid4()), tcp_port=port,
            binds={compute.group.socket_dir: self.sockets,
                   serial_dir: self.serial}))
        return Host(name, compute, libvirtd, serial_dir, port)

    def connector(self, nqn=scenarios.HOST_NQN, **extra):
        extra.setdefault(connection.SPDK_VHOST,
                         connection.capability(nqn, [0]))
        return super().connector(nqn=nqn, **extra)

    def attach(self, host):
        """Cinder's attachment for ``host``, then its agent's attach."""
        connector = self.connector(nqn=host.compute.host_nqn)
        self.driver.create_export(self.ctxt, self.volume, connector)
        info = self.driver.initialize_connection(self.volume, connector)
        self.assertEqual(connection.SPDK_VHOST, info['driver_volume_type'])
        return host.compute.agent.attach_volume(self.volume.id, info,
                                                numa_nodes=[0])

    def detach(self, host):
        host.compute.agent.detach_volume(self.volume.id)
        self.driver.terminate_connection(
            self.volume, self.connector(nqn=host.compute.host_nqn))

    def acl(self):
        return sorted(h['nqn'] for h in self.subsystem(self.volume)['hosts'])

    def boot(self, host, domain=None):
        self.domain = domain or 'spdk-migration-%d' % os.getpid()
        path = self.attach(host)
        host.libvirtd.start_domain(
            self.domain, libvirt_fixtures.vhost_user_guest_xml(
                self.domain, self.image.kernel, self.image.initrd,
                os.path.join(self.serial, 'ttyS0'),
                os.path.join(self.sockets, os.path.basename(path)),
                memory_mib=GUEST_MIB))
        return self.console(host, wait_ready=True)

    def console(self, host, wait_ready=False):
        console = guest_fixtures.SerialConsole(
            os.path.join(host.serial_dir, 'ttyS0'))
        self.addCleanup(console.close)
        if wait_ready:
            console.wait_ready()
        return console

    def guest_run(self, console, command, timeout=None):
        status, output = console.run(command, timeout=timeout)
        self.assertEqual(0, status, output)
        return output

    def migrate(self, source, dest, *extra):
        """virsh migrate as Nova's libvirt driver asks it (live, peer to
        peer, persistent on the destination, undefined at the source);
        returns (exit status, stderr, seconds).
        """
        started = time.monotonic()
        result = source.libvirtd.virsh(
            'migrate', '--live', '--p2p', '--persistent', '--undefinesource',
            *extra, self.domain, dest.uri, '--migrateuri',
            'tcp://127.0.0.1', check=False, timeout=MIGRATION_TIMEOUT)
        return (result.returncode, result.stderr.strip(),
                time.monotonic() - started)

    def running(self, host):
        return self.domain in host.libvirtd.virsh(
            'list', '--name').stdout.split()


class TestLiveMigration(MigrationTestBase):
    def test_guest_io_survives_and_every_block_verifies(self):
        source, dest = self.hosts
        console = self.boot(source)
        self.guest_run(console, guest_fixtures.VERIFY_LOOP)
        time.sleep(IO_SECONDS)
        # Nova's pre_live_migration on the destination.
        self.attach(dest)
        self.assertEqual(sorted(HOST_NQNS), self.acl())
        hugepages.reserve(GUEST_MIB, 'the migrated guest')
        status, err, seconds = self.migrate(source, dest)
        self.assertEqual(0, status, err)
        self.assertFalse(self.running(source))
        self.assertTrue(self.running(dest))
        stats = dest.libvirtd.virsh('domjobinfo', '--completed',
                                    self.domain, check=False).stdout
        # Nova's post_live_migration on the source, then Cinder's
        # terminate_connection with the source's connector.
        self.detach(source)
        self.assertEqual([HOST_NQNS[1]], self.acl())
        console = self.console(dest)
        time.sleep(IO_SECONDS)
        gap, written, errors, bad = self.guest_run(
            console, guest_fixtures.VERIFY_REPORT, timeout=300).split()
        downtime = re.search(r'Total downtime:\s+(\d+)\s+ms', stats)
        print('MEASURED live migration: %.1f s, libvirt downtime %s ms, '
              'longest gap between guest writes %s s, %s blocks written'
              % (seconds, downtime.group(1) if downtime else '?', gap,
                 written))
        self.assertEqual('0', errors)
        self.assertEqual('0', bad)
        self.assertGreater(int(written), 10)

    def slow_migration(self, source, dest):
        """A migration started at 1 MiB/s (the copy of 256 MiB is still
        running when the test breaks it), once libvirt's job runs; the
        virsh process.
        """
        self.attach(dest)
        hugepages.reserve(GUEST_MIB, 'the migrated guest')
        proc = source.libvirtd.virsh_background(
            'migrate', '--live', '--p2p', '--persistent', '--undefinesource',
            '--bandwidth', '1', self.domain, dest.uri, '--migrateuri',
            'tcp://127.0.0.1')
        deadline = time.monotonic() + 60
        while 'Unbounded' not in source.libvirtd.virsh(
                'domjobinfo', self.domain, check=False).stdout:
            self.assertLess(time.monotonic(), deadline, 'no migration job')
            time.sleep(0.2)
        return proc

    def assertRolledBack(self, source, dest, console):
        """Nova's rollback after a migration that did not complete: the
        destination's agent detaches and its attachment goes; the source
        keeps its own, and its guest writes on without an error.
        """
        self.assertTrue(self.running(source))
        self.assertFalse(self.running(dest))
        self.detach(dest)
        self.assertEqual([HOST_NQNS[0]], self.acl())
        self.assertEqual([], dest.compute.agent.get_status()['attachments'])
        time.sleep(IO_SECONDS)
        gap, written, errors, bad = self.guest_run(
            console, guest_fixtures.VERIFY_REPORT, timeout=300).split()
        self.assertEqual(('0', '0'), (errors, bad))
        self.assertGreater(int(written), 10)

    def test_aborted_migration_leaves_the_source_running(self):
        source, dest = self.hosts
        console = self.boot(source)
        self.guest_run(console, guest_fixtures.VERIFY_LOOP)
        proc = self.slow_migration(source, dest)
        source.libvirtd.virsh('domjobabort', self.domain)
        self.assertNotEqual(0, proc.wait(60))
        self.assertRolledBack(source, dest, console)

    def test_failed_migration_rolls_back_to_the_source(self):
        # The destination dies in the middle of the copy (its QEMU
        # killed): libvirt fails the migration, Nova rolls back.
        source, dest = self.hosts
        console = self.boot(source)
        self.guest_run(console, guest_fixtures.VERIFY_LOOP)
        proc = self.slow_migration(source, dest)
        os.kill(dest.libvirtd.qemu_pid(self.domain), signal.SIGKILL)
        self.assertNotEqual(0, proc.wait(60))
        self.assertRolledBack(source, dest, console)


# Records found on the disk: blocks whose record is theirs, and the
# highest such block (-1: none), of the first ``n`` blocks.
RECORDS_ON_DISK = (
    'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=%d '
    "2>/dev/null | awk '$0 == sprintf(\"%%-511s\", \"blk \" (NR - 1)) "
    "{ n++; last = NR - 1 } END { print n + 0, (n ? last : -1) }'")
ACKNOWLEDGED = 'wc -l < /times'


class TestEvacuate(MigrationTestBase):
    def test_the_dead_host_is_fenced_and_acknowledged_writes_survive(self):
        dead, new = self.hosts
        console = self.boot(dead)
        dead_domain = self.domain
        self.guest_run(console, guest_fixtures.VERIFY_LOOP)
        time.sleep(IO_SECONDS)
        # Nova's rebuild on the new host: the old attachment goes first
        # (Cinder: terminate_connection with the dead host's connector).
        self.driver.terminate_connection(
            self.volume, self.connector(nqn=dead.compute.host_nqn))
        self.assertEqual([], self.acl())
        # The dead host's guest may finish the write in flight; none after.
        time.sleep(2)
        acknowledged = int(self.guest_run(console, ACKNOWLEDGED))
        self.assertGreater(acknowledged, 10)
        new_console = self.boot(new, domain='spdk-evacuated-%d'
                                % os.getpid())
        self.assertEqual([HOST_NQNS[1]], self.acl())
        scan = RECORDS_ON_DISK % (acknowledged + 64)
        found, last = map(int, self.guest_run(new_console, scan).split())
        # Everything acknowledged is there; at most the write in flight
        # when the ACL changed landed beyond it.
        self.assertIn(found, (acknowledged, acknowledged + 1))
        self.assertEqual(found - 1, last)
        # Later, still nothing more from the dead host: its SPDK keeps
        # trying to reconnect and is refused.
        time.sleep(IO_SECONDS)
        self.assertEqual(acknowledged,
                         int(self.guest_run(console, ACKNOWLEDGED)))
        self.assertEqual([found, last], list(map(int, self.guest_run(
            new_console, scan).split())))
        print('MEASURED evacuation: %d writes acknowledged by the dead host '
              'before fencing, all on disk; none after' % acknowledged)
        # The dead host comes back and destroys its guest, whose I/O
        # still waits for the fenced target: its agent's detach fails that
        # I/O so that SPDK can end the session, and leaves nothing.
        dead.libvirtd.virsh('destroy', dead_domain)
        dead.compute.agent.detach_volume(self.volume.id)
        self.assertEqual([], dead.compute.agent.get_status()['attachments'])
        self.assertEqual({'vhost': [], 'nvme': []},
                         dead.compute.vhost.controllers())
