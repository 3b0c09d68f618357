"""Pre-flight checks of a compute node for SPDK's vhost app.

Each problem is a :class:`Finding` with a stable ``code`` (for scripts and
tests) and a message that names the cause and the fix. Everything that
touches the host beyond the topology goes through :class:`Probes`, so the
checks run unprivileged and tests can stand in for the host.

nova.conf is read with oslo.config's own parser, as Nova reads it:
``reserved_huge_pages`` is a multi-valued option (one line per node), which
the standard library's configparser cannot keep. Only ``conf.nova_conf``
is read, not Nova's other config files or directories.
"""

import collections
import dataclasses
import functools
import grp
import json
import os
import re
import stat as stat_mod
import subprocess
import sys
import typing

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

from spdk_common import binaries
from spdk_common import exception
from spdk_common import memory
from spdk_common import rpc
from vhost_target import topology as topo

LOG = logging.getLogger(__name__)

ERROR = 'error'
WARNING = 'warning'

# nova.conf options that hand host CPUs to guests; reactors must be in none.
_NOVA_CPU_OPTIONS = (('compute', 'cpu_dedicated_set'),
                     ('compute', 'cpu_shared_set'),
                     ('DEFAULT', 'vcpu_pin_set'))


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: ``code`` is stable, ``message`` says cause and fix."""
    code: str
    message: str
    level: str = ERROR

    def __str__(self):
        return '%s [%s] %s' % (self.level.upper(), self.code, self.message)


@dataclasses.dataclass
class Probes:
    """What the checks ask the host, beyond its topology."""
    # () -> path of SPDK's vhost binary, or None
    binary_path: typing.Callable
    # (socket path) -> True when SPDK answers RPC there
    rpc_reachable: typing.Callable
    # (group name) -> True when the group exists
    group_exists: typing.Callable
    # (path) -> os.stat_result; raises OSError like os.stat
    stat: typing.Callable
    # The Python whose Nova reads nova.conf's CPU sets (nova-compute's)
    nova_python: str = sys.executable


def default_probes(conf):
    """:class:`Probes` that ask this host; ``conf`` is the option group."""

    def binary_path():
        if conf.spdk_vhost_binary:
            if os.access(conf.spdk_vhost_binary, os.X_OK):
                return conf.spdk_vhost_binary
            return None
        return binaries.find('vhost')

    def rpc_reachable(socket_path):
        client = rpc.SPDKClient(socket_path, timeout=2)
        try:
            client.call('spdk_get_version')
            return True
        except (exception.SPDKException, OSError) as e:
            LOG.debug('SPDK RPC at %s unreachable: %s', socket_path, e)
            return False
        finally:
            client.close()

    def group_exists(name):
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    return Probes(binary_path=binary_path, rpc_reachable=rpc_reachable,
                  group_exists=group_exists, stat=os.stat)


# Run by a Python of nova-compute's environment: Nova's own parser of its
# CPU sets ("4-12,^8,15"), so nova.conf is read exactly as nova-compute
# reads it. In a process of its own: Nova's options must not share the
# agent's configuration (both define [DEFAULT] host), and the agent itself
# never needs Nova.
_PARSE_CPU_SPECS = """
import json, sys
from nova import exception
from nova.virt import hardware
parsed = {}
for spec in json.load(sys.stdin):
    try:
        parsed[spec] = sorted(hardware.parse_cpu_spec(spec))
    except exception.Invalid as exc:
        parsed[spec] = str(exc)
json.dump(parsed, sys.stdout)
"""
NOVA_PARSE_TIMEOUT = 120


@functools.lru_cache(maxsize=64)
def parse_nova_cpu_specs(python, specs):
    """{spec: frozenset of CPUs, or the reason Nova refuses it} of the
    ``specs`` (a tuple), read by Nova in ``python``; None when Nova cannot
    be imported there.
    """
    result = subprocess.run(
        [python, '-c', _PARSE_CPU_SPECS], input=json.dumps(list(specs)),
        capture_output=True, text=True, timeout=NOVA_PARSE_TIMEOUT)
    if result.returncode:
        if re.search(r'^(ModuleNotFound|Import)Error: ', result.stderr,
                     re.MULTILINE):
            return None
        raise RuntimeError('reading CPU sets with Nova in %s failed: %s'
                           % (python, result.stderr.strip()[-500:]))
    return {spec: frozenset(cpus) if isinstance(cpus, list) else cpus
            for spec, cpus in json.loads(result.stdout).items()}


def parse_reserved_huge_pages(values):
    """{node: {size_kib: count}} of Nova's ``reserved_huge_pages`` values.

    Each value is ``node:N,size:S,count:C``; ``S`` is KiB (``2048``) or a
    size with unit (``2MB``, ``1GB``), read as Nova reads it. As in Nova, a
    later entry for the same node and size replaces an earlier one.

    :raises ValueError: on a value Nova would refuse.
    """
    reserved = collections.defaultdict(dict)
    for value in values:
        try:
            fields = dict(item.split(':', 1) for item in value.split(','))
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            size = fields['size']
            try:
                size_kib = int(size)
            except ValueError:
                size_kib = strutils.string_to_bytes(
                    size, return_int=True) // units.Ki
            reserved[int(fields['node'])][size_kib] = int(fields['count'])
        except (ValueError, KeyError) as e:
            raise ValueError('%r is not node:N,size:S,count:C (%s)'
                             % (value, e))
    return dict(reserved)


def _read_nova_conf(path):
    """{section: {option: [values]}} of nova.conf, None when it is absent.

    :raises ValueError: when the file cannot be read or parsed.
    """
    if not os.path.exists(path):
        return None
    sections = {}
    try:
        cfg.ConfigParser(path, sections).parse()
    except (OSError, cfg.ParseError) as e:
        raise ValueError(str(e))
    return sections


def _nova_value(sections, section, option):
    values = sections.get(section, {}).get(option)
    # For a single-valued option the last line wins, as in oslo.config.
    return values[-1].strip() if values else ''


def run_checks(conf, topology, plan, probes, expect_running=False):
    """Problems that keep SPDK's vhost app from running well on this host.

    :param conf: the ``[spdk_vhost_target]`` option group.
    :param topology: the host's :class:`~vhost_target.topology.HostTopology`.
    :param plan: the :class:`~vhost_target.planner.Plan` for ``conf``.
    :param probes: :class:`Probes` (see :func:`default_probes`).
    :param expect_running: check SPDK's RPC socket even when ``adopt`` is
        false (e.g. when the agent already started SPDK).
    :returns: list of :class:`Finding`; empty when all is well.
    """
    findings = []
    spdk_running = False
    if conf.adopt or expect_running:
        spdk_running = probes.rpc_reachable(conf.rpc_socket)
        if not spdk_running:
            findings.append(_rpc_unreachable(conf))
    findings += _check_cpus(plan, topology)
    findings += _check_hugepages(plan, topology, spdk_running)
    findings += _check_nova(conf, plan, probes.nova_python)
    findings += _check_socket_dir(conf, probes)
    if not conf.adopt:
        # Adopting, the agent starts no SPDK and needs no binary.
        findings += _check_binary(conf, probes)
    if not probes.group_exists(conf.socket_group):
        findings.append(Finding(
            'socket_group_missing',
            'socket_group %s does not exist, so the vhost-user sockets '
            'cannot be given to QEMU. Set [spdk_vhost_target] socket_group '
            'to the group QEMU runs as (libvirt-qemu on Debian/Ubuntu, '
            'qemu on RHEL), or install libvirt first.' % conf.socket_group))
    return findings


def _rpc_unreachable(conf):
    if conf.adopt:
        why = ('adopt is true, so the agent expects an SPDK vhost app '
               'started by someone else there. Start it (e.g. its systemd '
               'unit) with -r %s, or set adopt = false to let the agent '
               'start SPDK.' % conf.rpc_socket)
    else:
        why = ('SPDK was expected to be running. See the agent\'s log for '
               'why SPDK exited, and that this user may open the socket.')
    return Finding('spdk_rpc_unreachable',
                   'SPDK does not answer RPC at %s: %s'
                   % (conf.rpc_socket, why))


def _check_cpus(plan, topology):
    findings = []
    if not plan.reactor_cpus:
        findings.append(Finding(
            'no_reactor_cpus',
            'No reactor CPUs: reactor_cpus is unset and no NUMA node has '
            '%d kB hugepages. Allocate hugepages (sysctl vm.nr_hugepages or '
            'hugepages= on the kernel command line) or set reactor_cpus.'
            % plan.page_size_kib))
        return findings
    unavailable = set(plan.reactor_cpus) - topology.online
    if unavailable:
        findings.append(Finding(
            'reactor_cpus_offline',
            'Reactor CPUs %s do not exist or are offline (online CPUs: %s); '
            'SPDK would not start. Choose [spdk_vhost_target] reactor_cpus '
            'among the online CPUs, or bring the CPUs online.'
            % (topo.format_cpulist(unavailable),
               topo.format_cpulist(topology.online))))
    return findings


def _check_hugepages(plan, topology, spdk_running):
    findings = []
    size = plan.page_size_kib
    least = memory.minimum_memory_mib(len(plan.reactor_cpus))
    short = {node: mib for node, mib in plan.memory_mib_by_node.items()
             if mib < least}
    if short:
        findings.append(Finding(
            'hugepage_memory_below_minimum',
            'hugepage_mib_per_node=%d MiB is below the %d MiB SPDK vhost '
            'needs with %d reactor(s) (its buffer pools are sized to fit '
            'and DPDK is held to the limit): SPDK would not start. Raise '
            '[spdk_vhost_target] hugepage_mib_per_node.'
            % (min(short.values()), least, len(plan.reactor_cpus))))
    for node_id, needed in plan.pages_needed_by_node.items():
        pool = topology.nodes[node_id].pages(size)
        fix = ('echo <pages> > /sys/devices/system/node/node%d/hugepages/'
               'hugepages-%dkB/nr_hugepages (and make it persistent)'
               % (node_id, size))
        if pool.total <= 0:
            findings.append(Finding(
                'reactor_node_without_hugepages',
                'Reactor CPUs %s are on NUMA node %d, which has no %d kB '
                'hugepages; SPDK needs %d there. Allocate them (%s) or move '
                'reactor_cpus to a node with hugepages.'
                % (topo.format_cpulist(plan.reactors_by_node[node_id]),
                   node_id, size, needed, fix)))
            continue
        # A running SPDK already holds its pages: then only the pool size
        # tells whether they fit.
        available = pool.total if spdk_running else pool.free
        if available < needed:
            findings.append(Finding(
                'hugepages_insufficient',
                'NUMA node %d has %d %s %d kB hugepages; SPDK needs %d '
                '(hugepage_mib_per_node=%d MiB). Allocate more (%s), free '
                'some, or lower hugepage_mib_per_node.'
                % (node_id, available,
                   'configured' if spdk_running else 'free', size, needed,
                   plan.memory_mib_by_node[node_id], fix)))
    return findings


def _check_nova(conf, plan, nova_python):
    try:
        sections = _read_nova_conf(conf.nova_conf)
    except ValueError as e:
        return [Finding('nova_conf_unreadable',
                        'Cannot read nova.conf %s: %s. Fix the file or '
                        'point [spdk_vhost_target] nova_conf at it.'
                        % (conf.nova_conf, e))]
    if sections is None:
        return [Finding('nova_conf_missing',
                        'nova.conf %s does not exist, so nothing shows that '
                        'Nova leaves SPDK its CPUs and hugepages. Point '
                        '[spdk_vhost_target] nova_conf at nova-compute\'s '
                        'config file.' % conf.nova_conf, level=WARNING)]
    return (_check_nova_cpus(conf, plan, sections, nova_python) +
            _check_nova_hugepages(conf, plan, sections))


def _check_nova_cpus(conf, plan, sections, nova_python):
    findings = []
    reactors = set(plan.reactor_cpus)
    specs = [(section, option, _nova_value(sections, section, option))
             for section, option in _NOVA_CPU_OPTIONS]
    specs = [(section, option, spec) for section, option, spec in specs
             if spec]
    parsed = (parse_nova_cpu_specs(nova_python,
                                   tuple(spec for _s, _o, spec in specs))
              if specs else {})
    for section, option, spec in specs:
        if parsed is None:
            findings.append(Finding(
                'nova_not_importable',
                'Nova cannot be imported by %s, so [%s] %s = %s in %s '
                'cannot be read as Nova reads it. Run the check with '
                'nova-compute\'s Python environment.'
                % (nova_python, section, option, spec, conf.nova_conf),
                level=WARNING))
            continue
        cpus = parsed[spec]
        if isinstance(cpus, str):
            findings.append(Finding(
                'nova_cpu_set_invalid',
                '[%s] %s = %s in %s is invalid: %s. Nova refuses it too; '
                'fix it.' % (section, option, spec, conf.nova_conf, cpus)))
            continue
        overlap = reactors & cpus
        if overlap:
            findings.append(Finding(
                'reactor_cpus_in_%s' % option,
                'Reactor CPUs %s are also in nova.conf [%s] %s = %s: '
                'guests would compete with SPDK\'s polling reactors. Remove '
                'them from %s (e.g. %s = %s).'
                % (topo.format_cpulist(overlap), section, option, spec,
                   option, option, topo.format_cpulist(cpus - reactors))))
    if not specs and reactors:
        findings.append(Finding(
            'nova_cpu_sets_unset',
            'nova.conf %s sets neither [compute] cpu_dedicated_set nor '
            'cpu_shared_set, so guests float over every host CPU, the '
            'reactor CPUs %s included. Set them to CPUs other than the '
            'reactors (see the plan command).'
            % (conf.nova_conf, topo.format_cpulist(reactors)),
            level=WARNING))
    return findings


def _check_nova_hugepages(conf, plan, sections):
    values = sections.get('DEFAULT', {}).get('reserved_huge_pages', [])
    try:
        reserved = parse_reserved_huge_pages(values)
    except ValueError as e:
        return [Finding(
            'nova_reserved_huge_pages_invalid',
            'nova.conf %s [DEFAULT] reserved_huge_pages: %s. Nova refuses '
            'it too; write one line per node like '
            'reserved_huge_pages = node:0,size:2048,count:512.'
            % (conf.nova_conf, e))]
    findings = []
    size = plan.page_size_kib
    for node_id, needed in plan.pages_needed_by_node.items():
        count = reserved.get(node_id, {}).get(size, 0)
        if count < needed:
            findings.append(Finding(
                'nova_reserved_huge_pages_short',
                'nova.conf %s reserves %d %d kB hugepages on NUMA node %d, '
                'but SPDK uses %d there: Nova would give SPDK\'s pages to '
                'guests. Add to [DEFAULT]: reserved_huge_pages = '
                'node:%d,size:%d,count:%d'
                % (conf.nova_conf, count, size, node_id, needed, node_id,
                   size, needed)))
    return findings


def _check_socket_dir(conf, probes):
    path = conf.socket_dir
    try:
        st = probes.stat(path)
    except FileNotFoundError:
        return [Finding(
            'socket_dir_missing',
            'socket_dir %s does not exist. Create it owned by root, group '
            '%s, mode 0750 (install -d -m 0750 -g %s %s).'
            % (path, conf.socket_group, conf.socket_group, path))]
    except OSError as e:
        return [Finding(
            'socket_dir_inaccessible',
            'Cannot look at socket_dir %s: %s. Run the check as the '
            'agent\'s user, or fix the permissions of its parents.'
            % (path, e.strerror or e))]
    if not stat_mod.S_ISDIR(st.st_mode):
        return [Finding(
            'socket_dir_not_directory',
            'socket_dir %s is not a directory. Remove it and create the '
            'directory (install -d -m 0750 -g %s %s).'
            % (path, conf.socket_group, path))]
    if st.st_mode & stat_mod.S_IWOTH:
        return [Finding(
            'socket_dir_world_writable',
            'socket_dir %s is world-writable (mode %04o): any local user '
            'could plant or replace vhost-user sockets QEMU connects to. '
            'chmod 0750 %s.'
            % (path, stat_mod.S_IMODE(st.st_mode), path))]
    return []


def _check_binary(conf, probes):
    if probes.binary_path():
        return []
    if conf.spdk_vhost_binary:
        where = ('[spdk_vhost_target] spdk_vhost_binary = %s is not an '
                 'executable file. Fix the path.' % conf.spdk_vhost_binary)
    else:
        where = ('it is not in $SPDK_BIN_DIR, $PATH or %s. Install SPDK or '
                 'set [spdk_vhost_target] spdk_vhost_binary.'
                 % ', '.join(binaries.CONVENTIONAL_DIRS))
    return [Finding('spdk_binary_missing',
                    'SPDK\'s vhost application was not found: %s' % where)]
