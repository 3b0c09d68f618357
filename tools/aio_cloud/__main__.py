"""``tools/cloud COMMAND`` (run by the cloud venv): up, down, status, demo,
tempest, restart.
"""

import argparse
import sys

from tools.aio_cloud import capacity
from tools.aio_cloud import cloud
from tools.aio_cloud import demo
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import node_demos
from tools.aio_cloud import tempest_run


def main(argv=None):
    parser = argparse.ArgumentParser(prog='tools/cloud')
    parser.add_argument('--state-dir', default=layout_mod.DEFAULT_STATE_DIR,
                        help='where all of the cloud\'s state lives '
                             '(default: %(default)s)')
    parser.add_argument('command', choices=('up', 'down', 'status', 'demo',
                                            'tempest', 'restart'))
    parser.add_argument('args', nargs=argparse.REMAINDER,
                        help='up: --compute-nodes N --storage-nodes M; '
                             'demo: --live-migrate, --evacuate or '
                             '--replicated; tempest: '
                             'extra arguments to "tempest run"; restart: the '
                             'service (a name of tools/cloud status)')
    args = parser.parse_args(argv)
    layout = layout_mod.Layout(args.state_dir)
    venv = sys.prefix
    try:
        if args.command == 'up':
            options = argparse.ArgumentParser(prog='tools/cloud up')
            capacity.add_node_options(options)
            nodes = options.parse_args(args.args)
            cloud.up(layout, venv, nodes.compute_nodes, nodes.storage_nodes)
        elif args.command == 'down':
            cloud.down(layout)
        elif args.command == 'status':
            return 0 if cloud.status(layout) else 1
        elif args.command == 'demo':
            options = argparse.ArgumentParser(prog='tools/cloud demo')
            options.add_argument(
                '--live-migrate', action='store_true',
                help='live-migrate a server with an SPDK vhost volume to '
                     'another compute node (up --compute-nodes 2 or more)')
            options.add_argument(
                '--evacuate', action='store_true',
                help='kill a compute node under a server with an SPDK vhost '
                     'volume and evacuate it to another one (up '
                     '--compute-nodes 2 or more)')
            options.add_argument(
                '--replicated', action='store_true',
                help='kill a storage node under a server writing to a '
                     'volume of two copies (up --storage-nodes 2 or more)')
            wanted = options.parse_args(args.args)
            cloud.require_up(layout)
            if wanted.replicated:
                return 0 if node_demos.replicated(layout, venv) else 1
            if wanted.live_migrate:
                return 0 if node_demos.live_migrate(layout, venv) else 1
            if wanted.evacuate:
                return 0 if node_demos.evacuate(layout, venv) else 1
            return 0 if demo.run(layout, venv) else 1
        elif args.command == 'tempest':
            cloud.require_up(layout)
            return tempest_run.run(layout, venv, args.args)
        elif args.command == 'restart':
            if len(args.args) != 1:
                raise cloud.CloudError('restart takes one service name')
            cloud.restart(layout, venv, args.args[0])
    except (cloud.CloudError, capacity.ShortError) as exc:
        print('tools/cloud %s: %s' % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('tools/cloud %s: interrupted' % args.command, file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
