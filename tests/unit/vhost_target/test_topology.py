import os

import fixtures

from spdk_common import exception as spdk_exc
from tests import base
from tests.unit.vhost_target import SYSFS
from vhost_target import topology


def fixture_root(name):
    return os.path.join(SYSFS, name)


class TestParseCpulist(base.TestCase):
    def test_ranges_and_singles(self):
        self.assertEqual({0, 1, 2, 3, 8, 10, 11},
                         topology.parse_cpulist('0-3,8,10-11'))

    def test_whitespace_and_newline(self):
        self.assertEqual({0, 1, 5}, topology.parse_cpulist(' 0-1, 5 \n'))

    def test_empty(self):
        self.assertEqual(frozenset(), topology.parse_cpulist(''))
        self.assertEqual(frozenset(), topology.parse_cpulist('\n'))

    def test_single_cpu(self):
        self.assertEqual({7}, topology.parse_cpulist('7'))

    def test_trailing_comma(self):
        self.assertEqual({1, 2}, topology.parse_cpulist('1,2,'))

    def test_kernel_grouped_range(self):
        # 2 of every 4 CPUs, as the kernel reads "0-15:2/4".
        self.assertEqual({0, 1, 4, 5, 8, 9, 12, 13},
                         topology.parse_cpulist('0-15:2/4'))

    def test_bare_stride_is_ignored(self):
        self.assertEqual({0, 1, 2, 3}, topology.parse_cpulist('0-3:2'))

    def test_garbage(self):
        for text in ('abc', '1-', '-1', '3-1', '0x3', '1,,a', '1.5',
                     '0-7:0/4', '0-7:5/4', '0-7:1/0', '1 2'):
            e = self.assertRaises(ValueError, topology.parse_cpulist, text)
            self.assertIn('Invalid cpulist', str(e))
            self.assertIn(repr(text), str(e))

    def test_none(self):
        self.assertRaises(ValueError, topology.parse_cpulist, None)


class TestFormatCpulist(base.TestCase):
    def test_format(self):
        self.assertEqual('0-3,8,10-11',
                         topology.format_cpulist({11, 10, 8, 3, 2, 1, 0}))

    def test_empty_and_single(self):
        self.assertEqual('', topology.format_cpulist(set()))
        self.assertEqual('5', topology.format_cpulist([5]))

    def test_round_trip(self):
        for text in ('0', '0-1', '0-7,64-71', '1,3,5', '2-3,34-35,100'):
            self.assertEqual(
                text, topology.format_cpulist(topology.parse_cpulist(text)))


class TestParseIsolcpus(base.TestCase):
    def test_plain(self):
        self.assertEqual({2, 3}, topology.parse_isolcpus('ro isolcpus=2-3'))

    def test_flags(self):
        self.assertEqual(
            {2, 3, 8},
            topology.parse_isolcpus('isolcpus=domain,managed_irq,2-3,8'))
        self.assertEqual({4}, topology.parse_isolcpus('isolcpus=nohz,4'))

    def test_unknown_flag_is_skipped(self):
        self.assertEqual({5}, topology.parse_isolcpus('isolcpus=future,5'))

    def test_nohz_full_is_not_isolcpus(self):
        self.assertEqual(frozenset(),
                         topology.parse_isolcpus('nohz_full=1-3 rcu_nocbs=1'))

    def test_init_arguments_are_not_kernel_ones(self):
        self.assertEqual(frozenset(),
                         topology.parse_isolcpus('quiet -- isolcpus=1'))

    def test_first_occurrence_counts(self):
        self.assertEqual({1},
                         topology.parse_isolcpus('isolcpus=1 isolcpus=2'))

    def test_flags_without_list(self):
        self.assertEqual(frozenset(),
                         topology.parse_isolcpus('isolcpus=domain'))

    def test_garbage_is_ignored(self):
        self.assertEqual(frozenset(),
                         topology.parse_isolcpus('isolcpus=3-1'))

    def test_quotes(self):
        self.assertEqual({6}, topology.parse_isolcpus(
            'acpi_osi="Windows 2020" isolcpus=6'))
        # Unbalanced quotes do not stop the kernel; nor do they stop us.
        self.assertEqual({6}, topology.parse_isolcpus('x="a isolcpus=6'))


class TestReadTopology(base.TestCase):
    def test_one_node(self):
        host = topology.read_topology(fixture_root('one_node'))
        self.assertEqual([0], list(host.nodes))
        self.assertEqual({0, 1, 2, 3}, host.online)
        self.assertEqual(frozenset(), host.isolated)
        node = host.nodes[0]
        self.assertEqual({0, 1, 2, 3}, node.cpus)
        self.assertEqual(topology.HugePages(1024, 1024),
                         node.hugepages[2048])
        self.assertEqual(topology.HugePages(0, 0), node.hugepages[1048576])

    def test_two_nodes(self):
        host = topology.read_topology(fixture_root('two_nodes'))
        self.assertEqual([0, 1], list(host.nodes))
        self.assertEqual(set(range(32)), host.online)
        self.assertEqual(topology.parse_cpulist('0-7,16-23'),
                         host.nodes[0].cpus)
        self.assertEqual(topology.HugePages(1024, 200),
                         host.nodes[1].pages(2048))
        self.assertEqual(topology.HugePages(4, 4),
                         host.nodes[0].pages(1048576))
        # isolcpus with flags; nohz_full on the same line is not counted.
        self.assertEqual({2, 3, 10, 11}, host.isolated)
        self.assertEqual(0, host.node_of(17))
        self.assertEqual(1, host.node_of(24))
        self.assertIsNone(host.node_of(32))

    def test_four_nodes(self):
        host = topology.read_topology(fixture_root('four_nodes'))
        self.assertEqual([0, 1, 2, 3], list(host.nodes))
        for node in host.nodes.values():
            self.assertEqual(16, len(node.cpus))
        self.assertEqual(topology.parse_cpulist('0-7,64-71'),
                         host.nodes[0].cpus)
        self.assertEqual(topology.parse_cpulist('0-31,64-95'), host.online)
        self.assertEqual(3, host.node_of(90))
        self.assertEqual(topology.HugePages(0, 0), host.nodes[1].pages(2048))
        self.assertEqual({}, host.nodes[3].hugepages)
        self.assertEqual(topology.HugePages(0, 0), host.nodes[3].pages(2048))
        # The isolcpus= after "--" goes to init and is not counted.
        self.assertEqual({70, 71, 86, 87}, host.isolated)
        self.assertEqual(64, sum(len(n.cpus) for n in host.nodes.values()))

    def test_no_numa_directories(self):
        host = topology.read_topology(fixture_root('no_numa'))
        self.assertEqual([0], list(host.nodes))
        self.assertEqual({0, 1}, host.nodes[0].cpus)
        self.assertEqual(topology.HugePages(512, 256),
                         host.nodes[0].pages(2048))
        self.assertEqual({1}, host.isolated)

    def test_nothing_to_read(self):
        root = self.useFixture(fixtures.TempDir()).path
        e = self.assertRaises(spdk_exc.TopologyError,
                              topology.read_topology, root)
        self.assertIn('sysfs', str(e))


class TestReadTopologyEdgeCases(base.TestCase):
    """Trees built on the fly for cases no captured host shows."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path

    def write(self, path, text):
        path = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text + '\n')

    def test_memory_only_node_and_gap_in_numbering(self):
        self.write('sys/devices/system/cpu/online', '0-3')
        self.write('sys/devices/system/node/node0/cpulist', '0-3')
        self.write('sys/devices/system/node/node2/cpulist', '')
        self.write('sys/devices/system/node/node2/hugepages/'
                   'hugepages-2048kB/nr_hugepages', '64')
        # A half-written pool counts as empty rather than failing.
        self.write('sys/devices/system/node/node2/hugepages/'
                   'hugepages-2048kB/free_hugepages', 'garbage')
        self.write('sys/devices/system/node/has_cpu', '0')
        host = topology.read_topology(self.root)
        self.assertEqual([0, 2], list(host.nodes))
        self.assertEqual(frozenset(), host.nodes[2].cpus)
        self.assertEqual(topology.HugePages(64, 0), host.nodes[2].pages(2048))
        self.assertEqual(frozenset(), host.isolated)

    def test_offline_cpu_stays_on_its_node(self):
        self.write('sys/devices/system/cpu/online', '0-2')
        self.write('sys/devices/system/node/node0/cpulist', '0-3')
        host = topology.read_topology(self.root)
        self.assertEqual({0, 1, 2}, host.online)
        self.assertEqual(0, host.node_of(3))

    def test_without_online_list_nodes_are_trusted(self):
        self.write('sys/devices/system/node/node0/cpulist', '0-1')
        self.write('sys/devices/system/node/node1/cpulist', '2-3')
        host = topology.read_topology(self.root)
        self.assertEqual({0, 1, 2, 3}, host.online)
