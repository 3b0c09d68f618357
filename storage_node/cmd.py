"""``spdk-storage-node``: the storage-node service.

    spdk-storage-node [--config-file ...]

Serves this node's SPDK target to Cinder back ends that keep copies of
replicated volumes here (``spdk_storage_nodes`` lists this node's
``host``), over the cloud's message bus; runs until SIGTERM. The SPDK
target itself (nvmf_tgt) is run by the deployment, as for a single-node
back end.
"""

import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

from spdk_common import rpc
from storage_node import config
from storage_node import node as storage_node
from storage_node import rpcapi

LOG = logging.getLogger(__name__)


def main(argv=None, conf=None):
    # The global CONF by default: oslo.messaging registers options there.
    conf = cfg.CONF if conf is None else conf
    logging.register_options(conf)
    config.register(conf)
    conf(sys.argv[1:] if argv is None else argv, project='spdk-storage-node')
    logging.setup(conf, 'spdk-storage-node')
    group = conf.spdk_storage_node
    client = rpc.SPDKClient(group.rpc_socket, timeout=group.rpc_timeout)
    server = rpcapi.get_server(rpcapi.get_transport(conf), conf.host,
                               storage_node.StorageNode(client, group))
    server.start()
    LOG.info('spdk-storage-node serving %(topic)s as %(host)s for SPDK at '
             '%(socket)s', {'topic': rpcapi.TOPIC, 'host': conf.host,
                            'socket': group.rpc_socket})
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    server.wait()
    client.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
