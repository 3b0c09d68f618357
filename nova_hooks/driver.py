"""``LibvirtDriver`` with SPDK vhost-user volumes.

Nova has no plug-in point for volume drivers, so nova-compute loads this
subclass through the shim ``nova.virt.spdk_libvirt`` (installed with this
package): ``[DEFAULT] compute_driver = spdk_libvirt.SPDKLibvirtDriver``.
Everything but the ``spdk_vhost`` volume type and the connector is stock
Nova: hugepages, NUMA cells with ``memAccess='shared'``, pinning.
"""

import os

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_serialization import jsonutils

from nova import exception as nova_exception
from nova import objects
from nova import utils
from nova.virt import driver as virt_driver
from nova.virt.libvirt import driver as libvirt_driver

from nova_hooks import agent_client
from nova_hooks import conf as hooks_conf
from nova_hooks import vhost_disk_xml
from nova_hooks import volume as spdk_volume
from spdk_common import connection
from spdk_common import naming

LOG = logging.getLogger(__name__)
CONF = hooks_conf.register(cfg.CONF)

# Small pages are 4 KiB; anything larger is a hugepage.
SMALL_PAGE_KIB = 4


def has_shared_hugepages(instance):
    """True when Nova gives the guest hugepage (hence shared) memory.

    Nova sets memAccess='shared' on every NUMA cell of a hugepage guest,
    which is what vhost-user needs; small-page guests cannot use it.
    """
    topology = instance.numa_topology
    return bool(topology and topology.cells and all(
        (cell.pagesize or 0) > SMALL_PAGE_KIB for cell in topology.cells))


def _spdk_vhost_volumes(block_device_info):
    return [bdm for bdm in virt_driver.block_device_info_get_mapping(
        block_device_info)
        if (bdm.get('connection_info') or {}).get('driver_volume_type')
        == connection.SPDK_VHOST]


class SPDKLibvirtDriver(libvirt_driver.LibvirtDriver):

    def _get_volume_driver(self, connection_info):
        kind = connection_info.get('driver_volume_type')
        if kind != connection.SPDK_VHOST:
            return super()._get_volume_driver(connection_info)
        driver = self.volume_drivers.get(kind)
        if driver is not None:
            return driver

        # Nova's own lock, as its _get_volume_driver caches its drivers:
        # two attaches at once make one driver.
        @utils.synchronized('cache_volume_driver')
        def _cache_volume_driver():
            if kind not in self.volume_drivers:
                self.volume_drivers[kind] = (
                    spdk_volume.LibvirtSPDKVhostVolumeDriver(self._host))
            return self.volume_drivers[kind]
        return _cache_volume_driver()

    def extend_volume(self, context, connection_info, instance,
                      requested_size):
        if connection_info.get('driver_volume_type') != connection.SPDK_VHOST:
            return super().extend_volume(context, connection_info, instance,
                                         requested_size)
        # The agent resizes the disk it serves, and SPDK vhost tells the
        # guest; libvirt has no block resize for vhost-user disks.
        return self._extend_volume(connection_info, instance, requested_size)

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        """Refuse, before anything moves, a live migration that SPDK vhost
        cannot carry: post-copy needs the vhost-user backend to serve
        guest page faults (userfaultfd), which SPDK's does not offer.
        """
        if (CONF.libvirt.live_migration_permit_post_copy
                and _spdk_vhost_volumes(block_device_info)):
            raise nova_exception.MigrationPreCheckError(
                reason='SPDK vhost-user volumes cannot be live migrated '
                       'post-copy (SPDK does not serve guest page faults); '
                       'set [libvirt] live_migration_permit_post_copy = '
                       'False on the compute nodes')
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data, block_device_info)

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        """On the destination: this host's agent must answer, and serve
        each spdk_vhost volume at the path the source's guest uses (the
        migrated domain keeps its disks' socket paths).

        Checked before the stock checks, which leave a test file behind
        that only their own clean-up removes.
        """
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        sockets = {}
        for bdm in bdms:
            info = bdm.get('connection_info')
            info = jsonutils.loads(info) if info else {}
            if info.get('driver_volume_type') == connection.SPDK_VHOST:
                sockets[bdm.volume_id] = info['data'].get(
                    connection.VHOST_SOCKET)
        if sockets:
            self._check_vhost_destination(instance, sockets)
        return super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration, disk_over_commit)

    def _check_vhost_destination(self, instance, sockets):
        if not has_shared_hugepages(instance):
            return
        try:
            status = agent_client.get().get_status(
                timeout=CONF.spdk_vhost.agent_probe_timeout)
        except messaging.MessagingException as exc:
            raise nova_exception.MigrationPreCheckError(
                reason='spdk-vhost-target on %s does not answer (%s): it '
                       'must serve the instance\'s vhost-user volumes'
                       % (CONF.host, exc))
        for volume_id, source in sorted(sockets.items()):
            here = os.path.join(status['socket_dir'],
                                naming.vhost_controller_name(volume_id))
            if source != here:
                raise nova_exception.MigrationPreCheckError(
                    reason='volume %s is served at %s on the source but '
                           'would be at %s here; [spdk_vhost_target] '
                           'socket_dir must be the same on every compute '
                           'node' % (volume_id, source, here))

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        """Stock destroy; then the domain's vhost-user disks that
        ``block_device_info`` does not name are detached from this host's
        agent too. Nova names none when it destroys a guest left behind by
        an evacuation whose instance is deleted already
        (``ComputeManager._destroy_evacuated_instances``): the agent would
        otherwise serve the volume, and reconnect to its target, for ever.
        """
        orphans = self._vhost_disks_not_named(instance, block_device_info)
        super().destroy(context, instance, network_info, block_device_info,
                        destroy_disks, destroy_secrets)
        for volume_id in orphans:
            LOG.info('Detaching volume %s, which the destroyed domain used '
                     'and Nova did not name', volume_id, instance=instance)
            try:
                spdk_volume.detach(volume_id, instance)
            except Exception as exc:
                # The domain is gone; the agent's attachment stays for the
                # operator (spdk-vhost-target status shows it).
                LOG.warning('Could not detach volume %(volume)s from '
                            'spdk-vhost-target: %(error)s',
                            {'volume': volume_id, 'error': exc},
                            instance=instance)

    def _vhost_disks_not_named(self, instance, block_device_info):
        try:
            guest = self._host.get_guest(instance)
        except nova_exception.InstanceNotFound:
            return []
        named = {spdk_volume.volume_id(bdm['connection_info'])
                 for bdm in _spdk_vhost_volumes(block_device_info)}
        return sorted(set(vhost_disk_xml.vhost_user_disks(
            guest.get_xml_desc())) - named)

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        """Migrate only when the destination serves every vhost-user disk
        at the path the domain keeps; otherwise roll back, as a failed
        migration job does, before libvirt starts anything.
        """
        problem = self._vhost_disks_not_served(instance, migrate_data)
        if problem:
            LOG.error('Live migration to %(dest)s refused: %(problem)s',
                      {'dest': dest, 'problem': problem}, instance=instance)
            recover_method(context, instance, dest, migrate_data)
            return
        return super().live_migration(
            context, instance, dest, post_method, recover_method,
            block_migration, migrate_data)

    def _vhost_disks_not_served(self, instance, migrate_data):
        """Why the destination cannot take the guest's vhost-user disks
        (None when it can): the answers its pre_live_migration gave.
        """
        guest = self._host.get_guest(instance)
        disks = vhost_disk_xml.vhost_user_disks(guest.get_xml_desc())
        answers = {bdm.serial: bdm.connection_info
                   for bdm in getattr(migrate_data, 'bdms', None) or []}
        for volume_id, path in sorted(disks.items()):
            info = answers.get(volume_id) or {}
            if info.get('driver_volume_type') != connection.SPDK_VHOST:
                return ('the destination attached volume %s as %s, not as '
                        'a vhost-user disk' % (
                            volume_id, info.get('driver_volume_type')))
            there = info['data'].get(connection.VHOST_SOCKET)
            if there != path:
                return ('the destination serves volume %s at %s, the '
                        'domain uses %s' % (volume_id, there, path))
        return None

    def get_volume_connector(self, instance):
        connector = super().get_volume_connector(instance)
        capability = self._spdk_vhost_capability(instance)
        if capability:
            connector[connection.SPDK_VHOST] = capability
        return connector

    def _spdk_vhost_capability(self, instance):
        """What the connector offers Cinder, or None for stock NVMe/TCP."""
        if instance is None or not has_shared_hugepages(instance):
            return None
        try:
            status = agent_client.get().get_status(
                timeout=CONF.spdk_vhost.agent_probe_timeout)
        except messaging.MessagingException as exc:
            LOG.warning('spdk-vhost-target does not answer (%s); volumes '
                        'attach over kernel NVMe/TCP', exc,
                        instance=instance)
            return None
        return connection.capability(
            status['host_nqn'], spdk_volume.host_numa_nodes(instance))
