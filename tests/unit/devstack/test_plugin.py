"""devstack/plugin.sh phase by phase, against recording devstack stubs.

Each test runs the plugin's phases in stack.sh's order, with the few
devstack steps between them that the plugin depends on (lib/cinder's
backend loop, start_nova_compute rebuilding nova-cpu.conf from nova.conf),
then reads the ini files the phases wrote and the devstack functions they
called. The real spdk-openstack-config runs, on this host's topology.
"""

import json
import os
import stat
import subprocess
import sys

import fixtures
from oslo_config import cfg
import yaml

from spdk_deploy import nova
from tests import base
from tests.unit.vhost_target import make_conf
from vhost_target import planner
from vhost_target import topology

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

STACK = ['override-defaults', 'settings', 'stack pre-install',
         'configure_cinder', 'stack install', 'stack post-config',
         'start_nova_compute', 'stack extra', 'stack test-config']

# What devstack itself does between the plugin's phases.
DEVSTACK_STEPS = {
    'configure_cinder': '''
is_service_enabled c-vol && for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
    if type configure_cinder_backend_${be%%:*} >/dev/null 2>&1; then
        configure_cinder_backend_${be%%:*} ${be##*:}
    fi
done''',
    'start_nova_compute': '''
cp "$NOVA_CONF" "$NOVA_CPU_CONF"
iniset "$NOVA_CPU_CONF" DEFAULT transport_url rabbit://cell1''',
}

ALL_SERVICES = 'c-api,c-vol,n-api,n-cpu,tempest,spdk-nvmf,spdk-vhost'


def _executable(path, text):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, stat.S_IRWXU)


def read_ini(path):
    sections = {}
    cfg.ConfigParser(path, sections).parse()
    return sections


class PluginHarness(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.dir, 'calls.log')
        self.bin = self._dir('bin')
        self.spdk_bin = self._dir('spdk')
        self.nova_virt = self._dir('nova-virt')
        for app in ('nvmf_tgt', 'vhost'):
            _executable(os.path.join(self.spdk_bin, app), '#!/bin/sh\n')
        _executable(os.path.join(self.bin, 'spdk-openstack-config'),
                    '#!/bin/sh\nexec "$HARNESS_PYTHON" -m spdk_deploy.cmd '
                    '"$@"\n')
        # Records itself like the stubs do: it would start SPDK.
        _executable(os.path.join(self.bin, 'spdk-vhost-target'),
                    '#!/bin/bash\nIFS=$\'\\t\'\n'
                    'echo "spdk-vhost-target	$*" >> "$HARNESS_LOG"\n')
        # devstack's $PYTHON, asked only where nova.virt lives.
        _executable(os.path.join(self.bin, 'python'),
                    '#!/bin/sh\necho %s\n' % self.nova_virt)
        self.nova_conf = os.path.join(self._dir('etc/nova'), 'nova.conf')
        with open(self.nova_conf, 'w') as f:
            # What configure_nova_hypervisor left there.
            f.write('[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n')
        self.reactor = max(topology.read_topology().online)
        self.env = {
            'PATH': os.environ['PATH'],
            'PYTHONPATH': REPO,
            'HARNESS_LOG': self.log, 'HARNESS_DIR': HERE,
            'HARNESS_BIN': self.bin, 'HARNESS_PYTHON': sys.executable,
            'PYTHON': os.path.join(self.bin, 'python'),
            'DEST': self._dir('opt/stack'),
            'DATA_DIR': self._dir('opt/stack/data'),
            'HOST_IP': '192.0.2.10', 'STACK_USER': 'stack',
            'REGION_NAME': 'RegionOne', 'ENABLE_DEBUG_LOG_LEVEL': 'True',
            'NOVA_CONF_DIR': os.path.dirname(self.nova_conf),
            'NOVA_CONF': self.nova_conf,
            'NOVA_CPU_CONF': os.path.join(self.dir, 'etc/nova/nova-cpu.conf'),
            'CINDER_CONF': os.path.join(self.dir, 'etc/cinder/cinder.conf'),
            'TEMPEST_CONFIG': os.path.join(self.dir, 'tempest/tempest.conf'),
            'ENABLED_SERVICES': ALL_SERVICES,
            'SPDK_OPENSTACK_DIR': REPO,
            'SPDK_BIN_DIR': self.spdk_bin,
            'SPDK_CONF_DIR': os.path.join(self.dir, 'etc/spdk-openstack'),
            'SPDK_VHOST_CONF_DIR': os.path.join(self.dir,
                                                'etc/spdk-vhost-target'),
            'SPDK_AIO_FILE_SIZE': '16M',
            'SPDK_VHOST_REACTOR_CPUS': str(self.reactor),
        }

    def _dir(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def run_steps(self, steps, **env):
        script = ['set -o errexit -o pipefail',
                  'source %s/stubs.sh' % HERE]
        for step in steps:
            if step in DEVSTACK_STEPS:
                script.append(DEVSTACK_STEPS[step])
            elif step.startswith(('stack', 'unstack', 'clean')):
                script.append('source devstack/plugin.sh %s' % step)
            else:
                script.append('source devstack/%s' % step)
        environment = dict(self.env, **env)
        return subprocess.run(['bash', '-c', '\n'.join(script)], cwd=REPO,
                              env=environment, capture_output=True,
                              text=True, timeout=120)

    def stack(self, **env):
        result = self.run_steps(STACK, **env)
        self.assertEqual(0, result.returncode, result.stderr)
        return result

    def calls(self, name=None):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            calls = [line.rstrip('\n').split('\t') for line in f]
        return [c for c in calls if name is None or c[0] == name]

    def path(self, name):
        return self.env[name]


class TestStack(PluginHarness):
    def test_cinder_backend_from_devstacks_loop(self):
        self.stack()
        spdk = read_ini(self.path('CINDER_CONF'))['spdk']
        self.assertEqual(['cinder_driver.spdk.SPDKDriver'],
                         spdk['volume_driver'])
        self.assertEqual(['spdk'], spdk['volume_backend_name'])
        self.assertEqual(['192.0.2.10'], spdk['spdk_target_addresses'])
        socket = os.path.join(self.path('DATA_DIR'), 'spdk', 'nvmf.sock')
        self.assertEqual([socket], spdk['spdk_rpc_socket'])

    def test_other_backends_keep_theirs(self):
        self.stack(CINDER_ENABLED_BACKENDS='lvm:lvmdriver-1,spdk:fast')
        sections = read_ini(self.path('CINDER_CONF'))
        self.assertNotIn('lvmdriver-1', sections)
        self.assertIn('fast', sections)
        tempest = read_ini(self.path('TEMPEST_CONFIG'))['spdk_openstack']
        self.assertEqual(['fast'], tempest['backend_name'])

    def test_storage_target_on_an_aio_file(self):
        self.stack()
        run = [c for c in self.calls('run_process') if c[1] == 'spdk-nvmf']
        self.assertEqual(1, len(run))
        _, _, command, _group, user = run[0]
        config = os.path.join(self.path('SPDK_CONF_DIR'), 'nvmf_tgt.json')
        self.assertEqual('root', user)
        self.assertTrue(command.startswith(
            os.path.join(self.spdk_bin, 'nvmf_tgt') + ' -m [0] -s 512 '))
        self.assertIn('--json %s --interrupt-mode --no-pci' % config,
                      command)
        with open(config) as f:
            subsystems = json.load(f)['subsystems']
        bdevs = subsystems[0]['config']
        aio_file = os.path.join(self.path('DATA_DIR'), 'spdk', 'lvstore.img')
        self.assertEqual(aio_file, bdevs[0]['params']['filename'])
        # Room for thousands of exports, one subsystem each.
        self.assertEqual([{'subsystem': 'nvmf', 'config': [{
            'method': 'nvmf_set_max_subsystems',
            'params': {'max_subsystems': 8192}}]}], subsystems[1:])
        self.assertEqual(16 << 20, os.path.getsize(aio_file))
        ready = [c for c in self.calls('sudo') if 'storage-target-ready' in c]
        self.assertEqual(1, len(ready))
        self.assertIn('--socket-mode', ready[0])

    def test_storage_target_max_subsystems(self):
        self.stack(SPDK_NVMF_MAX_SUBSYSTEMS='16384')
        config = os.path.join(self.path('SPDK_CONF_DIR'), 'nvmf_tgt.json')
        with open(config) as f:
            nvmf = json.load(f)['subsystems'][1]
        self.assertEqual({'max_subsystems': 16384},
                         nvmf['config'][0]['params'])

    def test_hugepages_on_every_node(self):
        self.stack(SPDK_HUGEPAGES_PER_NODE='300')
        tees = [c for c in self.calls('sudo') if c[1] == 'tee']
        nodes = [n for n in os.listdir('/sys/devices/system/node')
                 if n.startswith('node') and n[4:].isdigit()]
        self.assertEqual(len(nodes), len(tees))
        self.assertTrue(all(c[2].endswith('hugepages-2048kB/nr_hugepages')
                            for c in tees))
        self.assertEqual({'300'}, {c[3] for c in tees})

    def test_nova_settings_survive_the_nova_cpu_conf_rebuild(self):
        self.stack()
        conf = read_ini(self.path('NOVA_CPU_CONF'))
        host = topology.read_topology()
        group = make_conf(self, reactor_cpus=str(self.reactor),
                          hugepage_mib_per_node=512)
        expected = nova.settings(planner.plan(group, host), host,
                                 storage_target_cpus={0},
                                 storage_target_mib=512)
        self.assertEqual([nova.COMPUTE_DRIVER],
                         conf['DEFAULT']['compute_driver'])
        shared = topology.parse_cpulist(conf['compute']['cpu_shared_set'][0])
        self.assertNotIn(self.reactor, shared)
        self.assertEqual(expected.cpu_shared_set, shared)
        self.assertEqual(sorted(expected.options()[-1][2]),
                         sorted(conf['DEFAULT']['reserved_huge_pages']))
        self.assertEqual(['rabbit://cell1'], conf['DEFAULT']['transport_url'])

    def test_provider_config_is_valid_for_nova(self):
        self.stack()
        location = read_ini(self.path('NOVA_CPU_CONF'))['compute'][
            'provider_config_location'][0]
        path = os.path.join(location, 'spdk-openstack.yaml')
        with open(path) as f:
            self.assertEqual(nova.provider_config(), yaml.safe_load(f))
        # Nova's own parser, in a process of its own: Nova's options clash
        # with Cinder's in this one.
        subprocess.run(
            [sys.executable, '-c', 'import sys; from nova.compute import '
             'provider_config as p; p._parse_provider_yaml(sys.argv[1])',
             path], check=True, capture_output=True, timeout=120)

    def test_agent_config_and_process(self):
        self.stack()
        agent = read_ini(os.path.join(self.path('SPDK_VHOST_CONF_DIR'),
                                      'agent.conf'))
        group = agent['spdk_vhost_target']
        self.assertEqual([os.path.join(self.spdk_bin, 'vhost')],
                         group['spdk_vhost_binary'])
        self.assertEqual([str(self.reactor)], group['reactor_cpus'])
        self.assertEqual([self.path('NOVA_CPU_CONF')], group['nova_conf'])
        self.assertEqual(['rabbit://cell1'], agent['DEFAULT']['transport_url'])
        run = [c for c in self.calls('run_process') if c[1] == 'spdk-vhost']
        self.assertEqual(1, len(run))
        self.assertTrue(run[0][2].endswith('agent.conf run'))
        self.assertEqual('root', run[0][4])
        check = self.calls('spdk-vhost-target')
        self.assertEqual([['spdk-vhost-target', '--config-file',
                           os.path.join(self.path('SPDK_VHOST_CONF_DIR'),
                                        'agent.conf'), 'check']], check)
        self.assertEqual(['spdk_libvirt.py'], os.listdir(self.nova_virt))

    def test_volume_types_and_flavors(self):
        self.stack()
        commands = [' '.join(c[1:]) for c in self.calls('openstack')]
        self.assertIn('--os-region-name=RegionOne volume type set '
                      '--property volume_backend_name=spdk --property '
                      'provisioning:type=thin --property '
                      'spdk:vhost_attach=<is> True spdk-vhost', commands)
        self.assertIn('--os-region-name=RegionOne flavor create --ram 256 '
                      '--disk 1 --vcpus 1 --property hw:mem_page_size=large '
                      '--property hw:cpu_policy=dedicated --property '
                      'trait:CUSTOM_SPDK_VHOST=required m1.spdk.pinned',
                      commands)

    def test_tempest_options(self):
        self.stack()
        conf = read_ini(self.path('TEMPEST_CONFIG'))
        self.assertEqual(['True'],
                         conf['service_available']['spdk_openstack'])
        group = conf['spdk_openstack']
        self.assertEqual(['spdk'], group['volume_type'])
        self.assertEqual(['spdk-vhost'], group['vhost_volume_type'])
        self.assertEqual(['True'], group['vhost_enabled'])
        self.assertEqual(['id-m1.spdk'], group['hugepage_flavor_ref'])
        dedicated = read_ini(self.path('NOVA_CONF'))['compute'].get(
            'cpu_dedicated_set')
        self.assertEqual(['id-m1.spdk.pinned'] if dedicated else [''],
                         group['pinned_flavor_ref'])

    def test_compute_only_node(self):
        self.stack(ENABLED_SERVICES='n-cpu,spdk-vhost')
        self.assertEqual(['spdk-vhost'],
                         [c[1] for c in self.calls('run_process')])
        self.assertFalse(os.path.exists(self.path('CINDER_CONF')))
        self.assertEqual([], self.calls('openstack'))


class TestWithoutSPDK(PluginHarness):
    def test_stops_before_installing_anything(self):
        result = self.run_steps(STACK, SPDK_BIN_DIR=self.dir,
                                SPDK_BIN_SEARCH_PATH=self.dir,
                                PATH='/usr/bin:/bin')
        self.assertNotEqual(0, result.returncode)
        self.assertIn("SPDK's nvmf_tgt was not found", result.stderr)
        self.assertIn('SPDK_BIN_DIR', result.stderr)
        self.assertEqual([], self.calls('pip_install'))


class TestUnstackAndClean(PluginHarness):
    def test_unstack_stops_the_agent_first(self):
        result = self.run_steps(['settings', 'unstack'])
        self.assertEqual(0, result.returncode, result.stderr)
        # The agent leaves SPDK running when it stops; unstack takes both.
        stops = [c for c in self.calls() if c[0] == 'stop_process'
                 or c[:2] == ['sudo', os.path.join(self.bin,
                                                   'spdk-vhost-target')]]
        self.assertEqual(['stop', '--with-spdk'], stops[0][-2:])
        self.assertEqual([['stop_process', 'spdk-vhost'],
                          ['stop_process', 'spdk-nvmf']], stops[1:])

    def test_clean_removes_data_and_config(self):
        result = self.run_steps(['settings', 'clean'])
        self.assertEqual(0, result.returncode, result.stderr)
        removed = self.calls('sudo')[0]
        self.assertEqual(['sudo', 'rm', '-rf'], removed[:3])
        self.assertIn(os.path.join(self.path('DATA_DIR'), 'spdk'), removed)
        self.assertIn(self.path('SPDK_VHOST_CONF_DIR'), removed)
