"""What the storage-node service does for a Cinder back end: its SPDK
calls, checked.

Cinder's SPDK driver manages the lvols and NVMe-oF exports of several
storage nodes when a back end keeps copies of replicated volumes on
them. SPDK's JSON-RPC has no authentication and listens on a unix socket
only; this service is the one way to it from the network: it takes calls
on the cloud's authenticated message bus and forwards only the SPDK
methods the driver uses on lvols, lvstores, NVMe-oF subsystems and QoS,
with their parameters as the driver sends them. What could read or write
files on the node (AIO bdevs, key files), open a subsystem to any host, or
reconfigure the application is refused.
"""

import uuid

from spdk_common import exception as spdk_exc

# The SPDK methods Cinder's driver calls (cinder_driver/lvols.py,
# exports.py, spdk.py), nothing else.
ALLOWED_METHODS = frozenset((
    'spdk_get_version',
    'bdev_get_bdevs',
    'bdev_set_qos_limit',
    'bdev_lvol_get_lvstores',
    'bdev_lvol_get_lvols',
    'bdev_lvol_create',
    'bdev_lvol_delete',
    'bdev_lvol_resize',
    'bdev_lvol_snapshot',
    'bdev_lvol_clone',
    'bdev_lvol_rename',
    'bdev_lvol_inflate',
    'bdev_lvol_set_read_only',
    'bdev_lvol_start_shallow_copy',
    'bdev_lvol_check_shallow_copy',
    'nvmf_get_transports',
    'nvmf_create_transport',
    'nvmf_get_subsystems',
    'nvmf_create_subsystem',
    'nvmf_delete_subsystem',
    'nvmf_subsystem_add_ns',
    'nvmf_subsystem_add_listener',
    'nvmf_subsystem_add_host',
    'nvmf_subsystem_remove_host',
))


def _refused(field, value, reason):
    return spdk_exc.InvalidRequest(method='spdk_call', field=field,
                                   value=spdk_exc.shown(value),
                                   reason=reason)


class StorageNode:
    def __init__(self, client, conf):
        """``client``: the SPDKClient of this node's target; ``conf``: the
        [spdk_storage_node] group.
        """
        self._client = client
        self._conf = conf
        # Tells the driver that this service restarted (its own client's
        # generations start over).
        self._instance = str(uuid.uuid4())

    def spdk_call(self, method, params):
        """One allowed SPDK RPC, its answer or its SPDK error.

        :raises InvalidRequest: naming the argument that is refused.
        """
        if not isinstance(method, str) or method not in ALLOWED_METHODS:
            raise _refused('spdk_method', method, 'is not an SPDK method the '
                           'storage-node service forwards')
        if params is not None and not isinstance(params, dict):
            raise _refused('params', params, 'is not a dict')
        if method == 'nvmf_create_subsystem' and (params or {}).get(
                'allow_any_host', False) is not False:
            # Every export has a host ACL (never allow_any_host).
            raise _refused('params.allow_any_host',
                           params.get('allow_any_host'), 'must be false: '
                           'exports allow their hosts one by one')
        return self._client.call(method, params)

    def describe(self):
        """Where this node's exports listen, and the generation of its
        SPDK connection: it changes when SPDK (or this service) restarted,
        which tells the driver to replay its exports.
        """
        return {'addresses': list(self._conf.target_addresses),
                'port': self._conf.target_port,
                'generation': '%s:%d' % (
                    self._instance, self._client.connection_generation())}
