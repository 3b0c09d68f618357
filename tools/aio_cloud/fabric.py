"""The network of a multi-node cloud: a private bridge on this machine,
the control plane's address on it, and one network namespace per node
with a veth on the bridge.

Nodes reach each other (NVMe/TCP, libvirt and QEMU migrations) and the
control plane (RabbitMQ, MariaDB, the APIs on :data:`CONTROL_ADDRESS`)
over the bridge; nothing is routed off the machine (the namespaces have
no default route). A node's unauthenticated migration listeners (libvirtd
TCP, QEMU's incoming migrations) take connections from the other nodes
only: a policy rule in the node's namespace refuses them from the host's
own address, which every local user's connection to the bridge comes
from.
"""

import ipaddress
import os
import subprocess

BRIDGE = 'spdkos-br0'
SUBNET = ipaddress.ip_network('10.213.47.0/24')
CONTROL_ADDRESS = str(SUBNET[1])
# Compute node k is SUBNET[10 + k], storage node k SUBNET[20 + k].
COMPUTE_HOST_BASE = 10
STORAGE_HOST_BASE = 20
NAMESPACE_PREFIX = 'spdkos-'
NETNS_DIR = '/run/netns'
# libvirtd's TCP listener (no authentication) and QEMU's incoming
# migration ports (libvirt's default range).
NODE_ONLY_PORTS = ('16509', '49152-49215')
# The policy rules: the refusals before the local table (which would
# deliver first otherwise), then the local table again.
REFUSE_PREF = 10
LOCAL_PREF = 20


class FabricError(Exception):
    """A bridge, namespace or address could not be set up."""


def compute_address(index):
    return str(SUBNET[COMPUTE_HOST_BASE + index])


def storage_address(index):
    return str(SUBNET[STORAGE_HOST_BASE + index])


def netns(node_name):
    """The network namespace of node ``node_name`` (``compute1``)."""
    return NAMESPACE_PREFIX + node_name


def netns_path(node_name):
    return os.path.join(NETNS_DIR, netns(node_name))


def _veth(node_name):
    # Interface names are at most 15 characters: spdkos-compute1 is.
    return NAMESPACE_PREFIX + node_name[0] + node_name.lstrip(
        'abcdefghijklmnopqrstuvwxyz')


def _ip(*args, check=True):
    result = subprocess.run(['ip'] + list(args), capture_output=True,
                            text=True)
    if check and result.returncode != 0:
        raise FabricError('ip %s: %s' % (' '.join(args),
                                         result.stderr.strip()))
    return result


def _namespaces():
    try:
        return sorted(n for n in os.listdir(NETNS_DIR)
                      if n.startswith(NAMESPACE_PREFIX))
    except FileNotFoundError:
        return []


def present():
    """What of a multi-node cloud's network exists on this machine: the
    bridge and namespaces named like ours.
    """
    found = []
    if _ip('link', 'show', BRIDGE, check=False).returncode == 0:
        found.append('bridge %s' % BRIDGE)
    return found + ['network namespace %s' % name for name in _namespaces()]


def in_the_way():
    """What stops ``up`` from making the network: :func:`present`, and
    addresses of this machine in :data:`SUBNET`.
    """
    found = present()
    for line in _ip('-o', 'addr', 'show').stdout.splitlines():
        fields = line.split()
        if fields[2] == 'inet' and ipaddress.ip_interface(
                fields[3]).network.overlaps(SUBNET):
            found.append('address %s on %s' % (fields[3], fields[1]))
    return found


def create_bridge():
    _ip('link', 'add', BRIDGE, 'type', 'bridge')
    _ip('addr', 'add', '%s/%d' % (CONTROL_ADDRESS, SUBNET.prefixlen),
        'dev', BRIDGE)
    _ip('link', 'set', BRIDGE, 'up')


def add_node(node_name, address):
    """A namespace for node ``node_name`` with ``address`` on the bridge
    (its ``eth0``) and loopback up.
    """
    name = netns(node_name)
    _ip('netns', 'add', name)
    _ip('link', 'add', _veth(node_name), 'type', 'veth', 'peer', 'name',
        'eth0', 'netns', name)
    _ip('link', 'set', _veth(node_name), 'master', BRIDGE, 'up')
    _ip('-n', name, 'addr', 'add', '%s/%d' % (address, SUBNET.prefixlen),
        'dev', 'eth0')
    for link in ('lo', 'eth0'):
        _ip('-n', name, 'link', 'set', link, 'up')
    for ports in NODE_ONLY_PORTS:
        _ip('-n', name, 'rule', 'add', 'pref', str(REFUSE_PREF), 'from',
            CONTROL_ADDRESS, 'ipproto', 'tcp', 'dport', ports, 'prohibit')
    _ip('-n', name, 'rule', 'add', 'pref', str(LOCAL_PREF), 'lookup',
        'local')
    _ip('-n', name, 'rule', 'del', 'pref', '0')
    # The rules see ports, not connections: the host's replies to a
    # node's own connection (to RabbitMQ, the APIs) would be refused if
    # the node's end had one of those ports, which are in Linux's
    # ephemeral range (49152-49215): they are kept out of it.
    result = subprocess.run(
        ['ip', 'netns', 'exec', name, 'sysctl', '-q', '-w',
         'net.ipv4.ip_local_reserved_ports=%s' % ','.join(NODE_ONLY_PORTS)],
        capture_output=True, text=True)
    if result.returncode:
        raise FabricError('reserving ports in %s: %s'
                          % (name, result.stderr.strip()))


def set_link(node_name, up):
    """Take node ``node_name``'s link to the bridge down (a node that
    died, to the others) or up again.
    """
    _ip('-n', netns(node_name), 'link', 'set', 'eth0',
        'up' if up else 'down')


def remove():
    """Remove every namespace of ours and the bridge (the veths go with
    the namespaces); what could not be removed, in words.
    """
    problems = []
    for name in _namespaces():
        result = _ip('netns', 'del', name, check=False)
        if result.returncode:
            problems.append('network namespace %s: %s'
                            % (name, result.stderr.strip()))
    if _ip('link', 'show', BRIDGE, check=False).returncode == 0:
        result = _ip('link', 'del', BRIDGE, check=False)
        if result.returncode:
            problems.append('bridge %s: %s'
                            % (BRIDGE, result.stderr.strip()))
    return problems
