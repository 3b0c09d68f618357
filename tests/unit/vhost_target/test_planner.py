import fixtures

from spdk_common import memory
from tests import base
from tests.unit.vhost_target import make_conf
from tests.unit.vhost_target import read_fixture_topology
from tests.unit.vhost_target import write_tree
from vhost_target import planner
from vhost_target import topology

ONE_GIB_KIB = 1048576


class TestAutomaticPlan(base.TestCase):
    def test_one_node(self):
        plan = planner.plan(make_conf(self),
                            read_fixture_topology('one_node'))
        self.assertEqual([3], plan.reactor_cpus)
        self.assertEqual('0x8', plan.cpumask)
        self.assertEqual({0: [3]}, plan.reactors_by_node)
        self.assertEqual({0: 1024}, plan.memory_mib_by_node)
        self.assertEqual({0: 512}, plan.pages_needed_by_node)
        self.assertEqual(2048, plan.page_size_kib)
        self.assertEqual('--socket-mem=1024 --socket-limit=1024',
                         plan.env_context)
        self.assertEqual([], plan.notes)
        self.assertFalse(plan.explicit)

    def test_two_nodes_prefers_isolated_cpus(self):
        plan = planner.plan(make_conf(self),
                            read_fixture_topology('two_nodes'))
        self.assertEqual([3, 11], plan.reactor_cpus)
        self.assertEqual('0x808', plan.cpumask)
        self.assertEqual({0: [3], 1: [11]}, plan.reactors_by_node)
        self.assertEqual('--socket-mem=1024,1024 --socket-limit=1024,1024',
                         plan.env_context)

    def test_isolated_first_then_highest(self):
        plan = planner.plan(make_conf(self, reactors_per_node=3),
                            read_fixture_topology('two_nodes'))
        self.assertEqual({0: [2, 3, 23], 1: [10, 11, 31]},
                         plan.reactors_by_node)
        plan = planner.plan(make_conf(self, reactors_per_node=4),
                            read_fixture_topology('four_nodes'))
        self.assertEqual({0: [68, 69, 70, 71], 2: [84, 85, 86, 87]},
                         plan.reactors_by_node)

    def test_node_without_hugepages_of_the_size_gets_no_reactors(self):
        plan = planner.plan(make_conf(self, hugepage_size_kib=ONE_GIB_KIB),
                            read_fixture_topology('two_nodes'))
        self.assertEqual({0: [3]}, plan.reactors_by_node)
        self.assertEqual({0: 1}, plan.pages_needed_by_node)
        self.assertEqual('--socket-mem=1024,0 --socket-limit=1024,1024',
                         plan.env_context)
        self.assertEqual(1, len(plan.notes))
        self.assertIn('NUMA node 1 has no 1048576 kB hugepages',
                      plan.notes[0])

    def test_four_nodes_env_context_has_gaps(self):
        plan = planner.plan(make_conf(self),
                            read_fixture_topology('four_nodes'))
        self.assertEqual([71, 87], plan.reactor_cpus)
        self.assertEqual(hex((1 << 71) | (1 << 87)), plan.cpumask)
        self.assertEqual('0x8000800000000000000000', plan.cpumask)
        self.assertEqual({0: 1024, 2: 1024}, plan.memory_mib_by_node)
        self.assertEqual('--socket-mem=1024,0,1024,0 '
                         '--socket-limit=1024,2,1024,2', plan.env_context)
        self.assertEqual(2, len(plan.notes))
        self.assertIn('node 1', plan.notes[0])
        self.assertIn('node 3', plan.notes[1])

    def test_four_nodes_one_gib_pages(self):
        plan = planner.plan(make_conf(self, hugepage_size_kib=ONE_GIB_KIB),
                            read_fixture_topology('four_nodes'))
        # Node 1 has no isolated CPU: its highest-numbered one.
        self.assertEqual({0: [71], 1: [79]}, plan.reactors_by_node)
        self.assertEqual('--socket-mem=1024,1024,0,0 '
                         '--socket-limit=1024,1024,1024,1024',
                         plan.env_context)

    def test_cpu_0_is_left_to_the_host(self):
        plan = planner.plan(make_conf(self, reactors_per_node=2),
                            read_fixture_topology('no_numa'))
        self.assertEqual([1], plan.reactor_cpus)
        self.assertEqual(1, len(plan.notes))
        self.assertIn('CPU 0 is left to the host', plan.notes[0])

    def test_cpu_0_when_nothing_else_exists(self):
        root = write_tree(self.useFixture(fixtures.TempDir()).path, {
            'sys/devices/system/cpu/online': '0',
            'sys/devices/system/node/node0/cpulist': '0',
            'sys/devices/system/node/node0/hugepages/hugepages-2048kB/'
            'nr_hugepages': '512',
            'sys/devices/system/node/node0/hugepages/hugepages-2048kB/'
            'free_hugepages': '512'})
        plan = planner.plan(make_conf(self),
                            topology.read_topology(root))
        self.assertEqual([0], plan.reactor_cpus)
        self.assertEqual('0x1', plan.cpumask)

    def test_offline_cpus_are_not_chosen(self):
        root = write_tree(self.useFixture(fixtures.TempDir()).path, {
            'sys/devices/system/cpu/online': '0-2',
            'sys/devices/system/node/node0/cpulist': '0-3',
            'sys/devices/system/node/node1/cpulist': '',
            'sys/devices/system/node/node0/hugepages/hugepages-2048kB/'
            'nr_hugepages': '512',
            'sys/devices/system/node/node1/hugepages/hugepages-2048kB/'
            'nr_hugepages': '512',
            'proc/cmdline': 'isolcpus=3'})
        plan = planner.plan(make_conf(self),
                            topology.read_topology(root))
        self.assertEqual([2], plan.reactor_cpus)
        # A memory-only node has pages but nothing to poll them with.
        self.assertEqual(1, len(plan.notes))
        self.assertIn('NUMA node 1 has 2048 kB hugepages but no online CPU',
                      plan.notes[0])

    def test_no_hugepages_anywhere(self):
        root = write_tree(self.useFixture(fixtures.TempDir()).path, {
            'sys/devices/system/cpu/online': '0-3',
            'sys/devices/system/node/node0/cpulist': '0-3'})
        plan = planner.plan(make_conf(self), topology.read_topology(root))
        self.assertEqual([], plan.reactor_cpus)
        self.assertEqual('0x0', plan.cpumask)
        self.assertEqual({}, plan.memory_mib_by_node)
        self.assertEqual('', plan.env_context)
        self.assertIn('No reactor CPUs', plan.notes[-1])

    def test_memory_rounded_up_to_whole_pages(self):
        plan = planner.plan(
            make_conf(self, hugepage_size_kib=ONE_GIB_KIB,
                      hugepage_mib_per_node=1500),
            read_fixture_topology('two_nodes'))
        self.assertEqual({0: 2}, plan.pages_needed_by_node)
        self.assertEqual({0: 2048}, plan.memory_mib_by_node)
        self.assertEqual('--socket-mem=2048,0 --socket-limit=2048,1024',
                         plan.env_context)
        self.assertIn('rounded up to 2048 MiB', plan.notes[-1])


class TestExplicitPlan(base.TestCase):
    def test_explicit_list_wins(self):
        plan = planner.plan(make_conf(self, reactor_cpus='2,3,8-9'),
                            read_fixture_topology('two_nodes'))
        self.assertTrue(plan.explicit)
        self.assertEqual([2, 3, 8, 9], plan.reactor_cpus)
        self.assertEqual('0x30c', plan.cpumask)
        self.assertEqual({0: [2, 3], 1: [8, 9]}, plan.reactors_by_node)
        self.assertEqual({0: 512, 1: 512}, plan.pages_needed_by_node)

    def test_explicit_cpus_that_do_not_exist(self):
        plan = planner.plan(make_conf(self, reactor_cpus='3,40'),
                            read_fixture_topology('two_nodes'))
        self.assertEqual([3, 40], plan.reactor_cpus)
        self.assertEqual({0: [3]}, plan.reactors_by_node)
        self.assertIn('Reactor CPU 40 is on no NUMA node', plan.notes[0])

    def test_explicit_on_node_without_hugepages(self):
        # The plan says what the config asks; the checks object to it.
        plan = planner.plan(make_conf(self, reactor_cpus='24'),
                            read_fixture_topology('four_nodes'))
        self.assertEqual({3: [24]}, plan.reactors_by_node)
        self.assertEqual('--socket-mem=0,0,0,1024 --socket-limit=2,2,2,1024',
                         plan.env_context)

    def test_garbage(self):
        e = self.assertRaises(
            ValueError, planner.plan, make_conf(self, reactor_cpus='2,x'),
            read_fixture_topology('two_nodes'))
        self.assertIn('reactor_cpus', str(e))
        self.assertIn("'x'", str(e))

    def test_blank_means_automatic(self):
        plan = planner.plan(make_conf(self, reactor_cpus=' '),
                            read_fixture_topology('one_node'))
        self.assertFalse(plan.explicit)
        self.assertEqual([3], plan.reactor_cpus)


class TestCpumask(base.TestCase):
    def test_mask(self):
        self.assertEqual('0x30c', planner.cpumask({2, 3, 8, 9}))
        self.assertEqual('0x1', planner.cpumask([0]))
        self.assertEqual('0x0', planner.cpumask([]))


class TestLeastLoadedCore(base.TestCase):
    def setUp(self):
        super().setUp()
        self.plan = planner.plan(make_conf(self, reactors_per_node=2),
                                 read_fixture_topology('two_nodes'))
        self.assertEqual({0: [2, 3], 1: [10, 11]},
                         self.plan.reactors_by_node)

    def test_least_loaded_on_the_instance_node(self):
        load = {2: 3, 3: 1, 10: 0, 11: 0}
        self.assertEqual((3, False),
                         planner.least_loaded_core(self.plan, [0], load))
        self.assertEqual((10, False),
                         planner.least_loaded_core(self.plan, [0, 1], load))

    def test_ties_go_to_the_lowest_cpu(self):
        self.assertEqual((10, False),
                         planner.least_loaded_core(self.plan, {1}, {}))

    def test_no_preference(self):
        self.assertEqual((3, False),
                         planner.least_loaded_core(self.plan, [], {2: 1}))

    def test_fallback_to_another_node(self):
        plan = planner.plan(make_conf(self, hugepage_size_kib=ONE_GIB_KIB),
                            read_fixture_topology('two_nodes'))
        self.assertEqual((3, True),
                         planner.least_loaded_core(plan, [1], {3: 9}))

    def test_no_reactors(self):
        plan = planner.plan(make_conf(self), read_fixture_topology('one_node'))
        plan.reactor_cpus, plan.reactors_by_node = [], {}
        self.assertRaises(ValueError, planner.least_loaded_core, plan, [0],
                          {})


class TestFormatPlan(base.TestCase):
    def test_two_nodes(self):
        host = read_fixture_topology('two_nodes')
        text = planner.format_plan(planner.plan(make_conf(self), host), host)
        for expected in (
                'online CPUs: 0-31',
                'isolated CPUs (isolcpus=): 2-3,10-11',
                'NUMA node 0: CPUs 0-7,16-23; hugepages: 2048 kB 1024 '
                'total/1000 free; 1048576 kB 4 total/4 free',
                'NUMA node 1: CPUs 8-15,24-31; hugepages: 2048 kB 1024 '
                'total/200 free',
                'reactor CPUs: 3,11 (-m 0x808)',
                'NUMA node 1: reactors 11, 1024 MiB in 512 x 2048 kB',
                'env context: --socket-mem=1024,1024 --socket-limit=1024,1024',
                'start-up: iobuf_set_options large_pool_count=',
                'cpu_dedicated_set = 0-2,4-10,12-31\n',
                'cpu_shared_set',
                'reserved_huge_pages = node:0,size:2048,count:512\n',
                'reserved_huge_pages = node:1,size:2048,count:512\n'):
            self.assertIn(expected, text)

    def test_notes_and_nodes_without_hugepages(self):
        host = read_fixture_topology('four_nodes')
        text = planner.format_plan(planner.plan(make_conf(self), host), host)
        self.assertIn('NUMA node 3: CPUs 24-31,88-95; hugepages: none', text)
        self.assertIn('note: NUMA node 1 has no 2048 kB hugepages', text)
        self.assertNotIn('node:1,size', text)
        self.assertIn('cpu_dedicated_set = 0-31,64-70,72-86,88-95\n', text)


class TestMemoryPlan(base.TestCase):
    def test_plan_carries_the_startup_config_and_a_note_when_short(self):
        host = read_fixture_topology('one_node')
        plan = planner.plan(make_conf(self, hugepage_mib_per_node=256), host)
        iobuf, bdev = plan.startup_config['subsystems']
        pools = memory.buffer_pools(256, 1)
        self.assertEqual({'small_pool_count': pools.small,
                          'large_pool_count': pools.large},
                         iobuf['config'][0]['params'])
        self.assertEqual('bdev_set_options', bdev['config'][0]['method'])
        # A target that answers nothing is given up on: keep-alive,
        # admin commands, and a reconnect's TCP connect.
        self.assertEqual(
            {'method': 'bdev_nvme_set_options', 'params': {
                'keep_alive_timeout_ms': 2000, 'tcp_connect_timeout_ms': 1000,
                'timeout_admin_us': 1000000, 'timeout_us': 60000000,
                'action_on_timeout': 'reset'}},
            bdev['config'][1])
        self.assertEqual([], plan.notes)
        plan = planner.plan(make_conf(self, hugepage_mib_per_node=64), host)
        self.assertIn('below the', plan.notes[-1])
