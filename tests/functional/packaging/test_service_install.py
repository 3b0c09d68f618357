"""``pip install .`` on a node that runs one service: the package needs
neither Cinder nor Nova, and the compute agent's commands run there
(tests/spdk/test_vhost_agent.py TestDaemon runs the agent from the same
environment against real SPDK).
"""

import os
import subprocess

import fixtures

from tests import base
from tests.fixtures import service_venv


class TestServiceInstall(base.TestCase):
    def run_in_venv(self, *args):
        return subprocess.run(args, capture_output=True, text=True,
                              timeout=120)

    def test_neither_cinder_nor_nova_is_pulled_in(self):
        python = service_venv.python()
        for service in ('cinder', 'nova.virt.libvirt'):
            result = self.run_in_venv(python, '-c', 'import %s' % service)
            self.assertIn('ModuleNotFoundError', result.stderr)
        result = self.run_in_venv(python, '-m', 'pip', 'check')
        self.assertEqual(0, result.returncode, result.stdout)

    def test_the_agent_and_its_privileged_helper_import(self):
        result = self.run_in_venv(
            service_venv.python(), '-c',
            'import vhost_target.agent, vhost_target.cmd, '
            'vhost_target.privileged.spdk, vhost_target.privileged.files, '
            'vhost_target.privileged.vhost_user, spdk_deploy.cmd')
        self.assertEqual(0, result.returncode, result.stderr)

    def test_the_agent_plans_and_checks_the_host(self):
        top = self.useFixture(fixtures.TempDir()).path
        conf = os.path.join(top, 'agent.conf')
        with open(conf, 'w') as f:
            f.write('[spdk_vhost_target]\nstate_dir = %s\n'
                    'socket_dir = %s\nnova_conf = %s\n'
                    % (os.path.join(top, 'state'),
                       os.path.join(top, 'sockets'),
                       os.path.join(top, 'nova.conf')))
        agent = os.path.join(service_venv.bin_dir(), 'spdk-vhost-target')
        plan = self.run_in_venv(agent, '--config-file', conf, 'plan')
        self.assertEqual(0, plan.returncode, plan.stderr)
        self.assertIn('reactor', plan.stdout.lower())
        check = self.run_in_venv(agent, '--config-file', conf, 'check')
        # Findings about this host are expected; a crash is not.
        self.assertNotIn('Traceback', check.stderr)
        self.assertIn('nova_conf_missing', check.stdout)
