"""Options of the spdk-openstack tempest plugin.

The devstack plugin sets them in its test-config phase.
"""

from oslo_config import cfg

service_available_group = cfg.OptGroup(
    name='service_available', title='Available OpenStack Services')

service_option = cfg.BoolOpt(
    'spdk_openstack', default=False,
    help='Whether the cloud has an SPDK Cinder back end '
         '(cinder_driver.spdk.SPDKDriver).')

spdk_group = cfg.OptGroup(name='spdk_openstack',
                          title='spdk-openstack options')

SPDKOptions = [
    cfg.StrOpt('backend_name', default='spdk',
               help='volume_backend_name of the SPDK back end.'),
    cfg.StrOpt('volume_type', default='spdk',
               help='Volume type of thin SPDK volumes.'),
    cfg.StrOpt('vhost_volume_type', default='spdk-vhost',
               help="Volume type with spdk:vhost_attach='<is> True'."),
    cfg.BoolOpt('vhost_enabled', default=False,
                help='Whether compute nodes run spdk-vhost-target and the '
                     'Nova hooks (compute_driver = '
                     'spdk_libvirt.SPDKLibvirtDriver).'),
    cfg.StrOpt('hugepage_flavor_ref', default='',
               help='Flavor with hw:mem_page_size=large, which vhost-user '
                    'disks need. Empty: the scenario tests skip.'),
    cfg.StrOpt('pinned_flavor_ref', default='',
               help='hugepage_flavor_ref with hw:cpu_policy=dedicated. '
                    'Empty: the pinned tests skip.'),
    cfg.StrOpt('storage_protocol', default='NVMe-TCP',
               help='storage_protocol the back end reports.'),
    cfg.BoolOpt('evacuate_enabled', default=False,
                help='Whether the tests may force a compute service down '
                     '(os-services forced_down) and evacuate its servers. '
                     'Tempest has no flag for evacuation. The forced-down '
                     'host keeps running the evacuated guest (it is fenced '
                     'from its volumes) until its nova-compute restarts; '
                     'the tests set forced_down back.'),
    cfg.IntOpt('build_timeout', default=300,
               help='Seconds to wait for a guest to write or read a disk.'),
]


def list_opts():
    return [(spdk_group.name, SPDKOptions),
            (service_available_group.name, [service_option])]
