import io
import json
import os
from unittest import mock

import fixtures

from spdk_deploy import cmd
from spdk_deploy import storage
from tests import base
from vhost_target import topology


class TestCommands(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.reactor = max(topology.read_topology().online)

    def run_command(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with mock.patch('sys.stdout', out), mock.patch('sys.stderr', err):
            status = cmd.main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def test_nova_options_from_the_agent_config(self):
        agent = os.path.join(self.dir, 'agent.conf')
        with open(agent, 'w') as f:
            f.write('[spdk_vhost_target]\nreactor_cpus = %d\n'
                    'hugepage_mib_per_node = 64\n' % self.reactor)
        status, out, _ = self.run_command(
            '--config-file', agent, 'nova-options',
            '--provider-config-dir', '/etc/nova/provider_config')
        self.assertEqual(0, status)
        lines = [line.split(' ') for line in out.splitlines()]
        options = {(line[0], line[1]): line[2:] for line in lines}
        self.assertEqual(['spdk_libvirt.SPDKLibvirtDriver'],
                         options['DEFAULT', 'compute_driver'])
        shared = topology.parse_cpulist(
            options['compute', 'cpu_shared_set'][0])
        self.assertNotIn(self.reactor, shared)
        node = topology.read_topology().node_of(self.reactor)
        self.assertEqual(['node:%d,size:2048,count:32' % node],
                         options['DEFAULT', 'reserved_huge_pages'])

    def test_storage_target_config_file(self):
        output = os.path.join(self.dir, 'nvmf.json')
        status, _, _ = self.run_command(
            'storage-target-config', '--output', output, '--aio-file',
            '/data/lvs.img')
        self.assertEqual(0, status)
        with open(output) as f:
            self.assertEqual('bdev_aio_create',
                             json.load(f)['subsystems'][0]['config'][0][
                                 'method'])

    def test_storage_target_config_max_subsystems(self):
        output = os.path.join(self.dir, 'nvmf.json')
        status, _, _ = self.run_command(
            'storage-target-config', '--output', output, '--nvme-pci',
            '0000:01:00.0', '--max-subsystems', '16384')
        self.assertEqual(0, status)
        with open(output) as f:
            config = json.load(f)
        self.assertEqual(16383, storage.max_exports(config))
        status, _, err = self.run_command(
            'storage-target-config', '--output', output, '--aio-file', '/f',
            '--max-subsystems', '1')
        self.assertEqual(1, status)
        self.assertIn('leaves no subsystem for a volume', err)

    def test_storage_target_memory(self):
        status, out, _ = self.run_command('storage-target-memory',
                                          '--connections', '4000')
        self.assertEqual(0, status)
        self.assertEqual(storage.target_memory_mib(4000), int(out))
        status, out, _ = self.run_command(
            'storage-target-memory', '--connections', '100',
            '--queue-pairs', '5')
        self.assertEqual(storage.target_memory_mib(100, 5), int(out))

    def test_errors_are_one_line(self):
        status, _, err = self.run_command(
            'storage-target-config', '--output',
            os.path.join(self.dir, 'x.json'))
        self.assertEqual(1, status)
        self.assertEqual(1, len(err.splitlines()))
        self.assertIn('either a backing file or NVMe', err)
