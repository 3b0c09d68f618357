"""Checks of every field that reaches the agent over its RPC API.

Anything on the RPC bus can call the agent, and the fields it sends become
SPDK object names, file names under the agent's state and socket
directories, keyring entries and SPDK RPC parameters. Each one is checked
here, before anything touches SPDK or the filesystem, so that a bad request
fails with one error naming the field and its value, and leaves nothing
behind. The agent turns :class:`Invalid` into its RPC error class.
"""

import base64
import collections
import ipaddress
import re
import zlib

from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import qos as spdk_qos

# Cinder's volume ids as Cinder writes them (str(uuid.uuid4())). The id
# names the NVMe controller (the guest's disk serial), the vhost socket,
# the key file and the per-volume lock, so one volume must have exactly one
# spelling: upper case or other UUID spellings are refused, not folded.
_VOLUME_ID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                        r'[0-9a-f]{12}')
# NVMe DH-HMAC-CHAP secret representation (NVMe Base Specification 8.13.5.8,
# nvme-cli's gen-dhchap-key, cinder_driver.dhchap.make_secret): the hash
# id 00-03, then base64 of the key and its CRC-32, little-endian.
_DHCHAP_SECRET = re.compile(r'DHHC-1:0[0-3]:([A-Za-z0-9+/]+={0,2}):')
# SPDK (lib/nvme/nvme_auth.c) takes 32, 48 and 64 byte keys.
_DHCHAP_KEY_BYTES = (32, 48, 64)
_PORT = re.compile(r'[0-9]{1,5}')

# Bounds that keep a request small; real ones are far below them.
MAX_PORTALS = 16
# Linux' MAX_NUMNODES at its largest (CONFIG_NODES_SHIFT=10).
MAX_NUMA_NODES = 1024

# Enough for the NQNs and ids of real requests; longer values are cut.
_SHOWN_CHARS = 100

Attach = collections.namedtuple(
    'Attach', ['volume_id', 'target_nqn', 'portals', 'host_nqn',
               'dhchap_secret', 'numa_nodes', 'qos'])


class Invalid(ValueError):
    """One field of a request is wrong; ``str()`` names field and value."""

    def __init__(self, field, value, reason, secret=False):
        self.field = field
        self.value = shown(value, secret)
        self.reason = reason
        super().__init__('%s %s %s' % (field, self.value, reason))


def shown(value, secret=False):
    """The value for an error message: its repr, cut short if long.

    A secret is never shown, only its type and length, so that errors and
    the logs that carry them stay free of key material.
    """
    if secret:
        if isinstance(value, str):
            return '(withheld, %d characters)' % len(value)
        return '(withheld, a %s)' % type(value).__name__
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        try:
            size = ', %d long' % len(value)
        except TypeError:
            size = ''
        text = '%s... (%s%s)' % (text[:_SHOWN_CHARS],
                                 type(value).__name__, size)
    return text


def volume_id(value, field='volume_id'):
    if not isinstance(value, str):
        raise Invalid(field, value, 'is not a string')
    if not _VOLUME_ID.fullmatch(value):
        raise Invalid(field, value, 'is not a Cinder volume id (a lower-case '
                      'UUID in 8-4-4-4-12 form)')
    return value


def _dict(value, field):
    if not isinstance(value, dict):
        raise Invalid(field, value, 'is not a dict')
    return value


def _nqn(value, field):
    try:
        return naming.validate_nqn(value)
    except spdk_exc.InvalidNQN as exc:
        raise Invalid(field, value, 'is not a valid NQN: %s'
                      % exc.kwargs.get('reason'))


def _list(value, field, max_len):
    # JSON arrays arrive as lists; tuples are what Python callers send.
    if not isinstance(value, (list, tuple)):
        raise Invalid(field, value, 'is not a list')
    if len(value) > max_len:
        raise Invalid(field, value, 'has more than %d entries' % max_len)
    return value


def _address(value, field):
    """An IP literal, as SPDK's traddr for TCP takes it."""
    if not isinstance(value, str):
        raise Invalid(field, value, 'is not a string')
    try:
        if '%' in value:   # an interface scope is not Cinder's to choose
            raise ValueError(value)
        address = ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(field, value, 'is not an IPv4 or IPv6 address; SPDK '
                      'connects to an address literal (traddr), not a name')
    if address.is_multicast or address.is_unspecified:
        raise Invalid(field, value, 'is not a unicast address')
    return str(address)


def _port(value, field):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(field, value, 'is not a port number')
    if isinstance(value, str) and not _PORT.fullmatch(value):
        raise Invalid(field, value, 'is not a port number')
    if not 1 <= int(value) <= 65535:
        raise Invalid(field, value, 'is not a port number in 1-65535')
    return str(int(value))


def portals(value, field='connection_info.data.portals'):
    """A non-empty list of (IP address, port, 'tcp'), normalized."""
    _list(value, field, MAX_PORTALS)
    if not value:
        raise Invalid(field, value, 'is empty')
    result = []
    for i, portal in enumerate(value):
        where = '%s[%d]' % (field, i)
        if not isinstance(portal, (list, tuple)) or len(portal) != 3:
            raise Invalid(where, portal, 'is not an (address, port, '
                          '"tcp") triple')
        address, port, transport = portal
        if not isinstance(transport, str) or transport.lower() != 'tcp':
            raise Invalid(where + ' transport', transport,
                          'is not tcp, the only transport the agent '
                          'connects with')
        result.append((_address(address, where + ' address'),
                       _port(port, where + ' port'), 'tcp'))
    return result


def dhchap_secret(value, field='connection_info.data.dhchap_secret'):
    """None, or a DH-HMAC-CHAP secret SPDK can use."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(field, value, 'is not a string', secret=True)
    match = _DHCHAP_SECRET.fullmatch(value)
    if not match:
        raise Invalid(field, value, 'is not a DH-HMAC-CHAP secret in the '
                      'form DHHC-1:0[0-3]:<base64 key and CRC-32>:',
                      secret=True)
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except ValueError:
        raise Invalid(field, value, 'has an invalid base64 part',
                      secret=True)
    key, crc = raw[:-4], raw[-4:]
    if len(key) not in _DHCHAP_KEY_BYTES:
        raise Invalid(field, value, 'holds a %d-byte key; SPDK takes %s'
                      % (len(key), '/'.join(map(str, _DHCHAP_KEY_BYTES))),
                      secret=True)
    if zlib.crc32(key).to_bytes(4, 'little') != crc:
        raise Invalid(field, value, 'fails its CRC-32 check (mistyped or '
                      'cut short?)', secret=True)
    return value


def numa_nodes(value, field='numa_nodes'):
    """Sorted, unique host NUMA node numbers; None means none."""
    if value is None:
        return []
    _list(value, field, MAX_NUMA_NODES)
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
    _dict(value, field)
    try:
        return spdk_qos.validate_limits(value)
    except spdk_qos.InvalidQoS as exc:
        key = exc.kwargs.get('key')
        if key is None:
            raise Invalid(field, value, exc.kwargs.get('reason'))
        raise Invalid('%s.%s' % (field, key), exc.kwargs.get('value'),
                      exc.kwargs.get('why'))


def connection_info(vol_id, value, field='connection_info'):
    """Cinder's spdk_vhost connection_info; returns the parts used.

    Keys other than those checked here pass: Cinder and Nova add their own
    (``serial``, ``qos_specs``, ``access_mode``, ``vhost_socket``...).
    """
    _dict(value, field)
    kind = value.get('driver_volume_type')
    if kind != 'spdk_vhost':
        raise Invalid(field + '.driver_volume_type', kind,
                      'is not spdk_vhost')
    data = _dict(value.get('data'), field + '.data')
    prefix = field + '.data.'
    # The volume id names everything this attach creates: connection data
    # of another volume would serve that volume under this one's name.
    for key in ('vol_uuid', ):
        if key in data and data[key] != vol_id:
            raise Invalid(prefix + key, data[key],
                          'is not the volume_id %r' % vol_id)
    return (_nqn(data.get('target_nqn'), prefix + 'target_nqn'),
            portals(data.get('portals'), prefix + 'portals'),
            _nqn(data.get('host_nqn'), prefix + 'host_nqn'),
            dhchap_secret(data.get('dhchap_secret'),
                          prefix + 'dhchap_secret'))


def attach(vol_id, info, nodes, limits):
    vol_id = volume_id(vol_id)
    target_nqn, portal_list, host_nqn, secret = connection_info(vol_id,
                                                                info)
    return Attach(vol_id, target_nqn, portal_list, host_nqn, secret,
                  numa_nodes(nodes), qos(limits))
