"""The multi-node cloud's layout and configuration (``tools/cloud up
--compute-nodes N --storage-nodes M``), and that the defaults keep the
one-host cloud's files where they were.
"""

import ipaddress
import os
import types

import fixtures

from tests import base
from tools.aio_cloud import capacity
from tools.aio_cloud import cloud
from tools.aio_cloud import configs
from tools.aio_cloud import demo
from tools.aio_cloud import fabric
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import node_demos
from tools.aio_cloud import processes
from tools.aio_cloud import services

SECRET = {name: name + '-pw' for name in
          ('database', 'rabbitmq', 'admin') + layout_mod.SERVICE_USERS}


class TestNodeLayout(base.TestCase):

    def setUp(self):
        super().setUp()
        self.layout = layout_mod.Layout('/srv/cloud')

    def test_one_host_cloud_keeps_its_places(self):
        [node] = layout_mod.compute_nodes(self.layout, 1)
        self.assertIsNone(node.name)
        self.assertFalse(node.namespaced)
        self.assertEqual('nova-compute', node.suffix('nova-compute'))
        self.assertEqual('/srv/cloud/libvirt', node.libvirt_dir)
        self.assertEqual('/srv/cloud/etc/nova/nova-compute.conf',
                         node.nova_conf)
        self.assertEqual('/srv/cloud/etc/spdk-vhost-target/agent.conf',
                         node.agent_conf)
        [storage] = layout_mod.storage_nodes(self.layout, 1)
        self.assertEqual('/srv/cloud/spdk/nvmf.sock', storage.rpc_socket)
        self.assertEqual('nvmf_tgt', storage.suffix('nvmf_tgt'))
        self.assertFalse(storage.namespaced)

    def test_nodes_have_their_own_names_addresses_and_state(self):
        nodes = layout_mod.compute_nodes(self.layout, 2)
        self.assertEqual(['compute1', 'compute2'], [n.name for n in nodes])
        self.assertEqual(['10.213.47.11', '10.213.47.12'],
                         [n.address for n in nodes])
        self.assertEqual('libvirtd@compute2', nodes[1].suffix('libvirtd'))
        # One socket_dir path for all; each node sees its own there.
        self.assertEqual({'/srv/cloud/vhost-sockets'},
                         {n.socket_dir for n in nodes})
        self.assertEqual(['/srv/cloud/nodes/compute1/vhost-sockets',
                          '/srv/cloud/nodes/compute2/vhost-sockets'],
                         [n.own_socket_dir for n in nodes])
        self.assertEqual(2, len({n.agent_rpc_socket for n in nodes}))
        storage = layout_mod.storage_nodes(self.layout, 2)
        self.assertEqual(['10.213.47.21', '10.213.47.22'],
                         [n.address for n in storage])
        self.assertTrue(storage[1].namespaced)
        self.assertEqual('/srv/cloud/nodes/storage2/spdk/nvmf.sock',
                         storage[1].rpc_socket)
        # Every node in the bridge's subnet, none on the control plane's.
        self.assertEqual(4, len({n.address for n in nodes + storage} - {
            fabric.CONTROL_ADDRESS}))
        self.assertTrue(all(ipaddress.ip_address(n.address) in fabric.SUBNET
                            for n in nodes + storage))

    def test_counts_saved_by_up(self):
        root = self.useFixture(fixtures.TempDir()).path
        layout = layout_mod.Layout(root)
        os.makedirs(layout.run())
        self.assertEqual((1, 1), layout_mod.node_counts(layout))
        self.assertEqual('127.0.0.1', layout.host)
        self.assertIn('@127.0.0.1:', layout.transport_url(SECRET))
        layout_mod.save_nodes(layout, 3, 2)
        self.assertEqual((3, 2), layout_mod.node_counts(layout))
        self.assertEqual(3, len(layout_mod.compute_nodes(layout)))
        # The control plane moves to the bridge, where the nodes reach it,
        # with a RabbitMQ user of its own (guest is for loopback only).
        self.assertEqual(fabric.CONTROL_ADDRESS, layout.host)
        self.assertEqual('rabbit://aio:rabbitmq-pw@10.213.47.1:13672/',
                         layout.transport_url(SECRET))
        self.assertEqual('10.213.47.%', layout.database_clients)


class TestNodeConfigs(base.TestCase):

    def setUp(self):
        super().setUp()
        self.layout = layout_mod.Layout('/srv/cloud')
        self.node = layout_mod.ComputeNode(self.layout, 2)

    def test_default_files_are_unchanged_by_the_node_argument(self):
        node = layout_mod.ComputeNode(self.layout)
        self.assertEqual(
            configs.nova_compute(self.layout, SECRET, '/venv'),
            configs.nova_compute(self.layout, SECRET, '/venv', node))
        conf = configs.nova_compute(self.layout, SECRET, '/venv')
        self.assertNotIn('host', conf['DEFAULT'])
        self.assertNotIn('live_migration_scheme', conf['libvirt'])
        agent = configs.vhost_agent(self.layout, SECRET, '/v', 'nqn.x', 1,
                                    256)
        self.assertNotIn('host', agent['DEFAULT'])
        self.assertNotIn('share_reactor_cpus', agent['spdk_vhost_target'])

    def test_nova_compute_of_a_node(self):
        conf = configs.nova_compute(self.layout, SECRET, '/venv', self.node)
        self.assertEqual('compute2', conf['DEFAULT']['host'])
        self.assertEqual('10.213.47.12', conf['DEFAULT']['my_ip'])
        self.assertEqual('/srv/cloud/nodes/compute2/lib/nova',
                         conf['DEFAULT']['state_path'])
        # Shared by the nodes, as an NFS instances directory is.
        self.assertEqual('/srv/cloud/lib/nova/instances',
                         conf['DEFAULT']['instances_path'])
        self.assertEqual('/srv/cloud/log/nova-compute@compute2.log',
                         conf['DEFAULT']['log_file'])
        libvirt = conf['libvirt']
        self.assertIn('socket=/srv/cloud/nodes/compute2/libvirt/sock/',
                      libvirt['connection_uri'])
        self.assertEqual('tcp', libvirt['live_migration_scheme'])
        self.assertEqual('10.213.47.12',
                         libvirt['live_migration_inbound_addr'])

    def test_agent_of_a_node(self):
        conf = configs.vhost_agent(self.layout, SECRET, '/v', 'nqn.x', 1,
                                   256, self.node)
        self.assertEqual('compute2', conf['DEFAULT']['host'])
        group = conf['spdk_vhost_target']
        self.assertTrue(group['share_reactor_cpus'])
        self.assertEqual('/srv/cloud/vhost-sockets', group['socket_dir'])
        self.assertEqual('/srv/cloud/etc/compute2/nova-compute.conf',
                         group['nova_conf'])
        self.assertEqual('/srv/cloud/nodes/compute2/lib/spdk-vhost-target',
                         group['state_dir'])

    def test_cinder_volume_of_a_storage_node(self):
        node = layout_mod.StorageNode(self.layout, 2)
        conf = configs.cinder_volume(self.layout, SECRET, '/venv', node)
        self.assertEqual('storage2', conf['DEFAULT']['host'])
        backend = conf[configs.SPDK_BACKEND]
        # The same back-end name on every node: the volume types match all.
        self.assertEqual(configs.SPDK_BACKEND,
                         backend['volume_backend_name'])
        self.assertEqual('10.213.47.22', backend['spdk_target_addresses'])
        self.assertEqual('/srv/cloud/nodes/storage2/spdk/nvmf.sock',
                         backend['spdk_rpc_socket'])
        self.assertEqual('/srv/cloud/lib/cinder/storage2/spdk',
                         backend['spdk_state_dir'])
        self.assertEqual('/srv/cloud/etc/cinder/storage2.conf',
                         node.cinder_conf)

    def test_nova_reserves_every_other_spdk_of_the_machine(self):
        root = self.useFixture(fixtures.TempDir()).path
        layout = layout_mod.Layout(root)
        os.makedirs(layout.run())
        layout_mod.save_nodes(layout, 2, 3)
        svc = services.Services(layout, '/venv', SECRET)
        self.assertEqual(3 * layout_mod.NVMF_MEM_MIB +
                         layout_mod.VHOST_MEM_MIB,
                         svc.other_spdk_mib(svc.compute_nodes[0]))
        layout_mod.save_nodes(layout, 1, 1)
        svc = services.Services(layout, '/venv', SECRET)
        self.assertEqual(layout_mod.NVMF_MEM_MIB,
                         svc.other_spdk_mib(svc.compute_nodes[0]))


class TestNodeCapacity(base.TestCase):

    def test_hugepages_per_node(self):
        needs = capacity.up_needs(nvmf_mib=512, vhost_mib=256, guests=2,
                                  guest_mib=256, dd_mib=128,
                                  compute_nodes=2, storage_nodes=3)
        self.assertEqual(['nvmf_tgt 3 x 512 MiB', 'SPDK vhost 2 x 256 MiB',
                          '2 guests x 256 MiB', 'spdk_dd 128 MiB'],
                         [text for text, _mib in needs])
        self.assertEqual(3 * 512 + 2 * 256 + 512 + 128,
                         sum(mib for _text, mib in needs))

    def test_memory_per_node(self):
        self.assertEqual(capacity.SERVICES_MIB, capacity.services_mib())
        self.assertEqual(capacity.SERVICES_MIB + capacity.COMPUTE_NODE_MIB +
                         2 * capacity.STORAGE_NODE_MIB,
                         capacity.services_mib(2, 3))

    def test_the_network_of_a_multi_node_cloud_is_checked(self):
        self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.capacity.busy_ports', return_value=[]))
        in_the_way = self.useFixture(fixtures.MockPatch(
            'tools.aio_cloud.fabric.in_the_way',
            return_value=['bridge spdkos-br0'])).mock
        error = self.assertRaises(capacity.ShortError, capacity.check_up,
                                  compute_nodes=2)
        self.assertIn('10.213.47.0/24', str(error))
        self.assertIn('bridge spdkos-br0', str(error))
        in_the_way.reset_mock()
        self.assertRaises(capacity.ShortError, capacity.check_up,
                          grow=False, needs=[('x', 10 ** 9)])
        in_the_way.assert_not_called()

    def test_node_counts_are_bounded(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.useFixture(
            fixtures.StringStream('stderr')).stream))
        self.assertRaises(SystemExit, capacity.main,
                          ['up', '--compute-nodes', '0'])


class TestNodeProcesses(base.TestCase):

    def test_every_nodes_nova_compute_stops_first(self):
        entries = [processes.Entry(name, 1, 1, None, '', started, 1.0)
                   for name, started in (
                       ('namespaces@compute1', 1), ('libvirtd@compute1', 2),
                       ('nova-compute@compute1', 3),
                       ('spdk-vhost-target@compute2', 4),
                       ('nova-compute@compute2', 5))]
        self.assertEqual(
            ['nova-compute@compute2', 'nova-compute@compute1',
             'spdk-vhost-target@compute2', 'libvirtd@compute1',
             'namespaces@compute1'],
            [e.name for e in processes.stop_order(entries,
                                                  cloud.STOP_FIRST)])

    def test_restart_refuses_a_nodes_namespaces(self):
        root = self.useFixture(fixtures.TempDir()).path
        layout = layout_mod.Layout(root)
        os.makedirs(layout.run())
        table = processes.ProcessTable(layout.process_table)
        proc = table.start('namespaces@compute1', ['sleep', '300'],
                           layout.path('log'))
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        exc = self.assertRaises(cloud.CloudError, cloud.restart, layout,
                                '/venv', 'namespaces@compute1')
        self.assertIn('holds the namespaces', str(exc))


class TestHeartbeats(base.TestCase):

    def test_lines_of_one_volume_with_the_guests_uptime(self):
        volume = '0123456789abcdef0123456789'
        console = ('SPDK-LIVE 12.50 0123456789abcdef0123 aaa\n'
                   'SPDK-CHECK read 0123456789abcdef0123 aaa\n'
                   'SPDK-LIVE 14.51 ffffffffffffffffffff bbb\n'
                   'SPDK-LIVE 14.52 0123456789abcdef0123 ccc\r\n')
        self.assertEqual([(12.5, 'aaa'), (14.52, 'ccc')],
                         node_demos.heartbeats(console, volume))

    def test_fence_marks_of_one_volume(self):
        volume = '0123456789abcdef0123456789'
        console = ('SPDK-FENCE 3.10 0123456789abcdef0123 1 ok\n'
                   'SPDK-FENCE 3.11 ffffffffffffffffffff 1 ok\n'
                   'SPDK-FENCE 5.20 0123456789abcdef0123 2 foreign:b00t\r\n')
        self.assertEqual([(3.1, 1, 'ok'), (5.2, 2, 'foreign:b00t')],
                         node_demos.fence_marks(console, volume))

    def test_replica_writer_reports_and_its_longest_silence(self):
        console = ('SPDK-REPL 10 5 0\n'
                   'SPDK-REPL 12 9 0\r\n'
                   'SPDK-REPL 14 12 0\n'
                   'SPDK-REPL 20 13 0\n'
                   'SPDK-REPL 22 20 1\n')
        reports = node_demos.replica_reports(console)
        self.assertEqual((20, 1), node_demos.replica_counts(console))
        self.assertIsNone(node_demos.replica_counts('booting\n'))
        # From the report of 9 writes on: 12, 14, 20, 22.
        self.assertEqual(6, node_demos.longest_silence(reports, 9))
        self.assertEqual(0, node_demos.longest_silence(reports, 20))

    def test_the_replicated_demo_fails_a_copys_node_not_its_back_ends(self):
        storage = [types.SimpleNamespace(name='storage%d' % i)
                   for i in (1, 2, 3)]
        copies = 'storage1=in_sync storage3=in_sync'
        self.assertEqual('storage3', node_demos.failing_node(
            storage, copies, 'storage1@spdk-replicated#lvs0').name)
        self.assertEqual('storage1', node_demos.failing_node(
            storage, copies, 'storage2@spdk-replicated#lvs0').name)
        self.assertRaises(demo.DemoError, node_demos.failing_node,
                          storage[:1], 'storage1=in_sync',
                          'storage1@spdk-replicated#lvs0')

    def test_replica_writer_reports_of_a_rebooted_guest(self):
        before = [(40, 30, 0), (42, 33, 0)]
        self.assertEqual(before, node_demos.last_boot(before))
        # Not rebooted yet: its console log still ends with the old boot.
        self.assertIsNone(node_demos.rebooted(before, 42))
        self.assertIsNone(node_demos.rebooted([], 42))
        # The log keeps the old boot, or starts again.
        after = [(6, 2, 0), (8, 7, 0)]
        self.assertEqual(after, node_demos.rebooted(before + after, 42))
        self.assertEqual(after, node_demos.rebooted(after, 42))
