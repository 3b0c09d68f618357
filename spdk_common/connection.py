"""The ``spdk_vhost`` connection contract, built and parsed here alone.

Two formats cross from one service to another, as os-brick's
``initiator/connectors/nvmeof.py`` owns its keys:

* the **connector capability**: nova-compute offers it under the
  connector's ``spdk_vhost`` key when its host can serve vhost-user
  volumes (its agent's host NQN, the instance's NUMA nodes);
* the **connection data**: Cinder's ``initialize_connection`` answers with
  ``driver_volume_type = 'spdk_vhost'`` and this data, which Nova passes to
  the compute node's agent.

Both carry ``version``. A reader takes every minor version of a major
version it speaks (minor versions only add fields) and refuses another
major version with a clear error; data written before versions were sent
reads as 1.0. The stock ``nvmeof`` answer is os-brick's NVMe-oF v2
connection properties, built here too (``tests`` parse it with os-brick's
own ``NVMeOFConnProps``).

A replicated volume (one copy per storage node) is answered in os-brick's
replicated form: ``volume_replicas`` (one target each: NQN, portals),
``replica_count`` and ``alias``, in both modes. Its ``spdk_vhost`` data is
version 2.0, not 1.x: an agent that only knows 1.x would connect to one
copy and serve it alone, leaving the others behind without a trace, so it
must refuse the data instead. The capability (1.1) tells Cinder how many
copies the host's agent mirrors.
"""

import base64
import ipaddress
import re
import zlib

from spdk_common import exception
from spdk_common import naming

SPDK_VHOST = 'spdk_vhost'
NVMEOF = 'nvmeof'

VERSION = '1.1'
# The spdk_vhost data of a replicated volume (see above).
REPLICATED_VERSION = '2.0'
_DATA_MAJORS = ('1', '2')
_CAPABILITY_MAJORS = ('1',)

# Connector capability keys (connector[SPDK_VHOST][...]).
CAP_VERSION = 'version'
CAP_HOST_NQN = 'host_nqn'
CAP_NUMA_NODES = 'numa_nodes'
# 1.1: the most copies of a volume the host's agent mirrors (absent: 1).
CAP_MAX_REPLICAS = 'max_replicas'

# Connection data keys (connection_info['data'][...]); the first five are
# os-brick's NVMe-oF v2 keys, which the nvmeof answer shares.
TARGET_NQN = 'target_nqn'
PORTALS = 'portals'
VOL_UUID = 'vol_uuid'
HOST_NQN = 'host_nqn'
DISCARD = 'discard'
DATA_VERSION = 'version'
DHCHAP_SECRET = 'dhchap_secret'
# os-brick's keys of a replicated volume (initiator/connectors/nvmeof.py);
# each entry of VOLUME_REPLICAS has TARGET_NQN, PORTALS and VOL_UUID.
VOLUME_REPLICAS = 'volume_replicas'
REPLICA_COUNT = 'replica_count'
ALIAS = 'alias'
# What the Nova hooks add on the compute node for the guest's XML.
VHOST_SOCKET = 'vhost_socket'
VHOST_QUEUES = 'vhost_queues'

# NVMe DH-HMAC-CHAP secret representation (NVMe Base Specification 8.13.5.8,
# nvme-cli's gen-dhchap-key, spdk_common.dhchap.make_secret): the hash
# id 00-03, then base64 of the key and its CRC-32, little-endian.
_DHCHAP_SECRET = re.compile(r'DHHC-1:0[0-3]:([A-Za-z0-9+/]+={0,2}):')
# SPDK (lib/nvme/nvme_auth.c) takes 32, 48 and 64 byte keys.
_DHCHAP_KEY_BYTES = (32, 48, 64)
_PORT = re.compile(r'[0-9]{1,5}')
# Bounds that keep a request small; real ones are far below them.
MAX_PORTALS = 16
# Copies of one volume: one per storage node, raid1 on the compute side.
MAX_REPLICAS = 3

Invalid = exception.InvalidField


# -- fields -------------------------------------------------------------------

def checked_dict(value, field):
    if not isinstance(value, dict):
        raise Invalid(field, value, 'is not a dict')
    return value


def checked_list(value, field, max_len):
    # JSON arrays arrive as lists; tuples are what Python callers send.
    if not isinstance(value, (list, tuple)):
        raise Invalid(field, value, 'is not a list')
    if len(value) > max_len:
        raise Invalid(field, value, 'has more than %d entries' % max_len)
    return value


def nqn(value, field):
    try:
        return naming.validate_nqn(value)
    except exception.InvalidNQN as exc:
        raise Invalid(field, value, 'is not a valid NQN: %s'
                      % exc.kwargs.get('reason'))


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
    checked_list(value, field, MAX_PORTALS)
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


def _version(value, field, majors):
    """A version of one of ``majors``; missing reads as 1.0 (written
    before versions were sent).
    """
    if value is None:
        return '1.0'
    if (not isinstance(value, str)
            or not re.fullmatch(r'[0-9]+\.[0-9]+', value)):
        raise Invalid(field, value, 'is not a version (major.minor)')
    if value.split('.')[0] not in majors:
        raise Invalid(field, value, 'is not a version this side speaks '
                      '(%s): upgrade the older of Cinder\'s SPDK driver '
                      'and the compute node\'s SPDK hooks and agent'
                      % ', '.join('%s.x' % m for m in majors))
    return value


# -- the connector capability -----------------------------------------------

def capability(host_nqn, numa_nodes, max_replicas=MAX_REPLICAS):
    """What nova-compute offers under ``connector[SPDK_VHOST]``."""
    return {CAP_VERSION: VERSION, CAP_HOST_NQN: host_nqn,
            CAP_NUMA_NODES: list(numa_nodes),
            CAP_MAX_REPLICAS: max_replicas}


def max_replicas(capability):
    """How many copies the offering host mirrors (1 before 1.1)."""
    value = capability.get(CAP_MAX_REPLICAS, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid('%s.%s' % (SPDK_VHOST, CAP_MAX_REPLICAS), value,
                      'is not a whole number of copies (1 or more)')
    return value


def offered(connector):
    """The connector's capability, checked, or None when it offers none.

    :raises InvalidField: naming the connector field that is wrong.
    """
    if not isinstance(connector, dict):
        return None
    value = connector.get(SPDK_VHOST)
    if not value:
        return None
    checked_dict(value, SPDK_VHOST)
    _version(value.get(CAP_VERSION), '%s.%s' % (SPDK_VHOST, CAP_VERSION),
             _CAPABILITY_MAJORS)
    if value.get(CAP_HOST_NQN) is not None:
        nqn(value[CAP_HOST_NQN], '%s.%s' % (SPDK_VHOST, CAP_HOST_NQN))
    max_replicas(value)
    return value


# -- the connection data ------------------------------------------------------

def nvmeof_info(target_nqn, target_portals, volume_id, host_nqn):
    """os-brick's NVMe-oF v2 connection_info for a kernel attach."""
    return {'driver_volume_type': NVMEOF,
            'data': {TARGET_NQN: target_nqn, PORTALS: list(target_portals),
                     VOL_UUID: volume_id, HOST_NQN: host_nqn,
                     DISCARD: True}}


def replica_alias(volume_id):
    """The name of a replicated volume's RAID1 on the compute host.

    os-brick assembles it as /dev/md/<alias>; md keeps 32 bytes of name.
    """
    return volume_id.replace('-', '')


def nvmeof_replicated_info(replicas, volume_id, host_nqn):
    """os-brick's replicated NVMe-oF connection_info: the kernel path
    connects every copy and assembles MD RAID1 over them.

    ``replicas``: (target NQN, portals, namespace UUID) per copy.
    """
    return {'driver_volume_type': NVMEOF,
            'data': {VOL_UUID: volume_id, HOST_NQN: host_nqn,
                     DISCARD: True, ALIAS: replica_alias(volume_id),
                     REPLICA_COUNT: len(replicas),
                     VOLUME_REPLICAS: [
                         {TARGET_NQN: target_nqn,
                          PORTALS: list(target_portals),
                          VOL_UUID: ns_uuid}
                         for target_nqn, target_portals, ns_uuid
                         in replicas]}}


def spdk_vhost_info(target_nqn, target_portals, volume_id, host_nqn,
                    secret=None):
    """The connection_info of a vhost-user attach through the agent."""
    info = nvmeof_info(target_nqn, target_portals, volume_id, host_nqn)
    return _vhost(info, VERSION, secret)


def spdk_vhost_replicated_info(replicas, volume_id, host_nqn, secret=None):
    """The connection_info of a replicated volume's vhost-user attach:
    the agent mirrors the copies (SPDK raid1) and serves the mirror.
    """
    info = nvmeof_replicated_info(replicas, volume_id, host_nqn)
    return _vhost(info, REPLICATED_VERSION, secret)


def _vhost(info, version, secret):
    info['driver_volume_type'] = SPDK_VHOST
    info['data'][DATA_VERSION] = version
    if secret:
        info['data'][DHCHAP_SECRET] = secret
    return info


def _replicas(data, prefix):
    """The copies of a 2.x connection: [(target NQN, portals)]."""
    field = prefix + VOLUME_REPLICAS
    value = checked_list(data.get(VOLUME_REPLICAS), field, MAX_REPLICAS)
    if len(value) < 2:
        raise Invalid(field, value, 'has fewer than 2 copies; a volume of '
                      'one copy is sent as version 1.x')
    count = data.get(REPLICA_COUNT, len(value))
    if count != len(value):
        raise Invalid(prefix + REPLICA_COUNT, count,
                      'is not the %d entries of %s'
                      % (len(value), VOLUME_REPLICAS))
    replicas = []
    for i, replica in enumerate(value):
        where = '%s[%d]' % (field, i)
        checked_dict(replica, where)
        replicas.append((nqn(replica.get(TARGET_NQN),
                             '%s.%s' % (where, TARGET_NQN)),
                         portals(replica.get(PORTALS),
                                 '%s.%s' % (where, PORTALS))))
    for i, replica in enumerate(replicas):
        # Two entries for one copy would mirror it onto itself.
        if replica in replicas[:i]:
            raise Invalid('%s[%d]' % (field, i), value[i],
                          'names the same copy as an earlier entry')
    return replicas


class SPDKVhostConnProps:
    """The parts of an ``spdk_vhost`` connection_info the agent uses,
    checked; :class:`InvalidField` names the first field that is wrong.

    ``replicas`` is None for a volume of one copy (``target_nqn`` and
    ``portals``), else its copies as (target NQN, portals) pairs.

    Keys other than those checked here pass: Cinder and Nova add their own
    (``serial``, ``qos_specs``, ``access_mode``, ``vhost_socket``...).
    """

    def __init__(self, value, volume_id, field='connection_info'):
        checked_dict(value, field)
        kind = value.get('driver_volume_type')
        if kind != SPDK_VHOST:
            raise Invalid(field + '.driver_volume_type', kind,
                          'is not %s' % SPDK_VHOST)
        data = checked_dict(value.get('data'), field + '.data')
        prefix = field + '.data.'
        self.version = _version(data.get(DATA_VERSION),
                                prefix + DATA_VERSION, _DATA_MAJORS)
        # The volume id names everything the attach creates: connection
        # data of another volume would serve it under this one's name.
        if VOL_UUID in data and data[VOL_UUID] != volume_id:
            raise Invalid(prefix + VOL_UUID, data[VOL_UUID],
                          'is not the volume_id %r' % volume_id)
        if self.version.split('.')[0] == '1':
            if VOLUME_REPLICAS in data:
                raise Invalid(prefix + VOLUME_REPLICAS, '(%d copies)' % len(
                    data[VOLUME_REPLICAS] or ()), 'needs version %s, not %s'
                    % (REPLICATED_VERSION, self.version))
            self.target_nqn = nqn(data.get(TARGET_NQN),
                                  prefix + TARGET_NQN)
            self.portals = portals(data.get(PORTALS), prefix + PORTALS)
            self.replicas = None
        else:
            self.replicas = _replicas(data, prefix)
            self.target_nqn, self.portals = None, None
        self.host_nqn = nqn(data.get(HOST_NQN), prefix + HOST_NQN)
        self.dhchap_secret = dhchap_secret(data.get(DHCHAP_SECRET),
                                           prefix + DHCHAP_SECRET)
