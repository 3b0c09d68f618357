"""The storage-node service's RPC API over oslo.messaging.

Topic ``spdk-storage-node`` on an exchange of the same name, one server
per storage node (``server=<node>``), version 1.0. SPDK's errors reach the
caller as the same exception classes (``allowed_remote_exmods``), so the
driver handles a remote node's SPDK as it handles a local one.

Version history:

* 1.0 - spdk_call (spdk_method, params), describe
"""

import threading

import oslo_messaging as messaging

from spdk_common import exception as spdk_exc
from spdk_common import rpc
from spdk_common import rpc_bus

TOPIC = 'spdk-storage-node'
EXCHANGE = TOPIC
API_VERSION = '1.0'


get_transport = rpc_bus.get_transport


class StorageNodeEndpoint:
    target = messaging.Target(version=API_VERSION)

    def __init__(self, node):
        self._node = node

    # SPDK's answers are the caller's to handle (a look-up of what is
    # not there is routine): not logged here as the service's failures.
    @messaging.expected_exceptions(spdk_exc.SPDKException)
    def spdk_call(self, context, spdk_method=None, params=None):
        return self._node.spdk_call(spdk_method, params)

    @messaging.expected_exceptions(spdk_exc.SPDKException)
    def describe(self, context):
        return self._node.describe()


def get_server(transport, host, node):
    return rpc_bus.get_server(transport, EXCHANGE, host,
                              StorageNodeEndpoint(node))


class StorageNodeClient:
    """One storage node's SPDK, as the driver calls it: the interface of
    :class:`spdk_common.rpc.SPDKClient`, over the message bus.

    The node's *generation* stands for SPDKClient's connection number: it
    changes when the node's SPDK (or its service) restarted, which is when
    the driver replays that node's exports.
    """

    def __init__(self, transport, node, timeout=60):
        self.node = node
        self._timeout = timeout
        self._client = rpc_bus.Client(transport, EXCHANGE, node,
                                      API_VERSION, timeout)
        self._closed = threading.Event()

    def _rpc(self, name, timeout=None, **kwargs):
        try:
            return self._client.call(name, API_VERSION, timeout=timeout,
                                     **kwargs)
        except messaging.MessagingTimeout:
            raise spdk_exc.SPDKUnavailable(
                socket='storage node %s' % self.node,
                reason='its spdk-storage-node service did not answer '
                       'within %ss' % (timeout or self._timeout))
        except messaging.MessagingException as exc:
            raise spdk_exc.SPDKUnavailable(
                socket='storage node %s' % self.node, reason=str(exc))

    def call(self, method, params=None, timeout=None):
        return self._rpc('spdk_call', timeout=timeout, spdk_method=method,
                         params=params)

    def describe(self, timeout=None):
        return self._rpc('describe', timeout=timeout)

    def connection_generation(self):
        return self.describe()['generation']

    def wait_disconnected(self, timeout, wake=None):
        """True when the node's generation changed within ``timeout`` (or
        until ``wake``, an Event, is set), or the node does not answer
        (there is no connection to watch: this looks at the start and at
        the end).
        """
        try:
            before = self.connection_generation()
        except spdk_exc.SPDKException:
            return True
        if rpc.wait_any((self._closed, wake), timeout) and \
                self._closed.is_set():
            return False
        try:
            return self.connection_generation() != before
        except spdk_exc.SPDKException:
            return True

    def close(self):
        self._closed.set()
