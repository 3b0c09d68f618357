"""Checks of every field that reaches the agent over its RPC API.

Anything on the RPC bus can call the agent, and the fields it sends become
SPDK object names, file names under the agent's state and socket
directories, keyring entries and SPDK RPC parameters. Each one is checked
here, before anything touches SPDK or the filesystem, so that a bad request
fails with one error naming the field and its value, and leaves nothing
behind. The agent turns :class:`Invalid` into its RPC error class. The
connection data's checks are the contract's own
(:mod:`spdk_common.connection`).
"""

import collections
import re

from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import qos as spdk_qos

# Cinder's volume ids as Cinder writes them (str(uuid.uuid4())). The id
# names the NVMe controller (the guest's disk serial), the vhost socket,
# the key file and the per-volume lock, so one volume must have exactly one
# spelling: upper case or other UUID spellings are refused, not folded.
_VOLUME_ID = re.compile(naming.UUID_PATTERN)
# Bounds that keep a request small; real ones are far below them.
# Linux' MAX_NUMNODES at its largest (CONFIG_NODES_SHIFT=10).
MAX_NUMA_NODES = 1024

# One field is wrong: the message names it and its value.
Invalid = spdk_exc.InvalidField

Attach = collections.namedtuple(
    'Attach', ['volume_id', 'target_nqn', 'portals', 'host_nqn',
               'dhchap_secret', 'numa_nodes', 'qos', 'replicas'])


def volume_id(value, field='volume_id'):
    if not isinstance(value, str):
        raise Invalid(field, value, 'is not a string')
    if not _VOLUME_ID.fullmatch(value):
        raise Invalid(field, value, 'is not a Cinder volume id (a lower-case '
                      'UUID in 8-4-4-4-12 form)')
    return value


def numa_nodes(value, field='numa_nodes'):
    """Sorted, unique host NUMA node numbers; None means none."""
    if value is None:
        return []
    connection.checked_list(value, field, MAX_NUMA_NODES)
    for i, node in enumerate(value):
        if (isinstance(node, bool) or not isinstance(node, int)
                or not 0 <= node < MAX_NUMA_NODES):
            raise Invalid('%s[%d]' % (field, i), node,
                          'is not a NUMA node number (0-%d)'
                          % (MAX_NUMA_NODES - 1))
    return sorted(set(value))


def qos(value, field='qos'):
    """Front-end limits in SPDK's own keys (``bdev_set_qos_limit``)."""
    if value is None:
        return None
    connection.checked_dict(value, field)
    try:
        return spdk_qos.validate_limits(value)
    except spdk_exc.InvalidQoS as exc:
        key = exc.kwargs.get('key')
        if key is None:
            raise Invalid(field, value, exc.kwargs.get('reason'))
        raise Invalid('%s.%s' % (field, key), exc.kwargs.get('value'),
                      exc.kwargs.get('why'))


def attach(vol_id, info, nodes, limits):
    vol_id = volume_id(vol_id)
    props = connection.SPDKVhostConnProps(info, vol_id)
    return Attach(vol_id, props.target_nqn, props.portals, props.host_nqn,
                  props.dhchap_secret, numa_nodes(nodes), qos(limits),
                  props.replicas)
