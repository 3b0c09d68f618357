"""``spdk-volume-replicas``: the operator's command for replicated volumes.

    spdk-volume-replicas [--config-file /etc/cinder/cinder.conf] \\
        replace-copy VOLUME_ID --node NODE [--to NODE]

Run where cinder.conf is (its database and message bus): puts a new copy
of VOLUME_ID on another storage node (or on ``--to``) in place of its
copy on NODE, a storage node that stays dead. The volume's back end
(``spdk_storage_nodes``) does it; the compute host that mirrors the
volume rebuilds the new copy from the others (a detached volume's at its
next attach), and the volume's ``replication_status`` goes from
``enabling`` to ``enabled`` when it is in sync. The old copy is removed
when NODE answers again. Prints what was done; exits 1, naming why, when
the copy was not replaced.
"""

import sys

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from cinder import context
from cinder import exception
from cinder import objects
from cinder.volume import volume_utils

from cinder_driver import rpcapi
from spdk_common import exception as spdk_exc
from spdk_common import rpc_bus

CONF = cfg.CONF


def _add_parsers(subparsers):
    replace = subparsers.add_parser(
        'replace-copy', help='put a new copy of a replicated volume in '
        'place of its copy on a storage node that stays dead')
    replace.add_argument('volume_id')
    replace.add_argument('--node', required=True,
                         help='the storage node whose copy is replaced')
    replace.add_argument('--to', default=None,
                         help='the storage node of the new copy (default: '
                              'the one with the most room)')


_COMMAND = cfg.SubCommandOpt('command', handler=_add_parsers)


def main(argv=None):
    CONF.register_cli_opt(_COMMAND)
    logging.register_options(CONF)
    CONF(sys.argv[1:] if argv is None else argv, project='cinder')
    logging.setup(CONF, 'spdk-volume-replicas')
    objects.register_all()
    command = CONF.command
    try:
        volume = objects.Volume.get_by_id(context.get_admin_context(),
                                          command.volume_id)
    except (exception.VolumeNotFound, exception.InvalidInput) as exc:
        print('volume %s: %s' % (command.volume_id, exc), file=sys.stderr)
        return 1
    backend = volume_utils.extract_host(volume.host, 'backend')
    client = rpcapi.ReplicatedBackendClient(rpc_bus.get_transport(CONF),
                                            backend)
    try:
        done = client.replace_copy(command.volume_id, command.node,
                                   command.to)
    except spdk_exc.CopyNotReplaced as exc:
        print(exc, file=sys.stderr)
        return 1
    except messaging.MessagingTimeout:
        print('volume %s: back end %s did not answer; is its cinder-volume '
              'running with spdk_storage_nodes?' % (command.volume_id,
                                                    backend),
              file=sys.stderr)
        return 1
    if done['host']:
        print('volume %(volume_id)s: copy %(index)d moved from %(from)s to '
              '%(to)s; %(host)s rebuilds it (replication_status enabling, '
              'then enabled)' % done)
    else:
        print('volume %(volume_id)s: copy %(index)d moved from %(from)s to '
              '%(to)s; it is rebuilt when the volume is next attached '
              '(replication_status error until then)' % done)
    return 0


if __name__ == '__main__':
    sys.exit(main())
