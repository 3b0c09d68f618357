"""Names that spdk-openstack gives to SPDK objects, and NQN validation.

Every component derives names from here so that the storage node and the
compute node agree on them without asking each other.
"""

import re
import unicodedata
import uuid

from spdk_common import exception

# NVMe Base Specification, 4.5 "NVMe Qualified Names".
NQN_MAX_BYTES = 223
_NQN_DATE_DOMAIN = re.compile(
    r'^nqn\.(\d{4})-(0[1-9]|1[0-2])\.'
    r'[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?'
    r'(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*'
    r'(:.+)?')
_UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:'
DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery'

# SPDK_LVOL_NAME_MAX is 64 including the terminating NUL.
LVOL_NAME_MAX = 63


def _bad_character(text):
    """The first control, format or white-space character, or None.

    NQNs are UTF-8 strings without such characters in practice; SPDK
    stores and compares them byte for byte and nvme-cli and the kernel
    split and trim them, so an NQN with a newline or a space could reach
    the subsystem ACL in a form no host ever presents (or one it does
    after trimming).
    """
    for char in text:
        if char.isspace() or unicodedata.category(char)[0] in ('C', 'Z'):
            return char
    return None


def validate_nqn(nqn):
    """Raise InvalidNQN unless ``nqn`` is a well-formed host/subsystem NQN."""
    if not isinstance(nqn, str):
        raise exception.InvalidNQN(nqn=nqn, reason='it is not a string')
    if not nqn:
        raise exception.InvalidNQN(nqn=nqn, reason='it is empty')
    bad = _bad_character(nqn)
    if bad is not None:
        raise exception.InvalidNQN(
            nqn=nqn, reason='it contains the control or white-space '
                            'character %r' % bad)
    if len(nqn.encode('utf-8')) > NQN_MAX_BYTES:
        raise exception.InvalidNQN(
            nqn=nqn, reason='it is longer than %d bytes' % NQN_MAX_BYTES)
    if nqn == DISCOVERY_NQN:
        raise exception.InvalidNQN(nqn=nqn,
                                   reason='it is the discovery NQN')
    if nqn.startswith(_UUID_NQN_PREFIX):
        value = nqn[len(_UUID_NQN_PREFIX):]
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise exception.InvalidNQN(
                nqn=nqn, reason='%r is not a UUID' % value)
        if str(parsed) != value.lower():
            raise exception.InvalidNQN(
                nqn=nqn, reason='the UUID must be in 8-4-4-4-12 form')
        return nqn
    # fullmatch: '$' would also match before a final newline.
    if not _NQN_DATE_DOMAIN.fullmatch(nqn):
        raise exception.InvalidNQN(
            nqn=nqn, reason="it is neither 'nqn.yyyy-mm.reverse.domain[:...]'"
                            " nor 'nqn.2014-08.org.nvmexpress:uuid:<uuid>'")
    return nqn


def volume_nqn(prefix, volume_id):
    """The subsystem NQN of one Cinder volume's export."""
    return validate_nqn('%s:volume-%s' % (prefix, volume_id))


def replica_nqn(prefix, volume_id, node):
    """The subsystem NQN of one copy of a replicated volume, on storage
    node ``node``: each copy's subsystem has its own NQN, so that a kernel
    host sees copies (for MD RAID1), not paths to one namespace.
    """
    return validate_nqn('%s:volume-%s:%s' % (prefix, volume_id, node))


def replica_namespace_uuid(volume_id, node):
    """The namespace UUID of one copy of a replicated volume: the copies
    must differ, since a host's SPDK refuses a second bdev of the same UUID
    and its mirror tells the copies apart by it.
    """
    return str(uuid.uuid5(uuid.UUID(volume_id), node))


def volume_lvol_name(volume_id):
    return 'volume-%s' % volume_id


def snapshot_lvol_name(snapshot_id):
    return 'snapshot-%s' % snapshot_id


def hidden_lvol_name(name):
    """The name of an internal snapshot Cinder never sees.

    Such a snapshot (behind a cloned volume, or an image upload) is removed
    with its last clone: SPDK cannot delete a snapshot with two.
    """
    return 'hidden-%s' % name


def is_hidden_lvol(name):
    return name.startswith('hidden-')


def lvol_alias(lvstore, name):
    """The bdev alias SPDK gives an lvol: ``<lvstore>/<lvol>``."""
    return '%s/%s' % (lvstore, name)


def split_alias(alias):
    lvstore, _sep, name = alias.partition('/')
    return lvstore, name


# A Cinder id as Cinder writes it (str(uuid.uuid4())), as a pattern.
UUID_PATTERN = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
# The compute agent's own SPDK objects and files, by volume id; only what
# matches them is the agent's to remove.
VHOST_CONTROLLER = re.compile(r'vhost-(%s)' % UUID_PATTERN)
NVME_CONTROLLER = re.compile(r'(%s)' % UUID_PATTERN)
# A copy of a replicated volume: the NVMe controller of its k-th copy.
REPLICA_CONTROLLER = re.compile(r'(%s)-r([0-9])' % UUID_PATTERN)
AGENT_KEY = re.compile(r'dhchap-(%s)(\.tmp)?' % UUID_PATTERN)


def vhost_controller_name(volume_id):
    """The vhost-user-blk controller (and its socket's name) of a volume on
    the compute node.
    """
    return 'vhost-%s' % volume_id


def agent_key_name(volume_id):
    """The compute agent's keyring key (and key file) of a volume's
    DH-HMAC-CHAP secret.
    """
    return 'dhchap-%s' % volume_id


def namespace_bdev_name(controller):
    """The bdev bdev_nvme makes of a controller's first namespace."""
    return '%sn1' % controller


def adrfam(address):
    """SPDK's address family of an IP literal, spelled one way."""
    return 'IPv6' if ':' in address else 'IPv4'


def nvme_controller_name(volume_id):
    """The bdev_nvme controller name the compute-node SPDK uses.

    The volume id itself: SPDK vhost answers a guest's virtio-blk GET_ID
    with the bdev's name ('<id>n1'), so the guest sees the first 20
    characters of the volume id as the disk's serial, as Nova's stock
    virtio-blk disks show it (/dev/disk/by-id/virtio-<id[:20]>).
    """
    return volume_id


def replica_controller_name(volume_id, index):
    """The bdev_nvme controller of a replicated volume's copy ``index``
    (its place in the connection's volume_replicas).
    """
    return '%s-r%d' % (volume_id, index)


def raid_bdev_name(volume_id):
    """The raid1 bdev that mirrors a replicated volume's copies on the
    compute node, named as the single-copy volume's namespace bdev is
    named after the volume: SPDK vhost answers the guest's GET_ID with
    the bdev name, the disk's serial (the id's first 20 characters).
    """
    return volume_id


def host_key_name(subsystem_nqn, host_nqn):
    """SPDK keyring name of a DH-HMAC-CHAP key for one host and volume.

    Keyring names may not contain '/' and are kept short; a UUID5 of the
    pair is unique and stable across restarts.
    """
    digest = uuid.uuid5(uuid.NAMESPACE_URL, subsystem_nqn + '\n' + host_nqn)
    return 'dhchap-%s' % digest
