"""Logical volumes of one SPDK target, and the snapshots Cinder no longer sees.

Every operation here is the minimal RPC sequence for its job: SPDK serves
RPCs on a 4 ms timer, so each extra call is a visible cost.

Snapshots are lvol snapshots and clones are lvol clones: O(1), nothing is
copied. SPDK refuses to delete a snapshot that still has more than one
clone (and to rename a snapshot at all). Such a snapshot is *hidden*: Cinder
no longer sees it, and it is deleted together with its last clone. Hidden
are the internal snapshots behind cloned volumes (created as ``hidden-…``)
and Cinder snapshots deleted while clones needed them: those keep their
name, so they are listed in a small state file (written atomically) that
survives restarts of cinder-volume. Losing that file loses no data; the
listed snapshots would only stay until an operator deletes them. The
parent links of
hidden snapshots are read once at start-up and kept current by the
operations, so deleting a volume costs no extra look-up; so are the sizes
of the volume lvols, which the stats need and ``bdev_lvol_get_lvols`` does
not list (``bdev_get_bdevs`` does, but its reply grows ~1 KiB per lvol and
costs more than the whole stats refresh at a thousand volumes).
"""

import json
import math
import os
import threading
import time

from oslo_log import log as logging
from oslo_utils import units

from spdk_common import exception as spdk_exc
from spdk_common import files
from spdk_common import naming

LOG = logging.getLogger(__name__)

# Past this many lvols made behind the driver's back, one full listing is
# cheaper than a look-up each.
_LOOKUPS_BEFORE_LISTING = 8


def gib_to_mib(size_gb):
    return int(size_gb) * units.Ki


def bytes_to_gib_ceil(size):
    return int(math.ceil(size / float(units.Gi)))


def lvol_info(bdev):
    """The ``driver_specific.lvol`` part of a bdev, or None."""
    return (bdev.get('driver_specific') or {}).get('lvol')


def bdev_alias(bdev):
    aliases = bdev.get('aliases') or []
    return aliases[0] if aliases else bdev['name']


class Lvols:
    def __init__(self, client, clear_method='unmap', state_file=None):
        self._client = client
        self._clear_method = clear_method
        self._state_file = state_file
        self._lock = threading.Lock()
        # hidden snapshot alias -> aliases of its clones
        self._hidden_clones = {}
        # alias -> its hidden parent's alias
        self._hidden_parent = {}
        # alias -> size in bytes, for every lvol that is not a snapshot
        self._sizes = {}

    # -- start-up -----------------------------------------------------------

    def load(self, bdevs):
        """Learn hidden snapshots, their clones and sizes from one listing."""
        hidden_by_cinder = self._read_state()
        hidden, parent, sizes = {}, {}, {}
        for bdev in bdevs:
            info = lvol_info(bdev)
            if info is None:
                continue
            alias = bdev_alias(bdev)
            lvstore, name = naming.split_alias(alias)
            if not info.get('snapshot'):
                sizes[alias] = bdev['num_blocks'] * bdev['block_size']
            if info.get('snapshot') and (naming.is_hidden_lvol(name)
                                         or alias in hidden_by_cinder):
                clones = {naming.lvol_alias(lvstore, c)
                          for c in info.get('clones', [])}
                hidden[alias] = clones
                for clone in clones:
                    parent[clone] = alias
        with self._lock:
            self._hidden_clones = hidden
            self._hidden_parent = parent
            self._sizes = sizes
        self._save_state()
        orphans = [a for a, clones in hidden.items() if not clones]
        for alias in orphans:
            self._delete_hidden(alias)

    def provisioned(self):
        """Bytes of lvols that are not snapshots, per lvstore.

        One ``bdev_lvol_get_lvols`` tells which lvols exist; sizes come from
        what this driver did, and only an lvol made or resized behind its
        back costs a look-up.
        """
        listed = {lvol['alias'] for lvol in
                  self._client.call('bdev_lvol_get_lvols')
                  if not lvol['is_snapshot']}
        with self._lock:
            for alias in set(self._sizes) - listed:
                del self._sizes[alias]
            unknown = listed - set(self._sizes)
        if len(unknown) > _LOOKUPS_BEFORE_LISTING:
            found = [b for b in self._client.call('bdev_get_bdevs')
                     if bdev_alias(b) in unknown]
        else:
            found = [b for b in map(self.get, unknown) if b is not None]
        for bdev in found:
            self._track(bdev_alias(bdev),
                        bdev['num_blocks'] * bdev['block_size'])
        totals = {}
        with self._lock:
            for alias, size in self._sizes.items():
                lvstore = naming.split_alias(alias)[0]
                totals[lvstore] = totals.get(lvstore, 0) + size
        return totals

    def size(self, alias):
        """Bytes of a (non-snapshot) lvol as last seen, or None."""
        with self._lock:
            return self._sizes.get(alias)

    def _track(self, alias, size):
        with self._lock:
            self._sizes[alias] = size

    # -- lvols --------------------------------------------------------------

    def create(self, lvstore, name, size_gb, thin):
        result = self._client.call('bdev_lvol_create', {
            'lvs_name': lvstore,
            'lvol_name': name,
            'size_in_mib': gib_to_mib(size_gb),
            'thin_provision': bool(thin),
            'clear_method': self._clear_method,
        })
        self._track(naming.lvol_alias(lvstore, name), size_gb * units.Gi)
        return result

    def resize(self, alias, size_gb):
        self._client.call('bdev_lvol_resize', {
            'name': alias, 'size_in_mib': gib_to_mib(size_gb)})
        self._track(alias, size_gb * units.Gi)

    def inflate(self, alias, timeout=None):
        """Allocate every cluster and copy what the lvol still reads from
        its snapshots: a thick lvol that owns all its data (this copies
        the whole volume, hence ``timeout``).
        """
        self._client.call('bdev_lvol_inflate', {'name': alias},
                          timeout=timeout)

    def set_read_only(self, alias):
        self._client.call('bdev_lvol_set_read_only', {'name': alias})

    def shallow_copy(self, alias, bdev, timeout, poll_interval):
        """Copy the clusters the lvol itself holds onto ``bdev`` (its
        snapshots' are not copied); the lvol must be read-only.
        """
        operation = self._client.call('bdev_lvol_start_shallow_copy', {
            'src_lvol_name': alias, 'dst_bdev_name': bdev})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._client.call(
                'bdev_lvol_check_shallow_copy',
                {'operation_id': operation['operation_id']})
            if status['state'] == 'complete':
                return
            if status['state'] == 'error':
                raise spdk_exc.SPDKRPCError(method='bdev_lvol_shallow_copy',
                                            code=None,
                                            error=status.get('error'))
            time.sleep(poll_interval)
        raise spdk_exc.SPDKTimeout(socket=self._client.socket_path,
                                   method='bdev_lvol_shallow_copy',
                                   timeout=timeout)

    def rename(self, alias, new_name):
        self._client.call('bdev_lvol_rename',
                          {'old_name': alias, 'new_name': new_name})
        lvstore, _old = naming.split_alias(alias)
        self._relink(alias, naming.lvol_alias(lvstore, new_name))

    def get(self, name):
        """The bdev of an lvol by alias, name or UUID; None if absent."""
        try:
            found = self._client.call('bdev_get_bdevs', {'name': name})
        except spdk_exc.SPDKNotFound:
            return None
        if not found or lvol_info(found[0]) is None:
            return None
        return found[0]

    def ancestors(self, alias, limit=256):
        """Names of the snapshots an lvol's data chain goes through."""
        names = []
        bdev = self.get(alias)
        while bdev is not None and len(names) < limit:
            parent = lvol_info(bdev).get('base_snapshot')
            if not parent:
                break
            names.append(parent)
            bdev = self.get(naming.lvol_alias(naming.split_alias(alias)[0],
                                              parent))
        return names

    def discard(self, alias):
        """Delete what a failed operation made; log instead of raising."""
        try:
            self.delete(alias)
        except spdk_exc.SPDKException as exc:
            LOG.error('Could not remove %(alias)s after a failed '
                      'operation: %(err)s', {'alias': alias, 'err': exc})

    def delete(self, alias):
        """Delete a volume lvol; absent is fine. Frees hidden parents."""
        try:
            self._client.call('bdev_lvol_delete', {'name': alias})
        except spdk_exc.SPDKNotFound:
            LOG.info('lvol %s was already gone', alias)
        with self._lock:
            self._sizes.pop(alias, None)
        self._release_parent(alias)

    # -- snapshots and clones -----------------------------------------------

    def snapshot(self, alias, snapshot_name):
        result = self._client.call('bdev_lvol_snapshot', {
            'lvol_name': alias, 'snapshot_name': snapshot_name})
        lvstore, _name = naming.split_alias(alias)
        # The volume is now a clone of the new snapshot, which takes its
        # place under any hidden parent.
        self._relink(alias, naming.lvol_alias(lvstore, snapshot_name))
        return result

    def clone(self, snapshot_alias, clone_name, size_gb):
        """Clone a snapshot of ``size_gb`` (clones start at its size)."""
        result = self._client.call('bdev_lvol_clone', {
            'snapshot_name': snapshot_alias, 'clone_name': clone_name})
        lvstore, _name = naming.split_alias(snapshot_alias)
        self._track(naming.lvol_alias(lvstore, clone_name),
                    size_gb * units.Gi)
        return result

    def clone_volume(self, source_alias, hidden_name, clone_name, size_gb):
        """Clone a live volume through an internal, hidden snapshot."""
        lvstore, _name = naming.split_alias(source_alias)
        hidden_alias = naming.lvol_alias(lvstore, hidden_name)
        clone_alias = naming.lvol_alias(lvstore, clone_name)
        self.snapshot(source_alias, hidden_name)
        with self._lock:
            self._hidden_clones[hidden_alias] = {source_alias}
            self._hidden_parent[source_alias] = hidden_alias
        try:
            result = self.clone(hidden_alias, clone_name, size_gb)
        except Exception:
            self._delete_hidden(hidden_alias)
            raise
        with self._lock:
            self._hidden_clones[hidden_alias].add(clone_alias)
            self._hidden_parent[clone_alias] = hidden_alias
        return result

    def delete_snapshot(self, alias):
        """Delete a Cinder snapshot, or hide it while clones need it."""
        try:
            self._client.call('bdev_lvol_delete', {'name': alias})
        except spdk_exc.SPDKNotFound:
            LOG.info('Snapshot lvol %s was already gone', alias)
            return
        except spdk_exc.SPDKRPCError:
            # SPDK answers "Operation not permitted" with the generic
            # internal-error code here, so look before deciding.
            bdev = self.get(alias)
            if bdev is None or len(lvol_info(bdev).get('clones', [])) < 2:
                raise
            self._hide(alias, bdev)
            return
        self._release_parent(alias)

    # -- state file -------------------------------------------------------

    def _read_state(self):
        if not self._state_file:
            return set()
        try:
            with open(self._state_file) as f:
                return set(json.load(f)['hidden_snapshots'])
        except FileNotFoundError:
            return set()
        except (ValueError, KeyError, TypeError) as exc:
            LOG.error('Ignoring unreadable %(file)s (%(err)s): snapshots it '
                      'listed stay until deleted by hand',
                      {'file': self._state_file, 'err': exc})
            return set()

    def _save_state(self):
        """Persist the hidden snapshots whose names do not say so."""
        if not self._state_file:
            return
        with self._lock:
            listed = sorted(a for a in self._hidden_clones
                            if not naming.is_hidden_lvol(
                                naming.split_alias(a)[1]))
        directory = os.path.dirname(self._state_file)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        files.write_atomically(
            self._state_file, json.dumps({'hidden_snapshots': listed}),
            0o600)

    def _hide(self, alias, bdev):
        lvstore, _name = naming.split_alias(alias)
        clones = {naming.lvol_alias(lvstore, c)
                  for c in lvol_info(bdev).get('clones', [])}
        with self._lock:
            self._hidden_clones[alias] = clones
            for clone in clones:
                self._hidden_parent[clone] = alias
        self._save_state()
        LOG.info('Snapshot %(alias)s still backs %(count)d clones; it is '
                 'hidden and goes with its last clone',
                 {'alias': alias, 'count': len(clones)})

    # -- hidden parent bookkeeping ------------------------------------------

    def _relink(self, old_alias, new_alias):
        with self._lock:
            if old_alias in self._sizes:
                self._sizes[new_alias] = self._sizes.pop(old_alias)
            parent = self._hidden_parent.pop(old_alias, None)
            if parent:
                self._hidden_parent[new_alias] = parent
                clones = self._hidden_clones[parent]
                clones.discard(old_alias)
                clones.add(new_alias)
            clones = self._hidden_clones.pop(old_alias, None)
            if clones is not None:
                self._hidden_clones[new_alias] = clones
                for clone in clones:
                    self._hidden_parent[clone] = new_alias

    def _release_parent(self, alias):
        """Forget a deleted lvol; delete its hidden parent if now unused."""
        with self._lock:
            parent = self._hidden_parent.pop(alias, None)
            if parent is None:
                return
            clones = self._hidden_clones[parent]
            clones.discard(alias)
            unused = len(clones) <= 1
        if unused:
            self._delete_hidden(parent)

    def _delete_hidden(self, alias):
        """Delete a hidden snapshot with at most one clone left.

        With one clone SPDK hands the snapshot's clusters to that clone
        (metadata only); the clone then hangs off the snapshot's parent.
        """
        try:
            self._client.call('bdev_lvol_delete', {'name': alias})
        except spdk_exc.SPDKNotFound:
            pass
        except spdk_exc.SPDKException as exc:
            LOG.warning('Could not delete hidden snapshot %(alias)s yet: '
                        '%(err)s', {'alias': alias, 'err': exc})
            return
        LOG.info('Deleted hidden snapshot %s', alias)
        with self._lock:
            clones = self._hidden_clones.pop(alias, set())
            parent = self._hidden_parent.pop(alias, None)
            if parent:
                siblings = self._hidden_clones[parent]
                siblings.discard(alias)
                siblings.update(clones)
            for clone in clones:
                if parent:
                    self._hidden_parent[clone] = parent
                else:
                    self._hidden_parent.pop(clone, None)
        self._save_state()
        if parent:
            with self._lock:
                unused = len(self._hidden_clones.get(parent, ())) <= 1
            if unused:
                self._delete_hidden(parent)
