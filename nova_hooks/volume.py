"""Nova's libvirt volume driver for the spdk_vhost volume type.

The compute node's spdk-vhost-target agent connects the volume over
NVMe/TCP and serves it as a vhost-user-blk socket; this driver asks the
agent for that socket and hands QEMU a ``<disk type='vhostuser'>``.
"""

import time

from oslo_config import cfg
from oslo_log import log as logging

from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt.volume import volume as libvirt_volume

from nova_hooks import agent_client
from nova_hooks import conf as hooks_conf
from nova_hooks import vhost_disk_xml
from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import qos as spdk_qos

# Nova calls disconnect_volume once the disk is detached from the guest;
# QEMU's vhost-user connection may close a moment after that. A volume
# still busy after this long fails the detach (the agent's VolumeBusy) and
# Nova rolls the volume back to in-use, so that the detach can be retried.
BUSY_WAIT = 5.0
BUSY_POLL = 0.25

LOG = logging.getLogger(__name__)
CONF = hooks_conf.register(cfg.CONF)


def volume_id(connection_info):
    return (connection_info.get('serial')
            or connection_info['data'].get('vol_uuid'))


def detach(volume, instance):
    """Detach ``volume`` from this host's agent, waiting out a guest that
    still holds it (SPDK refuses while QEMU is connected) for
    :data:`BUSY_WAIT` seconds.
    """
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            agent_client.get().detach_volume(volume)
            return
        except spdk_exc.VolumeBusy as exc:
            if time.monotonic() >= deadline:
                LOG.error('%s', exc, instance=instance)
                raise
            time.sleep(BUSY_POLL)


def host_numa_nodes(instance):
    """Host NUMA nodes the instance's memory lives on here (empty: none).

    A live migration's destination connects volumes before Nova applies
    the migration context: the instance's cells are still the source's,
    and the ones it gets here are the context's new topology.
    """
    topology = instance.numa_topology
    if _arriving(instance):
        topology = instance.migration_context.new_numa_topology or topology
    return sorted({cell.id for cell in topology.cells}) if topology else []


def _arriving(instance):
    return (instance.obj_attr_is_set('host') and instance.host is not None
            and instance.host != CONF.host
            and instance.migration_context is not None)


def front_end_qos(data):
    """SPDK limits from the qos_specs Cinder passes for front-end QoS."""
    specs = data.get('qos_specs') or {}
    return spdk_qos.limits_from_specs(specs) if specs else None


class LibvirtSPDKVhostVolumeDriver(libvirt_volume.LibvirtBaseVolumeDriver):
    def __init__(self, host):
        super().__init__(host, is_block_dev=False)

    def connect_volume(self, connection_info, instance):
        data = connection_info['data']
        data[connection.VHOST_SOCKET] = agent_client.get().attach_volume(
            volume_id(connection_info), connection_info,
            numa_nodes=host_numa_nodes(instance),
            qos=front_end_qos(data))
        # get_config() does not see the instance: keep what it needs here.
        data[connection.VHOST_QUEUES] = min(instance.flavor.vcpus,
                                            CONF.spdk_vhost.max_queues)
        LOG.info('Volume %(id)s served at %(path)s',
                 {'id': volume_id(connection_info),
                  'path': data[connection.VHOST_SOCKET]}, instance=instance)

    def disconnect_volume(self, connection_info, instance, force=False):
        detach(volume_id(connection_info), instance)

    def extend_volume(self, connection_info, instance, requested_size):
        size = agent_client.get().extend_volume(volume_id(connection_info))
        if size < requested_size:
            LOG.warning('Volume %(id)s is %(size)d bytes on this host, not '
                        'yet %(requested)d', {'id': volume_id(connection_info),
                                              'size': size,
                                              'requested': requested_size},
                        instance=instance)
        return size

    def get_config(self, connection_info, disk_info):
        # Not the base class': it sets cache, serial, iotune and more, all
        # of which libvirt refuses on vhost-user disks.
        disk = vhost_disk_xml.LibvirtConfigGuestVhostUserDisk()
        data = connection_info['data']
        disk.source_path = data[connection.VHOST_SOCKET]
        disk.queues = data.get(connection.VHOST_QUEUES)
        disk.target_dev = disk_info['dev']
        # Nova finds volume disks by this alias to detach them.
        disk.alias = libvirt_config.make_libvirt_device_alias(
            volume_id(connection_info))
        return disk
