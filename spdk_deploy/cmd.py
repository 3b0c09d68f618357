"""``spdk-openstack-config``: the settings a deployment writes, computed.

Used by the devstack plugin and by operators; each command prints or
writes one thing::

    spdk-openstack-config --config-file agent.conf nova-options [...]
    spdk-openstack-config provider-config PATH
    spdk-openstack-config storage-target-config --output PATH \\
        (--aio-file FILE | --nvme-pci ADDRESS ...) [--max-subsystems N]
    spdk-openstack-config storage-target-memory --connections N \\
        [--queue-pairs N]
    spdk-openstack-config storage-target-ready --target-config PATH \\
        --rpc-socket SOCKET [--socket-group GROUP]

``nova-options`` prints one ``<section> <option> <value>...`` line per
nova.conf option (several values: a multi-valued option), from the agent's
``[spdk_vhost_target]`` options and this host's topology.
"""

import json
import sys

from oslo_config import cfg
import yaml

from spdk_common import exception as spdk_exc
from spdk_deploy import nova
from spdk_deploy import storage
from vhost_target import config as agent_config
from vhost_target import planner
from vhost_target import topology


def _add_commands(subparsers):
    parser = subparsers.add_parser(
        'nova-options', help='nova.conf options of this compute node')
    parser.add_argument('--dedicated-cpus-per-node', type=int,
                        help='guest CPUs per NUMA node for pinned guests '
                             '(default: half of them)')
    parser.add_argument('--storage-target-cpus', default='',
                        help='cpulist of an nvmf_tgt on this host')
    parser.add_argument('--storage-target-mib', type=int, default=0,
                        help='hugepage memory of that nvmf_tgt')
    parser.add_argument('--storage-target-polls', action='store_true',
                        help='that nvmf_tgt polls (no --interrupt-mode): '
                             'keep its CPUs from guests')
    parser.add_argument('--provider-config-dir',
                        help='[compute] provider_config_location to set')

    parser = subparsers.add_parser(
        'provider-config', help='write the placement provider config')
    parser.add_argument('path')

    parser = subparsers.add_parser(
        'storage-target-config', help='write the nvmf_tgt --json config')
    parser.add_argument('--output', required=True)
    parser.add_argument('--aio-file', help='file backing an AIO bdev')
    parser.add_argument('--aio-block-size', type=int, default=512)
    parser.add_argument('--nvme-pci', nargs='*', default=[],
                        help='PCI addresses of NVMe devices')
    parser.add_argument('--max-subsystems', type=int,
                        default=storage.DEFAULT_MAX_SUBSYSTEMS,
                        help='NVMe-oF subsystems nvmf_tgt allows: one per '
                             'exported volume, one per image copy in '
                             'flight, and SPDK\'s discovery subsystem '
                             '(default: %(default)s; SPDK\'s own is 1024)')

    parser = subparsers.add_parser(
        'storage-target-memory',
        help="print the nvmf_tgt -s (MiB) for N connected controllers")
    parser.add_argument('--connections', type=int, required=True,
                        help='attached volumes, counted once per host '
                             'each is attached to')
    parser.add_argument('--queue-pairs', type=int,
                        default=storage.QUEUE_PAIRS_PER_CONNECTION,
                        help='queue pairs per connection, the admin one '
                             'included (default: %(default)s, an SPDK '
                             'initiator on one reactor; the Linux kernel '
                             'opens one more per CPU)')

    parser = subparsers.add_parser(
        'storage-target-ready',
        help='wait for nvmf_tgt, restrict its socket, create lvstores')
    parser.add_argument('--target-config', required=True)
    parser.add_argument('--rpc-socket', required=True)
    parser.add_argument('--lvstore-prefix', default='lvs')
    parser.add_argument('--socket-group')
    parser.add_argument('--socket-mode', default='0660')
    parser.add_argument('--timeout', type=float, default=60.0)


def cmd_nova_options(conf):
    args = conf.command
    host = topology.read_topology()
    layout = planner.plan(conf.spdk_vhost_target, host)
    values = nova.settings(
        layout, host, dedicated_per_node=args.dedicated_cpus_per_node,
        storage_target_cpus=topology.parse_cpulist(args.storage_target_cpus),
        storage_target_mib=args.storage_target_mib,
        storage_target_polls=args.storage_target_polls)
    for section, option, option_values in values.options(
            args.provider_config_dir):
        print(' '.join([section, option] + option_values))
    for note in layout.notes:
        print('note: %s' % note, file=sys.stderr)


def cmd_provider_config(conf):
    with open(conf.command.path, 'w') as f:
        yaml.safe_dump(nova.provider_config(), f, default_flow_style=False)


def cmd_storage_target_config(conf):
    args = conf.command
    config = storage.target_config(args.aio_file, args.aio_block_size,
                                   args.nvme_pci,
                                   max_subsystems=args.max_subsystems)
    with open(args.output, 'w') as f:
        json.dump(config, f, indent=2)


def cmd_storage_target_memory(conf):
    args = conf.command
    print(storage.target_memory_mib(args.connections, args.queue_pairs))


def cmd_storage_target_ready(conf):
    args = conf.command
    with open(args.target_config) as f:
        wanted = storage.lvstore_names(storage.base_bdevs(json.load(f)),
                                       args.lvstore_prefix)
    client = storage.wait_for_target(args.rpc_socket, args.timeout)
    try:
        if args.socket_group:
            storage.restrict_socket(args.rpc_socket, args.socket_group,
                                    int(args.socket_mode, 8))
        for name in storage.ensure_lvstores(client, wanted):
            print('created lvstore %s on %s' % (name, wanted[name]))
    finally:
        client.close()


COMMANDS = {'nova-options': cmd_nova_options,
            'provider-config': cmd_provider_config,
            'storage-target-config': cmd_storage_target_config,
            'storage-target-memory': cmd_storage_target_memory,
            'storage-target-ready': cmd_storage_target_ready}


def main(argv=None, conf=None):
    conf = cfg.ConfigOpts() if conf is None else conf
    # nova-options reads the agent's own config file: one source of truth
    # for reactor CPUs and hugepage memory.
    agent_config.register(conf)
    conf.register_cli_opt(cfg.SubCommandOpt('command', handler=_add_commands,
                                            help='what to do'))
    conf(sys.argv[1:] if argv is None else argv,
         project='spdk-vhost-target',
         # No implicit /etc/spdk-vhost-target/*.conf: devstack and tests
         # say which file they mean.
         default_config_files=[])
    try:
        COMMANDS[conf.command.name](conf)
    except (ValueError, OSError, spdk_exc.SPDKException) as exc:
        print('spdk-openstack-config %s: %s' % (conf.command.name, exc),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
