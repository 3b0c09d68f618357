"""How spdk-openstack's services talk over oslo.messaging: one owner of
their transports, servers and clients.

Each service names its own exchange (callers' ``control_exchange``
defaults differ: nova-compute's is ``nova``, Cinder's ``openstack``),
serves one server per host on a topic of the same name, and lets
:mod:`spdk_common.exception` errors reach callers as the same classes
(``allowed_remote_exmods``), so a caller can tell a bad request from an
SPDK failure. Every service module (``*/rpcapi.py``) keeps its own names,
versions and methods.
"""

import oslo_messaging as messaging

from spdk_common import exception as spdk_exc


def get_transport(conf):
    return messaging.get_rpc_transport(
        conf, allowed_remote_exmods=spdk_exc.REMOTE_EXMODS)


def get_server(transport, exchange, server, endpoint):
    """A server of ``endpoint`` on topic and exchange ``exchange``."""
    target = messaging.Target(exchange=exchange, topic=exchange,
                              server=server)
    return messaging.get_rpc_server(transport, target, [endpoint],
                                    executor='threading')


class Client:
    """Calls one server of a service."""

    def __init__(self, transport, exchange, server, version, timeout):
        self.timeout = timeout
        target = messaging.Target(exchange=exchange, topic=exchange,
                                  server=server, version=version)
        self._client = messaging.get_rpc_client(transport, target,
                                                timeout=timeout)

    def call(self, method, version, timeout=None, **kwargs):
        """``method`` of the server, which must speak ``version``."""
        return self._client.prepare(
            version=version, timeout=timeout or self.timeout).call(
                {}, method, **kwargs)
