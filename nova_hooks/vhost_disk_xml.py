"""libvirt config of a vhost-user-blk disk, in Nova's config classes.

Nova's LibvirtConfigGuestDisk renders file, block, network and mount
sources only. libvirt refuses, for vhost-user disks, every attribute Nova
otherwise sets (cache, serial, io, discard, readonly, shareable, iotune,
blockio, encryption), so this class writes just what libvirt accepts.
"""

from lxml import etree

from nova.virt.libvirt import config as libvirt_config

# Reconnect seconds after the agent's SPDK went away (crash or restart).
RECONNECT_TIMEOUT = 1


class LibvirtConfigGuestVhostUserDisk(libvirt_config.LibvirtConfigGuestDisk):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.source_type = 'vhostuser'
        self.driver_name = 'qemu'
        self.driver_format = 'raw'
        self.queues = None
        self.reconnect_timeout = RECONNECT_TIMEOUT
        self.target_bus = 'virtio'

    def format_dom(self):
        dev = etree.Element('disk', type='vhostuser', device='disk')
        driver = etree.SubElement(dev, 'driver', name=self.driver_name,
                                  type=self.driver_format)
        if self.queues:
            driver.set('queues', str(self.queues))
        if self.alias:
            etree.SubElement(dev, 'alias', name=self.alias)
        source = etree.SubElement(dev, 'source', type='unix',
                                  path=self.source_path)
        etree.SubElement(source, 'reconnect', enabled='yes',
                         timeout=str(self.reconnect_timeout))
        etree.SubElement(dev, 'target', dev=self.target_dev,
                         bus=self.target_bus)
        if self.device_addr:
            dev.append(self.device_addr.format_dom())
        return dev

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        for child in xmldoc:
            if child.tag == 'driver' and child.get('queues'):
                self.queues = int(child.get('queues'))
            elif child.tag == 'source':
                self.source_path = child.get('path')
                for sub in child:
                    if sub.tag == 'reconnect' and sub.get('timeout'):
                        self.reconnect_timeout = int(sub.get('timeout'))


# What Nova puts before a volume id to make the disk's alias.
_ALIAS_PREFIX = libvirt_config.make_libvirt_device_alias('')


def vhost_user_disks(domain_xml):
    """{volume id: socket path} of a domain's vhost-user volume disks,
    found by the alias Nova gives volume disks (they carry no serial).
    """
    disks = {}
    for disk in etree.fromstring(domain_xml).iterfind(
            './devices/disk[@type="vhostuser"]'):
        alias = disk.find('alias')
        source = disk.find('source')
        name = alias.get('name', '') if alias is not None else ''
        if name.startswith(_ALIAS_PREFIX) and source is not None:
            disks[name[len(_ALIAS_PREFIX):]] = source.get('path')
    return disks
