"""``spdk-vhost-target``: the compute-node agent and its operator commands.

    spdk-vhost-target [--config-file ...] run      # the daemon
    spdk-vhost-target [--config-file ...] plan     # topology and layout
    spdk-vhost-target [--config-file ...] check    # one line per finding
    spdk-vhost-target [--config-file ...] status   # what SPDK serves now
    spdk-vhost-target [--config-file ...] stop [--with-spdk]

``run`` takes over the SPDK an earlier run started when it still serves,
and leaves it serving when it stops (SIGTERM), so that an agent restart or
upgrade does not stall guests. ``stop`` stops the running agent; with
``--with-spdk`` it then stops SPDK too, which every guest's disk goes
through.
"""

import os

import json
import signal
import socket
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

from spdk_common import exception as spdk_exc
from spdk_common import notifications
from spdk_common import rpc
from vhost_target import agent as vhost_agent
from vhost_target import checks
from vhost_target import config
from vhost_target import hostnqn
from vhost_target import planner
from vhost_target import privileged
from vhost_target import state
from vhost_target import supervisor
from vhost_target import topology
from vhost_target import vhost

LOG = logging.getLogger(__name__)


def _add_commands(subparsers):
    for name, helptext in (('run', 'run the agent (default)'),
                           ('plan', 'print topology and SPDK layout'),
                           ('check', 'check the host; non-zero on errors'),
                           ('status', 'print what SPDK serves now')):
        subparsers.add_parser(name, help=helptext)
    stop = subparsers.add_parser(
        'stop', help='stop the running agent (SPDK keeps serving guests)')
    stop.add_argument('--with-spdk', action='store_true',
                      help='then stop SPDK vhost too: every guest disk it '
                           'serves stalls until SPDK runs again')


def _conf(argv, conf):
    logging.register_options(conf)
    config.register(conf)
    conf.register_cli_opt(cfg.SubCommandOpt('command', handler=_add_commands,
                                            help='what to do'))
    conf(argv, project='spdk-vhost-target')
    return conf


def _layout(conf):
    group = conf.spdk_vhost_target
    host = topology.read_topology()
    return group, host, planner.plan(group, host)


def _stop_privsep(started):
    # SPDK is not the daemon's child once the daemon is gone: init reaps
    # it, and it keeps serving.
    if started:
        privileged.default.stop()


def cmd_plan(conf):
    _group, host, layout = _layout(conf)
    print(planner.format_plan(layout, host))
    return 0


def cmd_check(conf):
    group, host, layout = _layout(conf)
    findings = checks.run_checks(group, host, layout,
                                 checks.default_probes(group))
    for finding in findings:
        print('%s: %s: %s' % (finding.level.upper(), finding.code,
                              finding.message))
    errors = [f for f in findings if f.level == 'error']
    if not findings:
        print('OK: no findings')
    return 1 if errors else 0


def cmd_status(conf):
    group = conf.spdk_vhost_target
    desired = state.DesiredState(group.state_dir)
    report = {'desired': [a.volume_id for a in desired.load()],
              'host_nqn': hostnqn.resolve(group)}
    client = rpc.SPDKClient(group.rpc_socket, timeout=5)
    try:
        report['spdk'] = client.call('spdk_get_version')['version']
        report['reactors'] = [
            {'lcore': r['lcore'], 'busy': r.get('busy'),
             'in_interrupt': r.get('in_interrupt')}
            for r in client.call('framework_get_reactors')['reactors']]
        report['vhost_controllers'] = [
            {'ctrlr': c['ctrlr'], 'cpumask': c['cpumask'],
             'socket': c.get('socket'),
             'bdev': (c.get('backend_specific') or {}).get('block', {})
             .get('bdev')}
            for c in client.call('vhost_get_controllers')]
        report['nvme_controllers'] = [
            c['name'] for c in client.call('bdev_nvme_get_controllers')]
    except spdk_exc.SPDKException as exc:
        report['spdk'] = 'unavailable: %s' % exc
    finally:
        client.close()
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if not str(report['spdk']).startswith('unavailable') else 1


def cmd_run(conf):
    # Imported here: oslo.messaging pulls in eventlet's deprecation noise,
    # which the operator commands have no use for.
    from vhost_target import rpcapi

    logging.setup(conf, 'spdk-vhost-target')
    # Before any thread or connection: the fork copies this process.
    started_privsep = privileged.start()
    try:
        return _run(conf, rpcapi)
    finally:
        _stop_privsep(started_privsep)


def _run(conf, rpcapi):
    group, host, layout = _layout(conf)
    for note in layout.notes:
        LOG.warning('%s', note)
    desired = state.DesiredState(group.state_dir)
    desired.load()
    client = rpc.SPDKClient(group.rpc_socket)
    transport = rpcapi.get_transport(conf)
    notifier = notifications.get_notifier(conf, socket.gethostname())
    agent = vhost_agent.VhostAgent(vhost.VhostTarget(client, group), desired,
                                   layout, host, notifier=notifier,
                                   host_nqn=hostnqn.resolve(group))
    agent_pid_file = supervisor.agent_pid_file_path(group)
    running = supervisor.read_live_pid(agent_pid_file)
    if running is not None and running != os.getpid():
        # Two agents would both reconcile one SPDK and serve one topic.
        LOG.error('The agent already runs as pid %(pid)d (%(file)s); '
                  'stop it first', {'pid': running, 'file': agent_pid_file})
        return 1
    os.makedirs(group.state_dir, mode=0o700, exist_ok=True)
    supervisor.write_pid_file(agent_pid_file, os.getpid())
    keeper = supervisor.Supervisor(group, layout,
                                   on_ready=agent.reconcile,
                                   on_poll=agent.check_health)
    keeper.start()
    server = rpcapi.get_server(transport, conf.host, agent)
    server.start()
    LOG.info('spdk-vhost-target serving %s on host %s',
             rpcapi.TOPIC, conf.host)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    server.wait()
    # SPDK keeps serving the guests; the next run takes it over.
    keeper.stop(with_spdk=False)
    client.close()
    supervisor.remove_file(agent_pid_file)
    return 0


def cmd_stop(conf):
    group = conf.spdk_vhost_target
    if conf.command.with_spdk and group.adopt:
        print('ERROR: SPDK is adopted (adopt = true): stop it with whatever '
              'runs it')
        return 1
    path = supervisor.agent_pid_file_path(group)
    pid = supervisor.read_live_pid(path)
    if pid is None:
        print('The agent is not running')
    else:
        started = supervisor.process_start_time(pid)
        os.kill(pid, signal.SIGTERM)
        if not supervisor.wait_for_exit(pid, started, 60):
            print('ERROR: the agent (pid %d) did not stop within 60 s' % pid)
            return 1
        print('Stopped the agent, pid %d' % pid)
    if conf.command.with_spdk:
        keeper = supervisor.Supervisor(group, None, on_ready=None)
        spdk_pid = supervisor.read_live_pid(supervisor.pid_file_path(group))
        started_privsep = privileged.start()
        try:
            keeper.stop_spdk()
        finally:
            _stop_privsep(started_privsep)
        print('Stopped SPDK vhost, pid %d' % spdk_pid if spdk_pid
              else 'SPDK vhost is not running')
    return 0


COMMANDS = {'run': cmd_run, 'plan': cmd_plan, 'check': cmd_check,
            'status': cmd_status, 'stop': cmd_stop}


def main(argv=None, conf=None):
    # The global CONF by default: oslo.messaging registers options there.
    conf = _conf(sys.argv[1:] if argv is None else argv,
                 cfg.CONF if conf is None else conf)
    problems = config.loss_setting_problems(conf.spdk_vhost_target)
    for problem in problems:
        print('ERROR: [%s] %s' % (config.GROUP, problem), file=sys.stderr)
    if problems:
        return 2
    return COMMANDS[conf.command.name or 'run'](conf)


if __name__ == '__main__':
    sys.exit(main())
