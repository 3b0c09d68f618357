"""The multi-node cloud's network, made for real under names of the
test's own (a cloud may be up on this machine): nodes reach each other
over the bridge, the host reaches the nodes but not their
unauthenticated migration listeners, and nothing is left after
``remove``.
"""

import ipaddress
import os
import socket
import subprocess
import sys

import fixtures

from tests import base
from tools.aio_cloud import fabric

# A listener on the node's address, ports given as arguments; prints
# "ready" once it listens.
LISTENER = '''
import socket, sys, time
socks = []
for port in sys.argv[2:]:
    s = socket.socket()
    s.bind((sys.argv[1], int(port)))
    s.listen()
    socks.append(s)
print('ready', flush=True)
time.sleep(60)
'''


def _connects(address, port, netns=None):
    if netns is None:
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex((address, port)) == 0
    code = ('import socket; s = socket.socket(); s.settimeout(2); '
            'print(s.connect_ex((%r, %d)) == 0)' % (address, port))
    return subprocess.run(
        ['ip', 'netns', 'exec', netns, sys.executable, '-c', code],
        capture_output=True, text=True, check=True).stdout.strip() == 'True'


class TestFabric(base.TestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('network namespaces need root')
        self.useFixture(fixtures.Timeout(120, gentle=True))
        tag = '%x' % (os.getpid() % 0xfff)
        subnet = ipaddress.ip_network('10.213.%d.0/24'
                                      % (200 + os.getpid() % 50))
        for name, value in (('BRIDGE', 'spdkt%s-br' % tag),
                            ('NAMESPACE_PREFIX', 'spdkt%s-' % tag),
                            ('SUBNET', subnet),
                            ('CONTROL_ADDRESS', str(subnet[1]))):
            self.useFixture(fixtures.MonkeyPatch(
                'tools.aio_cloud.fabric.' + name, value))
        self.assertEqual([], fabric.in_the_way())
        self.addCleanup(lambda: self.assertEqual([], fabric.present()))
        self.addCleanup(fabric.remove)
        fabric.create_bridge()
        fabric.add_node('compute1', fabric.compute_address(1))
        fabric.add_node('compute2', fabric.compute_address(2))

    def listen(self, node_name, ports):
        proc = subprocess.Popen(
            ['ip', 'netns', 'exec', fabric.netns(node_name), sys.executable,
             '-c', LISTENER, fabric.compute_address(int(node_name[-1]))]
            + [str(p) for p in ports], stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        self.assertEqual('ready', proc.stdout.readline().strip())

    def test_only_other_nodes_reach_the_migration_listeners(self):
        self.listen('compute2', (16509, 49152, 13420))
        target = fabric.compute_address(2)
        # The other node reaches all three.
        for port in (16509, 49152, 13420):
            self.assertTrue(_connects(target, port,
                                      fabric.netns('compute1')), port)
        # The host (any local user) reaches the NVMe/TCP-like port only.
        self.assertTrue(_connects(target, 13420))
        self.assertFalse(_connects(target, 16509))
        self.assertFalse(_connects(target, 49152))

    def test_the_host_answers_a_node_on_any_port_it_connects_from(self):
        # The refused ports are the node's listeners only: never the
        # source port of the node's own connections (to RabbitMQ, the
        # APIs), whose replies come from the host's address.
        reserved = subprocess.run(
            ['ip', 'netns', 'exec', fabric.netns('compute1'), 'sysctl',
             '-n', 'net.ipv4.ip_local_reserved_ports'],
            capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual('16509,49152-49215', reserved)

    def test_a_node_whose_link_is_down_is_cut_off(self):
        self.listen('compute2', (13420,))
        target = fabric.compute_address(2)
        fabric.set_link('compute2', up=False)
        self.assertFalse(_connects(target, 13420, fabric.netns('compute1')))
        fabric.set_link('compute2', up=True)
        self.assertTrue(_connects(target, 13420, fabric.netns('compute1')))

    def test_what_is_in_the_way_is_named(self):
        found = fabric.in_the_way()
        self.assertIn('bridge %s' % fabric.BRIDGE, found)
        self.assertIn('network namespace %s' % fabric.netns('compute1'),
                      found)
        self.assertTrue(any(item.startswith('address %s/'
                                            % fabric.CONTROL_ADDRESS)
                            for item in found), found)
