"""What the cloud holds once its services run: identity objects, the
guest image, the hugepage flavor and the SPDK volume types.

Done through openstacksdk in this one process (the ``openstack`` CLI takes
close to two seconds per call to start); the demo then uses the CLI as a
user would.
"""

import os

import openstack

from tools.aio_cloud import configs
from tools.aio_cloud import guest_image
from tools.aio_cloud import layout as layout_mod

# Endpoints: (service name, type, port name, path).
ENDPOINTS = (
    ('placement', 'placement', 'placement', ''),
    ('nova', 'compute', 'nova-api', '/v2.1'),
    ('neutron', 'network', 'neutron-api', ''),
    ('glance', 'image', 'glance-api', ''),
    # Nova and tempest look for either type, depending on their version.
    ('cinder', 'block-storage', 'cinder-api', '/v3/%(project_id)s'),
    ('cinderv3', 'volumev3', 'cinder-api', '/v3/%(project_id)s'),
)
# Nova and cinder send service tokens, which need the service role.
SERVICE_ROLE_USERS = ('nova', 'cinder')

GUEST_IMAGE = 'spdk-aio-guest'
FLAVOR = 'm1.spdk'
FLAVOR_RAM_MB = layout_mod.FLAVOR_RAM_MB
VOLUME_TYPES = {
    'spdk': {'volume_backend_name': configs.SPDK_BACKEND,
             'provisioning:type': 'thin'},
    # This host's kernel has no NVMe/TCP initiator: its guests reach SPDK
    # volumes through vhost-user only.
    'spdk-vhost': {'volume_backend_name': configs.SPDK_BACKEND,
                   'provisioning:type': 'thin',
                   'spdk:vhost_attach': '<is> True'},
}
# A cloud of two storage nodes or more: two copies, one per node.
REPLICATED_TYPE = 'spdk-replicated'
REPLICATED_SPECS = {'volume_backend_name': configs.REPLICATED_BACKEND,
                    'provisioning:type': 'thin',
                    'spdk:vhost_attach': '<is> True',
                    'spdk:replicas': '2'}

# The guest's /init: udev-like disk links by serial (kept current for
# hot-plugged disks), then the server's user data from its config drive,
# as cloud-init would run it.
GUEST_INIT = guest_image.INIT_PREAMBLE + r'''mkdir -p /dev/disk/by-id
link_disks() {
    for s in /sys/block/vd*/serial; do
        [ -e "$s" ] || continue
        serial=$(cat "$s"); d=${s%/serial}
        [ -n "$serial" ] || continue
        ln -sfn "/dev/${d##*/}" "/dev/disk/by-id/virtio-$serial"
    done
    for l in /dev/disk/by-id/virtio-*; do
        d=$(readlink "$l")
        [ "$(cat "/sys/block/${d##*/}/serial" 2>/dev/null)" = \
            "${l##*/virtio-}" ] || rm -f "$l"
    done
}
link_disks
(while true; do sleep 1; link_disks; done) &
for dev in /dev/sr0 /dev/sr1; do
    mount -t iso9660 -o ro "$dev" /mnt 2>/dev/null && break
done
if [ -f /mnt/openstack/latest/user_data ]; then
    cp /mnt/openstack/latest/user_data /tmp/user_data
    chmod +x /tmp/user_data
    echo "spdk-aio-guest: running user data"
    /tmp/user_data > /dev/console 2>&1 &
fi
echo "spdk-aio-guest: ready"
while true; do sleep 3600; done
'''


def connect(layout, secret, project='admin', user='admin', password=None):
    return openstack.connect(
        auth_url=layout.keystone_url, username=user,
        password=password or secret['admin'], project_name=project,
        user_domain_name='Default', project_domain_name='Default',
        region_name=layout_mod.REGION, identity_api_version='3')


def create_identity(layout, secret):
    conn = connect(layout, secret)
    identity = conn.identity
    project = identity.find_project('service') or identity.create_project(
        name='service', domain_id='default')
    roles = {}
    for name in ('admin', 'service'):
        roles[name] = identity.find_role(name) or identity.create_role(
            name=name)
    for user in layout_mod.SERVICE_USERS:
        account = identity.find_user(user) or identity.create_user(
            name=user, password=secret[user], domain_id='default')
        wanted = ['admin'] + (['service'] if user in SERVICE_ROLE_USERS
                              else [])
        for role in wanted:
            identity.assign_project_role_to_user(project, account,
                                                 roles[role])
    for name, kind, port_name, path in ENDPOINTS:
        if identity.find_service(name):
            continue
        service = identity.create_service(name=name, type=kind)
        identity.create_endpoint(service_id=service.id, interface='public',
                                 url=layout.url(port_name, path),
                                 region_id=layout_mod.REGION)
    conn.close()


def write_adminrc(layout, secret):
    values = {'OS_AUTH_URL': layout.keystone_url, 'OS_USERNAME': 'admin',
              'OS_PASSWORD': secret['admin'], 'OS_PROJECT_NAME': 'admin',
              'OS_USER_DOMAIN_NAME': 'Default',
              'OS_PROJECT_DOMAIN_NAME': 'Default',
              'OS_IDENTITY_API_VERSION': '3',
              'OS_REGION_NAME': layout_mod.REGION}
    fd = os.open(layout.adminrc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                 0o600)
    with os.fdopen(fd, 'w') as f:
        f.writelines('export %s=%s\n' % item for item in values.items())


def build_guest(layout):
    """Kernel, initramfs and a 1 MiB raw root disk, built once."""
    cache = layout.path('cache', 'guest')
    os.makedirs(cache, exist_ok=True)
    kernel, initrd = guest_image.build(
        cache, GUEST_INIT,
        guest_image.VIRTIO_BLK_MODULES + guest_image.CONFIG_DRIVE_MODULES)
    disk = os.path.join(cache, 'disk.img')
    with open(disk, 'wb') as f:
        f.truncate(1 << 20)
    return kernel, initrd, disk


def create_guest_image(layout, secret):
    """The guest in glance: nova's libvirt driver boots kernel_id and
    ramdisk_id directly, with the root disk as vda.
    """
    kernel, initrd, disk = build_guest(layout)
    conn = connect(layout, secret)
    image = conn.image
    existing = image.find_image(GUEST_IMAGE)
    if existing:
        conn.close()
        return existing.id

    def upload(name, path, disk_format, container_format, **properties):
        return conn.create_image(
            name, filename=path, disk_format=disk_format,
            container_format=container_format, visibility='public',
            wait=True, **properties).id

    kernel_id = upload(GUEST_IMAGE + '-kernel', kernel, 'aki', 'aki')
    ramdisk_id = upload(GUEST_IMAGE + '-ramdisk', initrd, 'ari', 'ari')
    image_id = upload(GUEST_IMAGE, disk, 'raw', 'bare', kernel_id=kernel_id,
                      ramdisk_id=ramdisk_id,
                      os_command_line='console=ttyS0')
    conn.close()
    return image_id


def create_flavor_and_types(layout, secret):
    conn = connect(layout, secret)
    flavor = conn.compute.find_flavor(FLAVOR)
    if flavor is None:
        flavor = conn.compute.create_flavor(name=FLAVOR, ram=FLAVOR_RAM_MB,
                                            vcpus=1, disk=1)
        conn.compute.create_flavor_extra_specs(flavor, {
            'hw:mem_page_size': 'large',
            'trait:CUSTOM_SPDK_VHOST': 'required'})
    types = dict(VOLUME_TYPES)
    if len(layout_mod.storage_nodes(layout)) > 1:
        types[REPLICATED_TYPE] = REPLICATED_SPECS
    for name, specs in types.items():
        if conn.block_storage.find_type(name) is None:
            conn.block_storage.create_type(name=name, extra_specs=specs)
    conn.close()
    return flavor.id
