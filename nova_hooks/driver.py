"""``LibvirtDriver`` with SPDK vhost-user volumes.

Nova has no plug-in point for volume drivers, so nova-compute loads this
subclass through the shim ``nova.virt.spdk_libvirt`` (installed with this
package): ``[DEFAULT] compute_driver = spdk_libvirt.SPDKLibvirtDriver``.
Everything but the ``spdk_vhost`` volume type and the connector is stock
Nova: hugepages, NUMA cells with ``memAccess='shared'``, pinning.
"""

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from nova import exception as nova_exception
from nova import utils
from nova.virt import driver as virt_driver
from nova.virt.libvirt import driver as libvirt_driver

from nova_hooks import agent_client
from nova_hooks import conf as hooks_conf
from nova_hooks import volume as spdk_volume
from spdk_common import connection

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
        """Refuse live migration of instances with spdk_vhost volumes.

        Not yet supported: refused before anything moves, with a reason the
        user sees, instead of a guest that loses its disks half-way.
        """
        for bdm in virt_driver.block_device_info_get_mapping(
                block_device_info):
            info = bdm.get('connection_info') or {}
            if info.get('driver_volume_type') == connection.SPDK_VHOST:
                raise nova_exception.MigrationPreCheckError(
                    reason='live migration of instances with SPDK '
                           'vhost-user volumes is not supported; stop the '
                           'instance and cold migrate it instead')
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data, block_device_info)

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
