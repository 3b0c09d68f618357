"""The raid1 that mirrors a replicated volume's copies on the compute node.

Each copy of the volume lives on its own storage node; the agent connects
one NVMe/TCP controller per copy and SPDK's ``bdev_raid`` (raid1, with an
on-disk superblock) mirrors them: a write completes when every working
copy has it, a copy whose I/O fails is taken out of the mirror and the
guest goes on with the others. The superblock on every copy records which
copies are in sync, so that a copy that missed writes is never read again
before a rebuild, whichever host assembles the mirror next: SPDK's examine
assembles a mirror from the superblocks as soon as the copies' bdevs
appear (a re-attach, a restarted agent, a migration's destination), and
re-adds a copy that comes back, rebuilding it (a full-range copy).
"""

import base64
import time

from oslo_log import log as logging

from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import notifications

LOG = logging.getLogger(__name__)

# bdev_raid_get_bdevs' states (module/bdev/raid/bdev_raid.c, v25.09).
ONLINE = 'online'
# Copy states the agent reports.
IN_SYNC = notifications.COPY_IN_SYNC
MISSING = notifications.COPY_MISSING
REBUILDING = notifications.COPY_REBUILDING
# How long SPDK's examine may take to assemble a mirror whose copies
# carry its superblock, once their bdevs are there.
ASSEMBLE_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# The raid superblock at a copy's block 0 (module/bdev/raid/bdev_raid.h,
# struct raid_bdev_superblock): its signature, and the mirror's name at
# bytes 40-103. The guest's data starts at data_offset (1 MiB), so the
# superblock's first 4 KiB are the mirror's alone.
_SB_SIGNATURE = b'SPDKRAID'
_SB_NAME = slice(40, 104)
_SB_WIPE_BYTES = 4096
# NVMe I/O opcodes (NVM Command Set).
_NVME_READ = 0x02
_NVME_WRITE_ZEROES = 0x08
_NVME_IO_TIMEOUT_MS = 10000
# The rebuild's window (bdev_raid_set_options process_window_size_kb):
# SPDK v25.09's raid1 copies one window at a time (quiesce its range, read
# it whole from a copy in sync, write it whole, update every channel,
# unquiesce), so a window's fixed cost (~0.3 ms here) bounds the speed:
# unbounded, 256 KiB windows rebuilt 212-475 MiB/s, 1 MiB 342-646 and
# 2 MiB 328-923 (mostly above 560) against spdk_dd's 520-1160 MiB/s copy
# between the same NVMe/TCP bdevs (benchmarks/replicated_volume.py, on a
# busy 2-core host; doc/source/benchmarks.rst). SPDK allocates 16
# windows of DMA buffers per running rebuild (32 MiB at 2 MiB): in the
# agent's default vhost (hugepage_mib_per_node=1024, pools sized by
# spdk_common.memory) 14 rebuilds ran at once and the 15th failed to
# start with ENOMEM (57 with 256 KiB windows, 28 with 1 MiB); SPDK takes
# a copy whose rebuild fails to start out of the mirror again, for the
# agent's next health check to put back (not tested).
REBUILD_WINDOW_KIB = 2048
REBUILD_BUFFERED_WINDOWS = 16


def rebuild_memory_mib(rebuilds):
    """SPDK memory ``rebuilds`` running rebuilds hold."""
    return rebuilds * REBUILD_BUFFERED_WINDOWS * REBUILD_WINDOW_KIB / 1024


def _io_command(opcode, blocks):
    """A 64-byte NVMe command on namespace 1 from LBA 0, base64 as
    bdev_nvme_send_cmd takes it.
    """
    command = bytearray(64)
    command[0] = opcode
    command[4:8] = (1).to_bytes(4, 'little')
    command[48:52] = (blocks - 1).to_bytes(4, 'little')   # 0-based
    return base64.urlsafe_b64encode(bytes(command)).decode('ascii')


class Mirror:
    """What the agent asks of SPDK about one volume's raid1."""

    def __init__(self, client):
        self._client = client

    def listing(self):
        """Every raid bdev by name: one call, whatever the number."""
        return {raid['name']: raid for raid in self._client.call(
            'bdev_raid_get_bdevs', {'category': 'all'})}

    def get(self, name):
        return self.listing().get(name)

    def assemble(self, volume_id, controllers, absent=None):
        """The online raid1 over the namespaces of ``controllers`` (the
        copies' NVMe controllers, in the connection's order); made when
        none exists.

        A mirror SPDK already assembled from the copies' superblocks is
        taken if its copies are these: another set would serve someone
        else's data under this volume's name. ``absent``: {index: why} of
        copies not connected (their nodes do not answer); the mirror runs
        without them only as SPDK assembles it from the others'
        superblocks, never made or completed by hand.
        """
        name = naming.raid_bdev_name(volume_id)
        members = [naming.namespace_bdev_name(c) for c in controllers]
        if absent:
            return name, self._without_absent(
                volume_id, self._settled(name, len(members) - len(absent)),
                members, absent)
        found = self._settled(name)
        if found is None:
            try:
                self._create(name, members)
            except spdk_exc.SPDKExists:
                # Copies made from another volume's copies (a clone, a
                # volume from a snapshot) carry that volume's superblock,
                # which SPDK will not overwrite.
                if (self._settled(name) is not None
                        or not self._wipe_foreign(volume_id, controllers)):
                    raise
                self._create(name, members)
            except spdk_exc.SPDKRPCError:
                # Examine assembled it meanwhile (it claims the copies).
                found = self._settled(name)
                if found is None:
                    raise
            if found is None:
                return name, True
        if found['state'] != ONLINE:
            found = self._without_gone_copies(volume_id, found, members)
        self._check_members(volume_id, found, members)
        return name, False

    def _without_absent(self, volume_id, raid, members, absent):
        """The mirror SPDK started without the ``absent`` copies (False:
        not made here), or AttachError.

        Only the copies' superblocks tell which copies have every write:
        one that left the mirror under a guest is recorded out of it by
        the others, and SPDK starts without it. Otherwise the copies that
        answer may be the ones that left (a copy taken out keeps a
        superblock that counts every copy in sync), and serving them could
        go back in time: the attach is refused, and the mirror SPDK waits
        with goes, to be assembled again at the next attach.
        """
        why = '; '.join('copy %d cannot be connected (%s)' % item
                        for item in sorted(absent.items()))
        if raid is None:
            raise spdk_exc.AttachError(volume=volume_id, reason=(
                '%s, and the copies that do carry no superblock of its '
                'mirror (never attached): nothing tells that they are in '
                'sync; wait for its storage node, or replace the copy '
                '(spdk-volume-replicas replace-copy)' % why))
        if raid['state'] != ONLINE:
            self.delete(raid['name'])
            raise spdk_exc.AttachError(volume=volume_id, reason=(
                '%s, and the mirror superblock on the copies that do counts '
                'it in sync: they may be older than it; wait for its '
                'storage node, or replace the copy (spdk-volume-replicas '
                'replace-copy)' % why))
        self._check_members(volume_id, raid, members)
        return False

    def _without_gone_copies(self, volume_id, raid, members):
        """Start a mirror whose superblock still counts a copy in sync
        that is no longer one of the volume's: the operator replaced it
        (``spdk-volume-replicas replace-copy``, which requires the copies
        that stay to be in sync) while the volume was detached. Anything
        else is left as it is, for :meth:`_check_members` to refuse.

        SPDK v25.09 cannot start such a mirror without the copy, nor drop
        it: a null bdev with the gone copy's UUID stands in for it until
        the mirror is online, and then leaves it as a failed copy would
        (the others' superblocks record it gone). Nothing reads it: the
        mirror is served to no one yet, and raid1 starts without a resync.
        The copies' own superblocks are never rewritten by hand, so a
        crash at any point leaves them as SPDK wrote them. The volume's
        new copies are then taken in, and rebuilt, by the health check.
        """
        slots = raid.get('base_bdevs_list') or ()
        gone = [b for b in slots if not b.get('is_configured')]
        ours = {}
        for member in members:
            found = self._client.call('bdev_get_bdevs', {'name': member})
            if found:
                ours[found[0]['uuid']] = found[0]
        if (not gone or not any(b.get('is_configured') for b in slots)
                or any(not b.get('uuid') or b['uuid'] in ours
                       for b in gone)):
            return raid
        template = next(iter(ours.values()))
        stand_ins = []
        try:
            for slot in gone:
                stand_in = '%s-gone-%s' % (volume_id, slot['uuid'][:8])
                self._client.call('bdev_null_create', {
                    'name': stand_in, 'uuid': slot['uuid'],
                    'num_blocks': template['num_blocks'],
                    'block_size': template['block_size']})
                stand_ins.append(stand_in)
                self.add(raid['name'], stand_in)
            started = self._settled(raid['name'])
            if started is None or started['state'] != ONLINE:
                return started or raid
            for stand_in in stand_ins:
                self.remove(stand_in)
        finally:
            for stand_in in stand_ins:
                try:
                    self._client.call('bdev_null_delete',
                                      {'name': stand_in})
                except spdk_exc.SPDKException as exc:
                    LOG.warning('Could not delete %(bdev)s: %(err)s',
                                {'bdev': stand_in, 'err': exc})
        LOG.warning('Volume %(id)s: its mirror counted %(n)d cop%(ies)s in '
                    'sync that the volume no longer has (replaced); it runs '
                    'on the others and rebuilds the new ones',
                    {'id': volume_id, 'n': len(gone),
                     'ies': 'y' if len(gone) == 1 else 'ies'})
        return self._settled(raid['name'])

    def _create(self, name, members):
        self._client.call('bdev_raid_create', {
            'name': name, 'raid_level': 'raid1', 'base_bdevs': members,
            'superblock': True})

    def _wipe_foreign(self, volume_id, controllers):
        """Clear superblocks of other mirrors from the copies; whether one
        was found. A superblock of this volume's own mirror is kept.
        """
        wiped = False
        for controller in controllers:
            member = naming.namespace_bdev_name(controller)
            block = self._client.call('bdev_get_bdevs',
                                      {'name': member})[0]['block_size']
            reply = self._client.call('bdev_nvme_send_cmd', {
                'name': controller, 'cmd_type': 'io',
                'data_direction': 'c2h', 'cmdbuf': _io_command(_NVME_READ, 1),
                'data_len': block, 'timeout_ms': _NVME_IO_TIMEOUT_MS})
            data = base64.urlsafe_b64decode(reply.get('data') or '')
            if data[:len(_SB_SIGNATURE)] != _SB_SIGNATURE:
                continue
            owner = data[_SB_NAME].rstrip(b'\0').decode('utf-8', 'replace')
            if owner == naming.raid_bdev_name(volume_id):
                continue
            LOG.warning('Volume %(id)s: copy %(member)s carries the mirror '
                        'superblock of %(owner)s, the volume it was made '
                        'from; clearing it', {'id': volume_id,
                                              'member': member,
                                              'owner': owner})
            self._client.call('bdev_nvme_send_cmd', {
                'name': controller, 'cmd_type': 'io',
                'data_direction': 'h2c',
                'cmdbuf': _io_command(_NVME_WRITE_ZEROES,
                                      max(1, _SB_WIPE_BYTES // block)),
                'timeout_ms': _NVME_IO_TIMEOUT_MS})
            wiped = True
        return wiped

    def _settled(self, name, connected=None):
        """The raid, once examine is done with it: it assembles a mirror
        copy by copy, and one copy short of its superblock's count it is
        still configuring. With ``connected``, the number of copies
        connected when some are not: examine reads each one's superblock
        after its controller is connected, so no raid yet may be one on
        its way, and a raid configuring is done once it has them all.
        """
        deadline = time.monotonic() + ASSEMBLE_TIMEOUT
        while True:
            found = self.get(name)
            if found is None:
                done = connected is None
            else:
                done = found['state'] == ONLINE or (
                    connected is not None
                    and found['num_base_bdevs_discovered'] >= connected)
            if done or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_INTERVAL)

    @staticmethod
    def _check_members(volume_id, raid, members):
        present = {b['name'] for b in raid.get('base_bdevs_list') or ()
                   if b.get('name')}
        if raid['state'] != ONLINE:
            raise spdk_exc.AttachError(
                volume=volume_id,
                reason='SPDK assembled the mirror %s from its copies\' '
                       'superblocks but it is %s, with %s of %d copies; a '
                       'copy the superblock counts in sync is not there' % (
                           raid['name'], raid['state'],
                           ', '.join(sorted(present)) or 'none',
                           raid.get('num_base_bdevs', 0)))
        if raid.get('raid_level') != 'raid1' or not present <= set(members):
            raise spdk_exc.AttachError(
                volume=volume_id,
                reason='SPDK already has a raid bdev %s over %s, not a '
                       'mirror of %s; detach the volume first' % (
                           raid['name'], ', '.join(sorted(present)),
                           ', '.join(members)))

    def delete(self, name):
        """Stop mirroring; the copies keep their superblock (and data)."""
        try:
            self._client.call('bdev_raid_delete', {'name': name})
        except spdk_exc.SPDKNotFound:
            pass
        except spdk_exc.SPDKRPCError:
            if self.get(name) is not None:
                raise

    def set_rebuild_bandwidth(self, mib_sec):
        """Bound every rebuild of this SPDK (0: unbounded); SPDK forgets
        it when it stops.

        The rebuild copies a window (REBUILD_WINDOW_KIB) at a time and
        holds 16 windows of buffers while it runs: larger windows rebuild
        faster and take more of SPDK's memory per running rebuild.
        """
        self._client.call('bdev_raid_set_options', {
            'process_max_bandwidth_mb_sec': mib_sec,
            'process_window_size_kb': REBUILD_WINDOW_KIB})

    def add(self, name, member):
        """Take a copy back; SPDK rebuilds it from the others."""
        self._client.call('bdev_raid_add_base_bdev',
                          {'raid_bdev': name, 'base_bdev': member})

    def remove(self, member):
        """Take a copy out of its mirror (the others' superblocks record
        it gone); a copy already out is fine.
        """
        try:
            self._client.call('bdev_raid_remove_base_bdev',
                              {'name': member})
        except spdk_exc.SPDKNotFound:
            pass


def copy_states(raid, members):
    """{member bdev: IN_SYNC | REBUILDING | MISSING} of one mirror."""
    configured = {b['name'] for b in (raid or {}).get('base_bdevs_list') or ()
                  if b.get('name') and b.get('is_configured')}
    target = ((raid or {}).get('process') or {}).get('target')
    states = {}
    for member in members:
        if member == target:
            states[member] = REBUILDING
        elif member in configured:
            states[member] = IN_SYNC
        else:
            states[member] = MISSING
    return states


def rebuild_percent(raid):
    return (((raid or {}).get('process') or {}).get('progress')
            or {}).get('percent')
