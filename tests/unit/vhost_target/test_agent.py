"""VhostAgent's own logic: validation, CPU choice, state, notifications."""

import types
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging as messaging
from oslo_messaging.notify import _impl_test

from spdk_common import connection
from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from tests import base
from tests.unit import vhost_target as helpers
from vhost_target import agent as vhost_agent
from vhost_target import planner
from vhost_target import rpcapi
from vhost_target import state

HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
# Volume ids as Cinder makes them; the agent takes no other kind.
V = '5e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
A = '6e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
B = '7e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
SECRET = dhchap.make_secret()
SECRET2 = dhchap.make_secret()


def info(**data):
    base_data = {'target_nqn': 'nqn.2010-10.org.openstack:volume-1',
                 'host_nqn': HOST, 'portals': [['10.0.0.1', '4420', 'tcp']]}
    base_data.update(data)
    return {'driver_volume_type': 'spdk_vhost', 'data': base_data}


class RecordingMirror:
    """Stands in for vhost_target.mirror.Mirror."""

    def __init__(self, calls):
        self.calls = calls
        # raid name -> bdev_raid_get_bdevs' entry
        self.raids = {}

    def listing(self):
        self.calls.append(('raid_listing',))
        return dict(self.raids)

    def get(self, name):
        return self.raids.get(name)

    def set_rebuild_bandwidth(self, mib_sec):
        self.calls.append(('rebuild_bandwidth', mib_sec))

    def add(self, name, member):
        self.calls.append(('raid_add', name, member))


class RecordingVhost:
    """Stands in for VhostTarget, whose SPDK side the SPDK tier runs."""

    socket_dir = '/sockets'

    def __init__(self):
        self.attached = {}
        self.calls = []
        self.fail = None
        # Volumes SPDK has under the agent's names that are not attached.
        self.leftovers = set()
        self.busy = set()
        # volume -> its NVMe controller's state; 'gone': SPDK deleted it.
        self.states = {}
        self.conf = types.SimpleNamespace(stall_report_after_sec=30,
                                          rebuild_max_bandwidth_mib_sec=256,
                                          max_concurrent_rebuilds=2)
        self.mirror = RecordingMirror(self.calls)
        self.replica_states = {}

    def attach(self, attachment):
        self.calls.append(('attach', attachment.volume_id))
        if self.fail:
            raise self.fail
        self.attached[attachment.volume_id] = attachment
        return self.socket_path(attachment.volume_id)

    def detach(self, volume_id, copies=0):
        self.calls.append(('detach', volume_id))
        self.copies_detached = copies
        if volume_id in self.busy:
            raise spdk_exc.VolumeBusy(volume=volume_id, sessions=1,
                                      socket=self.socket_path(volume_id))
        self.attached.pop(volume_id, None)
        self.leftovers.discard(volume_id)

    def inventory(self):
        return {v: {'complete': v in self.attached}
                for v in set(self.attached) | self.leftovers}

    @staticmethod
    def complete(attachment, objects):
        return objects['complete']

    @staticmethod
    def copies_found(objects):
        return objects.get('copies', 0)

    def disconnect(self, name):
        self.calls.append(('disconnect', name))
        self.replica_states.pop(name, None)

    def reconnect_copy(self, attachment, index):
        self.calls.append(('reconnect_copy', attachment.volume_id, index))
        if self.fail:
            raise self.fail

    def replace_copy(self, old, new, index):
        self.calls.append(('replace_copy', old.volume_id, index,
                           new.replicas[index][0]))
        if self.fail:
            raise self.fail
        return '%s-r%dn1' % (old.volume_id, index)

    def secure_socket(self, volume_id):
        self.calls.append(('secure_socket', volume_id))
        return self.socket_path(volume_id)

    def socket_path(self, volume_id):
        return '/sockets/' + naming.vhost_controller_name(volume_id)

    def set_qos(self, volume_id, qos, replicated=False):
        self.calls.append(('set_qos', volume_id, qos))

    def size_bytes(self, volume_id, replicated=False):
        return 1024 ** 3

    def controllers(self):
        return {'vhost': list(self.attached), 'nvme': list(self.attached)}

    def nvme_states(self):
        self.calls.append(('nvme_states',))
        states = {v: self.states.get(v, 'enabled') for v in self.attached
                  if self.states.get(v) != 'gone'}
        # Controllers of copies of replicated volumes, by name.
        states.update(self.replica_states)
        return states


class TestAgent(base.TestCase):
    def setUp(self):
        super().setUp()
        self.make_agent()

    def make_agent(self):
        topo = helpers.read_fixture_topology('two_nodes')
        conf = helpers.make_conf(self, reactors_per_node=2)
        self.plan = planner.plan(conf, topo)
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.desired = state.DesiredState(self.state_dir)
        self.desired.load()
        self.vhost = RecordingVhost()
        transport = messaging.get_notification_transport(
            cfg.ConfigOpts(), url='fake:/')
        self.addCleanup(transport.cleanup)
        _impl_test.reset()
        notifier = messaging.Notifier(transport, 'spdk-vhost-target.test',
                                      driver='test')
        self.agent = vhost_agent.VhostAgent(self.vhost, self.desired,
                                            self.plan, topo, notifier)

    def events(self):
        return [(message['event_type'], priority)
                for _ctxt, message, priority, _retry
                in _impl_test.NOTIFICATIONS]

    def test_attach_spreads_over_the_instance_node_reactors(self):
        cpus = []
        for n in range(4):
            volume_id = str(uuid.UUID(int=n))
            self.agent.attach_volume(volume_id, info(), numa_nodes=[1])
            cpus.append(self.desired.get(volume_id).cpu)
        node1 = self.plan.reactors_by_node[1]
        self.assertEqual(sorted(node1 * 2), sorted(cpus))
        self.assertEqual(('spdk_vhost_target.attach.end', 'INFO'),
                         self.events()[0])
        self.assertEqual('1.0',
                         _impl_test.NOTIFICATIONS[0][1]['payload']['version'])

    def test_an_attach_beyond_the_memory_is_refused_before_spdk(self):
        self.plan.attachment_capacity = 2
        for n in range(2):
            self.agent.attach_volume(str(uuid.UUID(int=n)), info())
        exc = self.assertRaises(spdk_exc.NoRoom, self.agent.attach_volume,
                                str(uuid.UUID(int=2)), info())
        self.assertIn('at most 2 attachment(s) in hugepage_mib_per_node=1024 '
                      'MiB, and 2 are attached', str(exc))
        self.assertEqual(2, len(self.vhost.attached))
        self.assertEqual(2, len(self.desired.all()))
        # Attaching one already attached again takes no more room.
        self.agent.attach_volume(str(uuid.UUID(int=1)), info())

    def test_reattach_keeps_the_cpu_and_state_survives_a_restart(self):
        self.agent.attach_volume(V, info(), numa_nodes=[0])
        cpu = self.desired.get(V).cpu
        self.agent.attach_volume(V, info(), numa_nodes=[1])
        self.assertEqual(cpu, self.desired.get(V).cpu)
        again = state.DesiredState(self.state_dir)
        self.assertEqual([V], [a.volume_id for a in again.load()])
        self.assertEqual([('10.0.0.1', '4420', 'tcp')],
                         again.get(V).portals)

    def assert_nothing_changed(self):
        self.assertEqual({}, self.vhost.attached)
        self.assertEqual([], self.desired.all())
        self.assertEqual([], self.vhost.calls)

    def test_invalid_requests(self):
        cases = [
            (V, info(portals=[]), None, None, 'portals [] is empty'),
            (V, info(portals=[['a', 'port', 'tcp']]), None, None,
             "portals[0] address 'a' is not an IPv4 or IPv6 address"),
            (V, info(portals=[['10.0.0.1', '1', 'rdma']]), None, None,
             "transport 'rdma' is not tcp"),
            (V, info(host_nqn='bad'), None, None, "host_nqn 'bad'"),
            (V, dict(info(), driver_volume_type='nvmeof'), None, None,
             "driver_volume_type 'nvmeof' is not spdk_vhost"),
            (V, {'driver_volume_type': 'spdk_vhost'}, None, None,
             'connection_info.data None is not a dict'),
            (V + '\n', info(), None, None, 'volume_id'),
            ('a' * 300, info(), None, None, "volume_id 'aaaa"),
            ('../../etc/passwd', info(), None, None, 'volume_id'),
            ('a/b', info(), None, None, "volume_id 'a/b' is not a Cinder"),
            (None, info(), None, None, 'volume_id None is not a string'),
            (V, info(), [5], None, 'numa_nodes [5] names NUMA node(s) this '
             'host does not have'),
            (V, info(), [True], None, 'numa_nodes[0] True'),
            (V, info(), {'0': 0}, None, 'numa_nodes'),
            (V, info(), None, {'bogus': 1}, 'bogus'),
            (V, info(), None, {'rw_ios_per_sec': -1000},
             'qos.rw_ios_per_sec -1000 is negative'),
            (V, info(), None, [1], 'qos [1] is not a dict'),
        ]
        for volume_id, connection_info, nodes, qos, words in cases:
            exc = self.assertRaises(spdk_exc.InvalidRequest,
                                    self.agent.attach_volume, volume_id,
                                    connection_info, numa_nodes=nodes,
                                    qos=qos)
            self.assertIn(words, str(exc))
            self.assertTrue(str(exc).startswith(
                'Invalid attach_volume request: '), str(exc))
            # nova-compute may still catch the older, wider class.
            self.assertIsInstance(exc, spdk_exc.InvalidAttachRequest)
        self.assert_nothing_changed()
        self.assertEqual([], self.events())

    def test_other_calls_validate_the_volume_id(self):
        for bad in ('../x', V.upper(), None, 5, V + '\n'):
            for method, call, args in (
                    ('detach_volume', self.agent.detach_volume, ()),
                    ('extend_volume', self.agent.extend_volume, ()),
                    ('set_qos', self.agent.set_qos, ({}, ))):
                exc = self.assertRaises(spdk_exc.InvalidRequest, call,
                                        bad, *args)
                self.assertIn('Invalid %s request: volume_id' % method,
                              str(exc))
        self.assert_nothing_changed()

    def test_set_qos_validates_the_limits_and_keeps_the_old(self):
        self.agent.attach_volume(V, info(), qos={'rw_ios_per_sec': 1000})
        self.vhost.calls.clear()
        for qos in ({'bogus': 1}, {'rw_ios_per_sec': 1.5},
                    {'rw_ios_per_sec': 2 ** 70}, 'x'):
            self.assertRaises(spdk_exc.InvalidRequest, self.agent.set_qos,
                              V, qos)
        self.assertEqual([], self.vhost.calls)
        self.assertEqual({'rw_ios_per_sec': 1000},
                         state.DesiredState(self.state_dir).load()[0].qos)

    def test_reattach_must_ask_for_the_same_connection(self):
        self.agent.attach_volume(V, info(dhchap_secret=SECRET))
        self.vhost.calls.clear()
        other = 'nqn.2010-10.org.openstack:volume-2'
        for changed, field in (
                (info(target_nqn=other, dhchap_secret=SECRET), 'target_nqn'),
                (info(portals=[['10.0.0.2', 4420, 'tcp']],
                      dhchap_secret=SECRET), 'portals'),
                (info(host_nqn='nqn.2014-08.org.example:other',
                      dhchap_secret=SECRET), 'host_nqn'),
                (info(), 'dhchap_secret'),
                (info(dhchap_secret=SECRET2), 'dhchap_secret')):
            exc = self.assertRaises(spdk_exc.InvalidRequest,
                                    self.agent.attach_volume, V, changed)
            self.assertIn('connection_info.data.%s' % field, str(exc))
            self.assertIn('detach the volume first', str(exc))
            self.assertNotIn(SECRET, str(exc))
            self.assertNotIn(SECRET2, str(exc))
        self.assertEqual([], self.vhost.calls)
        self.assertEqual(SECRET, self.desired.get(V).dhchap_secret)
        # The same connection spelt another way (port as a number, upper
        # case transport) is the same.
        self.agent.attach_volume(V, info(
            portals=[['10.0.0.1', 4420, 'TCP']], dhchap_secret=SECRET))

    def test_reattach_without_qos_lifts_the_limits(self):
        self.agent.attach_volume(V, info(), qos={'rw_ios_per_sec': 1000})
        self.agent.attach_volume(V, info())
        self.assertEqual(('set_qos', V, {}), self.vhost.calls[-1])
        self.assertIsNone(self.desired.get(V).qos)

    def test_detach_of_an_unknown_volume_is_fine(self):
        self.agent.detach_volume(V)
        self.assertEqual([], self.desired.all())

    def test_the_endpoint_refuses_unknown_and_missing_arguments(self):
        endpoint = rpcapi.VhostTargetEndpoint(self.agent)
        exc = self.assertRaises(
            spdk_exc.InvalidRequest, endpoint.attach_volume, {}, V,
            info(), dhchap_secret=SECRET)
        self.assertIn("argument 'dhchap_secret' (a str) is not an argument "
                      "of attach_volume", str(exc))
        self.assertNotIn(SECRET, str(exc))
        for call in (endpoint.detach_volume, endpoint.extend_volume,
                     endpoint.get_status):
            self.assertRaises(spdk_exc.InvalidRequest, call, {},
                              force=True)
        self.assertRaises(spdk_exc.InvalidRequest, endpoint.set_qos, {},
                          V, {}, extra=1)
        exc = self.assertRaises(spdk_exc.InvalidRequest,
                                endpoint.attach_volume, {}, V)
        self.assertIn('connection_info None is not a dict', str(exc))
        exc = self.assertRaises(spdk_exc.InvalidRequest,
                                endpoint.detach_volume, {})
        self.assertIn('volume_id None', str(exc))
        self.assert_nothing_changed()

    def test_failed_attach_is_not_remembered_and_is_notified(self):
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        self.assertRaises(spdk_exc.AttachError, self.agent.attach_volume, V,
                          info())
        self.assertEqual([], self.desired.all())
        self.assertEqual([('spdk_vhost_target.attach.error', 'ERROR')],
                         self.events())

    def test_detach_qos_status_and_unknown_volumes(self):
        self.agent.attach_volume(V, info(), qos={'rw_ios_per_sec': 1000})
        self.agent.set_qos(V, {'rw_ios_per_sec': 2000})
        self.assertEqual({'rw_ios_per_sec': 2000}, state.DesiredState(
            self.state_dir).load()[0].qos)
        status = self.agent.get_status()
        self.assertEqual([V], [a['volume_id']
                               for a in status['attachments']])
        self.agent.detach_volume(V)
        self.assertEqual([], self.desired.all())
        for call in (self.agent.extend_volume, ):
            self.assertRaises(spdk_exc.UnknownVolume, call, V)
        self.assertRaises(spdk_exc.UnknownVolume, self.agent.set_qos, V,
                          {})

    def test_replay_reports_each_volume(self):
        self.agent.attach_volume(A, info())
        self.agent.attach_volume(B, info())
        self.vhost.attached.clear()
        self.assertEqual(([A, B], []), self.agent.replay())
        self.vhost.attached.clear()
        self.vhost.fail = spdk_exc.AttachError(volume=A, reason='gone')
        self.assertEqual(([], [A, B]), self.agent.replay())
        self.assertEqual(('spdk_vhost_target.recovery.end', 'ERROR'),
                         self.events()[-1])

    def test_reconcile_keeps_what_spdk_serves_and_removes_leftovers(self):
        self.agent.attach_volume(A, info())
        self.agent.attach_volume(B, info())
        self.vhost.attached.pop(B)        # SPDK lost B
        self.vhost.leftovers = {V}        # an attach killed before its state
        self.vhost.calls.clear()
        self.assertEqual(([A, B], []), self.agent.reconcile())
        # SPDK forgot the rebuild bound too when it restarted.
        self.assertEqual([('rebuild_bandwidth', 256), ('secure_socket', A),
                          ('attach', B), ('detach', V)], self.vhost.calls)
        self.assertEqual({A, B}, set(self.vhost.attached))
        self.assertEqual([], self.agent.get_status()['problems'])
        self.assertEqual(('spdk_vhost_target.recovery.end', 'INFO'),
                         self.events()[-1])

    def test_reconcile_reports_a_leftover_it_cannot_remove(self):
        self.vhost.leftovers = {V}
        self.vhost.busy = {V}
        self.assertEqual(([], []), self.agent.reconcile())
        problems = self.agent.get_status()['problems']
        self.assertEqual(1, len(problems))
        self.assertIn('volume %s is not attached here but SPDK still has '
                      'it' % V, problems[0])
        self.assertIn('the guest still has the disk open', problems[0])
        self.assertEqual(('spdk_vhost_target.recovery.end', 'ERROR'),
                         self.events()[-1])

    def test_busy_detach_keeps_the_attachment(self):
        self.agent.attach_volume(V, info())
        self.vhost.busy = {V}
        exc = self.assertRaises(spdk_exc.VolumeBusy,
                                self.agent.detach_volume, V)
        self.assertIn('Volume %s is busy: the guest still has the disk '
                      'open' % V, str(exc))
        self.assertEqual([V], [a.volume_id for a in self.desired.all()])
        self.vhost.busy = set()
        self.agent.detach_volume(V)
        self.assertEqual([], self.desired.all())

    def test_new_attachments_connect_as_this_host_only(self):
        agent = vhost_agent.VhostAgent(self.vhost, self.desired, self.plan,
                                       helpers.read_fixture_topology(
                                           'two_nodes'), host_nqn=HOST)
        other = 'nqn.2014-08.org.nvmexpress:uuid:' + str(uuid.uuid4())
        exc = self.assertRaises(spdk_exc.InvalidRequest,
                                agent.attach_volume, V, info(host_nqn=other))
        self.assertIn("connection_info.data.host_nqn %r is not this host's "
                      "NQN %r" % (other, HOST), str(exc))
        self.assert_nothing_changed()
        agent.attach_volume(V, info())

    def test_reattach_keeps_the_numa_nodes_of_its_cpu(self):
        self.agent.attach_volume(V, info(), numa_nodes=[0])
        cpu = self.desired.get(V).cpu
        self.agent.attach_volume(V, info(), numa_nodes=[1])
        self.assertEqual((cpu, [0]), (self.desired.get(V).cpu,
                                      self.desired.get(V).numa_nodes))


class TestHealth(base.TestCase):
    """Lost and stalled storage controllers (check_health)."""

    events = TestAgent.events
    make_agent = TestAgent.make_agent

    def setUp(self):
        super().setUp()
        self.make_agent()
        self.now = 1000.0
        self.agent._clock = lambda: self.now
        self.agent.attach_volume(V, info())
        _impl_test.reset()
        del self.vhost.calls[:]

    def health(self):
        return self.agent.get_status()['attachments'][0]['health']

    def payloads(self):
        return [m['payload'] for _c, m, _p, _r in _impl_test.NOTIFICATIONS]

    def test_one_listing_call_per_look_whatever_the_volumes(self):
        self.agent.attach_volume(A, info())
        _impl_test.reset()
        del self.vhost.calls[:]
        self.agent.check_health()
        self.assertEqual([('nvme_states',)], self.vhost.calls)
        self.assertEqual([], self.events())

    def test_lost_controller_is_notified_and_rebuilt(self):
        self.vhost.states[V] = 'gone'
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        logger = self.useFixture(fixtures.FakeLogger(level='INFO'))
        self.agent.check_health()
        self.agent.check_health()
        self.assertEqual([('spdk_vhost_target.attachment.lost', 'ERROR')],
                         self.events())
        payload = self.payloads()[0]
        self.assertEqual((V, '1.0', [['10.0.0.1', '4420', 'tcp']]),
                         (payload['volume_id'], payload['version'],
                          payload['portals']))
        self.assertEqual('lost', self.health())
        self.assertEqual(2, self.vhost.calls.count(('attach', V)))
        # The retry's failure is logged once, not on every look.
        self.assertEqual(1, logger.output.count('failed, retrying'))
        self.assertIn('nqn.2010-10.org.openstack:volume-1 at 10.0.0.1:4420',
                      logger.output)
        # The target is back: the next look's rebuild succeeds.
        self.vhost.fail = None
        self.now += 7
        self.agent.check_health()
        self.assertEqual(('spdk_vhost_target.attachment.recovered', 'INFO'),
                         self.events()[-1])
        self.assertEqual(('lost', 7.0),
                         (self.payloads()[-1]['previous_state'],
                          self.payloads()[-1]['seconds']))
        self.assertEqual('ok', self.health())

    def test_attach_volume_rebuilds_a_lost_chain(self):
        self.vhost.states[V] = 'gone'
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        self.agent.check_health()
        # Not "ok" while the chain cannot be rebuilt.
        self.assertRaises(spdk_exc.AttachError, self.agent.attach_volume, V,
                          info())
        self.vhost.fail = None
        self.agent.attach_volume(V, info())
        self.assertEqual('ok', self.health())
        self.assertIn(('spdk_vhost_target.attachment.recovered', 'INFO'),
                      self.events())

    def test_a_detached_volume_is_not_rebuilt(self):
        self.vhost.states[V] = 'gone'
        self.agent.check_health()   # lost, rebuilt
        self.vhost.states[V] = 'gone'
        real_get = self.desired.get
        # The detach ran between the listing and the rebuild.
        self.desired.get = lambda volume_id: None
        del self.vhost.calls[:]
        self.agent.check_health()
        self.desired.get = real_get
        self.assertNotIn(('attach', V), self.vhost.calls)

    def test_stall_reported_after_the_configured_time_then_recovery(self):
        self.vhost.states[V] = 'reconnect_is_delayed'
        self.agent.check_health()
        self.now += 29
        self.agent.check_health()
        self.assertEqual([], self.events())
        self.assertEqual('disconnected', self.health())
        self.now += 1
        self.agent.check_health()
        self.agent.check_health()
        self.assertEqual([('spdk_vhost_target.attachment.stalled', 'ERROR')],
                         self.events())
        self.assertEqual(('reconnect_is_delayed', 30.0),
                         (self.payloads()[0]['nvme_state'],
                          self.payloads()[0]['seconds']))
        self.assertEqual('stalled', self.health())
        self.vhost.states[V] = 'enabled'
        self.agent.check_health()
        self.assertEqual(('spdk_vhost_target.attachment.recovered', 'INFO'),
                         self.events()[-1])
        self.assertEqual('ok', self.health())
        self.assertNotIn(('attach', V), self.vhost.calls)

    def test_a_short_disconnect_is_not_reported(self):
        self.vhost.states[V] = 'resetting'
        self.agent.check_health()
        self.vhost.states[V] = 'enabled'
        self.now += 60
        self.agent.check_health()
        self.assertEqual([], self.events())
        self.assertEqual('ok', self.health())

    def test_a_rebuild_refused_as_busy_is_retried(self):
        self.vhost.states[V] = 'gone'
        self.vhost.fail = spdk_exc.VolumeBusy(volume=V, sessions=1,
                                              socket=self.vhost.socket_path(V))
        self.agent.check_health()
        self.agent.check_health()
        status = self.agent.get_status()['attachments'][0]
        self.assertEqual('lost', status['health'])
        self.assertIn('is busy', status['health_reason'])
        self.vhost.fail = None
        self.agent.check_health()
        self.assertEqual('ok', self.health())


def replicated_info(nodes=(1, 2, 3), volume_id=V):
    return connection.spdk_vhost_replicated_info(
        [('nqn.2010-10.org.openstack:volume-%s:store%d' % (volume_id, i),
          [('10.0.0.%d' % i, '4420', 'tcp')], None) for i in nodes],
        volume_id, HOST)


def raid(configured, rebuilding=None, volume_id=V):
    """bdev_raid_get_bdevs' entry of a volume's mirror: copy i is in it if
    ``configured[i]``; ``rebuilding``: the copy being rebuilt.
    """
    members = ['%s-r%dn1' % (volume_id, i) for i in range(len(configured))]
    entry = {'name': volume_id, 'state': 'online', 'raid_level': 'raid1',
             'base_bdevs_list': [
                 {'name': m if on else None, 'is_configured': on}
                 for m, on in zip(members, configured)]}
    if rebuilding is not None:
        entry['process'] = {'type': 'rebuild',
                            'target': members[rebuilding],
                            'progress': {'blocks': 10, 'percent': 40}}
    return entry


class TestMirrorHealth(base.TestCase):
    """Copies of a replicated volume out of the mirror (check_health)."""

    events = TestAgent.events
    make_agent = TestAgent.make_agent
    payloads = TestHealth.payloads

    def setUp(self):
        super().setUp()
        self.make_agent()
        self.agent.attach_volume(V, replicated_info())
        self.vhost.mirror.raids[V] = raid([True, True, True])
        self.vhost.replica_states = {'%s-r%d' % (V, i): 'enabled'
                                     for i in range(3)}
        _impl_test.reset()
        del self.vhost.calls[:]

    def status(self):
        [attachment] = self.agent.get_status()['attachments']
        return attachment['health'], [c['state']
                                      for c in attachment['copies']]

    def test_mirrored_volume_costs_two_listing_calls(self):
        self.agent.check_health()
        self.assertEqual([('nvme_states',), ('raid_listing',)],
                         self.vhost.calls)
        self.assertEqual([], self.events())
        self.assertEqual(('ok', ['in_sync'] * 3), self.status())

    def test_lost_copy_is_reported_and_put_back_one_at_a_time(self):
        # Copies 1 and 2 are out; SPDK deleted copy 1's controller and
        # reconnects copy 2's.
        self.vhost.mirror.raids[V] = raid([True, False, False])
        del self.vhost.replica_states['%s-r1' % V]
        self.vhost.replica_states['%s-r2' % V] = 'enabled'
        self.agent.check_health()
        self.assertEqual([('spdk_vhost_target.attachment.degraded',
                           'ERROR')], self.events())
        payload = self.payloads()[0]
        self.assertEqual(['in_sync', 'missing', 'missing'],
                         [c['state'] for c in payload['copies']])
        self.assertEqual(('degraded', ['in_sync', 'missing', 'missing']),
                         self.status())
        # One copy per look: the first that could be brought back.
        self.assertEqual([('reconnect_copy', V, 1)], [
            c for c in self.vhost.calls if c[0] in ('reconnect_copy',
                                                    'raid_add')])
        # While it is rebuilt, nothing else is put back.
        self.vhost.mirror.raids[V] = raid([True, True, False], rebuilding=1)
        del self.vhost.calls[:]
        self.agent.check_health()
        self.assertEqual([], [c for c in self.vhost.calls
                              if c[0] in ('reconnect_copy', 'raid_add')])
        # Copy 1 in sync: copy 2, whose controller answers, is added.
        self.vhost.mirror.raids[V] = raid([True, True, False])
        self.agent.check_health()
        self.assertEqual([('raid_add', V, '%s-r2n1' % V)], [
            c for c in self.vhost.calls if c[0] in ('reconnect_copy',
                                                    'raid_add')])
        self.vhost.mirror.raids[V] = raid([True, True, True], rebuilding=2)
        self.agent.check_health()
        self.assertEqual(('rebuilding', ['in_sync', 'in_sync',
                                         'rebuilding']), self.status())
        self.vhost.mirror.raids[V] = raid([True, True, True])
        self.agent.check_health()
        self.assertEqual(
            [('spdk_vhost_target.attachment.degraded', 'ERROR'),
             ('spdk_vhost_target.attachment.rebuilding', 'INFO'),
             ('spdk_vhost_target.attachment.mirrored', 'INFO')],
            self.events())
        self.assertEqual(('ok', ['in_sync'] * 3), self.status())
        self.assertEqual('rebuilding',
                         self.payloads()[-1]['previous_state'])

    def test_a_copy_that_does_not_answer_yet_is_retried(self):
        self.vhost.mirror.raids[V] = raid([True, True, False])
        del self.vhost.replica_states['%s-r2' % V]
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        logger = self.useFixture(fixtures.FakeLogger(level='INFO'))
        for _ in range(3):
            self.agent.check_health()
        self.assertEqual(3, self.vhost.calls.count(('reconnect_copy', V, 2)))
        self.assertEqual(1, logger.output.count('is not back yet'))
        self.assertEqual(1, len(self.events()))

    def test_one_reconnect_per_look_to_a_node_that_does_not_answer(self):
        # Copy 2 of V and of W is on store3, which does not answer: each
        # try may wait target_answer_timeout_sec.
        w = V.replace('5', '6')
        self.agent.attach_volume(w, replicated_info(volume_id=w))
        for volume_id in (V, w):
            self.vhost.mirror.raids[volume_id] = raid(
                [True, True, False], volume_id=volume_id)
            self.vhost.replica_states.pop('%s-r2' % volume_id, None)
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        self.agent.check_health()
        self.assertEqual(1, len([c for c in self.vhost.calls
                                 if c[0] == 'reconnect_copy']))
        # The next look tries again.
        self.vhost.fail = None
        del self.vhost.calls[:]
        self.agent.check_health()
        self.assertEqual([('reconnect_copy', V, 2), ('reconnect_copy', w, 2)],
                         [c for c in self.vhost.calls
                          if c[0] == 'reconnect_copy'])

    def test_a_copy_spdk_stopped_reconnecting_is_detached_and_put_back(self):
        # SPDK failed copy 1 (replica_ctrlr_loss_timeout_sec 0); no I/O
        # went to it yet, so the mirror still counts it.
        self.vhost.replica_states['%s-r1' % V] = 'failed'
        self.agent.check_health()
        self.assertEqual([('disconnect', '%s-r1' % V)], [
            c for c in self.vhost.calls if c[0] in (
                'disconnect', 'reconnect_copy', 'raid_add')])
        # The detach took it out of the mirror: reported, connected again.
        self.vhost.mirror.raids[V] = raid([True, False, True])
        self.agent.check_health()
        self.assertEqual([('spdk_vhost_target.attachment.degraded',
                           'ERROR')], self.events())
        self.assertIn(('reconnect_copy', V, 1), self.vhost.calls)
        # Controllers SPDK still reconnects are left to it.
        del self.vhost.calls[:]
        self.vhost.replica_states['%s-r1' % V] = 'resetting'
        self.agent.check_health()
        self.assertEqual([], [c for c in self.vhost.calls if c[0] in (
            'disconnect', 'reconnect_copy', 'raid_add')])

    def test_no_online_mirror_is_a_lost_chain(self):
        del self.vhost.mirror.raids[V]
        self.agent.check_health()
        # The chain is made again at once (the copies answer here).
        self.assertEqual([('spdk_vhost_target.attachment.lost', 'ERROR'),
                          ('spdk_vhost_target.attachment.recovered',
                           'INFO')], self.events())
        self.assertIn(('attach', V), self.vhost.calls)

    def test_detach_removes_every_copy(self):
        self.agent.detach_volume(V)
        self.assertEqual(3, self.vhost.copies_detached)

    def test_attached_again_degraded_is_reported_again(self):
        # A guest started again while a copy's node is down: the attach
        # mirrors the others, and the health check tells it afresh.
        self.vhost.mirror.raids[V] = raid([True, False, True])
        self.agent.check_health()
        self.agent.detach_volume(V)
        self.agent.attach_volume(V, replicated_info())
        self.agent.check_health()
        self.assertEqual(
            [('spdk_vhost_target.attachment.degraded', 'ERROR'),
             ('spdk_vhost_target.detach.end', 'INFO'),
             ('spdk_vhost_target.attach.end', 'INFO'),
             ('spdk_vhost_target.attachment.degraded', 'ERROR')],
            self.events())

    def test_rebuilds_wait_for_a_free_slot(self):
        # Copy 1 of V is out; another mirror already rebuilds and the
        # host runs one rebuild at a time.
        self.vhost.conf.max_concurrent_rebuilds = 1
        self.vhost.mirror.raids[V] = raid([True, False, True])
        self.vhost.mirror.raids['other'] = raid([True, True], rebuilding=1)
        self.agent.check_health()
        self.assertEqual([], [c for c in self.vhost.calls
                              if c[0] in ('reconnect_copy', 'raid_add')])
        self.assertEqual(('degraded', ['in_sync', 'missing', 'in_sync']),
                         self.status())
        # The other rebuild ended: copy 1 goes back.
        del self.vhost.mirror.raids['other']
        self.agent.check_health()
        self.assertEqual([('raid_add', V, '%s-r1n1' % V)], [
            c for c in self.vhost.calls if c[0] in ('reconnect_copy',
                                                    'raid_add')])


class TestReplaceCopy(base.TestCase):
    """The operator's re-replication: one copy of an attached replicated
    volume replaced by a new one, which the mirror rebuilds.
    """

    make_agent = TestAgent.make_agent

    def setUp(self):
        super().setUp()
        self.make_agent()
        self.agent.attach_volume(V, replicated_info())
        # Copy 1's node died: the mirror took it out.
        self.vhost.mirror.raids[V] = raid([True, False, True])
        del self.vhost.calls[:]

    def replaced(self):
        return [c for c in self.vhost.calls
                if c[0] in ('replace_copy', 'raid_add')]

    def test_the_new_copy_takes_the_old_ones_place_and_is_rebuilt(self):
        self.assertEqual(1, self.agent.replace_copy(
            V, replicated_info((1, 4, 3))))
        self.assertEqual(
            [('replace_copy', V, 1,
              'nqn.2010-10.org.openstack:volume-%s:store4' % V),
             ('raid_add', V, '%s-r1n1' % V)], self.replaced())
        # The state a restart replays has the new copy.
        [saved] = state.DesiredState(self.state_dir).load()
        self.assertEqual(
            'nqn.2010-10.org.openstack:volume-%s:store4' % V,
            saved.replicas[1][0])
        # Once done, the same call changes nothing.
        del self.vhost.calls[:]
        self.assertIsNone(self.agent.replace_copy(
            V, replicated_info((1, 4, 3))))
        self.assertEqual([], self.replaced())

    def refused(self, field, *args):
        exc = self.assertRaises(spdk_exc.InvalidRequest,
                                self.agent.replace_copy, *args)
        self.assertEqual(field, exc.kwargs['field'])
        self.assertEqual([], self.replaced())
        return exc

    def test_the_new_copy_waits_for_a_free_rebuild_slot(self):
        self.vhost.conf.max_concurrent_rebuilds = 1
        self.vhost.mirror.raids['other'] = raid([True, True], rebuilding=1)
        self.assertEqual(1, self.agent.replace_copy(
            V, replicated_info((1, 4, 3))))
        self.assertEqual(['replace_copy'], [c[0] for c in self.replaced()])
        # The other rebuild ended: the health check adds it.
        del self.vhost.mirror.raids['other']
        self.vhost.replica_states = {'%s-r%d' % (V, i): 'enabled'
                                     for i in range(3)}
        self.agent.check_health()
        self.assertEqual(('raid_add', V, '%s-r1n1' % V), self.replaced()[-1])

    def test_more_than_one_copy_changing_is_refused(self):
        self.refused('connection_info.data.volume_replicas', V,
                     replicated_info((4, 5, 3)))

    def test_another_number_of_copies_is_refused(self):
        self.refused('connection_info.data.volume_replicas', V,
                     replicated_info((1, 4)))

    def test_another_host_is_refused(self):
        info = replicated_info((1, 4, 3))
        info['data']['host_nqn'] = HOST.replace('0f8d', '1f8d')
        self.refused('connection_info.data.host_nqn', V, info)

    def test_a_volume_not_attached_here_is_refused(self):
        info = connection.spdk_vhost_replicated_info(
            [('nqn.2010-10.org.openstack:volume-%s:store%d' % (A, i),
              [('10.0.0.%d' % i, '4420', 'tcp')], None) for i in (1, 2)],
            A, HOST)
        self.assertRaises(spdk_exc.UnknownVolume, self.agent.replace_copy,
                          A, info)

    def test_a_bad_connection_is_refused_naming_the_field(self):
        info = replicated_info((1, 4, 3))
        info['data']['volume_replicas'][1]['target_nqn'] = 'not an nqn'
        self.refused('connection_info.data.volume_replicas[1].target_nqn',
                     V, info)

    def test_no_copy_in_sync_to_rebuild_from_is_refused(self):
        self.vhost.mirror.raids[V] = raid([False, False, True],
                                          rebuilding=2)
        exc = self.refused('volume_id', V, replicated_info((1, 4, 3)))
        self.assertIn('rebuild', str(exc))

    def test_a_copy_that_does_not_connect_leaves_the_state(self):
        self.vhost.fail = spdk_exc.AttachError(volume=V, reason='refused')
        self.assertRaises(spdk_exc.AttachError, self.agent.replace_copy,
                          V, replicated_info((1, 4, 3)))
        [saved] = state.DesiredState(self.state_dir).load()
        self.assertEqual('nqn.2010-10.org.openstack:volume-%s:store2' % V,
                         saved.replicas[1][0])

    def test_a_volume_of_one_copy_is_refused(self):
        self.agent.attach_volume(A, info())
        self.refused('volume_id', A, info(target_nqn='nqn.2010-10.org.'
                                          'openstack:volume-2'))
