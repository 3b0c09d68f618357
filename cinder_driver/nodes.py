"""The storage nodes a back end keeps its volumes on, and where each
volume's copies are.

A back end without ``spdk_storage_nodes`` has one node: the SPDK of its own
host, at ``spdk_rpc_socket``. A back end with them manages each listed
node's SPDK through that node's ``spdk-storage-node`` service on the
message bus (:mod:`storage_node.rpcapi`); a volume has a copy on each of
``spdk:replicas`` of those nodes, and its ``provider_location`` names them.
"""

import json
import os
import threading

from oslo_concurrency import lockutils
from oslo_log import log as logging

from cinder_driver import exports as nvmf_exports
from cinder_driver import lvols as spdk_lvols
from cinder_driver import recovery as export_recovery
from spdk_common import exception as spdk_exc
from spdk_common import files

LOG = logging.getLogger(__name__)

# provider_location of a volume (or snapshot) on storage nodes:
# 'spdk-nodes:<node>[,<node>...]', its copies' nodes in mirror order.
PLACEMENT_PREFIX = 'spdk-nodes:'
# Seconds a node's service has to answer the back end's first call.
FIRST_ANSWER_TIMEOUT = 10


def location(node_names):
    return PLACEMENT_PREFIX + ','.join(node_names)


def placement(obj):
    """The node names a volume's or snapshot's provider_location names;
    None for one of the local node (made before storage nodes, or by a
    local back end).
    """
    provider_location = (obj.provider_location
                         if obj.obj_attr_is_set('provider_location')
                         else None)
    if not provider_location or not provider_location.startswith(
            PLACEMENT_PREFIX):
        return None
    return provider_location[len(PLACEMENT_PREFIX):].split(',')


class Node:
    """One storage node's SPDK as the driver uses it: its lvols, exports
    and export recovery.

    ``name`` is None for the local node. A remote node's export addresses
    come from its service (:meth:`connect`); until it answered once, the
    node is ``down``.
    """

    def __init__(self, name, client, conf, state_dir, addresses=None,
                 port=None, keys=None):
        self.name = name
        self.client = client
        self._conf = conf
        prefix = '-'.join(filter(None, [conf.config_group or 'spdk', name]))
        self.lvols = spdk_lvols.Lvols(
            client, conf.spdk_lvol_clear_method,
            os.path.join(state_dir, '%s.json' % prefix))
        # Copies this node no longer holds for their volume (replaced
        # elsewhere while it did not answer): {volume id: lvol alias},
        # removed when it answers; kept on disk until then.
        self._discard_path = os.path.join(state_dir,
                                          '%s-discard.json' % prefix)
        self._keys = keys
        self.exports = self.recovery = None
        # ensure_export's records for a node that has not answered yet.
        self._waiting = {}
        self._watching = False
        # Stats refreshes and operations may both find the node back.
        self._connect_lock = threading.Lock()
        # The lvstores' last figures, by name.
        self.lvstores = {}
        if addresses is not None:
            self._make_exports(addresses, port)

    def __repr__(self):
        return self.name or 'local'

    @property
    def down(self):
        return self.exports is None

    def _make_exports(self, addresses, port):
        self.exports = nvmf_exports.NVMeoFExports(
            self.client, self._conf.spdk_nqn_prefix, addresses, port,
            keys=self._keys, node=self.name)
        self.recovery = export_recovery.ExportRecovery(
            self.client, self.exports,
            self._conf.spdk_rpc_socket if self.name is None else (
                'storage node %s' % self.name),
            self._conf.spdk_restart_check_interval)

    def connect(self):
        """Learn a remote node's export addresses from its service; True
        the first time it answers.

        :raises SPDKException: when the node's service does not answer.
        """
        with self._connect_lock:
            return self._connect()

    def _connect(self):
        if not self.down:
            return False
        # Short: a call sent before the node's service listens is lost
        # (RabbitMQ drops it), and the back end's start waits for it.
        found = self.client.describe(timeout=min(
            self._conf.spdk_rpc_timeout, FIRST_ANSWER_TIMEOUT))
        # What the node's lvols are (sizes, hidden snapshots), whenever it
        # first answers: at start or later.
        self.lvols.load(self.client.call('bdev_get_bdevs'))
        self._make_exports(found['addresses'], found['port'])
        for volume_id, record in self._waiting.items():
            self.exports.remember(volume_id, *record)
        if self._waiting:
            self.recovery.request_replay()
        self._waiting = {}
        LOG.info('Storage node %(node)s answers; its exports listen on '
                 '%(addresses)s port %(port)s',
                 {'node': self.name, 'addresses': found['addresses'],
                  'port': found['port']})
        self.discard_leftovers()
        # A node that first answers after the back end started is watched
        # from now on, as the others (its restarts replay its exports).
        self.start()
        return True

    def answers(self):
        """Whether the node may be asked now: not when it did not answer
        the export recovery's last look nor a short look now (an attach
        must not wait ``spdk_rpc_timeout`` for a node that is down).
        """
        if not self.recovery.away:
            return True
        try:
            self.client.describe(timeout=min(self._conf.spdk_rpc_timeout,
                                             FIRST_ANSWER_TIMEOUT))
        except spdk_exc.SPDKException:
            return False
        return True

    def start(self):
        """Watch the node for restarts (its export recovery)."""
        if not self._watching:
            self.recovery.start()
            self._watching = True

    def stop(self):
        if self._watching:
            self.recovery.stop()
            self._watching = False

    def remember(self, volume_id, bdev, hosts, qos_limits):
        """An export Cinder's database records (ensure_export), replayed
        into SPDK by the export recovery, or once a node that has not
        answered yet does.
        """
        if self.down:
            self._waiting[volume_id] = (bdev, hosts, qos_limits)
            return
        self.exports.remember(volume_id, bdev, hosts, qos_limits)
        self.recovery.request_replay()

    def discard(self, volume_id, alias):
        """The copy of ``volume_id`` here is no longer the volume's: its
        export and lvol go now, or when the node answers again.
        """
        self._waiting.pop(volume_id, None)
        if self.exports is not None:
            self.exports.forget(volume_id)
        with lockutils.lock(self._discard_path):
            leftovers = self._leftovers()
            leftovers[volume_id] = alias
            files.write_atomically(self._discard_path,
                                   json.dumps(leftovers), 0o600)
        if not self.down:
            self.discard_leftovers()

    def _leftovers(self):
        try:
            with open(self._discard_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def discard_leftovers(self):
        """Remove the copies :meth:`discard` recorded (no RPC when there
        are none): at the node's first answer and with every stats
        refresh. One the node does not let go stays recorded.
        """
        with lockutils.lock(self._discard_path):
            leftovers = self._leftovers()
            for volume_id, alias in sorted(leftovers.items()):
                try:
                    self.exports.unexport(volume_id)
                    self.lvols.delete(alias)
                except spdk_exc.SPDKException as exc:
                    LOG.warning('Storage node %(node)s: the old copy of '
                                'volume %(id)s goes later: %(err)s',
                                {'node': self, 'id': volume_id, 'err': exc})
                    return
                LOG.warning('Storage node %(node)s: removed %(alias)s, the '
                            'old copy of volume %(id)s (replaced on another '
                            'node)', {'node': self, 'alias': alias,
                                      'id': volume_id})
                del leftovers[volume_id]
                files.write_atomically(self._discard_path,
                                       json.dumps(leftovers), 0o600)

    def allow_host_later(self, volume_id, bdev, host_nqn, qos_limits):
        """Put a host on the ACL of a copy on a node that does not answer
        now; its export replay sets it when the node answers.
        """
        self.exports.allow_host_later(volume_id, bdev, host_nqn, qos_limits)
        self.recovery.request_replay()

    def forget_host(self, volume_id, host_nqn):
        """Take a host off a copy's ACL on a node that does not answer;
        done in SPDK when it does (the replay sets the ACL exactly).
        """
        if self.down:
            bdev, hosts, limits = self._waiting.get(volume_id,
                                                    (None, set(), None))
            if bdev is not None:
                self._waiting[volume_id] = (bdev, hosts - {host_nqn}, limits)
            return
        self.exports.forget_host(volume_id, host_nqn)
        self.recovery.request_replay()
