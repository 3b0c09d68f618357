"""Cinder volume driver for SPDK logical volumes exported over NVMe/TCP.

``volume_driver = cinder_driver.spdk.SPDKDriver``. One pool per lvstore;
volumes are lvols, snapshots and clones are lvol snapshots and clones, and
every volume is exported through its own NVMe-oF subsystem with a host
NQN ACL per attachment. See doc/source/driver.rst for the extra specs.
"""

import os
import re

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_utils import excutils
from oslo_utils import strutils
from oslo_utils import units
from oslo_utils import uuidutils

from cinder.common import constants
from cinder import context
from cinder import exception
from cinder.i18n import _
from cinder import interface
from cinder import objects
from cinder.objects import fields
from cinder.volume import configuration
from cinder.volume import driver
from cinder.volume import volume_types
from cinder.volume import volume_utils

from cinder_driver import copy_health
from cinder_driver import image_copy
from cinder_driver import lvols as spdk_lvols
from cinder_driver import nodes as nodes_mod
from cinder_driver import qos
from cinder_driver import rpcapi as backend_rpcapi
from spdk_common import connection
from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import notifications
from spdk_common import rpc
from storage_node import rpcapi as storage_rpcapi
from vhost_target import rpcapi as vhost_rpcapi

LOG = logging.getLogger(__name__)

spdk_opts = [
    cfg.ListOpt('spdk_storage_nodes',
                default=[],
                help='Storage nodes this back end keeps volumes on, by the '
                     'host name of their spdk-storage-node service (on '
                     'the message bus of transport_url). Empty: the SPDK '
                     'of this host at spdk_rpc_socket. With storage nodes, '
                     'a volume type with spdk:replicas=N keeps N copies, '
                     'each on its own node, that compute hosts mirror.'),
    cfg.StrOpt('spdk_rpc_socket',
               default='/var/tmp/spdk.sock',
               help='Unix socket of the storage node\'s SPDK target '
                    '(nvmf_tgt). Keep it 0600/0660: SPDK RPC has no '
                    'authentication.'),
    cfg.FloatOpt('spdk_restart_check_interval',
                 default=1.0, min=0.1,
                 help='Seconds between looks for the storage target while '
                      'it is away (the first looks come sooner). A '
                      'restart is noticed the moment the target exits, '
                      'and the exports are replayed as soon as it '
                      'answers again.'),
    cfg.FloatOpt('spdk_rpc_timeout',
                 default=60.0, min=1.0,
                 help='Seconds to wait for one SPDK RPC before the '
                      'connection is dropped and the call fails.'),
    cfg.ListOpt('spdk_lvstores',
                default=[],
                help='Names of the lvstores to use, one Cinder pool each. '
                     'Empty means every lvstore of the target.'),
    cfg.ListOpt('spdk_target_addresses',
                default=['$my_ip'],
                help='Addresses the NVMe/TCP listener of every volume '
                     'export binds to and that hosts connect to.'),
    cfg.PortOpt('spdk_target_port',
                default=4420,
                help='NVMe/TCP port of the exports.'),
    cfg.StrOpt('spdk_nqn_prefix',
               default='nqn.2010-10.org.openstack',
               help='Prefix of the subsystem NQNs; a volume\'s subsystem is '
                    '<prefix>:volume-<volume id>.'),
    cfg.StrOpt('spdk_lvol_clear_method',
               default='unmap',
               choices=['none', 'unmap', 'write_zeroes'],
               help='How SPDK clears the clusters of a deleted lvol.'),
    cfg.BoolOpt('spdk_dhchap',
                default=False,
                help='Require NVMe DH-HMAC-CHAP authentication for '
                     'spdk_vhost attachments: a key per volume and host is '
                     'generated, kept in SPDK\'s keyring and passed in '
                     'connection_info. Kernel (nvmeof) attachments through '
                     'os-brick cannot authenticate and stay ACL-only.'),
    cfg.StrOpt('spdk_keyring_dir',
               default='$state_path/spdk-keyring',
               help='Directory of the DH-HMAC-CHAP key files (0700; files '
                    '0600). SPDK reads them, so it must be on the storage '
                    'node.'),
    cfg.StrOpt('spdk_state_dir',
               default='$state_path/spdk',
               help='Directory of the driver\'s own state: the Cinder '
                    'snapshots that were deleted while clones still needed '
                    'them (SPDK cannot rename a snapshot to mark it).'),
    cfg.StrOpt('spdk_image_copy',
               default='auto',
               choices=['auto', 'spdk', 'os-brick'],
               help='How images are copied to and from volumes: "spdk" '
                    'uses SPDK itself (no kernel NVMe initiator needed), '
                    '"os-brick" attaches through the kernel, "auto" picks '
                    'os-brick when /dev/nvme-fabrics exists.'),
    cfg.StrOpt('spdk_dd_cpumask',
               default='0x1',
               help='CPU mask of the short-lived SPDK spdk_dd process that '
                    'writes an image into a volume (spdk_image_copy=spdk); '
                    'it polls its cores while it copies, so keep it off '
                    'the target\'s reactor cores.'),
    cfg.IntOpt('spdk_dd_mem_mib',
               default=128, min=96,
               help='Hugepage memory (MiB) of that spdk_dd process; its '
                    'buffer pools are sized to fit, so it maps this much '
                    '(at least 96).'),
]

CONF = cfg.CONF
CONF.register_opts(spdk_opts, group=configuration.SHARED_CONF_GROUP)

VHOST_ATTACH_SPEC = 'spdk:vhost_attach'
PROVISIONING_SPEC = 'provisioning:type'
# How many copies, each on its own storage node (1-3).
REPLICAS_SPEC = 'spdk:replicas'
# A storage node's name: a host name.
NODE_NAME_MAX = 64
# SPDK multiplies size_in_mib by 2**20 in 64 bits without an overflow
# check (module/bdev/lvol/vbdev_lvol_rpc.c): a bigger size would wrap into
# a small lvol that Cinder believes huge.
MAX_SIZE_GB = (2 ** 63) // units.Gi - 1
# The driver's own temporary lvols (lvols.py, image_copy.py, revert): never
# managed, their names belong to operations in flight.
_TEMPORARY_LVOL = re.compile(
    r'(hidden-.*|(image|revert|upload)-[0-9a-f]{8}(-[0-9a-f]{4}){3}'
    r'-[0-9a-f]{12})', re.DOTALL)


def _backend_error(exc):
    return exception.VolumeBackendAPIException(data=str(exc))


def _on(node):
    """' on storage node X' in messages; nothing for the local SPDK."""
    return _(' on storage node %s') % node.name if node.name else ''


def _spec_true(value, spec=VHOST_ATTACH_SPEC):
    """A boolean extra spec; anything but a clear yes/no is refused."""
    if value is None:
        return False
    text = str(value).strip()
    if text.lower().startswith('<is>'):
        text = text[4:].strip()
    try:
        return strutils.bool_from_string(text, strict=True)
    except ValueError:
        raise exception.InvalidInput(reason=_(
            'extra spec %(spec)s=%(value)r is not a boolean (use '
            '"<is> True" or "<is> False")') % {'spec': spec, 'value': value})


def _whole_gib(field, value):
    """A volume size Cinder handed over, checked before SPDK sees it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(reason=_(
            '%(field)s=%(value)r is not a whole number of GiB') %
            {'field': field, 'value': value})
    if value <= 0:
        raise exception.InvalidInput(reason=_(
            '%(field)s=%(value)d GiB: a volume is at least 1 GiB') %
            {'field': field, 'value': value})
    if value > MAX_SIZE_GB:
        raise exception.InvalidInput(reason=_(
            '%(field)s=%(value)d GiB is beyond the %(max)d GiB SPDK can '
            'address') % {'field': field, 'value': value,
                          'max': MAX_SIZE_GB})
    return value


@interface.volumedriver
class SPDKDriver(driver.VolumeDriver):
    """SPDK lvols over NVMe/TCP, with vhost-user-blk attach on compute.

    Version history:

    .. code-block:: none

        1.0.0 - Initial driver: lvstore pools, thin/thick lvols, O(1)
                snapshots and clones, per-host NVMe-oF ACLs, optional
                DH-HMAC-CHAP, QoS, manage/unmanage, retype, revert,
                image copy through SPDK, export replay after restarts.
        1.1.0 - Storage nodes (spdk_storage_nodes) through their
                spdk-storage-node service; replicated volumes
                (spdk:replicas), one copy per node, mirrored on compute
                hosts.
    """

    VERSION = '1.1.0'
    CI_WIKI_NAME = 'SPDK_OpenStack_CI'
    SUPPORTS_ACTIVE_ACTIVE = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(spdk_opts)
        # Storage nodes by name; the local node's name is None.
        self._nodes = {}
        # The message bus to storage nodes (spdk_storage_nodes), and the
        # listener of the compute hosts' copy notifications.
        self._transport = self._copy_health = None
        # The operator's API (spdk-volume-replicas), with storage nodes.
        self._operator_api = None
        self._client = None
        self._lvols = None
        self._exports = None
        self._recovery = None
        self._images = None

    @staticmethod
    def get_driver_options():
        additional = driver.BaseVD._get_oslo_driver_opts(
            'reserved_percentage', 'max_over_subscription_ratio',
            'volume_backend_name')
        return spdk_opts + additional

    # -- set-up -------------------------------------------------------------

    def do_setup(self, context):
        conf = self.configuration
        try:
            naming.validate_nqn(conf.spdk_nqn_prefix + ':volume-x')
        except spdk_exc.InvalidNQN as exc:
            raise exception.InvalidConfigurationValue(
                option='spdk_nqn_prefix', value=conf.spdk_nqn_prefix) from exc
        if conf.spdk_storage_nodes:
            self._setup_storage_nodes(conf)
            return
        self._client = rpc.SPDKClient(conf.spdk_rpc_socket,
                                      timeout=conf.spdk_rpc_timeout)
        keys = None
        if conf.spdk_dhchap:
            keys = dhchap.KeyFiles(self._client, conf.spdk_keyring_dir)
            keys.setup()
        # SPDK listens on addresses, and the address family sent with each
        # listener is derived from them. Hosts connect to them: they must
        # pass the connection contract's own portal check.
        addresses = list(conf.spdk_target_addresses or [])
        try:
            connection.portals([(a, conf.spdk_target_port, 'tcp')
                                for a in addresses],
                               field='spdk_target_addresses')
        except spdk_exc.InvalidField as exc:
            raise exception.InvalidConfigurationValue(
                option='spdk_target_addresses', value=addresses) from exc
        node = nodes_mod.Node(None, self._client, conf, conf.spdk_state_dir,
                              addresses, conf.spdk_target_port, keys=keys)
        self._nodes = {None: node}
        self._lvols, self._exports = node.lvols, node.exports
        self._recovery = node.recovery
        self._images = image_copy.ImageCopier(
            self._client, self._lvols, self._exports,
            cpumask=conf.spdk_dd_cpumask, mem_mib=conf.spdk_dd_mem_mib)

    def _setup_storage_nodes(self, conf):
        if conf.spdk_dhchap:
            raise exception.InvalidConfigurationValue(reason=_(
                'spdk_dhchap=True with spdk_storage_nodes: DH-HMAC-CHAP keys '
                'live in each storage node\'s keyring, which the '
                'spdk-storage-node service does not manage yet; use '
                'per-host ACLs alone, or a back end without storage nodes'))
        names = list(conf.spdk_storage_nodes)
        for name in names:
            if not name or len(name) > NODE_NAME_MAX or not all(
                    c.isalnum() or c in '-_.' for c in name):
                raise exception.InvalidConfigurationValue(
                    option='spdk_storage_nodes', value=names)
        if len(set(names)) != len(names):
            raise exception.InvalidConfigurationValue(
                option='spdk_storage_nodes', value=names)
        transport = self._transport = storage_rpcapi.get_transport(CONF)
        # Copies' health, as the compute hosts that mirror them notify it;
        # every back end of storage nodes hears every notification.
        self._copy_health = notifications.get_listener(
            messaging.get_notification_transport(CONF),
            [copy_health.CopyHealthEndpoint(self.host)],
            pool=copy_health.listener_pool(self.host))
        self._nodes = {
            name: nodes_mod.Node(
                name, storage_rpcapi.StorageNodeClient(
                    transport, name, timeout=conf.spdk_rpc_timeout),
                conf, conf.spdk_state_dir)
            for name in names}

    @property
    def _remote(self):
        return None not in self._nodes

    def check_for_setup_error(self):
        found = []
        for node in self._nodes.values():
            try:
                if self._remote:
                    node.connect()
                else:
                    node.lvols.load(node.client.call('bdev_get_bdevs'))
                version = node.client.call('spdk_get_version')
                node.exports.ensure_transport()
                node.recovery.check()
            except spdk_exc.SPDKException as exc:
                if not self._remote:
                    raise _backend_error(exc)
                # A back end of storage nodes serves what the others hold;
                # this one is looked at again with every stats refresh.
                LOG.error('Storage node %(node)s: %(err)s',
                          {'node': node.name, 'err': exc})
                continue
            node.start()
            found.append('%s (%s)' % (node, version.get('version')))
        try:
            lvstores = self._refresh_lvstores()
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        if not found:
            raise exception.VolumeBackendAPIException(data=_(
                'no storage node of %s answers') % ', '.join(
                    map(str, self._nodes.values())))
        if self._copy_health is not None:
            self._copy_health.start()
            self._start_operator_api()
        LOG.info('SPDK on %(nodes)s: pools %(pools)s',
                 {'nodes': ', '.join(found),
                  'pools': ', '.join(sorted(lvstores))})

    def _where(self):
        """The SPDK this back end manages, for messages."""
        if self._remote:
            return _('storage nodes %s') % ', '.join(self._nodes)
        return self.configuration.spdk_rpc_socket

    def _refresh_lvstores(self):
        """Every node's lvstores now; {name: [(node, figures)]}.

        :raises SPDKException: from the local node; a storage node that
            does not answer is left out (and marked as such).
        """
        by_name, there = {}, set()
        wanted = self.configuration.spdk_lvstores
        for node in self._nodes.values():
            try:
                if self._remote and node.down:
                    node.connect()
                found = {lvs['name']: lvs for lvs in
                         node.client.call('bdev_lvol_get_lvstores')}
            except spdk_exc.SPDKException as exc:
                if not self._remote:
                    raise
                LOG.warning('Storage node %(node)s does not answer: %(err)s',
                            {'node': node, 'err': exc})
                node.lvstores = {}
                continue
            there.update(found)
            if self._remote:
                node.discard_leftovers()
            node.lvstores = {name: lvs for name, lvs in found.items()
                             if not wanted or name in wanted}
            for name, lvs in node.lvstores.items():
                by_name.setdefault(name, []).append((node, lvs))
        missing = sorted(set(wanted or ()) - set(by_name))
        if missing:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore(s) %(missing)s not found in SPDK at %(where)s; it '
                'has: %(found)s') % {
                    'missing': ', '.join(missing), 'where': self._where(),
                    'found': ', '.join(sorted(there)) or 'none'})
        if not by_name:
            raise exception.VolumeBackendAPIException(data=_(
                'SPDK at %s has no lvstore: create one with '
                'bdev_lvol_create_lvstore') % self._where())
        return by_name

    @property
    def _lvstores(self):
        """The pools: every lvstore name some node has."""
        return {name for node in self._nodes.values()
                for name in node.lvstores}

    # -- helpers ------------------------------------------------------------

    def _lvstore_of(self, volume):
        pool = volume_utils.extract_host(volume.host, 'pool')
        if pool not in self._lvstores:
            raise exception.InvalidInput(reason=_(
                'Volume %(id)s is on pool %(pool)s, which is not one of '
                'this back end\'s lvstores (%(pools)s)') % {
                    'id': volume.id, 'pool': pool,
                    'pools': ', '.join(sorted(self._lvstores))})
        return pool

    def _node_named(self, name, what):
        node = self._nodes.get(name)
        if node is None:
            raise exception.VolumeBackendAPIException(data=_(
                '%(what)s has a copy on %(node)s, which is not one of '
                'this back end\'s storage nodes (%(nodes)s)') % {
                    'what': what, 'node': name or _('the local SPDK'),
                    'nodes': ', '.join(map(str, self._nodes.values()))})
        return node

    def _copies(self, volume):
        """The nodes of a volume's copies, in mirror order."""
        names = nodes_mod.placement(volume) or [None]
        return [self._node_named(name, _('volume %s') % volume.id)
                for name in names]

    def _snapshot_copies(self, snapshot):
        names = (nodes_mod.placement(snapshot)
                 or nodes_mod.placement(snapshot.volume)
                 or [None])
        return [self._node_named(name, _('snapshot %s') % snapshot.id)
                for name in names]

    @staticmethod
    def _model_update(volume_or_snapshot, nodes):
        """What Cinder keeps of where the copies are: nothing for the
        local node (provider_location stays as volumes always had it).
        A volume of several copies starts with all in sync
        (:mod:`cinder_driver.copy_health` follows them from there).
        """
        if nodes[0].name is None:
            return None
        update = {'provider_location': nodes_mod.location(
            [node.name for node in nodes])}
        if len(nodes) > 1 and isinstance(volume_or_snapshot,
                                         objects.Volume):
            update['replication_status'] = fields.ReplicationStatus.ENABLED
            # Where the copies are shows from the start.
            update['metadata'] = copy_health.with_states(
                volume_or_snapshot.metadata,
                {node.name: notifications.COPY_IN_SYNC for node in nodes})
        return update

    def _volume_alias(self, volume):
        return naming.lvol_alias(self._lvstore_of(volume),
                                 naming.volume_lvol_name(volume.id))

    def _snapshot_alias(self, snapshot):
        # A managed snapshot keeps its lvol name (SPDK cannot rename
        # snapshots); Cinder keeps it as provider_id.
        return naming.lvol_alias(
            self._lvstore_of(snapshot.volume),
            snapshot.provider_id or naming.snapshot_lvol_name(snapshot.id))

    @staticmethod
    def _extra_specs(volume):
        vtype = volume.volume_type if volume.volume_type_id else None
        return dict(vtype.extra_specs or {}) if vtype else {}

    @staticmethod
    def _provisioning(specs):
        ptype = specs.get(PROVISIONING_SPEC) or 'thin'
        if ptype not in ('thin', 'thick'):
            raise exception.InvalidInput(reason=_(
                'extra spec %(spec)s=%(value)r: it must be "thin" or '
                '"thick"') % {'spec': PROVISIONING_SPEC, 'value': ptype})
        return ptype

    def _replicas(self, specs):
        """How many copies a type asks for (spdk:replicas, default 1)."""
        value = specs.get(REPLICAS_SPEC)
        if value is None:
            return 1
        text = str(value).strip()
        if not text.isdigit() or not 1 <= int(text) <= (
                connection.MAX_REPLICAS):
            raise exception.InvalidInput(reason=_(
                'extra spec %(spec)s=%(value)r: it must be a whole number '
                'of copies from 1 to %(max)d') % {
                    'spec': REPLICAS_SPEC, 'value': value,
                    'max': connection.MAX_REPLICAS})
        copies = int(text)
        if copies > 1 and not self._remote:
            raise exception.InvalidInput(reason=_(
                'extra spec %(spec)s=%(value)r: this back end has no '
                'storage nodes to keep copies on (set spdk_storage_nodes, '
                'or use a type without %(spec)s)') % {
                    'spec': REPLICAS_SPEC, 'value': value})
        if copies > len(self._nodes):
            raise exception.InvalidInput(reason=_(
                'extra spec %(spec)s=%(value)r: this back end has %(n)d '
                'storage node(s); each copy needs its own') % {
                    'spec': REPLICAS_SPEC, 'value': value,
                    'n': len(self._nodes)})
        return copies

    def _is_thin(self, volume):
        return self._provisioning(self._extra_specs(volume)) == 'thin'

    def _check_type(self, volume):
        """Refuse a type whose extra specs the driver cannot honour, before
        anything is made (a typo would otherwise surface at attach time).
        """
        specs = self._extra_specs(volume)
        self._provisioning(specs)
        _spec_true(specs.get(VHOST_ATTACH_SPEC))
        return self._replicas(specs)

    def _fresh_lvstore(self, node, lvstore):
        """The lvstore's figures now: one constant-size RPC.

        Guest writes to thin volumes take clusters between stats
        refreshes, so the figures of the last refresh may say "room" for
        an lvstore that has since filled up.
        """
        lvs = node.client.call('bdev_lvol_get_lvstores',
                               {'lvs_name': lvstore})[0]
        node.lvstores[lvstore] = lvs
        return lvs

    def _check_thin_room(self, node, lvstore, what):
        """Refuse a new thin lvol on an lvstore with no free cluster: SPDK
        would make it, and the guest's first write would get EIO.
        """
        lvs = self._call(self._fresh_lvstore, node, lvstore)
        if lvs['free_clusters'] == 0:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %(lvs)s%(on)s is full (0 of %(total)d clusters '
                'free): %(what)s would fail its first write') % {
                    'lvs': lvstore, 'on': _on(node),
                    'total': lvs['total_data_clusters'], 'what': what})
        return lvs

    def _check_pool_limit(self, lvstore, field, size_gb, thin):
        """Refuse a size no pool of this lvstore can ever hold.

        Cinder's capacity filter does the same for thin pools; here it also
        stops a wrapped size and SPDK's per-cluster table of a thin lvol
        (8 bytes per cluster, allocated at create) from growing without
        bound. Thick sizes are left to SPDK, which refuses them whole.
        """
        _whole_gib(field, size_gb)
        if not thin:
            return
        total = max(lvs['total_data_clusters'] * lvs['cluster_size']
                    for node in self._nodes.values()
                    for name, lvs in node.lvstores.items()
                    if name == lvstore)
        ratio = volume_utils.get_max_over_subscription_ratio(
            self.configuration.max_over_subscription_ratio,
            supports_auto=False)
        if size_gb * units.Gi > total * ratio:
            raise exception.InvalidInput(reason=_(
                '%(field)s=%(size)d GiB is more than pool %(lvs)s can ever '
                'provide (%(total).2f GiB times max_over_subscription_ratio '
                '%(ratio)s)') % {'field': field, 'size': size_gb,
                                 'lvs': lvstore, 'total': total / units.Gi,
                                 'ratio': ratio})

    def _no_room(self, node, lvstore, what):
        """The error for SPDK's ENOSPC, with the free space it saw."""
        try:
            lvs = self._fresh_lvstore(node, lvstore)
            free = _('%.2f GiB free') % (
                lvs['free_clusters'] * lvs['cluster_size'] / units.Gi)
        except spdk_exc.SPDKException:
            free = _('too little room')
        return exception.VolumeBackendAPIException(data=_(
            'lvstore %(lvs)s%(on)s has %(free)s; %(what)s does not fit') % {
                'lvs': lvstore, 'on': _on(node), 'free': free,
                'what': what})

    def _call(self, what, *args, **kwargs):
        try:
            return what(*args, **kwargs)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)

    @staticmethod
    def _on_every_copy(nodes, do, undo=None, what=None):
        """``do(node)`` for each copy's node, in order. When one fails,
        ``undo(node)`` for those done, so that nothing is left half-made,
        and the failure goes on.
        """
        done = []
        try:
            for node in nodes:
                do(node)
                done.append(node)
        except Exception:
            with excutils.save_and_reraise_exception():
                for node in reversed(done):
                    if undo is None:
                        continue
                    try:
                        undo(node)
                    except (spdk_exc.SPDKException,
                            exception.CinderException) as exc:
                        LOG.error('Undoing %(what)s on %(node)s failed: '
                                  '%(err)s', {'what': what, 'node': node,
                                              'err': exc})

    # -- volumes ------------------------------------------------------------

    def _place(self, volume, lvstore, copies, thin, exclude=()):
        """The nodes of a new volume's copies: the local node, or the
        storage nodes with the lvstore that answer, the most free space
        first, one copy each; refused when fewer have room. Nodes named in
        ``exclude`` (holding a copy already) are not taken.
        """
        if not self._remote:
            return [self._nodes[None]]
        needed = volume.size * units.Gi if not thin else 1
        room, short = [], []
        for node in self._nodes.values():
            if node.name in exclude:
                continue
            if node.down or lvstore not in node.lvstores:
                short.append(_('%s (no lvstore %s there)') % (node, lvstore)
                             if not node.down else
                             _('%s (does not answer)') % node)
                continue
            try:
                lvs = self._fresh_lvstore(node, lvstore)
            except spdk_exc.SPDKException as exc:
                short.append(_('%(node)s (%(err)s)') % {'node': node,
                                                        'err': exc})
                continue
            free = lvs['free_clusters'] * lvs['cluster_size']
            if free < needed:
                short.append(_('%(node)s (%(free).2f GiB free)') % {
                    'node': node, 'free': free / units.Gi})
                continue
            room.append((-free, node.name, node))
        if len(room) < copies:
            raise exception.VolumeBackendAPIException(data=_(
                'volume %(id)s needs %(copies)d cop%(ies)s of %(size)d GiB '
                'in lvstore %(lvs)s, each on its own storage node; '
                '%(room)d node(s) have room, not: %(short)s') % {
                    'id': volume.id, 'copies': copies,
                    'ies': 'y' if copies == 1 else 'ies',
                    'size': volume.size, 'lvs': lvstore, 'room': len(room),
                    'short': '; '.join(short) or _('none')})
        return [node for _free, _name, node in sorted(room)[:copies]]

    def create_volume(self, volume):
        _whole_gib('size', volume.size)
        lvstore = self._lvstore_of(volume)
        copies = self._check_type(volume)
        thin = self._is_thin(volume)
        self._check_pool_limit(lvstore, 'size', volume.size, thin)
        # Refuse a type whose QoS SPDK cannot enforce before making anything.
        qos.limits_for_type(volume.volume_type_id)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        nodes = self._place(volume, lvstore, copies, thin)
        if thin and not self._remote:
            # The one extra RPC of a create: SPDK makes a thin lvol on a
            # full lvstore without complaint (placement looked on storage
            # nodes). A thick create needs no look: SPDK refuses it whole
            # when the clusters are not there.
            self._check_thin_room(nodes[0], lvstore, _(
                'a thin volume of %d GiB') % volume.size)

        def create(node):
            try:
                node.lvols.create(lvstore, name, volume.size, thin)
            except spdk_exc.SPDKExists:
                raise exception.VolumeBackendAPIException(data=_(
                    'An lvol named %(alias)s already exists%(on)s; it was '
                    'left untouched') % {'alias': alias, 'on': _on(node)})
            except spdk_exc.SPDKNoSpace:
                raise self._no_room(node, lvstore, _(
                    'a thick volume of %d GiB') % volume.size)
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
        self._on_every_copy(nodes, create,
                            lambda node: node.lvols.delete(alias),
                            _('the create of volume %s') % volume.id)
        return self._model_update(volume, nodes)

    def delete_volume(self, volume):
        alias = self._volume_alias(volume)
        for node in self._copies(volume):
            try:
                if node.down:
                    node.connect()
                if node.exports.is_exported(volume.id):
                    node.exports.unexport(volume.id)
                node.lvols.delete(alias)
            except spdk_exc.SPDKBusy as exc:
                raise exception.VolumeIsBusy(
                    volume_name=volume.name) from exc
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)

    def extend_volume(self, volume, new_size):
        lvstore = self._lvstore_of(volume)
        alias = self._volume_alias(volume)
        thin = self._is_thin(volume)
        self._check_pool_limit(lvstore, 'new_size', new_size, thin)
        nodes = self._copies(volume)
        # bdev_lvol_resize shrinks as readily as it grows, dropping the
        # clusters past the new end: never go below what the volume holds
        # (Cinder's size, or the lvol's if it is bigger).
        tracked = [node.lvols.size(alias) for node in nodes]
        current = max([volume.size] + [spdk_lvols.bytes_to_gib_ceil(t or 0)
                                       for t in tracked])
        if new_size < current:
            raise exception.InvalidInput(reason=_(
                'extend of volume %(id)s to new_size=%(new)d GiB refused: it '
                'is %(cur)d GiB and shrinking would lose data') % {
                    'id': volume.id, 'new': new_size, 'cur': current})
        if all(t == new_size * units.Gi for t in tracked):
            LOG.info('Volume %(id)s is already %(size)d GiB; nothing to do',
                     {'id': volume.id, 'size': new_size})
            return

        def resize(node):
            try:
                node.lvols.resize(alias, new_size)
            except spdk_exc.SPDKNoSpace:
                raise self._no_room(node, lvstore, _(
                    'extending thick volume %(id)s to %(size)d GiB') % {
                        'id': volume.id, 'size': new_size})
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
        # Copies already grown stay grown: growing loses nothing, and the
        # retry grows the rest.
        self._on_every_copy(nodes, resize)
        LOG.info('Extended %(alias)s to %(size)d GiB',
                 {'alias': alias, 'size': new_size})

    # -- snapshots and clones -----------------------------------------------

    def create_snapshot(self, snapshot):
        alias = self._volume_alias(snapshot.volume)
        name = naming.snapshot_lvol_name(snapshot.id)
        nodes = self._copies(snapshot.volume)

        def take(node):
            try:
                node.lvols.snapshot(alias, name)
            except spdk_exc.SPDKNotFound:
                raise exception.VolumeNotFound(volume_id=snapshot.volume_id)
            except spdk_exc.SPDKExists:
                raise exception.VolumeBackendAPIException(data=_(
                    'An lvol named %(name)s already exists%(on)s') % {
                        'name': name, 'on': _on(node)})
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
        self._check_still(snapshot.volume, nodes, _('snapshot %s') %
                          snapshot.id)
        self._on_every_copy(
            nodes, take,
            lambda node: node.lvols.delete_snapshot(
                naming.lvol_alias(naming.split_alias(alias)[0], name)),
            _('snapshot %s') % snapshot.id)
        return self._model_update(snapshot, nodes)

    def _check_still(self, volume, nodes, what):
        """Copies are snapshotted one after the other: a host writing to
        the volume meanwhile would leave writes in one copy's snapshot and
        not another's, and a volume made from them would read either,
        block by block, which no crash leaves. SPDK v25.09 has no RPC that
        pauses a subsystem's I/O; until the compute side can hold it, a
        replicated volume some host may write to is refused.
        """
        if len(nodes) < 2:
            return
        hosts = set()
        for node in nodes:
            if not node.down:
                hosts.update(node.exports.hosts(volume.id))
        if hosts:
            raise exception.InvalidVolume(reason=_(
                '%(what)s of volume %(id)s, which has %(n)d copies and '
                'is attached to %(hosts)s: its copies cannot be '
                'snapshotted at one instant while a host may write; '
                'detach it first') % {
                    'what': what, 'id': volume.id, 'n': len(nodes),
                    'hosts': ', '.join(sorted(hosts))})

    def delete_snapshot(self, snapshot):
        alias = self._snapshot_alias(snapshot)
        for node in self._snapshot_copies(snapshot):
            self._call(node.lvols.delete_snapshot, alias)

    def _check_new_clone(self, volume, lvstore, source_size, source):
        """What a clone's volume must satisfy before anything is made."""
        _whole_gib('size', volume.size)
        if volume.size < source_size:
            # A clone starts at its source's size; SPDK would have to
            # shrink it, cutting off the source's data.
            raise exception.InvalidInput(reason=_(
                'size=%(size)d GiB of volume %(id)s is smaller than its '
                'source %(source)s (%(source_size)d GiB)') % {
                    'size': volume.size, 'id': volume.id, 'source': source,
                    'source_size': source_size})
        copies = self._check_type(volume)
        qos.limits_for_type(volume.volume_type_id)
        # Clones are thin whatever the type.
        self._check_pool_limit(lvstore, 'size', volume.size, thin=True)
        return copies

    def _check_clone_copies(self, volume, copies, nodes, source):
        # An lvol clone lives next to its source: a clone has the copies
        # its source has.
        if copies != len(nodes):
            raise exception.InvalidInput(reason=_(
                'volume %(id)s of %(copies)d cop%(ies)s cannot be made '
                'from %(source)s, which has %(n)d: a clone has its '
                'source\'s copies (retype the clone afterwards)') % {
                    'id': volume.id, 'copies': copies,
                    'ies': 'y' if copies == 1 else 'ies', 'source': source,
                    'n': len(nodes)})

    def create_volume_from_snapshot(self, volume, snapshot):
        lvstore = self._lvstore_of(snapshot.volume)
        source = _('snapshot %s') % snapshot.id
        copies = self._check_new_clone(volume, lvstore, snapshot.volume_size,
                                       source)
        nodes = self._snapshot_copies(snapshot)
        self._check_clone_copies(volume, copies, nodes, source)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)

        def clone(node):
            try:
                node.lvols.clone(self._snapshot_alias(snapshot), name,
                                 snapshot.volume_size)
            except spdk_exc.SPDKNotFound:
                raise exception.SnapshotNotFound(snapshot_id=snapshot.id)
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
            self._grow_new_clone(node, volume, alias, snapshot.volume_size)
        self._on_every_copy(nodes, clone,
                            lambda node: node.lvols.discard(alias),
                            _('the clone %s') % volume.id)
        return self._clone_update(volume, lvstore, nodes)

    def create_cloned_volume(self, volume, src_vref):
        lvstore = self._lvstore_of(src_vref)
        source = _('volume %s') % src_vref.id
        copies = self._check_new_clone(volume, lvstore, src_vref.size,
                                       source)
        nodes = self._copies(src_vref)
        self._check_clone_copies(volume, copies, nodes, source)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        hidden = naming.hidden_lvol_name('clone-source-%s' % volume.id)

        def clone(node):
            try:
                node.lvols.clone_volume(self._volume_alias(src_vref), hidden,
                                        name, src_vref.size)
            except spdk_exc.SPDKNotFound:
                raise exception.VolumeNotFound(volume_id=src_vref.id)
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
            self._grow_new_clone(node, volume, alias, src_vref.size)
        # As for a snapshot: the copies' clones must hold the same data.
        self._check_still(src_vref, nodes, _('clone %s') % volume.id)
        self._on_every_copy(nodes, clone,
                            lambda node: node.lvols.discard(alias),
                            _('the clone %s') % volume.id)
        return self._clone_update(volume, lvstore, nodes)

    def _grow_new_clone(self, node, volume, alias, source_size):
        if volume.size <= source_size:
            return
        try:
            node.lvols.resize(alias, volume.size)
        except spdk_exc.SPDKException as exc:
            node.lvols.discard(alias)
            raise _backend_error(exc)

    def _clone_update(self, volume, lvstore, nodes):
        """Clones live in their source's lvstore and nodes: tell Cinder."""
        update = self._model_update(volume, nodes) or {}
        if volume_utils.extract_host(volume.host, 'pool') != lvstore:
            update['host'] = volume_utils.append_host(
                volume_utils.extract_host(volume.host, 'backend'), lvstore)
        return update or None

    def revert_to_snapshot(self, context, volume, snapshot):
        """Make the volume a fresh clone of the snapshot, under its name."""
        lvstore = self._lvstore_of(volume)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        temp_name = 'revert-%s' % volume.id
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        nodes = self._copies(volume)

        def clone(node):
            try:
                node.lvols.clone(self._snapshot_alias(snapshot), temp_name,
                                 snapshot.volume_size)
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
            self._grow_new_clone(node, volume, temp_alias,
                                 snapshot.volume_size)
        # Every copy's clone first: until all are made, no copy's data
        # changed.
        self._on_every_copy(nodes, clone,
                            lambda node: node.lvols.discard(temp_alias),
                            _('the revert of %s') % volume.id)
        # From here the snapshots hold the data; the old lvols may go.
        for node in nodes:
            self._call(node.lvols.delete, alias)
            self._call(node.lvols.rename, temp_alias, name)
            if node.exports.is_exported(volume.id):
                self._call(node.exports.export, volume.id, alias,
                           qos.limits_for_type(volume.volume_type_id))

    # -- re-replication -----------------------------------------------------

    def _start_operator_api(self):
        """Serve the operator's API (:mod:`cinder_driver.rpcapi`) of a back
        end of storage nodes.
        """
        self._operator_api = backend_rpcapi.get_server(
            self._transport, self.host, self)
        self._operator_api.start()

    def replace_copy(self, volume_id, node, to=None):
        """Put a new copy of a replicated volume on another storage node
        in place of its copy on ``node`` (one that stays dead): the
        compute host mirroring the volume rebuilds it from the others.

        :raises CopyNotReplaced: naming why; nothing is changed then.
        """
        try:
            return self._replace_copy(volume_id, node, to)
        except (exception.CinderException, spdk_exc.SPDKException) as exc:
            if isinstance(exc, spdk_exc.CopyNotReplaced):
                raise
            raise spdk_exc.CopyNotReplaced(volume=volume_id, reason=exc)

    def _replace_copy(self, volume_id, node_name, to):
        def refuse(reason, **kwargs):
            raise spdk_exc.CopyNotReplaced(volume=volume_id,
                                           reason=reason % kwargs)
        if not isinstance(volume_id, str) or not uuidutils.is_uuid_like(
                volume_id):
            refuse('volume_id=%(v)r is not a volume id', v=volume_id)
        for field, value in (('node', node_name), ('to', to)):
            if not isinstance(value, str) and (field == 'node'
                                               or value is not None):
                refuse('%(field)s=%(v)r is not a storage node name',
                       field=field, v=value)
        ctxt = context.get_admin_context()
        volume = objects.Volume.get_by_id(ctxt, volume_id)
        if volume_utils.extract_host(volume.host, 'backend') != self.host:
            refuse('it is on back end %(there)s, not %(here)s',
                   there=volume.host, here=self.host)
        with lockutils.lock('spdk-volume-%s' % volume.id):
            names = nodes_mod.placement(volume) or []
            if len(names) < 2:
                refuse('it has one copy; only replicated volumes '
                       '(spdk:replicas >= 2) have copies to replace')
            if node_name not in names:
                refuse('node=%(node)r: it has no copy there (its copies are '
                       'on %(names)s)', node=node_name,
                       names=', '.join(names))
            if to is not None and (to not in self._nodes or to in names):
                refuse('to=%(to)r: not one of this back end\'s storage '
                       'nodes without a copy of the volume (%(free)s)',
                       to=to, free=', '.join(
                           n for n in self._nodes if n not in names)
                       or 'none')
            self._check_replaceable(volume, names, node_name, refuse)
            attachments = [a for a in volume.volume_attachment
                           if a.attach_status in ('attached', 'attaching')]
            if len(attachments) > 1:
                refuse('it is attached %(n)d times (a migration?); try again '
                       'when it is attached once or detached',
                       n=len(attachments))
            connector = attachments[0].connector or {} if attachments else (
                None)
            if not _spec_true(self._extra_specs(volume).get(
                    VHOST_ATTACH_SPEC)) or (
                        connector is not None
                        and not self._vhost_allowed(volume, connector)):
                refuse('it is %(how)s through the host\'s kernel (nvmeof), '
                       'whose MD RAID1 cannot rebuild a copy; only copies '
                       'that compute hosts\' agents mirror (spdk:vhost_'
                       'attach) are replaced', how=(
                           'attached' if connector is not None else
                           'attached (its type has no spdk:vhost_attach)'))
            return self._put_new_copy(volume, names, names.index(node_name),
                                      to, connector)

    @staticmethod
    def _check_replaceable(volume, names, node_name, refuse):
        if volume.status not in ('available', 'in-use'):
            refuse('its status is %(status)s', status=volume.status)
        if volume.replication_status == fields.ReplicationStatus.ENABLING:
            refuse('a copy is being rebuilt; try again when the volume\'s '
                   'replication_status is enabled or error')
        states = copy_health.recorded(volume)
        stale = ['%s=%s' % (n, states[n]) for n in names
                 if n != node_name and states.get(
                     n, notifications.COPY_IN_SYNC)
                 != notifications.COPY_IN_SYNC]
        if stale:
            refuse('the copies that stay are not all in sync (%(stale)s); '
                   'the new copy would be rebuilt from them',
                   stale=', '.join(stale))
        snapshots = objects.SnapshotList.get_all_for_volume(
            context.get_admin_context(), volume.id)
        if snapshots:
            refuse('it has %(n)d snapshot(s), which a new copy would not '
                   'have; delete them first', n=len(snapshots))

    def _put_new_copy(self, volume, names, index, to, connector):
        lvstore = self._lvstore_of(volume)
        thin = self._is_thin(volume)
        if to is not None:
            new = self._nodes[to]
            self._place(volume, lvstore, 1, thin, exclude=set(
                self._nodes) - {to})
        else:
            [new] = self._place(volume, lvstore, 1, thin, exclude=names)
        alias = self._volume_alias(volume)
        old_location = volume.provider_location
        new_names = list(names)
        new_names[index] = new.name
        self._call(new.lvols.create, lvstore,
                   naming.volume_lvol_name(volume.id), volume.size, thin)
        host = (connector or {}).get('host')
        try:
            volume.provider_location = nodes_mod.location(new_names)
            if connector is not None:
                info = self.initialize_connection(volume, connector)
                agent = vhost_rpcapi.VhostTargetClient(
                    self._transport, host,
                    timeout=self.configuration.spdk_rpc_timeout)
                agent.replace_copy(volume.id, info)
        except Exception:
            with excutils.save_and_reraise_exception():
                volume.provider_location = old_location
                if new.exports.is_exported(volume.id):
                    self._call(new.exports.unexport, volume.id)
                self._call(new.lvols.delete, alias)
        states = dict.fromkeys(names, notifications.COPY_IN_SYNC)
        # A detached volume's new copy is rebuilt at its next attach.
        states[new.name] = (notifications.COPY_REBUILDING if host else
                            notifications.COPY_MISSING)
        volume.replication_status = (fields.ReplicationStatus.ENABLING
                                     if host else
                                     fields.ReplicationStatus.ERROR)
        copy_health.record(volume, {n: states[n] for n in new_names})
        volume.save()
        self._nodes[names[index]].discard(volume.id, alias)
        LOG.warning('Volume %(id)s: its copy on %(old)s is replaced by a new '
                    'one on %(new)s, which %(host)s rebuilds',
                    {'id': volume.id, 'old': names[index], 'new': new.name,
                     'host': host or _('the next host it is attached to')})
        return {'volume_id': volume.id, 'index': index,
                'from': names[index], 'to': new.name, 'host': host}

    # -- exports ------------------------------------------------------------

    def create_export(self, context, volume, connector):
        alias = self._volume_alias(volume)
        limits = qos.limits_for_type(volume.volume_type_id)

        def export(node):
            node.recovery.before_operation(volume.id)
            node.exports.export(volume.id, alias, limits)
        self._on_copies_that_answer(
            volume, export, _('its copy is exported with the connection '
                              'that lets a host in, when the node answers'))

    def ensure_export(self, context, volume):
        hosts = set()
        for attachment in volume.volume_attachment:
            if not attachment.connector or attachment.attach_status not in (
                    'attached', 'attaching'):
                continue
            host_nqn = self._host_nqn(volume, attachment.connector,
                                      strict=False)
            if not host_nqn:
                continue
            try:
                hosts.add(naming.validate_nqn(host_nqn))
            except spdk_exc.InvalidNQN as exc:
                # Recorded before NQNs were checked this strictly: never
                # replay it into the ACL.
                LOG.warning('Attachment %(att)s of volume %(id)s is not '
                            'restored: %(err)s', {'att': attachment.id,
                                                  'id': volume.id,
                                                  'err': exc})
        for node in self._copies(volume):
            node.remember(volume.id, self._volume_alias(volume), hosts,
                          qos.limits_for_type(volume.volume_type_id))

    def remove_export(self, context, volume):
        def unexport(node):
            if not node.exports.hosts(volume.id):
                node.exports.unexport(volume.id)
        self._on_copies_that_answer(
            volume, unexport, _('its copy stays exported, to no host once '
                                'the node answers'))

    @staticmethod
    def _check_answers(node, copies):
        """SPDKUnavailable, without waiting ``spdk_rpc_timeout``, for the
        node of one of several copies that does not answer (a single
        copy's node is asked, and fails as it does).
        """
        if copies > 1 and (node.down or not node.answers()):
            raise spdk_exc.SPDKUnavailable(
                socket='storage node %s' % node,
                reason=_('it does not answer'))

    def _on_copies_that_answer(self, volume, do, otherwise):
        """``do(node)`` on the node of each copy. Of several copies, one
        whose node does not answer is left out, logged with
        ``otherwise``: an attach or detach goes on with the others, as the
        compute host's mirror does.
        """
        nodes = self._copies(volume)
        for node in nodes:
            try:
                self._check_answers(node, len(nodes))
                do(node)
            except spdk_exc.SPDKUnavailable as exc:
                if len(nodes) == 1:
                    raise _backend_error(exc)
                LOG.warning('Volume %(id)s: %(err)s; %(otherwise)s',
                            {'id': volume.id, 'err': exc,
                             'otherwise': otherwise})
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)

    def validate_connector(self, connector):
        """Refuse a connector whose host NQNs could not go on an ACL.

        Connectors come from Nova, or from any user through Cinder's
        attachment API: every field used is checked for type and form, and
        the error names the field.
        """
        if connector is None:
            connector = {}
        if not isinstance(connector, dict):
            raise exception.InvalidInput(reason=_(
                'connector=%r is not a dictionary') % (connector,))
        try:
            # The spdk_vhost capability is the contract module's to check
            # (its version, its host NQN).
            vhost = connection.offered(connector)
            if connector.get('nqn') is not None:
                connection.nqn(connector['nqn'], 'nqn')
        except spdk_exc.InvalidField as exc:
            raise exception.InvalidInput(reason=_('connector field %s') %
                                         exc)
        if not (connector.get('nqn')
                or (vhost or {}).get(connection.CAP_HOST_NQN)):
            raise exception.InvalidConnectorException(missing='nqn')

    @staticmethod
    def _vhost_info(connector):
        vhost = (connector.get(connection.SPDK_VHOST)
                 if isinstance(connector, dict) else None)
        return vhost if isinstance(vhost, dict) and vhost else None

    def _vhost_allowed(self, volume, connector):
        """Whether the attach goes through the host's agent: the type
        allows it, the host offers it, and its agent mirrors as many
        copies as the volume has.
        """
        vhost = self._vhost_info(connector)
        if vhost is None or not _spec_true(
                self._extra_specs(volume).get(VHOST_ATTACH_SPEC)):
            return False
        copies = len(self._copies(volume))
        if copies > 1 and connection.max_replicas(vhost) < copies:
            LOG.warning('Volume %(id)s has %(n)d copies; the agent of the '
                        'host asking mirrors at most %(max)d: attaching '
                        'through the kernel (nvmeof)',
                        {'id': volume.id, 'n': copies,
                         'max': connection.max_replicas(vhost)})
            return False
        return True

    def _host_nqn(self, volume, connector, strict=True):
        """The NQN that will connect: the compute node's SPDK (its agent's)
        for vhost attachments, its kernel initiator otherwise.

        Not ``strict`` (detach, restore): a type whose spdk:vhost_attach
        was changed to something unreadable since the attach must not stop
        the host's access from being removed; the connector's NQN that is
        on the volume's ACL is the one.
        """
        if not isinstance(connector, dict):
            return None
        vhost = self._vhost_info(connector)
        try:
            allowed = self._vhost_allowed(volume, connector)
        except exception.InvalidInput as exc:
            if strict:
                raise
            LOG.warning('Volume %(id)s: %(err)s', {'id': volume.id,
                                                   'err': exc})
            on_acl = set()
            for node in self._copies(volume):
                if not node.down:
                    on_acl.update(node.exports.hosts(volume.id))
            candidates = [(vhost or {}).get(connection.CAP_HOST_NQN),
                          connector.get('nqn')]
            return next((n for n in candidates if n and n in on_acl),
                        connector.get('nqn'))
        if allowed:
            return (vhost.get(connection.CAP_HOST_NQN)
                    or connector.get('nqn'))
        return connector.get('nqn')

    def _up(self, node, volume):
        """A copy's node, which must answer for an attach."""
        if node.down:
            try:
                node.connect()
            except spdk_exc.SPDKException as exc:
                raise exception.VolumeBackendAPIException(data=_(
                    'volume %(id)s: the copy on storage node %(node)s '
                    'cannot be exported: %(err)s') % {
                        'id': volume.id, 'node': node, 'err': exc})
        return node

    def initialize_connection(self, volume, connector):
        self.validate_connector(connector)
        host_nqn = self._host_nqn(volume, connector)
        if not host_nqn:
            raise exception.InvalidConnectorException(missing='nqn')
        vhost = self._vhost_allowed(volume, connector)
        nodes = [self._up(node, volume) for node in self._copies(volume)]
        if len(nodes) > 1 and not vhost:
            self._check_copies_in_sync(volume)
        replicas, away = [], []
        for node in nodes:
            try:
                self._check_answers(node, len(nodes))
                secret = self._allow(node, volume, host_nqn, vhost)
            except spdk_exc.SPDKUnavailable as exc:
                if len(nodes) == 1 or not vhost:
                    raise _backend_error(exc)
                # The compute agent mirrors the copies that answer when
                # their superblocks let it (it refuses otherwise), and
                # takes this one in when its node answers again, which
                # lets the host in then (restarted or cut off alike).
                away.append('%s (%s)' % (node, exc))
                node.allow_host_later(
                    volume.id, self._volume_alias(volume), host_nqn,
                    qos.limits_for_type(volume.volume_type_id))
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
            replicas.append((node.exports.nqn(volume.id),
                             node.exports.portals(),
                             node.exports.namespace_uuid(volume.id)))
        if len(away) == len(nodes):
            raise exception.VolumeBackendAPIException(data=_(
                'volume %(id)s: no storage node of its copies answers: '
                '%(away)s') % {'id': volume.id, 'away': ', '.join(away)})
        if away:
            LOG.warning('Volume %(id)s connects to %(host)s while the '
                        'storage node(s) of some of its copies do not '
                        'answer: %(away)s', {'id': volume.id,
                                             'host': host_nqn,
                                             'away': ', '.join(away)})
        if len(replicas) > 1:
            build = (connection.spdk_vhost_replicated_info if vhost
                     else connection.nvmeof_replicated_info)
            info = build(replicas, volume.id, host_nqn, *(
                [secret] if vhost else []))
        elif vhost:
            info = connection.spdk_vhost_info(replicas[0][0], replicas[0][1],
                                              volume.id, host_nqn, secret)
        else:
            info = connection.nvmeof_info(replicas[0][0], replicas[0][1],
                                          volume.id, host_nqn)
        LOG.info('Volume %(id)s connects to %(host)s over %(mode)s '
                 '(%(copies)d cop%(ies)s)',
                 {'id': volume.id, 'host': host_nqn,
                  'mode': info['driver_volume_type'],
                  'copies': len(replicas),
                  'ies': 'y' if len(replicas) == 1 else 'ies'})
        return info

    def _allow(self, node, volume, host_nqn, vhost):
        """Export a copy if it is not, and let the host in; its
        DH-HMAC-CHAP secret (or None).
        """
        node.recovery.before_operation(volume.id)
        if not node.exports.is_exported(volume.id):
            node.exports.export(volume.id, self._volume_alias(volume),
                                qos.limits_for_type(volume.volume_type_id))
        return node.exports.allow_host(
            volume.id, host_nqn,
            authenticate=vhost and self.configuration.spdk_dhchap)

    @staticmethod
    def _check_copies_in_sync(volume):
        """The kernel's MD RAID1 (os-brick) takes every copy as in sync:
        a copy that is not (a replaced one not rebuilt yet) would serve
        other data than the rest.
        """
        behind = ['%s=%s' % item for item in copy_health.recorded(
            volume).items() if item[1] != notifications.COPY_IN_SYNC]
        if behind:
            raise exception.InvalidVolume(reason=_(
                'volume %(id)s has copies that are not in sync (%(copies)s); '
                'only a compute host\'s SPDK agent (spdk_vhost) rebuilds '
                'them, the kernel\'s MD RAID1 would not') % {
                    'id': volume.id, 'copies': ' '.join(behind)})

    def terminate_connection(self, volume, connector, **kwargs):
        nodes = self._copies(volume)
        if connector is None:
            # Force detach of every attachment.
            for node in nodes:
                self._call(node.recovery.before_operation, volume.id)
                for host_nqn in node.exports.hosts(volume.id):
                    self._call(node.exports.disallow_host, volume.id,
                               host_nqn)
            return False
        host_nqn = self._host_nqn(volume, connector, strict=False)
        same_host = [a for a in volume.volume_attachment
                     if a.connector and a.attach_status == 'attached'
                     and self._host_nqn(volume, a.connector,
                                        strict=False) == host_nqn]
        if len(same_host) > 1:
            LOG.info('Host %(host)s keeps access to volume %(id)s for its '
                     'other attachments', {'host': host_nqn, 'id': volume.id})
            return True
        for node in nodes:
            try:
                if node.down:
                    raise spdk_exc.SPDKUnavailable(
                        socket=str(node), reason=_('it never answered'))
                node.recovery.before_operation(volume.id)
                node.exports.disallow_host(volume.id, host_nqn)
            except spdk_exc.SPDKUnavailable as exc:
                if not self._remote:
                    raise _backend_error(exc)
                # The other copies' hosts go now; this node's ACL is set
                # when it answers again (restarted or cut off alike).
                LOG.warning('Volume %(id)s: %(err)s; host %(host)s goes '
                            'off the ACL of the copy there when it answers '
                            'again', {'id': volume.id, 'err': exc,
                                      'host': host_nqn})
                node.forget_host(volume.id, host_nqn)
            except spdk_exc.SPDKException as exc:
                raise _backend_error(exc)
        return False

    # -- stats and reconcile ------------------------------------------------

    def _update_volume_stats(self):
        try:
            lvstores = self._refresh_lvstores()
            provisioned = {}
            for node in self._nodes.values():
                if node.lvstores:
                    for name, size in node.lvols.provisioned().items():
                        provisioned[name] = provisioned.get(name, 0) + size
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        ratio = volume_utils.get_max_over_subscription_ratio(
            self.configuration.max_over_subscription_ratio,
            supports_auto=False)
        pools = []
        for name, found in sorted(lvstores.items()):
            # On storage nodes: every copy's clusters, on every node.
            total = sum(lvs['total_data_clusters'] * lvs['cluster_size']
                        for _node, lvs in found)
            free = sum(lvs['free_clusters'] * lvs['cluster_size']
                       for _node, lvs in found)
            where = (self.configuration.spdk_rpc_socket if not self._remote
                     else 'nodes=%s' % ','.join(
                         node.name for node, _lvs in found))
            pools.append({
                'pool_name': name,
                'total_capacity_gb': total / units.Gi,
                'free_capacity_gb': free / units.Gi,
                'provisioned_capacity_gb':
                    provisioned.get(name, 0) / units.Gi,
                'max_over_subscription_ratio': ratio,
                'reserved_percentage': self.configuration.reserved_percentage,
                'thin_provisioning_support': True,
                'thick_provisioning_support': True,
                'QoS_support': True,
                'multiattach': True,
                'online_extend_support': True,
                # How many copies a volume of this pool can have: one per
                # node that has the lvstore and answers.
                'max_replicas': len(found) if self._remote else 1,
                'location_info': 'SPDKDriver:%s:%s' % (
                    where, found[0][1]['uuid'] if not self._remote
                    else name),
            })
        self._stats = {
            'volume_backend_name':
                self.configuration.safe_get('volume_backend_name') or 'SPDK',
            'vendor_name': 'SPDK',
            'driver_version': self.VERSION,
            'storage_protocol': constants.NVMEOF_TCP,
            'sparse_copy_volume': True,
            'pools': pools,
        }

    # -- manage / unmanage --------------------------------------------------

    @staticmethod
    def _checked_ref(existing_ref):
        """The lvol a manage reference names, checked for form.

        The reference comes from the API user as is: a non-string, a
        control character or an over-long name is refused before SPDK is
        asked, and so is a name of the driver's own temporary lvols (an
        operation in flight owns them).
        """
        if not isinstance(existing_ref, dict):
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('the reference must be a dictionary'))
        key = 'source-name' if existing_ref.get('source-name') else (
            'source-id')
        ref = existing_ref.get(key)
        if not ref:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('give source-name (lvol name or lvstore/lvol) or '
                         'source-id (lvol UUID)'))
        bad = not isinstance(ref, str) or any(
            ch.isspace() or not ch.isprintable() for ch in ref)
        if not bad:
            lvstore, _sep, name = ref.rpartition('/')
            bad = (not name or ref.count('/') > 1 or (_sep and not lvstore)
                   or len(name.encode('utf-8')) > naming.LVOL_NAME_MAX
                   or len(lvstore.encode('utf-8')) > naming.LVOL_NAME_MAX)
        if bad:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%(key)s=%(ref)r is not an lvol name, '
                         'lvstore/lvol alias or UUID') % {'key': key,
                                                          'ref': ref})
        name = ref.rpartition('/')[2]
        if _TEMPORARY_LVOL.fullmatch(name):
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%(key)s=%(ref)r is one of the driver\'s own '
                         'temporary lvols') % {'key': key, 'ref': ref})
        return key, ref

    def _existing_lvol(self, existing_ref, lvstore):
        if self._remote:
            # Which node, and the copies a managed volume would need, are
            # not in a manage reference.
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('this back end keeps volumes on storage nodes; '
                         'manage lvols with a back end of their node\'s '
                         'own SPDK (no spdk_storage_nodes)'))
        key, ref = self._checked_ref(existing_ref)
        if key == 'source-name' and '/' not in ref:
            ref = naming.lvol_alias(lvstore, ref)
        bdev = self._call(self._lvols.get, ref)
        if bdev is None:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('no lvol %s in SPDK') % ref)
        alias = spdk_lvols.bdev_alias(bdev)
        if _TEMPORARY_LVOL.fullmatch(naming.split_alias(alias)[1]):
            # Found by UUID: the name only shows now.
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%s is one of the driver\'s own temporary lvols') %
                alias)
        if naming.split_alias(alias)[0] != lvstore:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%(alias)s is not in pool %(pool)s') %
                {'alias': alias, 'pool': lvstore})
        return bdev, alias

    def _lvol_size_gb(self, bdev):
        return spdk_lvols.bytes_to_gib_ceil(
            bdev['num_blocks'] * bdev['block_size'])

    def manage_existing_get_size(self, volume, existing_ref):
        bdev, _alias = self._existing_lvol(existing_ref,
                                           self._lvstore_of(volume))
        return self._lvol_size_gb(bdev)

    def manage_existing(self, volume, existing_ref):
        lvstore = self._lvstore_of(volume)
        # The type must be one this back end honours, as for a create.
        self._check_type(volume)
        qos.limits_for_type(volume.volume_type_id)
        bdev, alias = self._existing_lvol(existing_ref, lvstore)
        info = spdk_lvols.lvol_info(bdev)
        name = naming.split_alias(alias)[1]
        if info.get('snapshot'):
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%s is a snapshot, not a volume') % alias)
        if name.startswith('volume-') and name != naming.volume_lvol_name(
                volume.id):
            raise exception.ManageExistingAlreadyManaged(volume_ref=alias)
        new_name = naming.volume_lvol_name(volume.id)
        size_gb = self._lvol_size_gb(bdev)
        if size_gb * units.Gi != bdev['num_blocks'] * bdev['block_size']:
            # Cinder sizes are whole GiB; growing never loses data.
            self._call(self._lvols.resize, alias, size_gb)
        if name != new_name:
            self._call(self._lvols.rename, alias, new_name)

    def unmanage(self, volume):
        for node in self._copies(volume):
            if not node.down and node.exports.is_exported(volume.id):
                self._call(node.exports.unexport, volume.id)
        LOG.info('Volume %(id)s is no longer managed; its lvol keeps the '
                 'name %(alias)s', {'id': volume.id,
                                    'alias': self._volume_alias(volume)})

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref):
        bdev, _alias = self._existing_lvol(
            existing_ref, self._lvstore_of(snapshot.volume))
        return self._lvol_size_gb(bdev)

    def manage_existing_snapshot(self, snapshot, existing_ref):
        lvstore = self._lvstore_of(snapshot.volume)
        bdev, alias = self._existing_lvol(existing_ref, lvstore)
        if not spdk_lvols.lvol_info(bdev).get('snapshot'):
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%s is not a snapshot') % alias)
        name = naming.split_alias(alias)[1]
        if name not in self._call(self._lvols.ancestors,
                                  self._volume_alias(snapshot.volume)):
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('%(alias)s is not a snapshot of volume %(id)s') %
                {'alias': alias, 'id': snapshot.volume_id})
        return {'provider_id': name}

    def unmanage_snapshot(self, snapshot):
        LOG.info('Snapshot %s is no longer managed', snapshot.id)

    # -- retype -------------------------------------------------------------

    def retype(self, context, volume, new_type, diff, host):
        """QoS and thin-to-thick changes in place; the rest migrates."""
        new_specs = volume_types.get_volume_type_extra_specs(
            new_type['id']) if new_type else {}
        # A type the driver cannot honour is refused here, before anything
        # changes, rather than migrated to a create that refuses it.
        self._provisioning(new_specs)
        _spec_true(new_specs.get(VHOST_ATTACH_SPEC))
        copies = self._replicas(new_specs)
        limits = qos.limits_for_type(new_type['id'] if new_type else None)
        if volume_utils.extract_host(host['host'], 'pool') != \
                volume_utils.extract_host(volume.host, 'pool'):
            return False
        nodes = self._copies(volume)
        if copies != len(nodes):
            # Another number of copies is a new volume: migrated.
            return False
        specs = (diff or {}).get('extra_specs', {})
        old_p, new_p = specs.get(PROVISIONING_SPEC, ('thin', 'thin'))
        old_p, new_p = old_p or 'thin', new_p or 'thin'
        alias = self._volume_alias(volume)
        if old_p != new_p:
            if new_p != 'thick':
                # SPDK cannot give back allocated clusters in place.
                return False
            # A whole-volume copy, as an image copy's.
            for node in nodes:
                self._call(node.lvols.inflate, alias,
                           timeout=image_copy.COPY_TIMEOUT)
        for node in nodes:
            self._call(node.exports.set_qos, volume.id, limits)
        return True, None

    # -- images -------------------------------------------------------------

    def _use_spdk_for_images(self):
        if self._remote:
            # spdk_dd and the AIO bdevs of the image files run next to the
            # SPDK they use; storage nodes are Cinder's generic path's
            # (os-brick, which mirrors a replicated volume's copies).
            return False
        method = self.configuration.spdk_image_copy
        if method == 'auto':
            return not os.path.exists('/dev/nvme-fabrics')
        return method == 'spdk'

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        if not self._use_spdk_for_images():
            return super().copy_image_to_volume(
                context, volume, image_service, image_id,
                disable_sparse=disable_sparse)
        lvstore = self._lvstore_of(volume)
        self._call(self._images.image_to_volume, context, volume, lvstore,
                   self._is_thin(volume), image_service, image_id,
                   self.configuration.volume_dd_blocksize)

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        if not self._use_spdk_for_images():
            return super().copy_volume_to_image(context, volume,
                                                image_service, image_meta)
        self._call(self._images.volume_to_image, context, volume,
                   self._lvstore_of(volume), image_service, image_meta)
