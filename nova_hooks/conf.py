"""nova.conf options of the SPDK hooks, group ``[spdk_vhost]``."""

from oslo_config import cfg

from spdk_common import connection

# Named after the volume type it configures.
GROUP = connection.SPDK_VHOST

opts = [
    cfg.IntOpt('max_queues',
               default=8, min=1,
               help='Most virtqueues a vhost-user disk gets; a disk gets one '
                    'per instance vCPU up to this.'),
    cfg.IntOpt('agent_timeout',
               default=60, min=1,
               help='Seconds to wait for the local spdk-vhost-target agent '
                    'to attach or detach a volume.'),
    cfg.IntOpt('agent_probe_timeout',
               default=5, min=1,
               help='Seconds to wait for the agent when deciding whether to '
                    'offer spdk_vhost in the volume connector.'),
]


def register(conf=cfg.CONF):
    conf.register_opts(opts, group=GROUP)
    return conf


def list_opts():
    return [(GROUP, opts)]
