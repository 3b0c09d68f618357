"""The agent's RPC API over oslo.messaging.

Topic ``spdk-vhost-target`` on an exchange of the same name, one server
per compute host (``server=host``), version 1.0. The exchange is named
because callers' defaults differ: nova-compute's ``control_exchange`` is
``nova``, the agent's ``openstack``. Errors of the agent reach the caller
as the same exception classes (``allowed_remote_exmods``), so nova-compute
can tell a bad request from an SPDK failure.

Version history:

* 1.0 - attach_volume, detach_volume, extend_volume, set_qos, get_status
* 1.1 - replace_copy
"""

import oslo_messaging as messaging

from spdk_common import rpc_bus
from vhost_target import agent as vhost_agent

TOPIC = 'spdk-vhost-target'
EXCHANGE = TOPIC
API_VERSION = '1.1'
# What a caller needs of the agent for each call it makes.
REPLACE_COPY_VERSION = '1.1'


get_transport = rpc_bus.get_transport


class VhostTargetEndpoint:
    """The RPC surface; the agent validates every argument it receives.

    Arguments default to None and unknown ones are caught here, so that a
    missing or misspelt argument is the agent's InvalidRequest naming it,
    not a TypeError from the dispatcher.
    """

    target = messaging.Target(version=API_VERSION)

    def __init__(self, agent):
        self._agent = agent

    def attach_volume(self, context, volume_id=None, connection_info=None,
                      numa_nodes=None, qos=None, **unknown):
        vhost_agent.refuse_unknown_arguments('attach_volume', unknown)
        return self._agent.attach_volume(volume_id, connection_info,
                                         numa_nodes=numa_nodes, qos=qos)

    def detach_volume(self, context, volume_id=None, **unknown):
        vhost_agent.refuse_unknown_arguments('detach_volume', unknown)
        self._agent.detach_volume(volume_id)

    def extend_volume(self, context, volume_id=None, **unknown):
        vhost_agent.refuse_unknown_arguments('extend_volume', unknown)
        return self._agent.extend_volume(volume_id)

    def set_qos(self, context, volume_id=None, qos=None, **unknown):
        vhost_agent.refuse_unknown_arguments('set_qos', unknown)
        self._agent.set_qos(volume_id, qos)

    def replace_copy(self, context, volume_id=None, connection_info=None,
                     **unknown):
        vhost_agent.refuse_unknown_arguments('replace_copy', unknown)
        return self._agent.replace_copy(volume_id, connection_info)

    def get_status(self, context, **unknown):
        vhost_agent.refuse_unknown_arguments('get_status', unknown)
        return self._agent.get_status()


def get_server(transport, host, agent):
    return rpc_bus.get_server(transport, EXCHANGE, host,
                              VhostTargetEndpoint(agent))


class VhostTargetClient:
    """What nova-compute (or an operator tool) calls on one host's agent."""

    def __init__(self, transport, host, timeout=60):
        self._client = rpc_bus.Client(transport, EXCHANGE, host,
                                      API_VERSION, timeout)

    def _call(self, method, version='1.0', timeout=None, **kwargs):
        return self._client.call(method, version, timeout=timeout, **kwargs)

    def attach_volume(self, volume_id, connection_info, numa_nodes=None,
                      qos=None):
        return self._call('attach_volume', volume_id=volume_id,
                          connection_info=connection_info,
                          numa_nodes=numa_nodes, qos=qos)

    def detach_volume(self, volume_id):
        return self._call('detach_volume', volume_id=volume_id)

    def extend_volume(self, volume_id):
        return self._call('extend_volume', volume_id=volume_id)

    def set_qos(self, volume_id, qos):
        return self._call('set_qos', volume_id=volume_id, qos=qos)

    def replace_copy(self, volume_id, connection_info, timeout=None):
        return self._call('replace_copy', version=REPLACE_COPY_VERSION,
                          timeout=timeout, volume_id=volume_id,
                          connection_info=connection_info)

    def get_status(self, timeout=None):
        return self._call('get_status', timeout=timeout)
