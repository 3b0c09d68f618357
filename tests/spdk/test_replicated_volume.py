"""SPDK tier: a replicated volume survives the loss of storage nodes.

Each copy of the volume is an lvol on its own storage target (a real
nvmf_tgt each), exported with the driver's own export code; the agent
mirrors the copies (SPDK raid1 with a superblock over one NVMe/TCP
controller per copy) and serves the mirror to a real TCG guest that
writes and verifies records all along. A target killed (kill -9) or
frozen (SIGSTOP: it holds its connections and answers nothing, as a node
cut off the network) costs the guest no I/O error; the agent reports the
volume degraded, puts the copy back when its node returns, follows the
rebuild and reports every copy in sync, and the copies are then
byte-identical.
"""

import hashlib
import json
import os
import signal
import time
import uuid

import fixtures

from cinder_driver import exports as nvmf_exports
from cinder_driver import lvols as spdk_lvols
from spdk_common import connection
from spdk_common import naming
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import spdk as spdk_fixtures
from tests.fixtures import spdk_apps
from tests.functional.cinder_driver import scenarios
from tests.spdk import test_agent_guest
from tests.spdk import test_agent_storage_loss

# The guest's disk; thin, so that a rebuild walks mostly unallocated
# clusters.
VOLUME_GIB = 1
NQN_PREFIX = 'nqn.2010-10.org.openstack'
FIRST_COPY_PORT = 4560
TIMEOUT = 120.0


class Copy:
    """One copy of the volume: an lvol exported from its own target."""

    def __init__(self, target, port, volume_id, source=None):
        """``source``: the Copy on the same target this one is a clone
        of (the driver clones a replicated volume copy by copy).
        """
        self.target = target
        self.port = port
        self.volume_id = volume_id
        self.source = source
        self.exports = None

    def alias(self):
        return naming.lvol_alias(self.target.lvstore,
                                 naming.volume_lvol_name(self.volume_id))

    def export(self, host_nqn):
        """Make (on first use) and export the lvol, allowing the host."""
        client = self.target.client
        alias = self.alias()
        if self.exports is None and self.source is None:
            spdk_lvols.Lvols(client).create(
                self.target.lvstore, naming.volume_lvol_name(self.volume_id),
                VOLUME_GIB, thin=True)
        elif self.exports is None:
            lvols = spdk_lvols.Lvols(client)
            snapshot = 'snapshot-%s' % self.volume_id
            lvols.snapshot(self.source.alias(), snapshot)
            lvols.clone(naming.lvol_alias(self.target.lvstore, snapshot),
                        naming.volume_lvol_name(self.volume_id), VOLUME_GIB)
        self.exports = nvmf_exports.NVMeoFExports(
            client, NQN_PREFIX, ['127.0.0.1'], self.port,
            node='node%d' % (self.port - FIRST_COPY_PORT))
        self.exports.ensure_transport()
        self.exports.export(self.volume_id, alias)
        self.exports.allow_host(self.volume_id, host_nqn)

    def replica(self):
        return (self.exports.nqn(self.volume_id),
                [('127.0.0.1', str(self.port), 'tcp')], None)

    def kill(self):
        self.target._kill()
        self.target._retire_client()

    def start(self, host_nqn):
        self.target._start(self.target.config_path)
        self.target._wait_for_lvstore()
        self.export(host_nqn)


class ReplicatedTestBase(test_agent_guest.GuestMixin,
                         test_agent_storage_loss.StorageLossBase):
    socket_group = 'libvirt-qemu'
    copies = 2

    def target_port(self):
        return FIRST_COPY_PORT - 1

    domain = None

    def setUp(self):
        self.guest = self.useFixture(guest_fixtures.Guest())
        self.libvirt = self.useFixture(libvirt_fixtures.Libvirtd())
        super().setUp()
        self.volume_id = str(uuid.uuid4())
        self.replicas = []
        for index in range(self.copies):
            target = self.useFixture(spdk_fixtures.SPDKTarget(
                lvstore='lvs%d' % index, size_mib=2048))
            copy = Copy(target, FIRST_COPY_PORT + index, self.volume_id)
            copy.export(scenarios.HOST_NQN)
            self.replicas.append(copy)
        self.info = connection.spdk_vhost_replicated_info(
            [c.replica() for c in self.replicas], self.volume_id,
            scenarios.HOST_NQN)

    def attach_and_boot(self):
        path = self.agent.attach_volume(self.volume_id, self.info,
                                        numa_nodes=[0])
        self.boot_guest(path)
        self.guest_run(guest_fixtures.VERIFY_LOOP)
        # Some records before anything fails.
        time.sleep(3)

    def verify(self):
        """(longest gap s, records, failed writes, bad records)."""
        gap, count, errors, bad = self.guest_run(
            guest_fixtures.VERIFY_REPORT, timeout=TIMEOUT).split()
        return float(gap), int(count), int(errors), int(bad)

    def copy_states(self):
        for a in self.agent.get_status()['attachments']:
            if a['volume_id'] == self.volume_id:
                return [c['state'] for c in a['copies']]

    def mirrored_after(self, previous):
        """Waits for the agent's report that every copy is in sync again
        (after ``previous`` such reports).
        """
        return self.wait_for('attachment.mirrored', lambda: (
            len(self.event('mirrored')) > previous
            and self.event('mirrored')[-1]), timeout=TIMEOUT)

    def sha256_of_copies(self, copies=None):
        """The checksum of each copy's data region, read over NVMe/TCP by
        an spdk_dd of its own, once the agent let go of the volume (and
        the guest of it).
        """
        copies = copies or self.replicas
        volume_id = copies[0].volume_id
        raid = self.vhost_client.call('bdev_raid_get_bdevs',
                                      {'category': 'all'})
        offset = {b['name']: b['data_offset'] for r in raid
                  for b in r['base_bdevs_list'] if b['name']}
        [raid_bdev] = self.vhost_client.call(
            'bdev_get_bdevs', {'name': naming.raid_bdev_name(volume_id)})
        block_size = raid_bdev['block_size']
        if self.domain is not None:
            self.libvirt.virsh('destroy', self.domain)
            self.domain = None
        self.agent.detach_volume(volume_id)
        workdir = self.useFixture(fixtures.TempDir()).path
        sums = []
        for index, copy in enumerate(copies):
            member = naming.namespace_bdev_name(
                naming.replica_controller_name(volume_id, index))
            config = os.path.join(workdir, 'dd.json')
            with open(config, 'w') as f:
                # Without examine: it would assemble the mirror from the
                # copy's superblock and claim the copy.
                json.dump({'subsystems': [{'subsystem': 'bdev', 'config': [{
                    'method': 'bdev_set_options',
                    'params': {'bdev_auto_examine': False}}, {
                    'method': 'bdev_nvme_attach_controller',
                    'params': {
                        'name': 'copy', 'trtype': 'tcp', 'adrfam': 'ipv4',
                        'traddr': '127.0.0.1', 'trsvcid': str(copy.port),
                        'subnqn': copy.exports.nqn(volume_id),
                        'hostnqn': scenarios.HOST_NQN}}]}]}, f)
            data = os.path.join(workdir, 'copy%d' % index)
            # The records the guest wrote, after the superblock's region
            # (data_offset blocks).
            skip = offset[member] * block_size
            self.assertEqual(0, skip % 4096, offset)
            result = spdk_apps.run_spdk_app('spdk_dd', [
                '--json', config, '--ib=copyn1', '--of=' + data,
                '--bs=4096', '--skip=%d' % (skip // 4096),
                '--count=%d' % (8 * 1024 * 1024 // 4096)])
            self.assertEqual(0, result.returncode, result.stderr[-2000:])
            with open(data, 'rb') as f:
                sums.append(hashlib.sha256(f.read()).hexdigest())
        return sums


class TestTwoCopies(ReplicatedTestBase):

    def test_a_killed_copy_costs_no_io_and_is_rebuilt(self):
        self.attach_and_boot()
        self.replicas[1].kill()
        degraded = self.wait_for('attachment.degraded',
                                 lambda: self.event('degraded'))
        self.assertEqual('ERROR', degraded[0][0])
        self.assertEqual(['in_sync', 'missing'],
                         [c['state'] for c in degraded[0][1]['copies']])
        self.assertEqual('degraded', self.health(self.volume_id))
        time.sleep(3)   # the guest writes on one copy
        self.replicas[1].start(scenarios.HOST_NQN)
        mirrored = self.mirrored_after(0)
        self.assertEqual('INFO', mirrored[0])
        self.assertEqual(['in_sync', 'in_sync'], self.copy_states())
        self.assertEqual('ok', self.health(self.volume_id))
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        self.assertGreater(count, 0)
        first, second = self.sha256_of_copies()
        self.assertEqual(first, second)

    def test_a_frozen_copy_costs_no_io_and_is_rebuilt(self):
        """SIGSTOP: the node keeps its connections and answers nothing,
        as one cut off the network; SPDK notices by its timeouts.
        """
        self.attach_and_boot()
        frozen = self.replicas[0].target.pid
        os.kill(frozen, signal.SIGSTOP)
        try:
            self.wait_for('attachment.degraded',
                          lambda: self.event('degraded'))
            self.assertEqual(['missing', 'in_sync'], self.copy_states())
            time.sleep(3)
        finally:
            os.kill(frozen, signal.SIGCONT)
        self.mirrored_after(0)
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        first, second = self.sha256_of_copies()
        self.assertEqual(first, second)

    def test_a_guest_started_while_a_copy_is_down_runs_on_the_other(self):
        """The guest stopped and started again (a hard reboot, a move)
        while a copy's node is down: the attach mirrors the copy that
        answers, whose superblock records the other out of the mirror, and
        the copy is rebuilt when its node returns.
        """
        self.attach_and_boot()
        self.replicas[1].kill()
        self.wait_for('attachment.degraded', lambda: self.event('degraded'))
        self.libvirt.virsh('destroy', self.domain)
        self.console.close()
        self.agent.detach_volume(self.volume_id)
        self.agent.attach_volume(self.volume_id, self.info, numa_nodes=[0])
        self.console = libvirt_fixtures.restart_vhost_user_guest(
            self, self.libvirt, self.top, self.domain)
        self.guest_run(guest_fixtures.VERIFY_LOOP)
        self.wait_for('attachment.degraded after the attach',
                      lambda: len(self.event('degraded')) > 1)
        self.assertEqual(['in_sync', 'missing'], self.copy_states())
        time.sleep(3)   # the guest writes on one copy
        self.replicas[1].start(scenarios.HOST_NQN)
        self.mirrored_after(0)
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        self.assertGreater(count, 0)
        first, second = self.sha256_of_copies()
        self.assertEqual(first, second)

    def test_a_clone_of_the_copies_is_a_mirror_of_its_own(self):
        """The copies of a clone (made copy by copy from the source's)
        start with the source's mirror superblock: the agent clears it and
        mirrors them under the clone's name, with the source's data.
        """
        self.attach_and_boot()
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        source_sums = self.sha256_of_copies()
        clone_id = str(uuid.uuid4())
        clones = []
        for source in self.replicas:
            clone = Copy(source.target, source.port, clone_id, source=source)
            clone.export(scenarios.HOST_NQN)
            clones.append(clone)
        info = connection.spdk_vhost_replicated_info(
            [c.replica() for c in clones], clone_id, scenarios.HOST_NQN)
        self.agent.attach_volume(clone_id, info, numa_nodes=[0])
        [raid] = [r for r in self.vhost_client.call(
            'bdev_raid_get_bdevs', {'category': 'all'})
            if r['name'] == clone_id]
        self.assertEqual(('online', 2), (raid['state'],
                                         raid['num_base_bdevs_discovered']))
        self.assertEqual(source_sums, self.sha256_of_copies(clones))


class TestReplacedCopy(ReplicatedTestBase):
    """A storage node that stays dead: the operator's re-replication
    (the driver's replace_copy) gives the agent a new copy on another
    node, which the mirror rebuilds under the running guest.
    """

    def test_a_dead_copy_is_replaced_and_rebuilt(self):
        self.attach_and_boot()
        self.replicas[1].kill()
        self.wait_for('attachment.degraded', lambda: self.event('degraded'))
        time.sleep(2)   # the guest writes on one copy
        new = self.new_copy()
        copies = [self.replicas[0], new]
        info = connection.spdk_vhost_replicated_info(
            [c.replica() for c in copies], self.volume_id,
            scenarios.HOST_NQN)
        self.assertEqual(1, self.agent.replace_copy(self.volume_id, info))
        self.mirrored_after(0)
        self.assertEqual(['in_sync', 'in_sync'], self.copy_states())
        # Repeated (the driver's retry): nothing changes.
        self.assertIsNone(self.agent.replace_copy(self.volume_id, info))
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        self.assertGreater(count, 0)
        first, second = self.sha256_of_copies(copies)
        self.assertEqual(first, second)

    def test_a_detached_volumes_new_copy_is_rebuilt_at_attach(self):
        """Replaced while detached: the copy that stays still counts the
        dead one in sync in its superblock, which SPDK cannot start
        without; the agent starts the mirror without it and rebuilds the
        new copy.
        """
        self.attach_and_boot()
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        before = self.sha256_of_copies()   # detaches, both copies in sync
        self.assertEqual(1, len(set(before)))
        self.replicas[1].kill()
        new = self.new_copy()
        copies = [self.replicas[0], new]
        self.agent.attach_volume(self.volume_id, connection.
                                 spdk_vhost_replicated_info(
                                     [c.replica() for c in copies],
                                     self.volume_id, scenarios.HOST_NQN),
                                 numa_nodes=[0])
        self.mirrored_after(0)
        self.assertEqual(['in_sync', 'in_sync'], self.copy_states())
        self.assertEqual(before, self.sha256_of_copies(copies))

    def new_copy(self):
        target = self.useFixture(spdk_fixtures.SPDKTarget(
            lvstore='lvs%d' % self.copies, size_mib=2048))
        new = Copy(target, FIRST_COPY_PORT + self.copies, self.volume_id)
        new.export(scenarios.HOST_NQN)
        return new


class TestThreeCopies(ReplicatedTestBase):
    copies = 3

    def test_two_copies_lost_one_after_the_other(self):
        self.attach_and_boot()
        self.replicas[0].kill()
        self.wait_for('attachment.degraded', lambda: self.event('degraded'))
        time.sleep(2)
        self.replicas[2].kill()
        self.wait_for('one copy left', lambda: self.copy_states() == [
            'missing', 'in_sync', 'missing'])
        time.sleep(2)
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        self.guest_run(guest_fixtures.VERIFY_LOOP)
        for copy in (self.replicas[0], self.replicas[2]):
            copy.start(scenarios.HOST_NQN)
        self.mirrored_after(0)
        gap, count, errors, bad = self.verify()
        self.assertEqual((0, 0), (errors, bad), (gap, count))
        sums = self.sha256_of_copies()
        self.assertEqual(1, len(set(sums)), sums)
