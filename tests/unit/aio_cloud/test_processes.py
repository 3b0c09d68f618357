"""The process table: started in sessions of their own, stopped by PID."""

import os
import subprocess
import sys

import fixtures

from aio_cloud import processes
from tests import base


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
