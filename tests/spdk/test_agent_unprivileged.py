"""SPDK tier: the agent as an unprivileged user (``nobody``), its privsep
daemon started as root through ``helper_command`` (a stand-in for ``sudo
privsep-helper``: a root broker in the test runs the helper the agent asks
for). The agent starts a real SPDK vhost, reaches its RPC socket, secures
and removes a vhost-user socket, has SPDK restarted after a kill, and
stops it, all without root; alone it can do none of this.
"""

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys

import fixtures

from tests import base
from tests.fixtures import hugepages
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import spdk as spdk_fixtures
from vhost_target import topology

SPDK_MIB = 256
# This tree's code for both sides, not an installed copy (privsep-helper
# would import from site-packages first).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HELPER = '%s/privsep-helper' % os.path.dirname(sys.executable)

# Runs as nobody; prints what it saw as one JSON line.
AGENT_SIDE = r'''
import json, os, stat, sys, time
from oslo_config import cfg
from spdk_common import rpc
from vhost_target import config, planner, privileged, supervisor, topology
from vhost_target import vhost
from vhost_target.privileged import spdk as privileged_spdk

conf = cfg.CONF
config.register(conf)
conf(['--config-file', sys.argv[1]], project='spdk-vhost-target')
group = conf.spdk_vhost_target
seen = {'uid': os.geteuid()}
privileged.default.start()
keeper = supervisor.Supervisor(
    group, planner.plan(group, topology.read_topology()),
    on_ready=lambda: None)
keeper.start()
st = os.stat(group.rpc_socket)
seen['rpc_socket'] = [st.st_uid, stat.S_IMODE(st.st_mode)]
client = rpc.SPDKClient(group.rpc_socket)
seen['version'] = client.call('spdk_get_version')['version']
volume = '0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
client.call('bdev_malloc_create', {'name': 'm0', 'num_blocks': 2048,
                                   'block_size': 512})
client.call('vhost_create_blk_controller', {'ctrlr': 'vhost-' + volume,
                                            'dev_name': 'm0'})
target = vhost.VhostTarget(client, group)
path = target.secure_socket(volume)
st = os.stat(path)
seen['vhost_socket'] = [st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)]
try:
    os.chmod(path, 0o666)
    seen['own_chmod'] = 'done'
except PermissionError:
    seen['own_chmod'] = 'refused'
client.call('vhost_delete_controller', {'ctrlr': 'vhost-' + volume})
target._remove_socket(volume)
seen['sockets_left'] = os.listdir(group.socket_dir)
pid = keeper.pid
try:
    os.kill(pid, 9)
    seen['own_kill'] = 'done'
except PermissionError:
    seen['own_kill'] = 'refused'
privileged_spdk.stop_vhost(pid, supervisor.process_start_time(pid),
                           group.rpc_socket, force=True)
deadline = time.monotonic() + 60
while keeper.restarts < 1 and time.monotonic() < deadline:
    time.sleep(0.1)
seen['restarts'] = keeper.restarts
seen['old_pid_state'] = None
try:
    with open('/proc/%d/stat' % pid) as f:
        seen['old_pid_state'] = f.read().rsplit(')', 1)[1].split()[0]
except FileNotFoundError:
    pass
seen['version_after_restart'] = client.call(
    'spdk_get_version')['version']
client.close()
keeper.stop()
seen['spdk_after_stop'] = supervisor.process_start_time(keeper.pid)
privileged.default.stop()
print(json.dumps(seen))
'''


class TestUnprivilegedAgent(base.TestCase):
    def setUp(self):
        super().setUp()
        if not spdk_fixtures.spdk_available('vhost'):
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        if os.geteuid() != 0 or not shutil.which('setpriv'):
            self.skipTest('needs root and setpriv to run the agent as '
                          'another user')
        self.nobody = pwd.getpwnam('nobody')
        top = self.top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        # nobody runs this tree's code and its venv.
        self.useFixture(libvirt_fixtures.Reachable(REPO))
        self.state_dir = os.path.join(top, 'state')
        os.mkdir(self.state_dir, 0o700)
        os.chown(self.state_dir, self.nobody.pw_uid, self.nobody.pw_gid)
        self.rpc_socket = os.path.join(top, 'rpc', 'spdk.sock')
        self.addCleanup(self.kill_spdk)
        hugepages.reserve(SPDK_MIB, 'SPDK vhost of the unprivileged agent')
        self.fifo = os.path.join(top, 'helper.fifo')
        os.mkfifo(self.fifo)
        os.chmod(self.fifo, 0o622)   # the agent writes, root reads
        helper = os.path.join(top, 'helper')
        with open(helper, 'w') as f:
            f.write('#!/bin/sh\necho "$@" > %s\n' % self.fifo)
        os.chmod(helper, 0o755)
        self.config_file = os.path.join(top, 'agent.conf')
        cpus = sorted(topology.read_topology().online)
        group = next(g for g in grp.getgrall()
                     if g.gr_gid == self.nobody.pw_gid).gr_name
        with open(self.config_file, 'w') as f:
            f.write('[spdk_vhost_target]\nrpc_socket = %s\n'
                    'socket_dir = %s\nstate_dir = %s\n'
                    # The agent's own group stands for QEMU's: the agent
                    # lists the socket directory.
                    'socket_group = %s\nreactor_cpus = %d\n'
                    'hugepage_mib_per_node = %d\n'
                    '[spdk_vhost_target_privileged]\n'
                    'helper_command = %s --config-file %s\n' % (
                        self.rpc_socket, os.path.join(top, 'sockets'),
                        self.state_dir, group, cpus[-1], SPDK_MIB, helper,
                        self.config_file))
        os.chmod(self.config_file, 0o644)
        # Root's side of the helper, what sudo would run: a process, not
        # a thread (eventlet, which the SPDK tier's other modules load,
        # would block the whole test on the FIFO). privsep-helper forks
        # the daemon and exits.
        broker = subprocess.Popen(
            ['sh', '-c', 'while read -r line < "$1"; do '
             '[ "$line" = stop ] && exit 0; "$2" $line; done',
             'broker', self.fifo, HELPER], env=self.env())
        self.addCleanup(self.stop_broker, broker)

    @staticmethod
    def env():
        return dict(os.environ, PYTHONPATH=REPO)

    def stop_broker(self, broker):
        if broker.poll() is None:
            with open(self.fifo, 'w') as f:
                f.write('stop\n')
        broker.wait(10)

    def kill_spdk(self):
        for pid in spdk_fixtures.pids_serving(self.rpc_socket):
            os.kill(pid, 9)

    def test_agent_as_nobody(self):
        out = subprocess.run(
            ['setpriv', '--reuid=%d' % self.nobody.pw_uid,
             '--regid=%d' % self.nobody.pw_gid, '--clear-groups',
             sys.executable, '-c', AGENT_SIDE, self.config_file],
            capture_output=True, text=True, timeout=240, cwd=REPO,
            env=self.env())
        self.assertEqual(0, out.returncode, out.stderr[-3000:])
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        uid = self.nobody.pw_uid
        self.assertEqual(uid, seen['uid'])
        self.assertEqual([uid, 0o600], seen['rpc_socket'])
        self.assertTrue(seen['version'].startswith('SPDK'))
        self.assertEqual([0, self.nobody.pw_gid, 0o660],
                         seen['vhost_socket'])
        self.assertEqual(('refused', 'refused'),
                         (seen['own_chmod'], seen['own_kill']))
        self.assertEqual([], seen['sockets_left'])
        # Restarted after the kill; the dead one reaped, no zombie.
        self.assertEqual(1, seen['restarts'])
        self.assertIsNone(seen['old_pid_state'])
        self.assertEqual(seen['version'], seen['version_after_restart'])
        self.assertIsNone(seen['spdk_after_stop'])
        for path, mode in ((os.path.dirname(self.rpc_socket), 0o750),
                           (os.path.join(self.top, 'sockets'), 0o750)):
            st = os.stat(path)
            self.assertEqual((0, self.nobody.pw_gid, mode),
                             (st.st_uid, st.st_gid, st.st_mode & 0o7777))
