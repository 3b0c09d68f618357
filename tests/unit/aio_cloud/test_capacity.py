"""The cloud's resource checks: hugepage arithmetic and one-line refusals."""

import os
import socket
from unittest import mock

import fixtures

from tests import base
from tools.aio_cloud import capacity
from tools.aio_cloud import layout as layout_mod


def _pool(total, free, reserved=0):
    return capacity.Pool(total=total, free=free, reserved=reserved,
                         surplus=0)


class TestArithmetic(base.TestCase):

    def test_spdk_maps_what_was_measured_beyond_its_socket_mem(self):
        beyond = capacity.SPDK_MAPPED_BEYOND_SOCKET_MEM
        self.assertEqual(512 + beyond['nvmf_tgt'],
                         capacity.spdk_need_mib('nvmf_tgt', 512))
        self.assertEqual(256 + beyond['spdk-vhost'],
                         capacity.spdk_need_mib('spdk-vhost', 256))
        with mock.patch.dict(beyond, {'spdk-vhost': 362}):
            self.assertEqual(618, capacity.spdk_need_mib('spdk-vhost', 256))

    def test_up_needs_both_spdk_processes_and_the_guests(self):
        needs = capacity.up_needs(nvmf_mib=512, vhost_mib=256, guests=2,
                                  guest_mib=256, dd_mib=128)
        beyond = capacity.SPDK_MAPPED_BEYOND_SOCKET_MEM
        self.assertEqual(
            [512 + beyond['nvmf_tgt'], 256 + beyond['spdk-vhost'], 512, 128],
            [mib for _text, mib in needs])
        self.assertEqual('spdk_dd 128 MiB', needs[3][0])
        self.assertEqual('2 guests x 256 MiB', needs[2][0])
        self.assertTrue(needs[0][0].startswith('nvmf_tgt '))

    def test_defaults_are_the_clouds_config(self):
        needs = capacity.up_needs()
        self.assertEqual(layout_mod.MAX_GUESTS * layout_mod.FLAVOR_RAM_MB,
                         needs[2][1])
        self.assertEqual(
            capacity.spdk_need_mib('nvmf_tgt', layout_mod.NVMF_MEM_MIB),
            needs[0][1])

    def test_pages_round_up(self):
        self.assertEqual(1, capacity.pages(1))
        self.assertEqual(128, capacity.pages(256))
        self.assertEqual(129, capacity.pages(257))

    def test_reserved_pages_are_not_usable(self):
        self.assertEqual(200, capacity.usable_mib(_pool(1024, 300, 200)))
        self.assertEqual(0, capacity.usable_mib(_pool(10, 1, 5)))

    def test_no_message_when_it_fits(self):
        self.assertIsNone(capacity.shortfall(
            'x', [('a', 100), ('b', 100)], _pool(1024, 100), []))

    def test_one_line_naming_the_shortfall_and_the_way_out(self):
        message = capacity.shortfall(
            'the cloud', [('nvmf_tgt 1030 MiB', 1030),
                          ('2 guests x 256 MiB', 512)],
            _pool(1024, 400, 50), [(123, 'nvmf_tgt', 1100), (9, 'qemu', 56)])
        self.assertNotIn('\n', message)
        self.assertIn('need 1542 MiB free', message)
        self.assertIn('nvmf_tgt 1030 MiB + 2 guests x 256 MiB', message)
        self.assertIn('700 MiB free of 2048 MiB', message)
        self.assertIn('short 842 MiB', message)
        self.assertIn('pid 123 nvmf_tgt 1100 MiB, pid 9 qemu 56 MiB',
                      message)
        # 842 MiB more is 421 pages on top of the 1024.
        self.assertIn('echo 1445 > ' + capacity.POOL_SIZE, message)

    def test_many_holders_are_summed_up(self):
        found = [(pid, 'p', 2) for pid in range(10)]
        message = capacity.shortfall('x', [('a', 10)], _pool(1, 0), found)
        self.assertIn('6 more', message)
        self.assertIn('none held', capacity.shortfall(
            'x', [('a', 10)], _pool(1, 0), []))


class TestHostReads(base.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def _write(self, path, text):
        path = os.path.join(self.dir, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_hugetlbfs_mounted_at_dev_hugepages_only(self):
        mounts = self._write('mounts', 'hugetlbfs /mnt/huge hugetlbfs rw 0 0\n'
                             'tmpfs /dev/hugepages tmpfs rw 0 0\n')
        self.assertFalse(capacity.hugetlbfs_mounted(mounts))
        mounts = self._write('mounts', 'hugetlbfs /dev/hugepages hugetlbfs '
                             'rw,pagesize=2M 0 0\n')
        self.assertTrue(capacity.hugetlbfs_mounted(mounts))

    def test_hugetlbfs_is_unmounted_only_if_up_mounted_it(self):
        record = os.path.join(self.dir, 'record')
        run = self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.subprocess.run')).mock
        self.assertIsNone(capacity.unmount_hugetlbfs(record))
        run.assert_not_called()
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.hugetlbfs_mounted',
            return_value=False))
        self.assertTrue(capacity.mount_hugetlbfs(record))
        run.return_value.returncode = 0
        self.assertIsNone(capacity.unmount_hugetlbfs(record))
        self.assertEqual(['umount', capacity.HUGETLBFS],
                         run.call_args[0][0])
        self.assertFalse(os.path.exists(record))

    def test_read_pool(self):
        for name, value in (('nr_hugepages', 1024), ('free_hugepages', 300),
                            ('resv_hugepages', 20),
                            ('surplus_hugepages', 0)):
            self._write(os.path.join('pool', name), '%d\n' % value)
        self.assertEqual(_pool(1024, 300, 20),
                         capacity.read_pool(os.path.join(self.dir, 'pool')))

    def test_holders_from_proc_status(self):
        self._write('proc/12/status', 'Name:\treactor_0\nHugetlbPages:\t'
                    '1054720 kB\n')
        self._write('proc/12/cmdline', '/opt/spdk/bin/nvmf_tgt\0-m\0')
        self._write('proc/13/status', 'Name:\tbash\nHugetlbPages:\t0 kB\n')
        self._write('proc/14/status', 'Name:\tqemu\nHugetlbPages:\t'
                    '262144 kB\n')
        self._write('proc/self/status', 'Name:\tx\n')
        self.assertEqual([(12, 'nvmf_tgt', 1030), (14, 'qemu', 256)],
                         capacity.holders(os.path.join(self.dir, 'proc')))

    def test_grow_pool_raises_never_lowers(self):
        size = self._write('nr', '100\n')
        capacity.grow_pool(50, size)
        self.assertEqual('100\n', open(size).read())
        capacity.grow_pool(600, size)
        self.assertEqual('600', open(size).read())

    def test_down_gives_back_what_up_raised(self):
        size = self._write('nr', '100\n')
        record = os.path.join(self.dir, 'record')
        capacity.grow_pool(50, size, record=record)
        self.assertFalse(os.path.exists(record))
        capacity.grow_pool(600, size, record=record)
        capacity.grow_pool(700, size, record=record)
        # The size before the first raise.
        self.assertEqual(100, capacity.restore_pool(record, size))
        self.assertEqual('100', open(size).read())
        self.assertFalse(os.path.exists(record))
        self.assertIsNone(capacity.restore_pool(record, size))

    def test_mem_available(self):
        meminfo = self._write('meminfo', 'MemTotal: 100 kB\n'
                              'MemAvailable:   2097152 kB\n')
        self.assertEqual(2048, capacity.mem_available_mib(meminfo))

    def test_busy_ports(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((layout_mod.HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        self.assertEqual(['x %d' % port], capacity.busy_ports({'x': port}))


class TestChecks(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.busy_ports', return_value=[]))
        self.grow = self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.grow_pool')).mock
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.holders',
            return_value=[(7, 'holder', 1800)]))
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.mem_available_mib', return_value=20000))
        self.pool = self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.read_pool')).mock

    def test_up_grows_the_pool_to_its_need_then_refuses(self):
        self.pool.return_value = _pool(1024, 124)
        needs = [('a', 1000), ('b', 1001)]
        exc = self.assertRaises(capacity.ShortError, capacity.check_up,
                                needs)
        self.grow.assert_called_once_with(1001, record=None)
        self.assertIn('need 2001 MiB free (a + b), 248 MiB free', str(exc))
        self.assertIn('pid 7 holder 1800 MiB', str(exc))

    def test_up_passes_when_free(self):
        self.pool.return_value = _pool(2048, 2048)
        capacity.check_up()

    def test_up_refuses_short_memory(self):
        self.pool.return_value = _pool(2048, 2048)
        with mock.patch('tools.aio_cloud.capacity.mem_available_mib',
                        return_value=1000):
            exc = self.assertRaises(capacity.ShortError, capacity.check_up)
        self.assertIn('MemAvailable is 1000 MiB', str(exc))

    def test_up_refuses_busy_ports_first(self):
        with mock.patch('tools.aio_cloud.capacity.busy_ports',
                        return_value=['keystone 13500']):
            exc = self.assertRaises(capacity.ShortError, capacity.check_up)
        self.assertIn('keystone 13500', str(exc))
        self.grow.assert_not_called()

    def test_guest_check(self):
        self.pool.return_value = _pool(1024, 100)
        exc = self.assertRaises(capacity.ShortError, capacity.check_guests,
                                1, 256, 'server s1 (flavor m1.spdk)')
        self.assertEqual(
            '2 MiB hugepages short for server s1 (flavor m1.spdk): need '
            '256 MiB free (1 guest x 256 MiB), 200 MiB free of 2048 MiB '
            '(held: pid 7 holder 1800 MiB); short 56 MiB: stop what holds '
            'them or raise the pool: echo 1052 > %s' % capacity.POOL_SIZE,
            str(exc))
        self.pool.return_value = _pool(1024, 128)
        capacity.check_guests(1, 256, 'x')
        exc = self.assertRaises(capacity.ShortError, capacity.check_guests,
                                1, 256, 'x', image_copy=True)
        self.assertIn('(1 guest x 256 MiB + spdk_dd %d MiB)'
                      % layout_mod.SPDK_DD_MEM_MIB, str(exc))
        capacity.check_guests(0, 0, 'no hugepage flavor')


class TestMain(base.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.stderr = self.useFixture(fixtures.StringStream('stderr')).stream
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def test_one_line_when_short(self):
        with mock.patch('tools.aio_cloud.capacity.check_up',
                        side_effect=capacity.ShortError('short of x')):
            self.assertEqual(1, capacity.main(['--state-dir', self.dir,
                                               'up']))
        self.stderr.seek(0)
        self.assertEqual('tools/cloud up: short of x\n', self.stderr.read())

    def test_silent_when_the_cloud_runs(self):
        with mock.patch('tools.aio_cloud.processes.ProcessTable.running',
                        return_value=['x']), \
                mock.patch('tools.aio_cloud.capacity.check_up') as check:
            self.assertEqual(0, capacity.main(['--state-dir', self.dir,
                                               'up']))
        check.assert_not_called()
