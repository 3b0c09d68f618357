"""Functional tier: a back end of storage nodes and replicated volumes.

Cinder's VolumeManager drives the driver with ``spdk_storage_nodes``; each
node is an spdk-storage-node service (its real oslo.messaging server, on a
private RabbitMQ) in front of its own SPDK test double. Copies are placed
one per node, every operation reaches every copy, a node that refuses
half-way leaves nothing behind, and the connection data is os-brick's
replicated form.
"""

import time
import types
import uuid

from cinder import exception
from cinder.tests.unit import utils as cinder_utils
from oslo_config import cfg
import oslo_messaging as messaging
from oslo_messaging.notify import notifier as messaging_notifier

from cinder import objects
from cinder_driver import nodes
from cinder_driver import rpcapi as backend_rpcapi
from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import notifications
from storage_node import node as storage_node
from storage_node import rpcapi
from tests.fixtures import rabbitmq
from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios
from vhost_target import rpcapi as vhost_rpcapi

CONF = cfg.CONF
NODES = ('store1', 'store2', 'store3')
FIRST_PORT = 4471
LVS = 'lvs0'


class StorageNodesTestBase(scenarios.DriverTestBase,
                           scenarios.CinderTestCase):
    """Three storage nodes; the scenarios' own target is not used."""

    node_sizes_mib = (4096, 8192, 2048)

    def make_target(self):
        return spdk_fixtures.FakeSPDKTarget(size_mib=1024)

    def prepare_backend(self):
        # After Cinder's set-up, which gives oslo.messaging its fake
        # transport: the driver and the nodes meet on a real broker.
        broker = self.useFixture(rabbitmq.RabbitMQ())
        self.flags(transport_url=broker.url)
        self.transport = rpcapi.get_transport(CONF)
        self.addCleanup(self.transport.cleanup)
        self.targets, self.servers = {}, {}
        for index, name in enumerate(NODES):
            self.start_node(name, index)

    def setUp(self):
        super().setUp()
        self.addCleanup(self.stop_driver)

    def stop_driver(self):
        """The driver's watchers, listener and clients, before the broker
        stops (they would reconnect for ever).
        """
        for node in self.driver._nodes.values():
            node.stop()
        self.driver._copy_health.stop()
        self.driver._copy_health.wait()
        if self.driver._operator_api is not None:
            self.driver._operator_api.stop()
            self.driver._operator_api.wait()
        self.driver._transport.cleanup()

    def start_node(self, name, index):
        if name not in self.targets:
            self.targets[name] = self.useFixture(spdk_fixtures.FakeSPDKTarget(
                size_mib=self.node_sizes_mib[index]))
        group = types.SimpleNamespace(target_addresses=['127.0.0.1'],
                                      target_port=FIRST_PORT + index)
        server = rpcapi.get_server(self.transport, name,
                                   storage_node.StorageNode(
                                       self.targets[name].client, group))
        server.start()
        self.servers[name] = server
        self.addCleanup(self.stop_node, name)

    def stop_node(self, name):
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()
            server.wait()

    def driver_flags(self):
        return {'spdk_storage_nodes': list(NODES), 'spdk_rpc_timeout': 5.0}

    def lvols(self, name):
        return sorted(lv['name'] for lv in self.targets[name].client.call(
            'bdev_lvol_get_lvols'))

    def holders(self, lvol_name):
        return [name for name in NODES if lvol_name in self.lvols(name)]

    def replicated_type(self, copies=2, **specs):
        specs['spdk:replicas'] = str(copies)
        return self.make_type('r%d-%s' % (copies, uuid.uuid4()), specs)

    def subsystem(self, name, volume):
        nqn = naming.replica_nqn(CONF.backend_defaults.spdk_nqn_prefix,
                                 volume.id, name)
        found = self.targets[name].client.call('nvmf_get_subsystems')
        return next((s for s in found if s['nqn'] == nqn), None)

    def wait_for_replay(self, name, volume, hosts=(), timeout=30):
        """The copy's export on node ``name``, once the back end replayed
        it with ``hosts`` on its ACL: a replay whose answers a restarting
        node lost may have made the subsystem only, and the next one
        completes it.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.subsystem(name, volume)
            if found is not None and set(hosts) <= {
                    h['nqn'] for h in found['hosts']}:
                return found
            self.assertLess(time.monotonic(), deadline,
                            'the export was not replayed: %s' % found)
            time.sleep(0.2)


class TestPlacement(StorageNodesTestBase):

    def test_copies_go_to_the_nodes_with_most_room(self):
        volume = self.create_volume(size=1, volume_type=self.replicated_type())
        name = naming.volume_lvol_name(volume.id)
        # store2 (8 GiB) and store1 (4 GiB) have the most room.
        self.assertEqual(['store1', 'store2'], sorted(self.holders(name)))
        self.assertEqual(['store2', 'store1'],
                         nodes.placement(volume))
        single = self.create_volume(size=1)
        self.assertEqual(['store2'], nodes.placement(single))
        self.assertEqual(['store2'], self.holders(
            naming.volume_lvol_name(single.id)))
        self.driver.delete_volume(volume)
        self.assertEqual([], self.holders(name))

    def test_stats_count_every_copy_and_tell_how_many_there_can_be(self):
        self.create_volume(size=2, volume_type=self.replicated_type(3))
        stats = self.driver.get_volume_stats(refresh=True)
        [pool] = stats['pools']
        self.assertEqual(LVS, pool['pool_name'])
        self.assertEqual(3, pool['max_replicas'])
        self.assertEqual(6, pool['provisioned_capacity_gb'])
        totals = [lvs['total_data_clusters'] * lvs['cluster_size']
                  for name in NODES for lvs in self.targets[name].client.call(
                      'bdev_lvol_get_lvstores')]
        self.assertEqual(sum(totals) / 1024 ** 3, pool['total_capacity_gb'])

    def test_too_few_nodes_with_room_is_refused_with_nothing_made(self):
        # 3 copies of 3 GiB thick: store3 (2 GiB) cannot hold one.
        vtype = self.replicated_type(3, **{'provisioning:type': 'thick'})
        volume = self.new_volume(size=3, volume_type_id=vtype['id'])
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume, volume)
        self.assertIn('needs 3 copies of 3 GiB in lvstore lvs0, each on its '
                      'own storage node; 2 node(s) have room', str(exc))
        self.assertIn('store3 (', str(exc))
        self.assertEqual([], self.holders(naming.volume_lvol_name(
            volume.id)))

    def test_a_node_refusing_half_way_leaves_nothing(self):
        volume = self.new_volume(size=1,
                                 volume_type_id=self.replicated_type()['id'])
        name = naming.volume_lvol_name(volume.id)
        # store1 (the second copy) already has an lvol of that name.
        self.targets['store1'].client.call('bdev_lvol_create', {
            'lvs_name': LVS, 'lvol_name': name, 'size_in_mib': 4,
            'thin_provision': True})
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.create_volume, volume)
        self.assertIn('already exists on storage node store1', str(exc))
        self.assertEqual(['store1'], self.holders(name))   # untouched

    def test_bad_replica_counts_are_refused_by_name(self):
        for value, words in (('4', 'from 1 to 3'), ('two', 'from 1 to 3'),
                             ('0', 'from 1 to 3')):
            volume = self.new_volume(size=1, volume_type_id=self.make_type(
                'bad-%s' % uuid.uuid4(), {'spdk:replicas': value})['id'])
            exc = self.assertRaises(exception.InvalidInput,
                                    self.driver.create_volume, volume)
            self.assertIn("spdk:replicas=%r" % value, str(exc))
            self.assertIn(words, str(exc))


class TestReplicatedOperations(StorageNodesTestBase):

    def setUp(self):
        super().setUp()
        self.vtype = self.replicated_type(
            **{'spdk:vhost_attach': '<is> True'})
        self.volume = self.create_volume(size=1, volume_type=self.vtype)
        self.copies = nodes.placement(self.volume)

    def test_vhost_connection_names_every_copy(self):
        vhost = connection.capability(scenarios.HOST_NQN, [0])
        info = self.driver.initialize_connection(
            self.volume, self.connector(spdk_vhost=vhost))
        self.assertEqual('spdk_vhost', info['driver_volume_type'])
        props = connection.SPDKVhostConnProps(info, self.volume.id)
        self.assertEqual('2.0', props.version)
        self.assertEqual(
            [(naming.replica_nqn(CONF.backend_defaults.spdk_nqn_prefix,
                                 self.volume.id, name),
              [('127.0.0.1', str(FIRST_PORT + NODES.index(name)), 'tcp')])
             for name in self.copies], props.replicas)
        for name in self.copies:
            sub = self.subsystem(name, self.volume)
            self.assertEqual([scenarios.HOST_NQN],
                             [h['nqn'] for h in sub['hosts']])
            self.assertFalse(sub['allow_any_host'])
        self.driver.terminate_connection(self.volume,
                                         self.connector(spdk_vhost=vhost))
        for name in self.copies:
            self.assertEqual([], self.subsystem(name, self.volume)['hosts'])

    def test_kernel_connection_is_os_brick_replicated(self):
        from os_brick.initiator.connectors import nvmeof
        info = self.driver.initialize_connection(self.volume,
                                                 self.connector())
        self.assertEqual('nvmeof', info['driver_volume_type'])
        props = nvmeof.NVMeOFConnProps(info['data'])
        self.assertTrue(props.is_replicated)
        self.assertEqual(2, props.replica_count)
        # Each copy's namespace has its own UUID.
        self.assertEqual(2, len({t.uuid for t in props.targets}))

    def test_an_agent_that_mirrors_no_copies_gets_the_kernel_path(self):
        # A 1.0 capability (an older compute node) mirrors nothing.
        info = self.driver.initialize_connection(
            self.volume, self.connector(spdk_vhost={
                'version': '1.0', 'host_nqn': scenarios.HOST_NQN}))
        self.assertEqual('nvmeof', info['driver_volume_type'])

    def test_snapshot_of_an_attached_volume_is_refused(self):
        self.driver.initialize_connection(self.volume, self.connector())
        snapshot = cinder_utils.create_snapshot(self.ctxt, self.volume.id)
        exc = self.assertRaises(exception.InvalidVolume,
                                self.driver.create_snapshot, snapshot)
        self.assertIn('cannot be snapshotted at one instant while a host '
                      'may write; detach it first', str(exc))
        self.assertEqual([], self.holders(naming.snapshot_lvol_name(
            snapshot.id)))

    def test_snapshot_clone_revert_extend_on_every_copy(self):
        # Cinder's own flow: the model update is kept.
        snapshot = self.snapshot_of(self.volume)
        self.assertEqual(nodes.location(self.copies),
                         snapshot.provider_location)
        snap_name = naming.snapshot_lvol_name(snapshot.id)
        self.assertEqual(sorted(self.copies), self.holders(snap_name))
        clone = self.new_volume(size=2, snapshot_id=snapshot.id,
                                volume_type_id=self.vtype['id'])
        update = self.driver.create_volume_from_snapshot(clone, snapshot)
        self.assertEqual(nodes.location(self.copies),
                         update['provider_location'])
        clone.update(update)
        clone_name = naming.volume_lvol_name(clone.id)
        self.assertEqual(sorted(self.copies), self.holders(clone_name))
        self.driver.revert_to_snapshot(self.ctxt, self.volume, snapshot)
        self.driver.extend_volume(self.volume, 3)
        for name in self.copies:
            [lvol] = [b for b in self.targets[name].client.call(
                'bdev_get_bdevs') if naming.volume_lvol_name(
                    self.volume.id) in b.get('aliases', ())[0]]
            self.assertEqual(3 * 1024 ** 3,
                             lvol['num_blocks'] * lvol['block_size'])
        self.driver.delete_volume(clone)
        self.assertEqual([], self.holders(clone_name))

    def test_a_clone_keeps_its_source_copies(self):
        single = self.make_type('single-%s' % uuid.uuid4())
        clone = self.new_volume(size=1, source_volid=self.volume.id,
                                volume_type_id=single['id'])
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.create_cloned_volume, clone,
                                self.volume)
        self.assertIn('a clone has its source\'s copies', str(exc))
        self.assertEqual([], self.holders(naming.volume_lvol_name(clone.id)))

    def test_detach_while_a_node_is_away_fences_it_when_it_returns(self):
        self.driver.initialize_connection(self.volume, self.connector())
        away = self.copies[1]
        self.stop_node(away)
        # The detach goes through: the copy that answers loses the host
        # now, the one away when it answers again.
        self.driver.terminate_connection(self.volume, self.connector())
        self.assertEqual([], self.subsystem(self.copies[0],
                                            self.volume)['hosts'])
        self.assertEqual([scenarios.HOST_NQN], [
            h['nqn'] for h in self.subsystem(away, self.volume)['hosts']])
        self.start_node(away, NODES.index(away))
        node = self.driver._nodes[away]
        node.recovery.check()
        self.assertEqual([], self.subsystem(away, self.volume)['hosts'])

    def test_attach_while_a_node_is_away_lets_the_host_in_when_it_returns(
            self):
        connector = self.connector(spdk_vhost=connection.capability(
            scenarios.HOST_NQN, [0]))
        away = self.copies[1]
        self.stop_node(away)
        # As Cinder's attachment_update: the export, then the connection.
        self.driver.create_export(self.ctxt, self.volume, connector)
        info = self.driver.initialize_connection(self.volume, connector)
        # Every copy: the compute agent mirrors the one that answers (as
        # its superblock lets it) and takes the other in when it answers.
        props = connection.SPDKVhostConnProps(info, self.volume.id)
        self.assertEqual(
            [naming.replica_nqn(CONF.backend_defaults.spdk_nqn_prefix,
                                self.volume.id, name)
             for name in self.copies], [nqn for nqn, _p in props.replicas])
        self.assertEqual([scenarios.HOST_NQN], [
            h['nqn'] for h in self.subsystem(self.copies[0],
                                             self.volume)['hosts']])
        # The kernel's MD RAID1 (os-brick) is given every copy or none.
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.driver.initialize_connection,
                                self.volume, self.connector())
        self.assertIn('storage node %s' % away, str(exc))
        self.start_node(away, NODES.index(away))
        self.driver._nodes[away].recovery.check()
        self.assertEqual([scenarios.HOST_NQN], [
            h['nqn'] for h in self.subsystem(away, self.volume)['hosts']])
        # Detached while it is away again: its ACL is emptied when it
        # answers, the export stays.
        self.stop_node(away)
        self.driver.terminate_connection(self.volume, connector)
        self.driver.remove_export(self.ctxt, self.volume)
        self.assertIsNone(self.subsystem(self.copies[0], self.volume))
        self.start_node(away, NODES.index(away))
        self.driver._nodes[away].recovery.check()
        self.assertEqual([], self.subsystem(away, self.volume)['hosts'])

    def test_exports_come_back_after_a_node_restart(self):
        self.driver.initialize_connection(self.volume, self.connector())
        name = self.copies[0]
        # The node's SPDK restarts, and its service meanwhile: the
        # driver's watcher outlives a node that does not answer.
        self.stop_node(name)
        self.targets[name].restart()
        time.sleep(2)
        self.start_node(name, NODES.index(name))
        self.assertEqual([scenarios.HOST_NQN], [
            h['nqn'] for h in self.wait_for_replay(
                name, self.volume, hosts=[scenarios.HOST_NQN])['hosts']])


class TestLateNode(StorageNodesTestBase):
    """A node whose service first answers after the back end started."""

    def prepare_backend(self):
        super().prepare_backend()
        self.stop_node('store3')

    def test_a_node_that_joins_late_is_watched_for_restarts(self):
        self.assertTrue(self.driver._nodes['store3'].down)
        self.start_node('store3', 2)
        self.driver.get_volume_stats(refresh=True)
        volume = self.create_volume(size=1,
                                    volume_type=self.replicated_type(3))
        self.driver.initialize_connection(volume, self.connector())
        # Its SPDK restarts: the back end replays the copy's export.
        self.stop_node('store3')
        self.targets['store3'].restart()
        self.start_node('store3', 2)
        self.wait_for_replay('store3', volume, hosts=[scenarios.HOST_NQN])


class RecordingAgent:
    """Stands in for a compute host's agent behind its real RPC server;
    the agent's own replace_copy runs against real SPDK in the SPDK tier
    (tests/spdk/test_replicated_volume.py).
    """

    def __init__(self):
        self.replaced = []
        self.fail = None

    def replace_copy(self, volume_id, connection_info):
        if self.fail:
            raise self.fail
        self.replaced.append((volume_id, connection_info))
        return 1


class TestReplaceCopy(StorageNodesTestBase):
    """The operator's re-replication (spdk-volume-replicas replace-copy)."""

    def setUp(self):
        super().setUp()
        self.agent = RecordingAgent()
        server = vhost_rpcapi.get_server(self.transport, 'compute1',
                                         self.agent)
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)
        self.vhost = connection.capability(scenarios.HOST_NQN, [0])
        self.vtype = self.replicated_type(
            **{'spdk:vhost_attach': '<is> True'})
        self.volume = self.create_volume(size=1, volume_type=self.vtype)
        # store2 and store1 hold it; store3 has room for a new copy.
        self.copies = nodes.placement(self.volume)
        self.client = backend_rpcapi.ReplicatedBackendClient(
            self.transport, self.driver.host, timeout=30)

    def attach(self):
        connector = self.connector(spdk_vhost=self.vhost)
        objects.VolumeAttachment(
            self.ctxt, volume_id=self.volume.id, attach_status='attached',
            connector=connector, attached_host='compute1').create()
        self.driver.initialize_connection(self.volume, connector)
        self.volume.status = 'in-use'
        self.volume.save()

    def refused(self, *args, words):
        exc = self.assertRaises(spdk_exc.CopyNotReplaced,
                                self.client.replace_copy, *args)
        self.assertIn(words, str(exc))
        self.assertEqual([], self.holders(
            naming.volume_lvol_name(self.volume.id))[2:])
        self.assertEqual([], self.agent.replaced)
        return exc

    def test_a_dead_nodes_copy_is_made_again_elsewhere(self):
        self.attach()
        dead = self.copies[1]
        self.stop_node(dead)
        done = self.client.replace_copy(self.volume.id, dead)
        self.assertEqual({'volume_id': self.volume.id, 'index': 1,
                          'from': dead, 'to': 'store3', 'host': 'compute1'},
                         done)
        name = naming.volume_lvol_name(self.volume.id)
        self.assertIn('store3', self.holders(name))
        # The agent was given the volume's connection with the new copy,
        # which only the host may connect to.
        [(volume_id, info)] = self.agent.replaced
        props = connection.SPDKVhostConnProps(info, self.volume.id)
        self.assertEqual(naming.replica_nqn(
            CONF.backend_defaults.spdk_nqn_prefix, self.volume.id,
            'store3'), props.replicas[1][0])
        store3 = self.subsystem('store3', self.volume)
        self.assertEqual([scenarios.HOST_NQN],
                         [h['nqn'] for h in store3['hosts']])
        self.volume.refresh()
        self.assertEqual([self.copies[0], 'store3'],
                         nodes.placement(self.volume))
        self.assertEqual('enabling', self.volume.replication_status)
        self.assertEqual('%s=in_sync store3=rebuilding' % self.copies[0],
                         self.volume.metadata['spdk_copies'])
        # The dead node comes back: its old copy goes, export and lvol.
        self.start_node(dead, NODES.index(dead))
        self.driver.get_volume_stats(refresh=True)
        self.assertNotIn(dead, self.holders(name))
        self.assertIsNone(self.subsystem(
            dead, self.volume))

    def test_an_agent_refusing_leaves_nothing(self):
        self.attach()
        self.agent.fail = spdk_exc.InvalidRequest(
            method='replace_copy', field='volume_id', value=self.volume.id,
            reason='no copy in sync')
        self.refused(self.volume.id, self.copies[1],
                     words='no copy in sync')
        self.volume.refresh()
        self.assertEqual(self.copies, nodes.placement(self.volume))
        self.assertIsNone(self.subsystem(
            'store3', self.volume))

    def test_a_detached_volumes_copy_is_rebuilt_at_its_next_attach(self):
        dead = self.copies[1]
        self.stop_node(dead)
        done = self.client.replace_copy(self.volume.id, dead, 'store3')
        self.assertEqual((1, 'store3', None),
                         (done['index'], done['to'], done['host']))
        self.assertEqual([], self.agent.replaced)
        self.volume.refresh()
        self.assertEqual([self.copies[0], 'store3'],
                         nodes.placement(self.volume))
        self.assertEqual('error', self.volume.replication_status)
        self.assertEqual('%s=in_sync store3=missing' % self.copies[0],
                         self.volume.metadata['spdk_copies'])
        # Until it is rebuilt, the kernel's MD RAID1 may not have it.
        exc = self.assertRaises(exception.InvalidVolume,
                                self.driver.initialize_connection,
                                self.volume, self.connector())
        self.assertIn('store3=missing', str(exc))
        info = self.driver.initialize_connection(
            self.volume, self.connector(spdk_vhost=self.vhost))
        self.assertEqual('spdk_vhost', info['driver_volume_type'])

    def test_what_cannot_be_replaced_is_refused_by_name(self):
        kernel = self.create_volume(size=1,
                                    volume_type=self.replicated_type())
        self.refused(kernel.id, nodes.placement(kernel)[0],
                     words='its type has no spdk:vhost_attach')
        self.attach()
        self.refused(self.volume.id, 'store3',
                     words="node='store3': it has no copy there")
        self.refused(self.volume.id, self.copies[1], 'store9',
                     words="to='store9': not one of this back end")
        self.refused('not-a-volume', 'store1', words="volume_id='not-a-"
                     "volume' is not a volume id")
        self.refused(self.volume.id, ['store1'],
                     words="node=['store1'] is not a storage node name")
        self.refused(self.volume.id, self.copies[1], {'x': 1},
                     words="to={'x': 1} is not a storage node name")
        exc = self.assertRaises(
            spdk_exc.CopyNotReplaced, self.client._client.call,
            'replace_copy', backend_rpcapi.API_VERSION,
            volume_id=self.volume.id, node=self.copies[1], force=True)
        self.assertIn('force', str(exc))
        self.volume.metadata = {'spdk_copies': '%s=missing %s=in_sync' % (
            self.copies[0], self.copies[1])}
        self.volume.save()
        self.refused(self.volume.id, self.copies[1],
                     words='the copies that stay are not all in sync (%s='
                           'missing)' % self.copies[0])
        single = self.create_volume(size=1)
        self.refused(single.id, 'store2', words='it has one copy')


class TestCopyHealth(StorageNodesTestBase):
    """The compute host's notifications about the copies reach Cinder."""

    def agent_notifier(self):
        conf = cfg.ConfigOpts()
        messaging.get_notification_transport(
            conf, url=CONF.transport_url).cleanup()  # registers its options
        conf.set_override('control_exchange', notifications.EXCHANGE)
        transport = messaging.get_notification_transport(
            conf, url=CONF.transport_url)
        self.addCleanup(transport.cleanup)
        # The real class: Cinder's test base puts a fake in its place.
        return messaging_notifier.Notifier(
            transport, 'spdk-vhost-target.compute1', driver='messagingv2',
            topics=[notifications.TOPIC])

    def wait_for(self, volume, status, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            volume.refresh()
            if volume.replication_status == status:
                return volume
            self.assertLess(time.monotonic(), deadline,
                            'replication_status %s, not %s' % (
                                volume.replication_status, status))
            time.sleep(0.2)

    def test_degraded_rebuilding_and_mirrored_show_on_the_volume(self):
        volume = self.create_volume(size=1,
                                    volume_type=self.replicated_type())
        self.assertEqual('enabled', volume.replication_status)
        names = nodes.placement(volume)
        notifier = self.agent_notifier()

        def send(event, states, error=False):
            payload = {'volume_id': volume.id, 'version': '1.0',
                       'copies': [{'index': i, 'state': s}
                                  for i, s in enumerate(states)]}
            (notifier.error if error else notifier.info)(
                {}, notifications.event_type(event), payload)
        send(notifications.DEGRADED, ['in_sync', 'missing'], error=True)
        self.wait_for(volume, 'error')
        self.assertEqual('%s=in_sync %s=missing' % tuple(names),
                         volume.metadata['spdk_copies'])
        send(notifications.REBUILDING, ['in_sync', 'rebuilding'])
        self.wait_for(volume, 'enabling')
        send(notifications.MIRRORED, ['in_sync', 'in_sync'])
        self.wait_for(volume, 'enabled')
        self.assertEqual('%s=in_sync %s=in_sync' % tuple(names),
                         volume.metadata['spdk_copies'])
        # Other events and bad ids are ignored; copies that are not a list
        # leave the metadata alone.
        other = self.create_volume(size=1)
        payload = {'volume_id': other.id, 'copies': 'x'}
        notifier.info({}, 'other.event', payload)
        notifier.info({}, notifications.event_type(notifications.DEGRADED),
                      {'volume_id': 'not an id'})
        notifier.info({}, notifications.event_type(notifications.DEGRADED),
                      payload)
        self.wait_for(other, 'error')
        self.assertNotIn('spdk_copies', other.metadata)


class TestLocalBackEnd(scenarios.DriverTestBase, scenarios.CinderTestCase):
    def make_target(self):
        return spdk_fixtures.FakeSPDKTarget(size_mib=1024)

    def test_copies_need_storage_nodes(self):
        vtype = self.make_type('r2', {'spdk:replicas': '2'})
        volume = self.new_volume(size=1, volume_type_id=vtype['id'])
        exc = self.assertRaises(exception.InvalidInput,
                                self.driver.create_volume, volume)
        self.assertIn('no storage nodes to keep copies on', str(exc))


class TestStorageNodeService(StorageNodesTestBase):
    """The service forwards the driver's SPDK methods and nothing else."""

    def test_other_methods_and_open_subsystems_are_refused(self):
        client = rpcapi.StorageNodeClient(self.transport, 'store1',
                                          timeout=5)
        self.assertEqual('SPDK v25.09', client.call(
            'spdk_get_version')['version'][:11])
        for method, params, field in (
                ('bdev_aio_create', {'name': 'x', 'filename': '/etc/shadow'},
                 'spdk_method'),
                ('framework_start_init', None, 'spdk_method'),
                ('keyring_file_add_key', {'name': 'k', 'path': '/x'},
                 'spdk_method'),
                (['x'], None, 'spdk_method'),
                ('nvmf_create_subsystem', {'nqn': 'nqn.2016-06.io.x:y',
                                           'allow_any_host': True},
                 'params.allow_any_host'),
                ('bdev_get_bdevs', 'x', 'params')):
            exc = self.assertRaises(spdk_exc.InvalidRequest, client.call,
                                    method, params)
            self.assertEqual(field, exc.kwargs['field'])

    def test_a_node_away_is_unavailable_by_name(self):
        self.stop_node('store3')
        client = rpcapi.StorageNodeClient(self.transport, 'store3',
                                          timeout=1)
        exc = self.assertRaises(spdk_exc.SPDKUnavailable, client.call,
                                'spdk_get_version')
        self.assertIn('storage node store3', str(exc))
