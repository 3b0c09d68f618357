"""The process table: started in sessions of their own, stopped by PID."""

import os
import subprocess
import sys
import time
from unittest import mock

import fixtures

from tests import base
from tools.aio_cloud import processes


class TestProcessTable(base.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.table = processes.ProcessTable(os.path.join(self.dir, 't.tsv'))
        self.addCleanup(self._kill_all)

    def _kill_all(self):
        for entry in self.table.entries():
            self.table.stop(entry._replace(stop_timeout=0.5))

    def _start(self, name, script, stop_timeout=5.0):
        proc = self.table.start(name, [sys.executable, '-c', script],
                                os.path.join(self.dir, name + '.log'),
                                port=1234, stop_timeout=stop_timeout)
        self.addCleanup(proc.wait)
        return proc

    def test_recorded_and_stopped_with_its_children(self):
        proc = self._start('parent', (
            'import subprocess, time\n'
            'subprocess.Popen(["sleep", "300"])\n'
            'time.sleep(300)\n'))
        entry = self.table.get('parent')
        self.assertEqual((proc.pid, proc.pid, 1234),
                         (entry.pid, entry.pgid, entry.port))
        self.assertEqual(proc.pid, os.getpgid(proc.pid))
        self.assertEqual(['parent'], [e.name for e in self.table.running()])
        self.assertTrue(self.table.stop(entry))
        self.assertFalse(processes.group_alive(entry.pgid))
        self.assertEqual([], self.table.running())

    def test_killed_when_it_ignores_term(self):
        self._start('stubborn', (
            'import signal, sys, time\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
            'print("ready", flush=True)\n'
            'time.sleep(300)\n'), stop_timeout=0.5)
        log = os.path.join(self.dir, 'stubborn.log')
        self.useFixture(fixtures.Timeout(30, gentle=True))
        while 'ready' not in open(log).read():
            pass
        self.assertTrue(self.table.stop(self.table.get('stubborn')))

    def test_other_processes_are_left_alone(self):
        other = subprocess.Popen(['sleep', '300'])
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        self._start('mine', 'import time; time.sleep(300)')
        self.table.stop(self.table.get('mine'))
        self.assertTrue(processes.alive(other.pid))


class TestStopOrder(base.TestCase):

    def test_named_first_then_newest_first(self):
        entries = [processes.Entry(name, 1, 1, None, '', started, 1.0)
                   for name, started in (('mariadb', 1), ('agent', 2),
                                         ('nova-api', 3), ('compute', 4),
                                         ('vhost', 5))]
        self.assertEqual(
            ['compute', 'agent', 'vhost', 'nova-api', 'mariadb'],
            [e.name for e in processes.stop_order(entries,
                                                  ('compute', 'agent'))])


class TestRestartRecords(base.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.table = processes.ProcessTable(os.path.join(self.dir, 't.tsv'))

    def test_spec_kept_and_rows_forgotten(self):
        for name in ('a', 'b', 'c'):
            proc = self.table.start(name, ['true'], os.path.join(
                self.dir, name + '.log'), env={'X': '1'}, port=5,
                stop_timeout=3.0)
            proc.wait()
        self.assertEqual({'argv': ['true'], 'env': {'X': '1'}, 'port': 5,
                          'cwd': None, 'stop_timeout': 3.0,
                          'log': os.path.join(self.dir, 'b.log')},
                         self.table.spec('b'))
        self.assertEqual(0o600, os.stat(os.path.join(
            self.dir, 'commands', 'b.json')).st_mode & 0o777)
        self.assertIsNone(self.table.spec('nothing'))
        before = self.table.entries()
        self.table.forget(('b',))
        self.assertEqual([before[0], before[2]], self.table.entries())


class TestStrays(base.TestCase):
    """Real sleeping processes whose argv, cwd or open files name a
    temporary state directory.
    """

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.root = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'cloud')
        os.makedirs(os.path.join(self.root, 'log'))
        os.makedirs(os.path.join(self.root, 'etc'))

    def _sleeper(self, *args, **kwargs):
        script = kwargs.pop('script', 'import time; time.sleep(300)')
        proc = subprocess.Popen([sys.executable, '-c', script] + list(args),
                                **kwargs)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def _pids(self, **kwargs):
        return {pid: how for pid, _name, how in
                processes.find_strays(self.root, **kwargs)}

    def test_argv_cwd_and_open_files(self):
        by_argv = self._sleeper('--config-file',
                                self.root + '/etc/nova.conf')
        by_option = self._sleeper('--datadir=' + self.root + '/mysql')
        by_cwd = self._sleeper(cwd=os.path.join(self.root, 'etc'))
        # The path in its environment, not in its argv.
        by_file = self._sleeper(env=dict(
            os.environ, OPEN=os.path.join(self.root, 'etc', 'open')), script=(
                'import os, time\n'
                'f = open(os.environ["OPEN"], "w")\n'
                'time.sleep(300)\n'))
        other = self._sleeper('--config-file', self.root + '-other/etc')
        # Logs are kept by down: a reader of them is nobody's service.
        log_reader = self._sleeper(self.root + '/log/nova.log')
        wait_until = time.monotonic() + 10
        while not os.path.exists(os.path.join(self.root, 'etc', 'open')):
            self.assertLess(time.monotonic(), wait_until)
            time.sleep(0.05)
        found = self._pids(ignored=[os.path.join(self.root, 'log')])
        self.assertEqual('argv', found.get(by_argv.pid))
        self.assertEqual('argv', found.get(by_option.pid))
        self.assertEqual('cwd', found.get(by_cwd.pid))
        self.assertEqual('open file', found.get(by_file.pid))
        self.assertNotIn(other.pid, found)
        self.assertNotIn(log_reader.pid, found)
        self.assertNotIn(os.getpid(), found)

    def test_known_processes_are_not_strays(self):
        proc = self._sleeper(self.root + '/etc/x')
        self.assertIn(proc.pid, self._pids())
        self.assertNotIn(proc.pid, self._pids(known={proc.pid}))

    def test_the_cloud_tools_are_not_strays(self):
        self.assertTrue(processes._is_cloud_tool(
            ['/r/.cloud-venv/bin/python', '-m', 'tools.aio_cloud',
             '--state-dir', self.root, 'status']))
        self.assertTrue(processes._is_cloud_tool(
            ['bash', 'tools/cloud', '--state-dir', self.root, 'down']))
        self.assertFalse(processes._is_cloud_tool(
            ['nvmf_tgt', '-r', self.root + '/spdk/nvmf.sock']))

    def test_stop_pids_kills_what_ignores_term(self):
        ready = os.path.join(self.root, 'ready')
        stubborn = self._sleeper(ready, script=(
            'import signal, sys, time\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
            'open(sys.argv[1], "w").close()\n'
            'time.sleep(300)\n'))
        polite = self._sleeper()
        while not os.path.exists(ready):
            time.sleep(0.05)
        self.assertEqual([], processes.stop_pids(
            [stubborn.pid, polite.pid], grace=0.5))
        self.assertIsNotNone(stubborn.poll())
        self.assertIsNotNone(polite.poll())

    def test_descendants(self):
        parent = self._sleeper(script=(
            'import subprocess, time\n'
            'subprocess.Popen(["sleep", "300"])\n'
            'time.sleep(300)\n'))
        self.addCleanup(lambda: [processes.stop_pids(
            list(processes.descendants([parent.pid])), grace=1)])
        deadline = time.monotonic() + 10
        while len(processes.descendants([parent.pid])) < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertIn(parent.pid, processes.descendants([parent.pid]))


class TestHugetlb(base.TestCase):

    def test_mappings_from_smaps(self):
        proc = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(proc, '42'))
        with open(os.path.join(proc, '42', 'smaps'), 'w') as f:
            f.write(
                '7f00-7f02 rw-s 00000000 00:2f 1001   '
                '/dev/hugepages/spdk_pid42map_0\n'
                'Size:               2048 kB\n'
                'Shared_Hugetlb:        0 kB\n'
                'Private_Hugetlb:    2048 kB\n'
                '7f02-7f04 rw-s 00000000 00:2f 1002   '
                '/dev/hugepages/libvirt/qemu/1-x/qemu_back_mem (deleted)\n'
                'Shared_Hugetlb:     4096 kB\n'
                'Private_Hugetlb:       0 kB\n'
                '7f04-7f05 r-xp 00000000 08:01 77   /usr/bin/x\n'
                'Private_Hugetlb:       0 kB\n')
        self.assertEqual({('00:2f', '1001'): 2048, ('00:2f', '1002'): 4096},
                         processes.hugetlb_mappings(42, proc))

    def test_a_guests_ram_is_not_the_vhost_groups(self):
        mappings = {1: {('d', 'own'): 1024, ('d', 'guest'): 4096},
                    2: {('d', 'guest'): 4096}}
        with mock.patch.object(processes, 'group_members',
                               return_value=[1]), \
                mock.patch.object(processes, 'hugetlb_mappings',
                                  side_effect=lambda pid: mappings[pid]):
            self.assertEqual(1.0, processes.group_hugetlb_mib(1, [1, 2]))
