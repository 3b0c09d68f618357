"""The operator commands on a captured host (sysfs fixture tree), with a
private config: nothing depends on the machine the tests run on.
"""

import io
import os
import signal
import stat
import subprocess
from unittest import mock

import fixtures
from oslo_config import cfg
from oslo_privsep import priv_context

from tests import base
from tests.unit.vhost_target import read_fixture_topology
from tests.unit.vhost_target import spawn_fake_spdk
from vhost_target import cmd
from vhost_target import privileged
from vhost_target import supervisor
from vhost_target import topology


class TestCommands(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.sockets = os.path.join(self.dir, 'sockets')
        os.mkdir(self.sockets, 0o750)
        self.nova = os.path.join(self.dir, 'nova.conf')
        self.host = read_fixture_topology('one_node')
        self.useFixture(fixtures.MockPatchObject(
            topology, 'read_topology', return_value=self.host))
        self.cpus = sorted(self.host.online)

    def run_command(self, command, nova='', with_spdk=False, **options):
        with open(self.nova, 'w') as f:
            f.write(nova)
        values = dict(socket_dir=self.sockets, nova_conf=self.nova,
                      socket_group='root', reactor_cpus=str(self.cpus[-1]),
                      hugepage_mib_per_node=128,
                      spdk_vhost_binary=os.path.join(self.dir, 'vhost'),
                      rpc_socket=os.path.join(self.dir, 'spdk.sock'),
                      state_dir=os.path.join(self.dir, 'state'))
        values.update(options)
        config = os.path.join(self.dir, 'agent.conf')
        with open(config, 'w') as f:
            f.write('[spdk_vhost_target]\n')
            for key, value in values.items():
                f.write('%s = %s\n' % (key, value))
        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            status = cmd.main(['--config-file', config, command]
                              + (['--with-spdk'] if with_spdk else []),
                              conf=cfg.ConfigOpts())
        return status, out.getvalue()

    def good_nova(self):
        return ('[compute]\ncpu_dedicated_set = %d\n'
                '[DEFAULT]\nreserved_huge_pages = node:0,size:2048,'
                'count:64\n' % self.cpus[0])

    def make_binary(self):
        path = os.path.join(self.dir, 'vhost')
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n')
        os.chmod(path, stat.S_IRWXU)

    def test_plan_describes_this_host(self):
        status, out = self.run_command('plan')
        self.assertEqual(0, status)
        nodes = len(self.host.nodes)
        self.assertEqual(nodes, out.count('NUMA node ') // 2 or nodes)
        self.assertIn('reactor CPUs: %d' % self.cpus[-1], out)
        self.assertIn('reserved_huge_pages = node:0,size:2048,count:64', out)

    def test_check_clean(self):
        self.make_binary()
        status, out = self.run_command('check', nova=self.good_nova())
        self.assertEqual((0, 'OK: no findings\n'), (status, out))

    def test_each_misconfiguration_fails_the_check(self):
        self.make_binary()
        reactor = self.cpus[-1]
        cases = {
            'reactor_cpus_offline': dict(reactor_cpus='4095'),
            'reactor_cpus_in_cpu_dedicated_set': dict(
                nova='[compute]\ncpu_dedicated_set = %d\n' % reactor),
            'nova_reserved_huge_pages_short': dict(
                nova='[compute]\ncpu_dedicated_set = %d\n' % self.cpus[0]),
            'socket_dir_world_writable': dict(socket_dir=self.dir),
            'spdk_binary_missing': dict(
                spdk_vhost_binary=os.path.join(self.dir, 'none')),
            'socket_group_missing': dict(socket_group='no-such-group-x'),
            'spdk_rpc_unreachable': dict(adopt=True),
            'hugepage_memory_below_minimum': dict(hugepage_mib_per_node=64),
        }
        os.chmod(self.dir, 0o777)
        self.addCleanup(os.chmod, self.dir, 0o700)
        for code, options in cases.items():
            nova = options.pop('nova', self.good_nova())
            status, out = self.run_command('check', nova=nova, **options)
            self.assertEqual(1, status, (code, out))
            self.assertIn(code, out)
            for line in out.splitlines():
                self.assertRegex(line, r'^(ERROR|WARNING): [a-z_]+: ')

    def test_loss_settings_spdk_refuses_stop_every_command(self):
        err = io.StringIO()
        with mock.patch('sys.stderr', err):
            status, out = self.run_command(
                'run', replica_ctrlr_loss_timeout_sec=3,
                replica_fast_io_fail_timeout_sec=5, reconnect_delay_sec=4)
        self.assertEqual((2, ''), (status, out))
        self.assertEqual(
            '[spdk_vhost_target] reconnect_delay_sec = 4 is more than '
            'replica_ctrlr_loss_timeout_sec = 3\n'
            'ERROR: [spdk_vhost_target] replica_fast_io_fail_timeout_sec = 5 '
            'is more than replica_ctrlr_loss_timeout_sec = 3\n',
            err.getvalue().replace('ERROR: ', '', 1))

    def test_status_without_spdk(self):
        status, out = self.run_command('status')
        self.assertEqual(1, status)
        self.assertIn('unavailable', out)

    def test_stop_without_an_agent(self):
        status, out = self.run_command('stop')
        self.assertEqual((0, 'The agent is not running\n'), (status, out))
        status, out = self.run_command('stop', with_spdk=True)
        self.assertEqual(0, status)
        self.assertIn('SPDK vhost is not running', out)

    def test_stop_with_spdk_refused_when_spdk_is_adopted(self):
        status, out = self.run_command('stop', with_spdk=True, adopt=True)
        self.assertEqual(1, status)
        self.assertIn('SPDK is adopted', out)

    def test_stop_stops_the_recorded_agent_and_spdk(self):
        state_dir = os.path.join(self.dir, 'state')
        os.mkdir(state_dir, 0o700)
        agent = subprocess.Popen(['sleep', '60'])
        spdk = spawn_fake_spdk(os.path.join(self.dir, 'spdk.sock'))
        self.addCleanup(lambda: [p.kill() or p.wait() for p in (agent, spdk)])
        supervisor.write_pid_file(os.path.join(state_dir, 'agent.pid'),
                                  agent.pid)
        supervisor.write_pid_file(os.path.join(state_dir, 'spdk-vhost.pid'),
                                  spdk.pid)
        status, out = self.run_command('stop', with_spdk=True)
        self.assertEqual(0, status, out)
        self.assertIn('Stopped the agent, pid %d' % agent.pid, out)
        self.assertIn('Stopped SPDK vhost, pid %d' % spdk.pid, out)
        self.assertEqual(-signal.SIGTERM, agent.wait(5))
        self.assertEqual(-signal.SIGTERM, spdk.wait(5))
        self.assertFalse(os.path.exists(os.path.join(state_dir,
                                                     'spdk-vhost.pid')))

    def test_run_refuses_while_another_agent_runs(self):
        state_dir = os.path.join(self.dir, 'state')
        os.mkdir(state_dir, 0o700)
        other = subprocess.Popen(['sleep', '60'])
        self.addCleanup(lambda: other.kill() or other.wait())
        supervisor.write_pid_file(os.path.join(state_dir, 'agent.pid'),
                                  other.pid)
        self.useFixture(fixtures.MockPatchObject(
            supervisor.Supervisor, 'start',
            side_effect=AssertionError('started')))
        status, _out = self.run_command('run', host_nqn='nqn.2014-08.org.'
                                        'nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-'
                                        '9a55-6f2b2a1e0c11')
        self.assertEqual(1, status)


class TestPrivsepStart(base.TestCase):
    """run and stop start the privsep daemon: forked as root, with the
    helper (sudo privsep-helper) otherwise; one that runs is kept.
    """

    def setUp(self):
        super().setUp()
        self.start = self.useFixture(fixtures.MockPatchObject(
            privileged.default, 'start')).mock
        self.stop = self.useFixture(fixtures.MockPatchObject(
            privileged.default, 'stop')).mock

    def test_a_running_daemon_is_kept(self):
        self.useFixture(fixtures.MockPatchObject(
            privileged.default, 'channel', mock.Mock()))
        self.assertFalse(privileged.start())
        cmd._stop_privsep(False)
        self.start.assert_not_called()
        self.stop.assert_not_called()

    def test_a_configuration_reset_does_not_drop_the_capabilities(self):
        # oslo.config's reset() (test fixtures) drops set_default values,
        # the context's capabilities among them.
        patcher = mock.patch.object(privileged.default, 'channel', None)
        patcher.start()
        self.addCleanup(patcher.stop)
        group = privileged.CFG_SECTION
        cfg.CONF.set_default('capabilities', [], group=group)
        self.addCleanup(cfg.CONF.set_default, 'capabilities',
                        privileged.CAPABILITIES, group=group)
        self.assertTrue(privileged.start())
        self.assertEqual(privileged.CAPABILITIES,
                         cfg.CONF[group].capabilities)

    def test_forked_as_root_helper_otherwise(self):
        # None: not started (MockPatchObject would read None as "a mock").
        patcher = mock.patch.object(privileged.default, 'channel', None)
        patcher.start()
        self.addCleanup(patcher.stop)
        with mock.patch('os.geteuid', return_value=0):
            self.assertTrue(privileged.start())
        self.start.assert_called_once_with(priv_context.Method.FORK)
        self.start.reset_mock()
        with mock.patch('os.geteuid', return_value=1000):
            self.assertTrue(privileged.start())
        self.start.assert_called_once_with()
        cmd._stop_privsep(True)
        self.stop.assert_called_once_with()
