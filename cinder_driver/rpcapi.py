"""The operator's API of a back end of storage nodes, over oslo.messaging.

Topic ``spdk-replicated-backend`` on an exchange of the same name, one
server per back end (``server=<host>@<backend>``, the back end part of a
volume's ``os-vol-host-attr:host``), version 1.0. The
``spdk-volume-replicas`` command is its client. Every failure reaches the
caller as :class:`spdk_common.exception.CopyNotReplaced`, naming why.

Version history:

* 1.0 - replace_copy (volume_id, node, to)
"""

import oslo_messaging as messaging

from spdk_common import exception as spdk_exc
from spdk_common import rpc_bus

EXCHANGE = 'spdk-replicated-backend'
API_VERSION = '1.0'


class ReplicatedBackendEndpoint:
    target = messaging.Target(version=API_VERSION)

    def __init__(self, driver):
        self._driver = driver

    @messaging.expected_exceptions(spdk_exc.CopyNotReplaced)
    def replace_copy(self, context, volume_id=None, node=None, to=None,
                     **unknown):
        if unknown:
            raise spdk_exc.CopyNotReplaced(
                volume=volume_id, reason='%s is not an argument of '
                'replace_copy' % spdk_exc.shown(sorted(unknown, key=str)[0]))
        return self._driver.replace_copy(volume_id, node, to)


def get_server(transport, backend_host, driver):
    return rpc_bus.get_server(transport, EXCHANGE, backend_host,
                              ReplicatedBackendEndpoint(driver))


class ReplicatedBackendClient:
    def __init__(self, transport, backend_host, timeout=600):
        self._client = rpc_bus.Client(transport, EXCHANGE, backend_host,
                                      API_VERSION, timeout)

    def replace_copy(self, volume_id, node, to=None):
        return self._client.call('replace_copy', API_VERSION,
                                 volume_id=volume_id, node=node, to=to)
