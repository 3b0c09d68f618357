"""Cinder volume driver for SPDK logical volumes exported over NVMe/TCP.

``volume_driver = cinder_driver.spdk.SPDKDriver``. One pool per lvstore;
volumes are lvols, snapshots and clones are lvol snapshots and clones, and
every volume is exported through its own NVMe-oF subsystem with a host
NQN ACL per attachment. See doc/source/driver.rst for the extra specs.
"""

import os
import re

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

from cinder.common import constants
from cinder import exception
from cinder.i18n import _
from cinder import interface
from cinder.volume import configuration
from cinder.volume import driver
from cinder.volume import volume_types
from cinder.volume import volume_utils

from cinder_driver import exports as nvmf_exports
from cinder_driver import image_copy
from cinder_driver import lvols as spdk_lvols
from cinder_driver import qos
from cinder_driver import recovery
from spdk_common import connection
from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import rpc

LOG = logging.getLogger(__name__)

spdk_opts = [
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
    """

    VERSION = '1.0.0'
    CI_WIKI_NAME = 'SPDK_OpenStack_CI'
    SUPPORTS_ACTIVE_ACTIVE = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(spdk_opts)
        self._client = None
        self._lvols = None
        self._exports = None
        self._lvstores = {}
        self._recovery = None

    @staticmethod
    def get_driver_options():
        additional = driver.BaseVD._get_oslo_driver_opts(
            'reserved_percentage', 'max_over_subscription_ratio',
            'volume_backend_name')
        return spdk_opts + additional

    # -- set-up -------------------------------------------------------------

    def do_setup(self, context):
        conf = self.configuration
        self._client = rpc.SPDKClient(conf.spdk_rpc_socket,
                                      timeout=conf.spdk_rpc_timeout)
        self._lvols = spdk_lvols.Lvols(
            self._client, conf.spdk_lvol_clear_method,
            os.path.join(conf.spdk_state_dir,
                         '%s.json' % (conf.config_group or 'spdk')))
        keys = None
        if conf.spdk_dhchap:
            keys = dhchap.KeyFiles(self._client, conf.spdk_keyring_dir)
            keys.setup()
        try:
            naming.validate_nqn(conf.spdk_nqn_prefix + ':volume-x')
        except spdk_exc.InvalidNQN as exc:
            raise exception.InvalidConfigurationValue(
                option='spdk_nqn_prefix', value=conf.spdk_nqn_prefix) from exc
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
        self._exports = nvmf_exports.NVMeoFExports(
            self._client, conf.spdk_nqn_prefix, addresses,
            conf.spdk_target_port, keys=keys)
        self._recovery = recovery.ExportRecovery(
            self._client, self._exports, conf.spdk_rpc_socket,
            conf.spdk_restart_check_interval)
        self._images = image_copy.ImageCopier(
            self._client, self._lvols, self._exports,
            cpumask=conf.spdk_dd_cpumask, mem_mib=conf.spdk_dd_mem_mib)

    def check_for_setup_error(self):
        try:
            version = self._client.call('spdk_get_version')
            self._refresh_lvstores()
            self._exports.ensure_transport()
            self._recovery.check()
            self._lvols.load(self._client.call('bdev_get_bdevs'))
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        self._recovery.start()
        LOG.info('SPDK %(version)s at %(socket)s: pools %(pools)s',
                 {'version': version.get('version'),
                  'socket': self.configuration.spdk_rpc_socket,
                  'pools': ', '.join(sorted(self._lvstores))})

    def _refresh_lvstores(self):
        found = {lvs['name']: lvs for lvs in
                 self._client.call('bdev_lvol_get_lvstores')}
        wanted = self.configuration.spdk_lvstores or sorted(found)
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore(s) %(missing)s not found in SPDK at %(socket)s; it '
                'has: %(found)s') % {
                    'missing': ', '.join(missing),
                    'socket': self.configuration.spdk_rpc_socket,
                    'found': ', '.join(sorted(found)) or 'none'})
        if not wanted:
            raise exception.VolumeBackendAPIException(data=_(
                'SPDK at %s has no lvstore: create one with '
                'bdev_lvol_create_lvstore') %
                self.configuration.spdk_rpc_socket)
        self._lvstores = {name: found[name] for name in wanted}
        return self._lvstores

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

    def _is_thin(self, volume):
        return self._provisioning(self._extra_specs(volume)) == 'thin'

    def _check_type(self, volume):
        """Refuse a type whose extra specs the driver cannot honour, before
        anything is made (a typo would otherwise surface at attach time).
        """
        specs = self._extra_specs(volume)
        self._provisioning(specs)
        _spec_true(specs.get(VHOST_ATTACH_SPEC))

    def _fresh_lvstore(self, lvstore):
        """The lvstore's figures now: one constant-size RPC.

        Guest writes to thin volumes take clusters between stats
        refreshes, so the figures of the last refresh may say "room" for
        an lvstore that has since filled up.
        """
        lvs = self._client.call('bdev_lvol_get_lvstores',
                                {'lvs_name': lvstore})[0]
        self._lvstores[lvstore] = lvs
        return lvs

    def _check_thin_room(self, lvstore, what):
        """Refuse a new thin lvol on an lvstore with no free cluster: SPDK
        would make it, and the guest's first write would get EIO.
        """
        lvs = self._call(self._fresh_lvstore, lvstore)
        if lvs['free_clusters'] == 0:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %(lvs)s is full (0 of %(total)d clusters free): '
                '%(what)s would fail its first write') % {
                    'lvs': lvstore, 'total': lvs['total_data_clusters'],
                    'what': what})
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
        lvs = self._lvstores[lvstore]
        total = lvs['total_data_clusters'] * lvs['cluster_size']
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

    def _no_room(self, lvstore, what):
        """The error for SPDK's ENOSPC, with the free space it saw."""
        try:
            lvs = self._fresh_lvstore(lvstore)
            free = _('%.2f GiB free') % (
                lvs['free_clusters'] * lvs['cluster_size'] / units.Gi)
        except spdk_exc.SPDKException:
            free = _('too little room')
        return exception.VolumeBackendAPIException(data=_(
            'lvstore %(lvs)s has %(free)s; %(what)s does not fit') % {
                'lvs': lvstore, 'free': free, 'what': what})

    def _call(self, what, *args, **kwargs):
        try:
            return what(*args, **kwargs)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)

    # -- volumes ------------------------------------------------------------

    def create_volume(self, volume):
        _whole_gib('size', volume.size)
        lvstore = self._lvstore_of(volume)
        self._check_type(volume)
        thin = self._is_thin(volume)
        self._check_pool_limit(lvstore, 'size', volume.size, thin)
        # Refuse a type whose QoS SPDK cannot enforce before making anything.
        qos.limits_for_type(volume.volume_type_id)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        if thin:
            # The one extra RPC of a create: SPDK makes a thin lvol on a
            # full lvstore without complaint. A thick create needs no look:
            # SPDK refuses it whole when the clusters are not there.
            self._check_thin_room(lvstore, _('a thin volume of %d GiB') %
                                  volume.size)
        try:
            self._lvols.create(lvstore, name, volume.size, thin)
        except spdk_exc.SPDKExists:
            raise exception.VolumeBackendAPIException(data=_(
                'An lvol named %s already exists; it was left untouched') %
                alias)
        except spdk_exc.SPDKNoSpace:
            raise self._no_room(lvstore, _('a thick volume of %d GiB') %
                                volume.size)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)

    def delete_volume(self, volume):
        alias = self._volume_alias(volume)
        try:
            if self._exports.is_exported(volume.id):
                self._exports.unexport(volume.id)
            self._lvols.delete(alias)
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
        # bdev_lvol_resize shrinks as readily as it grows, dropping the
        # clusters past the new end: never go below what the volume holds
        # (Cinder's size, or the lvol's if it is bigger).
        tracked = self._lvols.size(alias)
        current = max(volume.size, spdk_lvols.bytes_to_gib_ceil(tracked or 0))
        if new_size < current:
            raise exception.InvalidInput(reason=_(
                'extend of volume %(id)s to new_size=%(new)d GiB refused: it '
                'is %(cur)d GiB and shrinking would lose data') % {
                    'id': volume.id, 'new': new_size, 'cur': current})
        if tracked == new_size * units.Gi:
            LOG.info('Volume %(id)s is already %(size)d GiB; nothing to do',
                     {'id': volume.id, 'size': new_size})
            return
        try:
            self._lvols.resize(alias, new_size)
        except spdk_exc.SPDKNoSpace:
            raise self._no_room(lvstore, _(
                'extending thick volume %(id)s to %(size)d GiB') % {
                    'id': volume.id, 'size': new_size})
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        LOG.info('Extended %(alias)s to %(size)d GiB',
                 {'alias': alias, 'size': new_size})

    # -- snapshots and clones -----------------------------------------------

    def create_snapshot(self, snapshot):
        alias = self._volume_alias(snapshot.volume)
        try:
            self._lvols.snapshot(alias,
                                 naming.snapshot_lvol_name(snapshot.id))
        except spdk_exc.SPDKNotFound:
            raise exception.VolumeNotFound(volume_id=snapshot.volume_id)
        except spdk_exc.SPDKExists:
            raise exception.VolumeBackendAPIException(data=_(
                'An lvol named %s already exists') %
                naming.snapshot_lvol_name(snapshot.id))
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)

    def delete_snapshot(self, snapshot):
        self._call(self._lvols.delete_snapshot, self._snapshot_alias(snapshot))

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
        self._check_type(volume)
        qos.limits_for_type(volume.volume_type_id)
        # Clones are thin whatever the type.
        self._check_pool_limit(lvstore, 'size', volume.size, thin=True)

    def create_volume_from_snapshot(self, volume, snapshot):
        lvstore = self._lvstore_of(snapshot.volume)
        self._check_new_clone(volume, lvstore, snapshot.volume_size,
                              _('snapshot %s') % snapshot.id)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        try:
            self._lvols.clone(self._snapshot_alias(snapshot), name,
                              snapshot.volume_size)
        except spdk_exc.SPDKNotFound:
            raise exception.SnapshotNotFound(snapshot_id=snapshot.id)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        self._grow_new_clone(volume, alias, snapshot.volume_size)
        return self._pool_update(volume, lvstore)

    def create_cloned_volume(self, volume, src_vref):
        lvstore = self._lvstore_of(src_vref)
        self._check_new_clone(volume, lvstore, src_vref.size,
                              _('volume %s') % src_vref.id)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        try:
            self._lvols.clone_volume(
                self._volume_alias(src_vref),
                naming.hidden_lvol_name('clone-source-%s' % volume.id), name,
                src_vref.size)
        except spdk_exc.SPDKNotFound:
            raise exception.VolumeNotFound(volume_id=src_vref.id)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        self._grow_new_clone(volume, alias, src_vref.size)
        return self._pool_update(volume, lvstore)

    def _grow_new_clone(self, volume, alias, source_size):
        if volume.size <= source_size:
            return
        try:
            self._lvols.resize(alias, volume.size)
        except spdk_exc.SPDKException as exc:
            self._lvols.discard(alias)
            raise _backend_error(exc)

    @staticmethod
    def _pool_update(volume, lvstore):
        """Clones live in their source's lvstore: tell Cinder if moved."""
        if volume_utils.extract_host(volume.host, 'pool') == lvstore:
            return None
        return {'host': volume_utils.append_host(
            volume_utils.extract_host(volume.host, 'backend'), lvstore)}

    def revert_to_snapshot(self, context, volume, snapshot):
        """Make the volume a fresh clone of the snapshot, under its name."""
        lvstore = self._lvstore_of(volume)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        temp_name = 'revert-%s' % volume.id
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        try:
            self._lvols.clone(self._snapshot_alias(snapshot), temp_name,
                              snapshot.volume_size)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        self._grow_new_clone(volume, temp_alias, snapshot.volume_size)
        # From here the snapshot holds the data; the old lvol may go.
        self._call(self._lvols.delete, alias)
        self._call(self._lvols.rename, temp_alias, name)
        if self._exports.is_exported(volume.id):
            self._call(self._exports.export, volume.id, alias,
                       qos.limits_for_type(volume.volume_type_id))

    # -- exports ------------------------------------------------------------

    def create_export(self, context, volume, connector):
        self._call(self._recovery.before_operation, volume.id)
        alias = self._volume_alias(volume)
        self._call(self._exports.export, volume.id, alias,
                   qos.limits_for_type(volume.volume_type_id))

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
        self._exports.remember(volume.id, self._volume_alias(volume), hosts,
                               qos.limits_for_type(volume.volume_type_id))
        self._recovery.request_replay()

    def remove_export(self, context, volume):
        if not self._exports.hosts(volume.id):
            self._call(self._exports.unexport, volume.id)

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
        return self._vhost_info(connector) is not None and _spec_true(
            self._extra_specs(volume).get(VHOST_ATTACH_SPEC))

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
            on_acl = self._exports.hosts(volume.id)
            candidates = [(vhost or {}).get(connection.CAP_HOST_NQN),
                          connector.get('nqn')]
            return next((n for n in candidates if n and n in on_acl),
                        connector.get('nqn'))
        if allowed:
            return (vhost.get(connection.CAP_HOST_NQN)
                    or connector.get('nqn'))
        return connector.get('nqn')

    def initialize_connection(self, volume, connector):
        self.validate_connector(connector)
        host_nqn = self._host_nqn(volume, connector)
        if not host_nqn:
            raise exception.InvalidConnectorException(missing='nqn')
        vhost = self._vhost_allowed(volume, connector)
        self._call(self._recovery.before_operation, volume.id)
        if not self._exports.is_exported(volume.id):
            self.create_export(None, volume, connector)
        try:
            secret = self._exports.allow_host(
                volume.id, host_nqn,
                authenticate=vhost and self.configuration.spdk_dhchap)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        nqn, portals = self._exports.nqn(volume.id), self._exports.portals()
        if vhost:
            info = connection.spdk_vhost_info(nqn, portals, volume.id,
                                              host_nqn, secret)
        else:
            info = connection.nvmeof_info(nqn, portals, volume.id, host_nqn)
        LOG.info('Volume %(id)s connects to %(host)s over %(mode)s',
                 {'id': volume.id, 'host': host_nqn,
                  'mode': info['driver_volume_type']})
        return info

    def terminate_connection(self, volume, connector, **kwargs):
        self._call(self._recovery.before_operation, volume.id)
        if connector is None:
            # Force detach of every attachment.
            for host_nqn in self._exports.hosts(volume.id):
                self._call(self._exports.disallow_host, volume.id, host_nqn)
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
        self._call(self._exports.disallow_host, volume.id, host_nqn)
        return False

    # -- stats and reconcile ------------------------------------------------

    def _update_volume_stats(self):
        try:
            lvstores = self._refresh_lvstores()
            provisioned = self._lvols.provisioned()
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        ratio = volume_utils.get_max_over_subscription_ratio(
            self.configuration.max_over_subscription_ratio,
            supports_auto=False)
        pools = []
        for name, lvs in sorted(lvstores.items()):
            cluster = lvs['cluster_size']
            pools.append({
                'pool_name': name,
                'total_capacity_gb':
                    lvs['total_data_clusters'] * cluster / units.Gi,
                'free_capacity_gb': lvs['free_clusters'] * cluster / units.Gi,
                'provisioned_capacity_gb':
                    provisioned.get(name, 0) / units.Gi,
                'max_over_subscription_ratio': ratio,
                'reserved_percentage': self.configuration.reserved_percentage,
                'thin_provisioning_support': True,
                'thick_provisioning_support': True,
                'QoS_support': True,
                'multiattach': True,
                'online_extend_support': True,
                'location_info': 'SPDKDriver:%s:%s' % (
                    self.configuration.spdk_rpc_socket, lvs['uuid']),
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
        if self._exports.is_exported(volume.id):
            self._call(self._exports.unexport, volume.id)
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
        limits = qos.limits_for_type(new_type['id'] if new_type else None)
        if volume_utils.extract_host(host['host'], 'pool') != \
                volume_utils.extract_host(volume.host, 'pool'):
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
            self._call(self._lvols.inflate, alias,
                       timeout=image_copy.COPY_TIMEOUT)
        self._call(self._exports.set_qos, volume.id, limits)
        return True, None

    # -- images -------------------------------------------------------------

    def _use_spdk_for_images(self):
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
