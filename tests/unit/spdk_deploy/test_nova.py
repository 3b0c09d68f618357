import subprocess
import sys

import fixtures
import yaml

from spdk_deploy import nova
from tests import base
from tests.unit.vhost_target import make_conf
from tests.unit.vhost_target import read_fixture_topology
from vhost_target import planner


class TestSettings(base.TestCase):
    def setUp(self):
        super().setUp()
        # Node 0: CPUs 0-7,16-23, node 1: 8-15,24-31; 2-3,10-11 isolated;
        # 1024 x 2 MiB pages on each node.
        self.host = read_fixture_topology('two_nodes')

    def settings(self, conf=None, **kwargs):
        conf = conf or make_conf(self)
        return nova.settings(planner.plan(conf, self.host), self.host,
                             **kwargs)

    def test_guests_get_every_cpu_but_the_reactors(self):
        values = self.settings()
        self.assertEqual(set(), values.cpu_shared_set &
                         values.cpu_dedicated_set)
        self.assertEqual(self.host.online - {3, 11},
                         values.cpu_shared_set | values.cpu_dedicated_set)

    def test_half_of_each_node_is_dedicated_from_the_top(self):
        values = self.settings()
        node0 = values.cpu_dedicated_set & self.host.nodes[0].cpus
        node1 = values.cpu_dedicated_set & self.host.nodes[1].cpus
        self.assertEqual(({17, 18, 19, 20, 21, 22, 23},
                          {25, 26, 27, 28, 29, 30, 31}), (node0, node1))
        self.assertIn(0, values.cpu_shared_set)

    def test_dedicated_count_and_one_shared_cpu_left(self):
        values = self.settings(dedicated_per_node=100)
        self.assertEqual({0, 8}, values.cpu_shared_set)
        values = self.settings(dedicated_per_node=0)
        self.assertEqual(frozenset(), values.cpu_dedicated_set)
        self.assertNotIn(('compute', 'cpu_dedicated_set'),
                         [o[:2] for o in values.options()])

    def test_reserved_pages_cover_vhost_and_storage_target(self):
        values = self.settings(storage_target_cpus={9},
                               storage_target_mib=1024)
        self.assertEqual({0: {2048: 512}, 1: {2048: 512 + 512}},
                         values.reserved_huge_pages)

    def test_a_small_storage_target_is_reserved_what_it_maps(self):
        # -s 256 maps SPDK's default pools, 366 MiB (183 pages).
        values = self.settings(storage_target_cpus={9},
                               storage_target_mib=256)
        self.assertEqual({0: {2048: 512}, 1: {2048: 512 + 183}},
                         values.reserved_huge_pages)

    def test_a_polling_storage_target_keeps_its_cpus(self):
        values = self.settings(storage_target_cpus={0, 1},
                               storage_target_polls=True)
        self.assertEqual(set(), {0, 1} & (values.cpu_shared_set |
                                          values.cpu_dedicated_set))
        idle = self.settings(storage_target_cpus={0, 1})
        self.assertIn(0, idle.cpu_shared_set)

    def test_no_cpu_left_for_guests(self):
        conf = make_conf(self, reactor_cpus='0-31')
        error = self.assertRaises(ValueError, self.settings, conf)
        self.assertIn('No CPU left for guests', str(error))

    def test_options(self):
        values = nova.NovaSettings(
            cpu_shared_set=frozenset({0, 1}),
            cpu_dedicated_set=frozenset({4, 5, 6}),
            reserved_huge_pages={1: {2048: 3}, 0: {2048: 2, 1048576: 1}})
        self.assertEqual(
            [('DEFAULT', 'compute_driver', [nova.COMPUTE_DRIVER]),
             ('compute', 'cpu_shared_set', ['0-1']),
             ('compute', 'cpu_dedicated_set', ['4-6']),
             ('DEFAULT', 'reserved_huge_pages',
              ['node:0,size:2048,count:2', 'node:0,size:1048576,count:1',
               'node:1,size:2048,count:3']),
             ('compute', 'provider_config_location', ['/etc/nova/pc'])],
            values.options('/etc/nova/pc'))


class TestProviderConfig(base.TestCase):
    def test_nova_accepts_it(self):
        path = self.useFixture(fixtures.TempDir()).join('spdk.yaml')
        with open(path, 'w') as f:
            yaml.safe_dump(nova.provider_config(), f)
        # Nova's parser in its own process: Nova's options clash with
        # Cinder's in this one.
        out = subprocess.run(
            [sys.executable, '-c', 'import sys; from nova.compute import '
             'provider_config as p; print(p._parse_provider_yaml(sys.argv[1])'
             '["providers"][0]["traits"])', path],
            check=True, capture_output=True, text=True, timeout=120).stdout
        self.assertIn(nova.VHOST_TRAIT, out)
