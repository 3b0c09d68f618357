"""The agent's one privilege-separation context, as os-brick's
``os_brick/privileged`` does it.

The agent itself runs unprivileged where the host allows it; what needs
root runs in the privsep daemon, which keeps only the capabilities named
here, through the narrow entrypoints of this package's modules. Each
entrypoint checks its arguments itself: it trusts nothing the agent's
process passes, because that process takes input from the message bus.
"""

import os

from oslo_config import cfg
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

# Option group of this context's privsep settings (user, group,
# capabilities, helper_command).
CFG_SECTION = 'spdk_vhost_target_privileged'

CAPABILITIES = [
    # The vhost-user sockets SPDK makes go to QEMU's group, 0660; the
    # socket and RPC directories are set up the same way.
    caps.CAP_CHOWN,
    caps.CAP_FOWNER,
    caps.CAP_DAC_OVERRIDE,
    # Stopping the SPDK vhost application (root's process).
    caps.CAP_KILL,
    # Closing a guest's vhost-user connection inside SPDK, so that
    # QEMU reconnects to a rebuilt controller (vhost_user.py).
    caps.CAP_SYS_PTRACE,
]

default = priv_context.PrivContext(
    __name__,
    cfg_section=CFG_SECTION,
    pypath=__name__ + '.default',
    capabilities=CAPABILITIES,
)


def start():
    """Start the daemon unless it runs; True when started here.

    As root the daemon is forked (no sudo); otherwise it is started the
    default way, ``sudo privsep-helper`` (or the context's
    ``helper_command``), at once: a host that does not allow it fails the
    start, not the first attach.
    """
    if default.channel is not None:
        return False
    # The context sets them as the option's default when it is made; a
    # configuration reset since (oslo.config's reset() drops defaults, as
    # test fixtures do) must not fork a daemon without them.
    cfg.CONF.set_default('capabilities', CAPABILITIES, group=CFG_SECTION)
    if os.geteuid() == 0:
        default.start(priv_context.Method.FORK)
    else:
        default.start()
    return True
