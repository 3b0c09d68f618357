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

import time

from spdk_common import exception as spdk_exc
from spdk_common import naming

# bdev_raid_get_bdevs' states (module/bdev/raid/bdev_raid.c, v25.09).
ONLINE = 'online'
# Copy states the agent reports.
IN_SYNC = 'in_sync'
MISSING = 'missing'
REBUILDING = 'rebuilding'
# How long SPDK's examine may take to assemble a mirror whose copies
# carry its superblock, once their bdevs are there.
ASSEMBLE_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


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

    def assemble(self, volume_id, members):
        """The online raid1 over ``members`` (bdev names, in the order of
        the connection's copies); made when none exists.

        A mirror SPDK already assembled from the copies' superblocks is
        taken if its copies are these: another set would serve someone
        else's data under this volume's name.
        """
        name = naming.raid_bdev_name(volume_id)
        found = self._settled(name)
        if found is None:
            try:
                self._client.call('bdev_raid_create', {
                    'name': name, 'raid_level': 'raid1',
                    'base_bdevs': list(members), 'superblock': True})
            except spdk_exc.SPDKRPCError:
                # Examine assembled it meanwhile (it claims the copies).
                found = self._settled(name)
                if found is None:
                    raise
            else:
                return name, True
        self._check_members(volume_id, found, members)
        return name, False

    def _settled(self, name):
        """The raid, once examine is done with it: it assembles a mirror
        copy by copy, and one copy short of its superblock's count it is
        still configuring.
        """
        deadline = time.monotonic() + ASSEMBLE_TIMEOUT
        while True:
            found = self.get(name)
            if (found is None or found['state'] == ONLINE
                    or time.monotonic() >= deadline):
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
        """
        self._client.call('bdev_raid_set_options',
                          {'process_max_bandwidth_mb_sec': mib_sec})

    def add(self, name, member):
        """Take a copy back; SPDK rebuilds it from the others."""
        self._client.call('bdev_raid_add_base_bdev',
                          {'raid_bdev': name, 'base_bdev': member})


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
