"""Cinder volume driver for SPDK logical volumes exported over NVMe/TCP.

``volume_driver = cinder_driver.spdk.SPDKDriver``. One pool per lvstore;
volumes are lvols, snapshots and clones are lvol snapshots and clones, and
every volume is exported through its own NVMe-oF subsystem with a host
NQN ACL per attachment. See doc/source/driver.rst for the extra specs.
"""

import os

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
from cinder.volume import volume_utils

from cinder_driver import dhchap
from cinder_driver import exports as nvmf_exports
from cinder_driver import image_copy
from cinder_driver import lvols as spdk_lvols
from cinder_driver import qos
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
]

CONF = cfg.CONF
CONF.register_opts(spdk_opts, group=configuration.SHARED_CONF_GROUP)

VHOST_ATTACH_SPEC = 'spdk:vhost_attach'
PROVISIONING_SPEC = 'provisioning:type'
SPDK_VHOST = 'spdk_vhost'


def _backend_error(exc):
    return exception.VolumeBackendAPIException(data=str(exc))


def _spec_true(value):
    if value is None:
        return False
    value = str(value).strip()
    if value.lower().startswith('<is>'):
        value = value[4:].strip()
    return strutils.bool_from_string(value)


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
        self._replay_pending = False

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
            keys = dhchap.HostKeys(self._client, conf.spdk_keyring_dir)
            keys.setup()
        try:
            naming.validate_nqn(conf.spdk_nqn_prefix + ':volume-x')
        except spdk_exc.InvalidNQN as exc:
            raise exception.InvalidConfigurationValue(
                option='spdk_nqn_prefix', value=conf.spdk_nqn_prefix) from exc
        self._exports = nvmf_exports.NVMeoFExports(
            self._client, conf.spdk_nqn_prefix, conf.spdk_target_addresses,
            conf.spdk_target_port, keys=keys)
        self._images = image_copy.ImageCopier(self._client, self._lvols)

    def check_for_setup_error(self):
        try:
            version = self._client.call('spdk_get_version')
            self._refresh_lvstores()
            self._exports.ensure_transport()
            self._lvols.load(self._client.call('bdev_get_bdevs'))
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
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

    def _is_thin(self, volume):
        ptype = self._extra_specs(volume).get(PROVISIONING_SPEC, 'thin')
        if ptype not in ('thin', 'thick'):
            raise exception.InvalidInput(reason=_(
                '%(spec)s must be "thin" or "thick", not %(value)r') % {
                    'spec': PROVISIONING_SPEC, 'value': ptype})
        return ptype == 'thin'

    def _check_space(self, lvstore, size_gb, thin):
        """Refuse early what SPDK would refuse or turn into guest EIO."""
        lvs = self._lvstores[lvstore]
        free = lvs['free_clusters'] * lvs['cluster_size']
        if thin and lvs['free_clusters'] == 0:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %s is full (no free cluster): a thin volume on it '
                'would fail its first write') % lvstore)
        if not thin and size_gb * units.Gi > free:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %(lvs)s has %(free).2f GiB free; a thick volume of '
                '%(size)d GiB does not fit') % {
                    'lvs': lvstore, 'free': free / units.Gi, 'size': size_gb})

    def _call(self, what, *args, **kwargs):
        try:
            return what(*args, **kwargs)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)

    # -- volumes ------------------------------------------------------------

    def create_volume(self, volume):
        if volume.size <= 0:
            raise exception.InvalidInput(
                reason=_('Volume size must be at least 1 GiB'))
        lvstore = self._lvstore_of(volume)
        thin = self._is_thin(volume)
        # Refuse a type whose QoS SPDK cannot enforce before making anything.
        qos.limits_for_type(volume.volume_type_id)
        self._check_space(lvstore, volume.size, thin)
        name = naming.volume_lvol_name(volume.id)
        alias = naming.lvol_alias(lvstore, name)
        try:
            self._lvols.create(lvstore, name, volume.size, thin)
        except spdk_exc.SPDKExists:
            raise exception.VolumeBackendAPIException(data=_(
                'An lvol named %s already exists; it was left untouched') %
                alias)
        except spdk_exc.SPDKNoSpace:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %(lvs)s has no room for %(size)d GiB') % {
                    'lvs': lvstore, 'size': volume.size})
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
        alias = self._volume_alias(volume)
        if not self._is_thin(volume):
            self._check_space(self._lvstore_of(volume),
                              new_size - volume.size, thin=False)
        try:
            self._lvols.resize(alias, new_size)
        except spdk_exc.SPDKNoSpace:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore has no room to extend %(alias)s to %(size)d GiB') %
                {'alias': alias, 'size': new_size})
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

    def create_volume_from_snapshot(self, volume, snapshot):
        lvstore = self._lvstore_of(snapshot.volume)
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
        alias = self._volume_alias(volume)
        self._call(self._exports.export, volume.id, alias,
                   qos.limits_for_type(volume.volume_type_id))

    def ensure_export(self, context, volume):
        hosts = {self._host_nqn(volume, a.connector)
                 for a in volume.volume_attachment
                 if a.connector and a.attach_status in ('attached',
                                                        'attaching')}
        hosts.discard(None)
        self._exports.remember(volume.id, self._volume_alias(volume), hosts,
                               qos.limits_for_type(volume.volume_type_id))
        self._replay_pending = True

    def remove_export(self, context, volume):
        if not self._exports.hosts(volume.id):
            self._call(self._exports.unexport, volume.id)

    def validate_connector(self, connector):
        connector = connector or {}
        host_nqns = [nqn for nqn in (
            connector.get('nqn'),
            (connector.get(SPDK_VHOST) or {}).get('host_nqn')) if nqn]
        if not host_nqns:
            raise exception.InvalidConnectorException(missing='nqn')
        try:
            for host_nqn in host_nqns:
                naming.validate_nqn(host_nqn)
        except spdk_exc.InvalidNQN as exc:
            raise exception.InvalidInput(reason=str(exc))

    def _vhost_allowed(self, volume, connector):
        return bool(connector.get(SPDK_VHOST)) and _spec_true(
            self._extra_specs(volume).get(VHOST_ATTACH_SPEC))

    def _host_nqn(self, volume, connector):
        """The NQN that will connect: the compute node's SPDK (its agent's)
        for vhost attachments, its kernel initiator otherwise.
        """
        if self._vhost_allowed(volume, connector):
            return (connector[SPDK_VHOST].get('host_nqn')
                    or connector.get('nqn'))
        return connector.get('nqn')

    def initialize_connection(self, volume, connector):
        self.validate_connector(connector)
        host_nqn = self._host_nqn(volume, connector)
        if not host_nqn:
            raise exception.InvalidConnectorException(missing='nqn')
        vhost = self._vhost_allowed(volume, connector)
        if not self._exports.is_exported(volume.id):
            self.create_export(None, volume, connector)
        try:
            secret = self._exports.allow_host(
                volume.id, host_nqn,
                authenticate=vhost and self.configuration.spdk_dhchap)
        except spdk_exc.SPDKException as exc:
            raise _backend_error(exc)
        data = {
            'target_nqn': self._exports.nqn(volume.id),
            'portals': self._exports.portals(),
            'vol_uuid': volume.id,
            'host_nqn': host_nqn,
            'discard': True,
        }
        if secret:
            data['dhchap_secret'] = secret
        LOG.info('Volume %(id)s connects to %(host)s over %(mode)s',
                 {'id': volume.id, 'host': host_nqn,
                  'mode': SPDK_VHOST if vhost else 'nvmeof'})
        return {'driver_volume_type': SPDK_VHOST if vhost else 'nvmeof',
                'data': data}

    def terminate_connection(self, volume, connector, **kwargs):
        if connector is None:
            # Force detach of every attachment.
            for host_nqn in self._exports.hosts(volume.id):
                self._call(self._exports.disallow_host, volume.id, host_nqn)
            return False
        host_nqn = self._host_nqn(volume, connector)
        same_host = [a for a in volume.volume_attachment
                     if a.connector and a.attach_status == 'attached'
                     and self._host_nqn(volume, a.connector) == host_nqn]
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
            self._reconcile()
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

    def _reconcile(self):
        """Restore what SPDK lost in a restart: exports, hosts, QoS."""
        restarted = not self._exports.transport_present()
        if not (restarted or self._replay_pending):
            return
        self._replay_pending = False
        restored = self._exports.replay()
        if restarted:
            LOG.warning('SPDK at %(socket)s had restarted; restored %(n)d '
                        'export(s) with their hosts and QoS limits',
                        {'socket': self.configuration.spdk_rpc_socket,
                         'n': len(restored)})

    # -- manage / unmanage --------------------------------------------------

    def _existing_lvol(self, existing_ref, lvstore):
        ref = existing_ref.get('source-name') or existing_ref.get('source-id')
        if not ref:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('give source-name (lvol name or lvstore/lvol) or '
                         'source-id (lvol UUID)'))
        if 'source-name' in existing_ref and '/' not in ref:
            ref = naming.lvol_alias(lvstore, ref)
        bdev = self._call(self._lvols.get, ref)
        if bdev is None:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason=_('no lvol %s in SPDK') % ref)
        alias = spdk_lvols.bdev_alias(bdev)
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
        bdev, alias = self._existing_lvol(existing_ref, lvstore)
        info = spdk_lvols.lvol_info(bdev)
        name = naming.split_alias(alias)[1]
        if info.get('snapshot') or naming.is_hidden_lvol(name):
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
            self._call(self._client.call, 'bdev_lvol_inflate',
                       {'name': alias})
        limits = qos.limits_for_type(new_type['id'] if new_type else None)
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
                   self._lvstores[lvstore]['cluster_size'], image_service,
                   image_id, self.configuration.volume_dd_blocksize)

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        if not self._use_spdk_for_images():
            return super().copy_volume_to_image(context, volume,
                                                image_service, image_meta)
        self._call(self._images.volume_to_image, context, volume,
                   self._lvstore_of(volume), image_service, image_meta)
