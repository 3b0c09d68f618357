"""Options of the spdk-vhost-target agent, group ``[spdk_vhost_target]``,
and those of its privsep daemon, ``[spdk_vhost_target_privileged]``.
"""

import copy
import socket

from oslo_config import cfg
from oslo_privsep import capabilities
from oslo_privsep import priv_context

from vhost_target import privileged

GROUP = 'spdk_vhost_target'

spdk_opts = [
    cfg.StrOpt('spdk_vhost_binary',
               help='Path of SPDK\'s vhost application. Default: found in '
                    '$SPDK_BIN_DIR, $PATH, /usr/local/bin or '
                    '/opt/spdk/build/bin.'),
    cfg.StrOpt('rpc_socket',
               default='/run/spdk-vhost-target/spdk.sock',
               help='RPC socket of the SPDK vhost application. Its directory '
                    'is made 0750, root only: SPDK RPC has no '
                    'authentication.'),
    cfg.BoolOpt('adopt',
                default=False,
                help='Use an SPDK vhost application started by someone else '
                     '(e.g. a systemd unit) at rpc_socket instead of '
                     'starting and supervising one.'),
    cfg.FloatOpt('restart_backoff_max',
                 default=30.0, min=0.5,
                 help='Longest wait, in seconds, before restarting SPDK '
                      'after repeated crashes (the wait doubles from 0.5 s).'),
]

socket_opts = [
    cfg.StrOpt('socket_dir',
               default='/var/lib/spdk-vhost-target/sockets',
               help='Directory of the vhost-user sockets QEMU connects to.'),
    cfg.StrOpt('socket_group',
               default='libvirt-qemu',
               help='Group that owns the vhost-user sockets: the group QEMU '
                    'runs as.'),
    cfg.StrOpt('socket_mode',
               default='0660',
               help='Mode of the vhost-user sockets, octal.'),
]

cpu_opts = [
    cfg.StrOpt('reactor_cpus',
               help='Host CPUs for SPDK reactors, as a cpulist ("2,3,34-35"). '
                    'When unset, reactors_per_node CPUs of each NUMA node '
                    'with hugepages are chosen (isolated CPUs first, then '
                    'the highest-numbered).'),
    cfg.BoolOpt('share_reactor_cpus',
                default=False,
                help='Let SPDK run its reactors on CPUs another SPDK '
                     'application also uses (SPDK\'s CPU locks off). Only for '
                     'several compute hosts on one machine (the multi-node '
                     'dev cloud, migration tests): reactors poll, so each '
                     'one sharing a CPU gets its share of that CPU\'s time '
                     'and I/O latency grows with the number sharing it.'),
    cfg.IntOpt('reactors_per_node',
               default=1, min=1,
               help='Reactor CPUs per NUMA node when reactor_cpus is unset.'),
    cfg.IntOpt('hugepage_mib_per_node',
               default=1024, min=64,
               help='Hugepage memory SPDK takes on each NUMA node that has '
                    'reactors.'),
    cfg.IntOpt('hugepage_size_kib',
               default=2048, choices=[2048, 1048576],
               help='Hugepage size SPDK uses, in KiB.'),
    cfg.StrOpt('nova_conf',
               default='/etc/nova/nova.conf',
               help='nova.conf of this compute node, to check that '
                    'cpu_dedicated_set, cpu_shared_set and '
                    'reserved_huge_pages leave SPDK its CPUs and memory.'),
]

nvme_opts = [
    cfg.StrOpt('host_nqn',
               help='Host NQN this node presents to storage targets. '
                    'Default: the content of host_nqn_file, else a UUID NQN '
                    'derived from /etc/machine-id.'),
    cfg.StrOpt('host_nqn_file',
               default='/etc/nvme/hostnqn',
               help='File holding the host NQN (as nvme-cli writes it).'),
    cfg.IntOpt('ctrlr_loss_timeout_sec',
               default=-1, min=-1,
               help='Seconds bdev_nvme keeps reconnecting a lost storage '
                    'target before deleting the controller; -1: forever, so '
                    'that a guest resumes after a storage-node restart.'),
    cfg.IntOpt('reconnect_delay_sec',
               default=1, min=1,
               help='Seconds between reconnect attempts to a storage '
                    'target that went away: after a storage-node restart '
                    'a guest\'s I/O resumes at most this long after its '
                    'export is back.'),
    cfg.IntOpt('fast_io_fail_timeout_sec',
               default=0, min=0,
               help='Seconds after which I/O fails while reconnecting '
                    '(0: I/O waits for the reconnect).'),
    cfg.IntOpt('target_answer_timeout_sec',
               default=2, min=0,
               help='Seconds a storage target may leave the NVMe '
                    'keep-alive unanswered before SPDK resets the '
                    'controller and reconnects (0: SPDK\'s defaults, which '
                    'never notice). A node that hangs or is cut off the '
                    'network keeps its TCP connections and answers '
                    'nothing: this is how it is noticed. A reconnect\'s '
                    'TCP connect gives up after half this (without it, '
                    'after the kernel\'s SYN retries, over 2 minutes). '
                    'Set at SPDK\'s start.'),
    cfg.IntOpt('replica_ctrlr_loss_timeout_sec',
               default=0, min=0,
               help='For each copy of a replicated volume: seconds SPDK '
                    'keeps reconnecting a copy whose connection broke. '
                    '0: none; the copy\'s I/O fails during SPDK\'s one '
                    'reconnect attempt, the mirror takes the copy out and '
                    'the guest goes on with the others at once (a node\'s '
                    'death stalls the guest\'s writes for milliseconds), '
                    'and the agent connects the copy again on each health '
                    'check until its storage node is back, when the mirror '
                    'rebuilds it. More than 0: a network outage shorter '
                    'than replica_fast_io_fail_timeout_sec costs no '
                    'rebuild, but a node\'s death stalls the guest\'s '
                    'writes about a second longer than that (SPDK v25.09 '
                    'retries a waiting I/O once a second and fails it only '
                    'once a reconnect failed that long after the connection '
                    'broke); past this many seconds SPDK deletes the '
                    'controller and the agent connects it again.'),
    cfg.IntOpt('replica_fast_io_fail_timeout_sec',
               default=1, min=1,
               help='For each copy of a replicated volume, with '
                    'replica_ctrlr_loss_timeout_sec more than 0: seconds '
                    'after which I/O to a copy that stopped answering '
                    'fails, so that the mirror takes the copy out. At least '
                    'reconnect_delay_sec and at most '
                    'replica_ctrlr_loss_timeout_sec (SPDK refuses the copy\'s '
                    'connection otherwise).'),
    cfg.IntOpt('rebuild_max_bandwidth_mib_sec',
               default=768, min=0,
               help='Bandwidth (MiB/s) of the rebuild of a copy that '
                    'missed writes, per mirror (bdev_raid_set_options); '
                    '0: unbounded. Guest I/O goes on during the rebuild, '
                    'which reads from the copies in sync and writes to the '
                    'one rebuilt over the storage network. The default is '
                    'two thirds of what SPDK copies between two NVMe/TCP '
                    'bdevs on the development host (spdk_dd: up to 1160 '
                    'MiB/s, about a 10 GbE link\'s NVMe/TCP payload), so '
                    'that a copy that comes back is in sync again within '
                    'twice the time of a raw copy, its reconnect and '
                    'SPDK\'s examine included (at 640 it took 2.0 times '
                    'as long where spdk_dd copied 1150 MiB/s); it leaves '
                    'a 10 GbE link a third to '
                    'the guests, a 25 GbE link three quarters. Each mirror '
                    'has its own bound: rebuilds of several mirrors add '
                    'up.'),
    cfg.IntOpt('max_concurrent_rebuilds',
               default=2, min=1,
               help='Copies rebuilt at once, over every mirror of this '
                    'host; the others wait for a health check after one '
                    'ended (a storage node that comes back has a copy of '
                    'every volume it holds to rebuild). Each running '
                    'rebuild holds 16 windows of buffers in SPDK\'s memory '
                    '(32 MiB), which is kept aside: the attachments '
                    'hugepage_mib_per_node holds are counted without it. '
                    'The default already fills a 10 GbE link at '
                    'rebuild_max_bandwidth_mib_sec.'),
    cfg.FloatOpt('health_check_interval_sec',
                 default=5.0, min=0.5,
                 help='Seconds between the agent\'s looks at the state of '
                      'its NVMe controllers (one bdev_nvme_get_controllers '
                      'call, whatever the number of volumes): how soon a '
                      'lost controller is rebuilt and a stall reported.'),
    cfg.IntOpt('stall_report_after_sec',
               default=30, min=1,
               help='Seconds an NVMe controller may stay disconnected '
                    '(SPDK still reconnecting) before the agent reports the '
                    'attachment as stalled: status, an ERROR notification '
                    'spdk_vhost_target.attachment.stalled and a log line.'),
]

state_opts = [
    cfg.StrOpt('state_dir',
               default='/var/lib/spdk-vhost-target',
               help='Where the agent keeps its desired state (written '
                    'atomically) and DH-HMAC-CHAP keys (0600).'),
]

ALL_OPTS = spdk_opts + socket_opts + cpu_opts + nvme_opts + state_opts

# Nova's own name for this compute host: the agent serves server=host.
host_opt = cfg.StrOpt('host', default=socket.gethostname(),
                      sample_default='<hostname>',
                      help='Name of this compute host, as nova-compute\'s '
                           '[DEFAULT] host: the agent\'s RPC server name.')


def loss_settings(ctrlr_loss_timeout_sec, reconnect_delay_sec,
                  fast_io_fail_timeout_sec):
    """bdev_nvme_attach_controller's loss settings: with no loss timeout
    SPDK makes one reconnect attempt and fails I/O while it runs, and
    wants all three 0.
    """
    if ctrlr_loss_timeout_sec == 0:
        reconnect_delay_sec = fast_io_fail_timeout_sec = 0
    return {'ctrlr_loss_timeout_sec': ctrlr_loss_timeout_sec,
            'reconnect_delay_sec': reconnect_delay_sec,
            'fast_io_fail_timeout_sec': fast_io_fail_timeout_sec}


def loss_setting_problems(group):
    """The options SPDK would refuse at every attach
    (bdev_nvme_check_io_error_resiliency_params in v25.09): one line each,
    naming the options and their values.
    """
    problems = []
    for loss, fast_fail in (
            ('ctrlr_loss_timeout_sec', 'fast_io_fail_timeout_sec'),
            ('replica_ctrlr_loss_timeout_sec',
             'replica_fast_io_fail_timeout_sec')):
        settings = loss_settings(getattr(group, loss),
                                 group.reconnect_delay_sec,
                                 getattr(group, fast_fail))
        limit = settings['ctrlr_loss_timeout_sec']
        delay = settings['reconnect_delay_sec']
        fail = settings['fast_io_fail_timeout_sec']
        if limit > 0 and delay > limit:
            problems.append('reconnect_delay_sec = %d is more than %s = %d'
                            % (delay, loss, limit))
        if fail and fail < delay:
            problems.append('%s = %d is less than reconnect_delay_sec = %d'
                            % (fast_fail, fail, delay))
        if limit > 0 and fail > limit:
            problems.append('%s = %d is more than %s = %d'
                            % (fast_fail, fail, loss, limit))
    return problems


def register(conf=cfg.CONF):
    conf.register_opts(ALL_OPTS, group=GROUP)
    conf.register_opt(host_opt)
    return conf


def _privsep_opts():
    """oslo.privsep's options with this context's defaults (the
    capabilities the daemon keeps), as the sample shows them.
    """
    opts = copy.deepcopy(priv_context.OPTS)
    for opt in opts:
        if opt.name == 'capabilities':
            opt.default = [capabilities.CAPS_BYVALUE.get(cap, str(cap))
                           for cap in privileged.default.conf.capabilities]
    return opts


def list_opts():
    return [('DEFAULT', [host_opt]), (GROUP, ALL_OPTS),
            (privileged.CFG_SECTION, _privsep_opts())]
