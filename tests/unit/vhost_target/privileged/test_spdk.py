"""Starting and stopping SPDK vhost in the privsep daemon: the command
line it makes, what it refuses, and processes standing for SPDK (their
command line is SPDK vhost's) started, secured and stopped for real.
"""

import os
import signal
import socket
import stat
import subprocess
import sys

from spdk_common import exception as spdk_exc
from tests.base import wait_until
from tests.unit.vhost_target import privileged as base
from tests.unit.vhost_target import spawn_fake_spdk
from vhost_target.privileged import spdk
from vhost_target import supervisor

# Stands for SPDK's vhost: logs its arguments, then sleeps, with SPDK's
# command line (python -c ... --no-pci -m ... -r ...).
FAKE_VHOST = '''#!/bin/sh
echo "vhost $*"
exec %s -c 'import time; time.sleep(60)' "$@"
''' % sys.executable

# Listens on the path after -r, as SPDK does on its RPC socket.
LISTENER = ('import socket, sys, time\n'
            'time.sleep(float(sys.argv[1]))\n'
            's = socket.socket(socket.AF_UNIX)\n'
            's.bind(sys.argv[sys.argv.index("-r") + 1])\n'
            's.listen(1)\n'
            'time.sleep(60)\n')


def state_of(pid):
    """The process' state letter, or None once it is gone (reaped)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return None


class SPDKFiles(base.InProcessTestCase):
    def setUp(self):
        super().setUp()
        bin_dir = os.path.join(self.dir, 'bin')
        os.mkdir(bin_dir, 0o755)
        self.binary = os.path.join(bin_dir, 'vhost')
        with open(self.binary, 'w') as f:
            f.write(FAKE_VHOST)
        os.chmod(self.binary, 0o755)
        self.rpc = os.path.join(self.dir, 'rpc')
        os.mkdir(self.rpc, 0o750)
        self.rpc_socket = os.path.join(self.rpc, 'spdk.sock')
        self.state = os.path.join(self.dir, 'state')
        os.mkdir(self.state, 0o700)
        self.json = os.path.join(self.state, 'startup.json')
        with open(self.json, 'w') as f:
            f.write('{}')
        self.log = os.path.join(self.state, 'spdk-vhost.log')

    def start_args(self, **changes):
        args = dict(binary=self.binary, cpumask='0x4',
                    rpc_socket=self.rpc_socket,
                    socket_dir=os.path.join(self.dir, 'sockets'),
                    json_config=self.json, env_context='',
                    memory_mib=256, page_size_kib=2048, share_cpus=False,
                    log_path=self.log)
        args.update(changes)
        return args

    def spawn(self, command):
        proc = subprocess.Popen(command)
        return self.cleaned(proc)

    def spawn_fake(self, rpc_socket):
        return self.cleaned(spawn_fake_spdk(rpc_socket))

    def cleaned(self, proc):
        self.addCleanup(lambda: proc.poll() is None and (
            proc.kill() or proc.wait()))
        return proc


class TestCommandLine(SPDKFiles):
    def test_as_the_supervisor_ran_it(self):
        self.assertEqual(
            [self.binary, '--no-pci', '-m', '0x4', '-r', self.rpc_socket,
             '-S', '/s', '--json', self.json, '--env-context',
             '--socket-mem=0,256 --socket-limit=2,256', '--huge-dir',
             '/dev/hugepages1G'],
            spdk.vhost_command(self.binary, '0x4', self.rpc_socket, '/s',
                               self.json, '--socket-mem=0,256 '
                               '--socket-limit=2,256', None, 1048576))
        self.assertEqual(['-s', '256'], spdk.vhost_command(
            self.binary, '0x4', self.rpc_socket, '/s', self.json, '', 256,
            2048)[-2:])
        self.assertEqual(['-s', '256', '--disable-cpumask-locks'],
                         spdk.vhost_command(
                             self.binary, '0x4', self.rpc_socket, '/s',
                             self.json, '', 256, 2048, True)[-3:])

    def test_bad_arguments(self):
        good = ('0x4', self.rpc_socket, '/s', self.json, '', 256, 2048)
        for index, bad in ((0, '4'), (0, '0x4 -c /etc/x'), (0, None),
                           (1, 'spdk.sock'), (1, '/run/x'), (2, 's/'),
                           (4, '--socket-mem=1 --vdev=net_tap0'),
                           (4, '--socket-mem=1;x --socket-limit=1'),
                           (5, 0), (5, '256'), (5, True), (6, 4096)):
            args = list(good)
            args[index] = bad
            self.assertRaises(ValueError, spdk.vhost_command, self.binary,
                              *args)


class TestStart(SPDKFiles):
    def test_only_a_root_owned_vhost_binary(self):
        self.assertEqual(self.binary, spdk.check_binary(self.binary))
        for binary in ('vhost', os.path.join(self.dir, 'bin', 'nvmf_tgt'),
                       os.path.join(self.dir, 'bin', '..', 'bin', 'vhost')):
            self.assertRaises(ValueError, spdk.check_binary, binary)
        os.chmod(self.binary, 0o775)
        self.assertRaises(spdk_exc.UnsafePath, spdk.check_binary, self.binary)
        os.chmod(self.binary, 0o755)
        os.chmod(os.path.dirname(self.binary), 0o777)
        self.assertRaises(spdk_exc.UnsafePath, spdk.check_binary, self.binary)
        os.chmod(os.path.dirname(self.binary), 0o755)
        os.chown(self.binary, 65534, -1)
        self.assertRaises(spdk_exc.UnsafePath, spdk.check_binary, self.binary)

    def test_the_log_is_no_link(self):
        victim = os.path.join(self.dir, 'victim')
        open(victim, 'w').close()
        os.symlink(victim, self.log)
        self.assertRaises(spdk_exc.UnsafePath, spdk.start_vhost,
                          **self.start_args())
        os.unlink(self.log)
        os.link(victim, self.log)
        self.assertRaises(spdk_exc.UnsafePath, spdk.start_vhost,
                          **self.start_args())
        self.assertEqual(0, os.stat(victim).st_size)

    def test_the_config_is_a_json_file(self):
        self.assertRaises(ValueError, spdk.start_vhost,
                          **self.start_args(json_config='/etc/shadow'))
        os.mkdir(os.path.join(self.dir, 'dir.json'))
        self.assertRaises(spdk_exc.UnsafePath, spdk.start_vhost,
                          **self.start_args(json_config=os.path.join(
                              self.dir, 'dir.json')))
        self.assertFalse(os.path.exists(self.log))


class TestInTheDaemon(SPDKFiles):
    """Through the process' privsep daemon, as the supervisor calls."""

    def setUp(self):
        super().setUp()
        # The shared daemon, not this process, runs the entrypoints.
        from vhost_target import privileged
        privileged.default.set_client_mode(True)

    def test_started_in_its_session_logged_and_reaped_when_dead(self):
        pid = spdk.start_vhost(**self.start_args())
        started = supervisor.process_start_time(pid)
        self.addCleanup(lambda: supervisor.process_start_time(pid) == started
                        and os.kill(pid, signal.SIGKILL))
        self.assertIsNotNone(started)
        # Not this process' child: the daemon's, in a session of its own.
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        self.assertNotEqual(os.getpid(), int(fields[1]))
        self.assertEqual(pid, int(fields[3]))   # the session leader

        # Written by the process as it starts: wait for the whole line.
        def logged():
            if not os.path.exists(self.log):
                return False
            with open(self.log) as f:
                return ('vhost --no-pci -m 0x4 -r %s' % self.rpc_socket
                        in f.read())
        wait_until(logged)
        self.assertTrue(spdk.stop_vhost(pid, started, self.rpc_socket))
        self.assertTrue(supervisor.wait_for_exit(pid, started, 10))
        # Reaped: no zombie of the daemon stays.
        wait_until(lambda: state_of(pid) is None)
        self.assertFalse(spdk.stop_vhost(pid, started, self.rpc_socket))

    def test_stop_signals_only_spdk_of_that_socket(self):
        other = self.spawn(['sleep', '60'])
        started = supervisor.process_start_time(other.pid)
        self.assertRaises(spdk_exc.NotSPDK, spdk.stop_vhost, other.pid,
                          started, self.rpc_socket)
        fake = self.spawn_fake('/run/other/spdk.sock')
        self.assertRaises(spdk_exc.NotSPDK, spdk.stop_vhost, fake.pid,
                          supervisor.process_start_time(fake.pid),
                          self.rpc_socket)
        self.assertIsNone(other.poll())
        self.assertIsNone(fake.poll())

    def test_stop_and_force(self):
        fake = self.spawn_fake(self.rpc_socket)
        started = supervisor.process_start_time(fake.pid)
        # Another start time: the pid names another process now.
        self.assertFalse(spdk.stop_vhost(fake.pid, started + 1,
                                         self.rpc_socket))
        self.assertIsNone(fake.poll())
        self.assertTrue(spdk.stop_vhost(fake.pid, started, self.rpc_socket,
                                        force=True))
        self.assertEqual(-signal.SIGKILL, fake.wait(10))
        fake = self.spawn_fake(self.rpc_socket)
        self.assertTrue(spdk.stop_vhost(
            fake.pid, supervisor.process_start_time(fake.pid),
            self.rpc_socket))
        self.assertEqual(-signal.SIGTERM, fake.wait(10))

    def test_stop_arguments(self):
        for args in ((1, 5), (True, 5), ('12', 5), (12, '5'), (12, None)):
            self.assertRaises(ValueError, spdk.stop_vhost, *args,
                              rpc_socket=self.rpc_socket)
        self.assertRaises(ValueError, spdk.stop_vhost, 12, 5, 'x.sock')
        self.assertRaises(ValueError, spdk.stop_vhost, 12, 5,
                          self.rpc_socket, force='yes')

    def test_rpc_socket_given_to_the_agent_once_spdk_listens(self):
        fake = self.spawn([sys.executable, '-c', LISTENER, '0.5',
                           '--no-pci', '-r', self.rpc_socket])
        wait_until(lambda: spdk._is_vhost_of(fake.pid, self.rpc_socket))
        # Not listening yet: nothing done, the caller looks again.
        self.assertFalse(spdk.secure_rpc_socket(fake.pid, self.rpc_socket,
                                                65534))
        wait_until(lambda: os.path.exists(self.rpc_socket))
        wait_until(lambda: spdk.secure_rpc_socket(fake.pid, self.rpc_socket,
                                                  65534))
        st = os.stat(self.rpc_socket)
        self.assertEqual((65534, 0o600),
                         (st.st_uid, stat.S_IMODE(st.st_mode)))

    def test_rpc_socket_of_another_process_is_refused(self):
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(self.rpc_socket)
        listener.listen(1)
        self.addCleanup(listener.close)
        self.assertRaises(spdk_exc.NotSPDK, spdk.secure_rpc_socket,
                          os.getpid(), self.rpc_socket, 65534)
        fake = self.spawn_fake(self.rpc_socket)
        wait_until(lambda: spdk._is_vhost_of(fake.pid, self.rpc_socket))
        # SPDK's command line, but the socket is someone else's.
        self.assertFalse(spdk.secure_rpc_socket(fake.pid, self.rpc_socket,
                                                65534))
        self.assertEqual(0, os.stat(self.rpc_socket).st_uid)
        for uid in (-1, True, '0', 2 ** 31 - 7):
            self.assertRaises(ValueError, spdk.secure_rpc_socket, fake.pid,
                              self.rpc_socket, uid)

    def test_stale_rpc_socket_removed_a_live_one_kept(self):
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(self.rpc_socket)
        listener.listen(1)
        self.assertRaises(FileExistsError, spdk.remove_stale_rpc_socket,
                          self.rpc_socket)
        self.assertTrue(os.path.exists(self.rpc_socket))
        listener.close()
        open(self.rpc_socket + '.lock', 'w').close()
        spdk.remove_stale_rpc_socket(self.rpc_socket)
        self.assertEqual([], os.listdir(self.rpc))
        spdk.remove_stale_rpc_socket(self.rpc_socket)   # nothing there
        os.chmod(self.rpc, 0o777)
        self.assertRaises(spdk_exc.UnsafePath, spdk.remove_stale_rpc_socket,
                          self.rpc_socket)
