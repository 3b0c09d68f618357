"""VhostAgent's own logic: validation, CPU choice, state, notifications."""

import fixtures
from oslo_config import cfg
import oslo_messaging as messaging
from oslo_messaging.notify import _impl_test

from tests import base
from tests.unit import vhost_target as helpers
from vhost_target import agent as vhost_agent
from vhost_target import planner
from vhost_target import state
from vhost_target import vhost

HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'


def info(**data):
    base_data = {'target_nqn': 'nqn.2010-10.org.openstack:volume-1',
                 'host_nqn': HOST, 'portals': [['10.0.0.1', '4420', 'tcp']]}
    base_data.update(data)
    return {'driver_volume_type': 'spdk_vhost', 'data': base_data}


class RecordingVhost:
    """Stands in for VhostTarget, whose SPDK side the SPDK tier runs."""

    def __init__(self):
        self.attached = {}
        self.fail = None

    def attach(self, attachment):
        if self.fail:
            raise self.fail
        self.attached[attachment.volume_id] = attachment
        return self.socket_path(attachment.volume_id)

    def detach(self, volume_id):
        self.attached.pop(volume_id, None)

    def socket_path(self, volume_id):
        return '/sockets/' + vhost.vhost_controller_name(volume_id)

    def set_qos(self, volume_id, qos):
        self.attached[volume_id].qos = qos

    def size_bytes(self, volume_id):
        return 1024 ** 3

    def controllers(self):
        return {'vhost': list(self.attached), 'nvme': list(self.attached)}


class TestAgent(base.TestCase):
    def setUp(self):
        super().setUp()
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
            self.agent.attach_volume('v%d' % n, info(), numa_nodes=[1])
            cpus.append(self.desired.get('v%d' % n).cpu)
        node1 = self.plan.reactors_by_node[1]
        self.assertEqual(sorted(node1 * 2), sorted(cpus))
        self.assertEqual(('spdk_vhost_target.attach.end', 'INFO'),
                         self.events()[0])
        self.assertEqual('1.0',
                         _impl_test.NOTIFICATIONS[0][1]['payload']['version'])

    def test_reattach_keeps_the_cpu_and_state_survives_a_restart(self):
        self.agent.attach_volume('v', info(), numa_nodes=[0])
        cpu = self.desired.get('v').cpu
        self.agent.attach_volume('v', info(), numa_nodes=[1])
        self.assertEqual(cpu, self.desired.get('v').cpu)
        again = state.DesiredState(self.state_dir)
        self.assertEqual(['v'], [a.volume_id for a in again.load()])
        self.assertEqual([('10.0.0.1', '4420', 'tcp')],
                         again.get('v').portals)

    def test_invalid_requests(self):
        cases = [
            (info(portals=[]), 'portals'),
            (info(portals=[['a', 'port', 'tcp']]), 'portals'),
            (info(portals=[['a', '1', 'rdma']]), 'portals'),
            (info(host_nqn='bad'), 'host_nqn'),
            (dict(info(), driver_volume_type='nvmeof'), 'nvmeof'),
            ({'driver_volume_type': 'spdk_vhost'}, 'no data'),
        ]
        for connection_info, words in cases:
            exc = self.assertRaises(vhost_agent.InvalidAttachRequest,
                                    self.agent.attach_volume, 'v',
                                    connection_info)
            self.assertIn(words, str(exc))
        self.assertRaises(vhost_agent.InvalidAttachRequest,
                          self.agent.attach_volume, 'v', info(),
                          numa_nodes=[5])
        self.assertEqual({}, self.vhost.attached)
        self.assertEqual([], self.desired.all())

    def test_failed_attach_is_not_remembered_and_is_notified(self):
        self.vhost.fail = vhost.AttachError(volume='v', reason='refused')
        self.assertRaises(vhost.AttachError, self.agent.attach_volume, 'v',
                          info())
        self.assertEqual([], self.desired.all())
        self.assertEqual([('spdk_vhost_target.attach.error', 'ERROR')],
                         self.events())

    def test_detach_qos_status_and_unknown_volumes(self):
        self.agent.attach_volume('v', info(), qos={'rw_ios_per_sec': 1000})
        self.agent.set_qos('v', {'rw_ios_per_sec': 2000})
        self.assertEqual({'rw_ios_per_sec': 2000}, state.DesiredState(
            self.state_dir).load()[0].qos)
        status = self.agent.get_status()
        self.assertEqual(['v'], [a['volume_id']
                                 for a in status['attachments']])
        self.agent.detach_volume('v')
        self.assertEqual([], self.desired.all())
        for call in (self.agent.extend_volume, ):
            self.assertRaises(vhost_agent.UnknownVolume, call, 'v')
        self.assertRaises(vhost_agent.UnknownVolume, self.agent.set_qos, 'v',
                          {})

    def test_replay_reports_each_volume(self):
        self.agent.attach_volume('a', info())
        self.agent.attach_volume('b', info())
        self.vhost.attached.clear()
        self.assertEqual((['a', 'b'], []), self.agent.replay())
        self.vhost.fail = vhost.AttachError(volume='a', reason='gone')
        self.assertEqual(([], ['a', 'b']), self.agent.replay())
        self.assertEqual(('spdk_vhost_target.recovery.end', 'ERROR'),
                         self.events()[-1])
