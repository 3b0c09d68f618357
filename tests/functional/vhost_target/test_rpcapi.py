"""The agent's RPC API through a real RabbitMQ (Debian's, on loopback)."""

import threading

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture

from spdk_common import exception as spdk_exc
from tests import base
from tests.fixtures import rabbitmq
from tests.unit import vhost_target as unit_helpers
from tests.unit.vhost_target import test_agent as unit_agent
from vhost_target import agent as vhost_agent
from vhost_target import planner
from vhost_target import rpcapi
from vhost_target import state


class RecordingAgent:
    """Stands in for VhostAgent (which the SPDK tier runs for real): this
    test is about the transport, the API version and error passing.
    """

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def _record(self, *call):
        with self.lock:
            self.calls.append(call)

    def attach_volume(self, volume_id, connection_info, numa_nodes=None,
                      qos=None):
        if volume_id == 'bad':
            raise spdk_exc.InvalidAttachRequest(volume=volume_id,
                                                reason='portals missing')
        self._record('attach', volume_id, numa_nodes, qos)
        return '/sockets/vhost-%s' % volume_id

    def detach_volume(self, volume_id):
        if volume_id == 'unknown':
            raise spdk_exc.UnknownVolume(volume=volume_id)
        self._record('detach', volume_id)

    def extend_volume(self, volume_id):
        return 2 * 1024 ** 3

    def set_qos(self, volume_id, qos):
        self._record('qos', volume_id, qos)

    def get_status(self):
        return {'version': vhost_agent.AGENT_VERSION, 'attachments': []}


class BrokerPerClass(base.TestCase):
    """One private RabbitMQ for all tests of a class: it takes seconds to
    start.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = rabbitmq.RabbitMQ()
        cls.broker.setUp()

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanUp()
        super().tearDownClass()


class TestRPCAPI(BrokerPerClass):

    def setUp(self):
        super().setUp()
        broker = self.broker
        # oslo.messaging registers some options on the global CONF only.
        self.conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        rpcapi.get_transport(self.conf).cleanup()  # registers its options
        self.conf.set_override('transport_url', broker.url)
        transport = rpcapi.get_transport(self.conf)
        self.addCleanup(transport.cleanup)
        self.agent = RecordingAgent()
        server = rpcapi.get_server(transport, 'compute1', self.agent)
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)
        self.client = rpcapi.VhostTargetClient(transport, 'compute1',
                                               timeout=20)

    def test_round_trips(self):
        info = {'driver_volume_type': 'spdk_vhost', 'data': {}}
        self.assertEqual('/sockets/vhost-v1', self.client.attach_volume(
            'v1', info, numa_nodes=[0, 1], qos={'rw_ios_per_sec': 1000}))
        self.assertEqual(2 * 1024 ** 3, self.client.extend_volume('v1'))
        self.client.set_qos('v1', {})
        self.client.detach_volume('v1')
        self.assertEqual('1.0', self.client.get_status()['version'])
        self.assertEqual([('attach', 'v1', [0, 1], {'rw_ios_per_sec': 1000}),
                          ('qos', 'v1', {}), ('detach', 'v1')],
                         self.agent.calls)

    def test_agent_errors_arrive_as_their_own_class(self):
        exc = self.assertRaises(spdk_exc.InvalidAttachRequest,
                                self.client.attach_volume, 'bad', {})
        self.assertIn('portals missing', str(exc))
        self.assertRaises(spdk_exc.UnknownVolume,
                          self.client.detach_volume, 'unknown')

    def test_concurrent_calls(self):
        results = {}

        def attach(n):
            results[n] = self.client.attach_volume('v%d' % n, {})
        threads = [threading.Thread(target=attach, args=(n,))
                   for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({n: '/sockets/vhost-v%d' % n for n in range(8)},
                         results)


class TestBadRequestsOverRabbitMQ(BrokerPerClass):
    """The real VhostAgent (its SPDK side recorded) behind the real RPC
    server: bad requests come back to the caller as InvalidRequest, with
    the field and value named, and reach nothing behind the agent.
    """

    def setUp(self):
        super().setUp()
        conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        rpcapi.get_transport(conf).cleanup()  # registers its options
        conf.set_override('transport_url', self.broker.url)
        transport = rpcapi.get_transport(conf)
        self.addCleanup(transport.cleanup)
        topo = unit_helpers.read_fixture_topology('two_nodes')
        plan = planner.plan(unit_helpers.make_conf(self), topo)
        self.desired = state.DesiredState(
            self.useFixture(fixtures.TempDir()).path)
        self.desired.load()
        self.vhost = unit_agent.RecordingVhost()
        agent = vhost_agent.VhostAgent(self.vhost, self.desired, plan, topo)
        server = rpcapi.get_server(transport, 'compute2', agent)
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)
        self.client = rpcapi.VhostTargetClient(transport, 'compute2',
                                               timeout=20)

    def test_bad_requests_arrive_as_invalid_request(self):
        volume = unit_agent.V
        cases = [
            (lambda: self.client.attach_volume('../../etc/passwd',
                                               unit_agent.info()),
             "volume_id '../../etc/passwd'"),
            (lambda: self.client.attach_volume(volume, unit_agent.info(
                portals=[['not-an-ip', 4420, 'tcp']])),
             "address 'not-an-ip' is not an IPv4 or IPv6 address"),
            (lambda: self.client.attach_volume(volume, unit_agent.info(),
                                               qos={'bogus': 1}),
             'bogus'),
            (lambda: self.client.set_qos(volume, {'rw_ios_per_sec': 1}),
             'multiple of 1000'),
            (lambda: self.client.detach_volume(None), 'volume_id None'),
            (lambda: self.client.extend_volume(['x']), "volume_id ['x']"),
            (lambda: self.client._call('detach_volume', volume_id=volume,
                                       force=True),
             "argument 'force'"),
            (lambda: self.client._call('attach_volume', volume_id=volume),
             'connection_info None is not a dict'),
        ]
        for call, words in cases:
            exc = self.assertRaises(spdk_exc.InvalidRequest, call)
            self.assertIn(words, str(exc))
        self.assertEqual([], self.vhost.calls)
        self.assertEqual([], self.desired.all())
        self.assertRaises(spdk_exc.UnknownVolume,
                          self.client.extend_volume, volume)
