"""``tempest run`` with the plugin's tests against the all-in-one cloud.

The configuration is what the devstack plugin's test-config phase writes,
for this cloud: no SSH validation (the guests have no network), so the
scenario tests check the disks through the console log; and the
``spdk-vhost`` type as the thin type too, because this host's kernel has
no NVMe/TCP initiator for a kernel attach.
"""

import os
import subprocess

import tempest

from tools.aio_cloud import capacity
from tools.aio_cloud import cloud
from tools.aio_cloud import configs
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import resources

TIMEOUT = 300


def tempest_conf(layout, secret, image_id, flavor_id):
    computes, _storage = layout_mod.node_counts(layout)
    conf = {
        'DEFAULT': {'log_file': layout.log('tempest')},
        'auth': {'admin_username': 'admin',
                 'admin_password': secret['admin'],
                 'admin_project_name': 'admin',
                 'admin_domain_name': 'Default',
                 'use_dynamic_credentials': True,
                 'create_isolated_networks': False},
        'identity': {'uri_v3': layout.keystone_url, 'auth_version': 'v3',
                     'region': layout_mod.REGION},
        'identity-feature-enabled': {'api_v2': False},
        'service_available': {'cinder': True, 'nova': True, 'glance': True,
                              'neutron': True, 'swift': False,
                              'spdk_openstack': True},
        'compute': {'image_ref': image_id, 'image_ref_alt': image_id,
                    'flavor_ref': flavor_id, 'flavor_ref_alt': flavor_id,
                    'build_timeout': TIMEOUT},
        'compute-feature-enabled': {'console_output': True},
        'validation': {'run_validation': False},
        'volume': {'build_timeout': TIMEOUT, 'volume_size': 1},
        'volume-feature-enabled': {'backup': False},
        'spdk_openstack': {
            'backend_name': configs.SPDK_BACKEND,
            'volume_type': 'spdk-vhost',
            'vhost_volume_type': 'spdk-vhost',
            'vhost_enabled': True,
            'hugepage_flavor_ref': flavor_id,
            # One guest CPU on two host CPUs: no cpu_dedicated_set here.
            'pinned_flavor_ref': '',
            'build_timeout': TIMEOUT,
        },
    }
    if computes > 1:
        # Live migration and evacuation of servers booted from volumes (the
        # nodes share one instances directory, on which libvirt refuses to
        # migrate an image-backed disk as unsafe).
        conf['compute']['min_compute_nodes'] = computes
        conf['compute-feature-enabled'].update(
            live_migration=True, volume_backed_live_migration=True,
            block_migration_for_live_migration=False)
    return conf


def write_workspace(layout, secret, evacuate=False):
    conn = resources.connect(layout, secret)
    image_id = conn.image.find_image(resources.GUEST_IMAGE).id
    flavor = conn.compute.find_flavor(resources.FLAVOR)
    flavor_id = flavor.id
    conn.close()
    # The plugin's scenario tests run up to two servers at once, one test
    # at a time, on this host: refuse before any is booted into ERROR.
    capacity.check_guests(layout_mod.MAX_GUESTS, flavor.ram,
                          'tempest (%d servers of flavor %s)'
                          % (layout_mod.MAX_GUESTS, resources.FLAVOR),
                          image_copy=True)
    workspace = layout.path('tempest')
    os.makedirs(os.path.join(workspace, 'etc'), exist_ok=True)
    conf = tempest_conf(layout, secret, image_id, flavor_id)
    conf['spdk_openstack']['evacuate_enabled'] = evacuate
    configs.write_ini(os.path.join(workspace, 'etc', 'tempest.conf'), conf)
    package = os.path.dirname(tempest.__file__)
    # What "tempest init" writes, without registering a workspace in ~.
    with open(os.path.join(workspace, '.stestr.conf'), 'w') as f:
        f.write('[DEFAULT]\ntest_path=%s\ntop_dir=%s\n'
                'group_regex=([^\\.]*\\.)*\n'
                % (os.path.join(package, 'test_discover'),
                   os.path.dirname(package)))
    return workspace


# Run after the others, alone, on a multi-node cloud: it leaves its source
# host forced down until that host's nova-compute restarts (Nova's own
# evacuation job runs it the same way).
EVACUATION_TEST = ('tempest_tests.tests.scenario.test_migration.'
                   'SPDKMigrationTest.'
                   'test_evacuation_rebuilds_on_the_same_data')


def _tempest(layout, venv, secret, args, evacuate=False, capture=False):
    workspace = write_workspace(layout, secret, evacuate=evacuate)
    env = dict(os.environ,
               TEMPEST_CONFIG_DIR=os.path.join(workspace, 'etc'),
               TEMPEST_CONFIG='tempest.conf')
    # Two cores: one test at a time.
    argv = [os.path.join(venv, 'bin', 'tempest'), 'run',
            '--concurrency', '1'] + list(args)
    return subprocess.run(argv, cwd=workspace, env=env, text=True,
                          capture_output=capture)


def run(layout, venv, extra_args):
    secret = layout_mod.load_or_create_secrets(layout)
    args = ['--regex', 'tempest_tests'] + list(extra_args)
    nodes = layout_mod.compute_nodes(layout)
    status = _tempest(layout, venv, secret, args).returncode
    # Listed after that run, which made the stestr repository listing
    # needs.
    evacuate = len(nodes) > 1 and EVACUATION_TEST in _tempest(
        layout, venv, secret, args + ['--list-tests'],
        capture=True).stdout
    if evacuate:
        print('the evacuation test, alone (it leaves its host forced down '
              'until that host\'s nova-compute restarts)', flush=True)
        status = _tempest(layout, venv, secret,
                          ['--regex', EVACUATION_TEST],
                          evacuate=True).returncode or status
    if len(nodes) > 1:
        # The evacuated guest is still running, fenced, on the host the
        # test forced down: nova-compute removes it when it starts, as on
        # a host that comes back; then the host may be forced up.
        for node in nodes:
            cloud.restart(layout, venv, 'nova-compute@%s' % node.name)
        conn = resources.connect(layout, secret)
        try:
            for service in conn.compute.services(binary='nova-compute'):
                if service.is_forced_down:
                    conn.compute.update_service_forced_down(
                        service, forced=False)
        finally:
            conn.close()
    return status
