"""Options of the storage-node service, group ``[spdk_storage_node]``."""

import copy
import socket

from oslo_config import cfg

GROUP = 'spdk_storage_node'

node_opts = [
    cfg.StrOpt('rpc_socket',
               default='/var/tmp/spdk.sock',
               help='Unix socket of this node\'s SPDK target (nvmf_tgt). '
                    'Keep it 0600/0660: SPDK RPC has no authentication; '
                    'this service is what reaches it from the message '
                    'bus.'),
    cfg.FloatOpt('rpc_timeout',
                 default=60.0, min=1.0,
                 help='Seconds to wait for one SPDK RPC.'),
    cfg.ListOpt('target_addresses',
                default=['$my_ip'],
                help='Addresses of this node\'s NVMe/TCP listeners: every '
                     'export of a copy listens on them, and compute hosts '
                     'connect to them.'),
    cfg.PortOpt('target_port',
                default=4420,
                help='NVMe/TCP port of this node\'s exports.'),
]

host_opt = cfg.StrOpt('host', default=socket.gethostname(),
                      sample_default='<hostname>',
                      help='Name of this storage node: the service\'s RPC '
                           'server name, which Cinder back ends list in '
                           'spdk_storage_nodes.')
my_ip_opt = cfg.StrOpt('my_ip', default='127.0.0.1',
                       help='This node\'s address on the storage network.')


def register(conf):
    conf.register_opts(node_opts, group=GROUP)
    conf.register_opts([host_opt, my_ip_opt])


def list_opts():
    return [(GROUP, copy.deepcopy(node_opts)),
            ('DEFAULT', copy.deepcopy([host_opt, my_ip_opt]))]
