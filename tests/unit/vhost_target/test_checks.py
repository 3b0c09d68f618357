import os
import re
import sys
import unittest

import fixtures

from tests import base
from tests.unit.vhost_target import make_conf
from tests.unit.vhost_target import read_fixture_topology
from tests.unit.vhost_target import write_tree
from vhost_target import checks
from vhost_target import planner
from vhost_target import topology

# Reactors 3 and 11 take 128 pages of 2 MiB on each node of 'two_nodes'.
CLEAN_NOVA_CONF = """\
[DEFAULT]
reserved_huge_pages = node:0,size:2048,count:128
reserved_huge_pages = node:1,size:2MB,count:256

[compute]
cpu_dedicated_set = 4-10,12-31
cpu_shared_set = 1-2
"""


class FakeHost:
    """Probes answering from attributes a test sets."""

    def __init__(self, binary='/opt/spdk/build/bin/vhost', running=True,
                 groups=('libvirt-qemu',)):
        self.binary = binary
        self.running = running
        self.groups = set(groups)
        self.rpc_sockets_probed = []
        # This environment's: it has Nova.
        self.nova_python = sys.executable

    def rpc_reachable(self, socket_path):
        self.rpc_sockets_probed.append(socket_path)
        return self.running

    def probes(self, stat=os.stat):
        return checks.Probes(binary_path=lambda: self.binary,
                             rpc_reachable=self.rpc_reachable,
                             group_exists=self.groups.__contains__,
                             stat=stat, nova_python=self.nova_python)


class ChecksTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.socket_dir = os.path.join(self.dir, 'sockets')
        os.mkdir(self.socket_dir, 0o750)
        os.chmod(self.socket_dir, 0o750)
        self.nova_conf = self.write_nova_conf(CLEAN_NOVA_CONF)
        self.host = FakeHost()
        self.stat = os.stat

    def write_nova_conf(self, text):
        path = os.path.join(self.dir, 'nova.conf')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def check(self, tree='two_nodes', expect_running=False, **overrides):
        options = dict(socket_dir=self.socket_dir, nova_conf=self.nova_conf,
                       hugepage_mib_per_node=256,
                       rpc_socket=os.path.join(self.dir, 'spdk.sock'))
        options.update(overrides)
        conf = make_conf(self, **options)
        host = read_fixture_topology(tree)
        plan = planner.plan(conf, host)
        return checks.run_checks(conf, host, plan,
                                 self.host.probes(stat=self.stat),
                                 expect_running=expect_running)

    def assertFinding(self, findings, code, *words):
        """The one finding with code; its message contains words."""
        matching = [f for f in findings if f.code == code]
        self.assertEqual(1, len(matching),
                         'expected one %s in %s' % (code, findings))
        for word in words:
            self.assertIn(word, matching[0].message)
        return matching[0]


class TestCleanHost(ChecksTestCase):
    def test_no_findings(self):
        self.assertEqual([], self.check())

    def test_no_findings_adopting_a_running_spdk(self):
        self.assertEqual([], self.check(adopt=True))
        self.assertEqual([os.path.join(self.dir, 'spdk.sock')],
                         self.host.rpc_sockets_probed)

    def test_rpc_not_probed_unless_asked(self):
        self.host.running = False
        self.assertEqual([], self.check())
        self.assertEqual([], self.host.rpc_sockets_probed)


class TestCpuFindings(ChecksTestCase):
    def test_no_reactor_cpus(self):
        # Nothing else can be judged without reactors: one finding only.
        root = write_tree(self.useFixture(fixtures.TempDir()).path, {
            'sys/devices/system/cpu/online': '0-1'})
        conf = make_conf(self, socket_dir=self.socket_dir,
                         nova_conf=self.nova_conf)
        host = topology.read_topology(root)
        findings = checks.run_checks(conf, host, planner.plan(conf, host),
                                     self.host.probes())
        self.assertEqual(['no_reactor_cpus'], [f.code for f in findings])
        self.assertIn('hugepages', findings[0].message)

    def test_reactor_cpus_offline(self):
        finding = self.assertFinding(
            self.check(reactor_cpus='3,40-41'), 'reactor_cpus_offline',
            '40-41', 'online CPUs: 0-31', 'reactor_cpus')
        self.assertEqual(checks.ERROR, finding.level)

    def test_overlap_with_cpu_dedicated_set(self):
        self.write_nova_conf('[compute]\ncpu_dedicated_set = 2-31\n')
        self.assertFinding(self.check(),
                           'reactor_cpus_in_cpu_dedicated_set',
                           'Reactor CPUs 3,11', 'cpu_dedicated_set = 2,4-10,'
                           '12-31')

    def test_overlap_with_cpu_shared_set(self):
        self.write_nova_conf('[compute]\ncpu_shared_set = 0-3\n')
        self.assertFinding(self.check(), 'reactor_cpus_in_cpu_shared_set',
                           'Reactor CPUs 3 ')

    def test_overlap_with_legacy_vcpu_pin_set(self):
        self.write_nova_conf('[DEFAULT]\nvcpu_pin_set = 8-15\n')
        self.assertFinding(self.check(), 'reactor_cpus_in_vcpu_pin_set',
                           '11')

    def test_nova_caret_exclusion_is_understood(self):
        self.write_nova_conf(
            '[DEFAULT]\n'
            'reserved_huge_pages = node:0,size:2048,count:128\n'
            'reserved_huge_pages = node:1,size:2048,count:128\n'
            '[compute]\ncpu_dedicated_set = 2-15,^3,^11\n')
        self.assertEqual([], self.check())

    def test_invalid_nova_cpu_set(self):
        self.write_nova_conf('[compute]\ncpu_shared_set = 1-a\n')
        self.assertFinding(self.check(), 'nova_cpu_set_invalid', '1-a')

    def test_nova_cpu_sets_unset(self):
        self.write_nova_conf(
            '[DEFAULT]\n'
            'reserved_huge_pages = node:0,size:2048,count:128\n'
            'reserved_huge_pages = node:1,size:2048,count:128\n')
        findings = self.check()
        finding = self.assertFinding(findings, 'nova_cpu_sets_unset', '3,11')
        self.assertEqual(checks.WARNING, finding.level)
        self.assertEqual(1, len(findings))


class TestNovaConfFindings(ChecksTestCase):
    def test_missing_nova_conf_is_a_warning(self):
        findings = self.check(nova_conf=os.path.join(self.dir, 'absent'))
        finding = self.assertFinding(findings, 'nova_conf_missing',
                                     'does not exist', 'nova_conf')
        self.assertEqual(checks.WARNING, finding.level)
        self.assertEqual(1, len(findings))
        self.assertTrue(str(finding).startswith(
            'WARNING [nova_conf_missing] '))

    def test_unreadable_nova_conf(self):
        self.write_nova_conf('[compute\ncpu_dedicated_set = 1\n')
        self.assertFinding(self.check(), 'nova_conf_unreadable')

    def test_reserved_huge_pages_short(self):
        self.write_nova_conf(
            '[DEFAULT]\n'
            'reserved_huge_pages = node:0,size:2048,count:100\n'
            'reserved_huge_pages = node:1,size:1GB,count:1\n'
            '[compute]\ncpu_dedicated_set = 4-10\n')
        findings = self.check()
        short = [f for f in findings
                 if f.code == 'nova_reserved_huge_pages_short']
        self.assertEqual(2, len(short), findings)
        self.assertIn('reserves 100 2048 kB hugepages on NUMA node 0',
                      short[0].message)
        self.assertIn('reserved_huge_pages = node:0,size:2048,count:128',
                      short[0].message)
        self.assertIn('reserves 0 2048 kB hugepages on NUMA node 1',
                      short[1].message)

    def test_reserved_huge_pages_sizes_with_units(self):
        self.write_nova_conf(
            '[DEFAULT]\n'
            'reserved_huge_pages = node:0,size:1GB,count:1\n'
            'reserved_huge_pages = node:1,size:1048576,count:2\n'
            '[compute]\ncpu_dedicated_set = 4-10\n')
        self.assertEqual([], self.check(hugepage_size_kib=1048576,
                                        tree='four_nodes',
                                        hugepage_mib_per_node=1024))

    def test_reserved_huge_pages_invalid(self):
        self.write_nova_conf(
            '[DEFAULT]\nreserved_huge_pages = node:0,size:2M,count:1\n'
            '[compute]\ncpu_dedicated_set = 4-10\n')
        self.assertFinding(self.check(), 'nova_reserved_huge_pages_invalid',
                           'size:2M')

    def test_parse_reserved_huge_pages(self):
        self.assertEqual(
            {0: {2048: 64, 1048576: 2}, 1: {2048: 8}},
            checks.parse_reserved_huge_pages([
                'node:0,size:2048,count:1',
                'node:0, size:2MB, count:64',
                'node:0,size:1GB,count:2',
                'node:1,size:2048,count:8']))
        for bad in ('node:0,size:2048', 'node:x,size:2048,count:1',
                    'garbage'):
            self.assertRaises(ValueError, checks.parse_reserved_huge_pages,
                              [bad])

    def test_nova_cpu_sets_are_read_by_novas_parser(self):
        parsed = checks.parse_nova_cpu_specs(
            sys.executable, ('4-12,^8,15', '0-4,^1-3', 'a', '1-2-3'))
        self.assertEqual({4, 5, 6, 7, 9, 10, 11, 12, 15},
                         parsed['4-12,^8,15'])
        self.assertEqual({0, 4}, parsed['0-4,^1-3'])
        for bad in ('a', '1-2-3'):
            self.assertIsInstance(parsed[bad], str)


class TestWithoutNova(ChecksTestCase):
    # The host's own Python 3, which has no Nova (as on a compute node
    # whose nova-compute runs from a virtualenv).
    PYTHON_WITHOUT_NOVA = '/usr/bin/python3'

    def test_cpu_sets_are_not_guessed_at(self):
        self.write_nova_conf('[compute]\ncpu_dedicated_set = 2-31\n')
        self.host.nova_python = self.PYTHON_WITHOUT_NOVA
        finding = self.assertFinding(self.check(), 'nova_not_importable',
                                     'cpu_dedicated_set = 2-31')
        self.assertEqual(checks.WARNING, finding.level)


class TestHugepageFindings(ChecksTestCase):
    def test_reactor_node_without_hugepages(self):
        self.write_nova_conf('[compute]\ncpu_dedicated_set = 0-2\n')
        findings = self.check(tree='four_nodes', reactor_cpus='24,71')
        self.assertFinding(findings, 'reactor_node_without_hugepages',
                           'Reactor CPUs 24 are on NUMA node 3',
                           'node3/hugepages/hugepages-2048kB/nr_hugepages')
        self.assertEqual([], [f for f in findings
                              if f.code == 'hugepages_insufficient'])

    def test_memory_below_what_spdk_starts_with(self):
        findings = self.check(hugepage_mib_per_node=64)
        self.assertFinding(findings, 'hugepage_memory_below_minimum',
                           'hugepage_mib_per_node=64 MiB is below the',
                           'Raise [spdk_vhost_target] hugepage_mib_per_node')

    def test_too_few_free_pages(self):
        findings = self.check(hugepage_mib_per_node=1024)
        self.assertFinding(findings, 'hugepages_insufficient',
                           'NUMA node 1 has 200 free 2048 kB hugepages',
                           'SPDK needs 512', 'hugepage_mib_per_node')

    def test_running_spdk_already_holds_its_pages(self):
        findings = self.check(hugepage_mib_per_node=1024, adopt=True)
        self.assertEqual([], [f for f in findings
                              if f.code == 'hugepages_insufficient'])
        findings = self.check(hugepage_mib_per_node=4096, adopt=True)
        self.assertEqual(2, len([f for f in findings
                                 if f.code == 'hugepages_insufficient']))


class TestHostFindings(ChecksTestCase):
    def test_socket_dir_missing(self):
        missing = os.path.join(self.dir, 'nope')
        self.assertFinding(self.check(socket_dir=missing),
                           'socket_dir_missing', missing, 'libvirt-qemu',
                           '0750')

    def test_socket_dir_not_a_directory(self):
        path = os.path.join(self.dir, 'file')
        open(path, 'w').close()
        self.assertFinding(self.check(socket_dir=path),
                           'socket_dir_not_directory')

    def test_socket_dir_world_writable(self):
        os.chmod(self.socket_dir, 0o1777)
        self.assertFinding(self.check(), 'socket_dir_world_writable',
                           '1777', 'chmod 0750')

    def test_socket_dir_inaccessible(self):
        def stat(path):
            raise PermissionError(13, 'Permission denied', path)
        self.stat = stat
        self.assertFinding(self.check(), 'socket_dir_inaccessible',
                           'Permission denied')

    def test_binary_missing(self):
        self.host.binary = None
        self.assertFinding(self.check(), 'spdk_binary_missing',
                           'SPDK_BIN_DIR', 'spdk_vhost_binary')
        self.assertFinding(self.check(spdk_vhost_binary='/no/vhost'),
                           'spdk_binary_missing', '/no/vhost')

    def test_binary_not_needed_when_adopting(self):
        self.host.binary = None
        self.assertEqual([], self.check(adopt=True))

    def test_rpc_unreachable_when_adopting(self):
        self.host.running = False
        self.assertFinding(self.check(adopt=True), 'spdk_rpc_unreachable',
                           'spdk.sock', 'adopt')

    def test_rpc_unreachable_when_expected_running(self):
        self.host.running = False
        self.assertFinding(self.check(expect_running=True),
                           'spdk_rpc_unreachable', 'expected to be running')

    def test_socket_group_missing(self):
        self.host.groups = set()
        self.assertFinding(self.check(), 'socket_group_missing',
                           'libvirt-qemu', 'socket_group')


class TestEveryCodeIsTested(base.TestCase):
    def test_codes(self):
        # Every code the module can emit appears in a test above.
        with open(checks.__file__) as f:
            source = f.read()
        codes = set(re.findall(r"Finding\(\s*'([a-z_]+)'", source))
        codes |= {'reactor_cpus_in_' + option
                  for _section, option in checks._NOVA_CPU_OPTIONS}
        with open(__file__) as f:
            tests = f.read()
        untested = sorted(code for code in codes
                          if "'%s'" % code not in tests)
        self.assertEqual([], untested)


_SYS = '/sys/devices/system'


@unittest.skipUnless(os.path.exists(os.path.join(_SYS, 'cpu', 'online')),
                     'no sysfs on this host')
class TestRealHost(base.TestCase):
    """run_checks against this machine's own /sys, as the agent runs it,
    with a config pointing at things that do not exist.
    """

    def test_findings_match_the_host(self):
        scratch = self.useFixture(fixtures.TempDir()).path
        conf = make_conf(
            self,
            nova_conf=os.path.join(scratch, 'nova.conf'),
            socket_dir=os.path.join(scratch, 'sockets'),
            spdk_vhost_binary=os.path.join(scratch, 'vhost'),
            rpc_socket=os.path.join(scratch, 'spdk.sock'),
            socket_group='spdk-openstack-test-no-such-group')
        host = topology.read_topology()
        plan = planner.plan(conf, host)
        findings = checks.run_checks(conf, host, plan,
                                     checks.default_probes(conf),
                                     expect_running=True)

        node_dir = os.path.join(_SYS, 'node')
        node_ids = sorted(
            int(name[4:]) for name in (os.listdir(node_dir)
                                       if os.path.isdir(node_dir) else ())
            if re.match(r'^node\d+$', name))
        self.assertEqual(node_ids or [0], list(host.nodes))
        with open(os.path.join(_SYS, 'cpu', 'online')) as f:
            self.assertEqual(topology.parse_cpulist(f.read()), host.online)

        expected = {'nova_conf_missing', 'socket_dir_missing',
                    'spdk_binary_missing', 'spdk_rpc_unreachable',
                    'socket_group_missing'}
        # Hugepages come and go as other tests run; judge them from the
        # same reading the checks used.
        if not plan.reactor_cpus:
            expected.add('no_reactor_cpus')
        for node_id, needed in plan.pages_needed_by_node.items():
            self.assertIn(node_id, node_ids or [0])
            if host.nodes[node_id].pages(2048).free < needed:
                expected.add('hugepages_insufficient')
        for cpu in plan.reactor_cpus:
            self.assertIn(cpu, host.online)
            self.assertGreater(host.nodes[host.node_of(cpu)].pages(2048)
                               .total, 0)
        self.assertEqual(expected, {f.code for f in findings})
        for finding in findings:
            self.assertNotIn(finding.code, {'reactor_cpus_offline',
                                            'socket_dir_world_writable'})
