"""The client of this compute host's spdk-vhost-target agent."""

import threading

from oslo_config import cfg

from nova_hooks import conf as hooks_conf
from vhost_target import rpcapi

CONF = hooks_conf.register(cfg.CONF)
_lock = threading.Lock()
_client = None


def get():
    """One client per nova-compute process, made on first use."""
    global _client
    with _lock:
        if _client is None:
            _client = rpcapi.VhostTargetClient(
                rpcapi.get_transport(CONF), CONF.host,
                timeout=CONF.spdk_vhost.agent_timeout)
        return _client
