#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.
"""nova-acc: the nova-acc command; ``nova-acc demo`` shows device contexts.

``nova-acc demo`` starts an all-in-one cloud in this process (real Nova
services with nova-acc's managers and compute driver, placement on sqlite,
fake libvirt hosts with fake FPGAs, VFs with --vfs-per-host and a GPU
offering vGPUs with --vgpus-per-host), boots
servers with device contexts one at a time, shows what each got, deletes
them and checks that every device is free again. It exits 0 when
everything it saw is consistent (servers that find no free device failing
with a fault is expected), 1 when something is not, 2 for bad arguments.
"""

# As Nova's commands and its functional tests do: choose the concurrency
# backend before anything imports oslo.context or urllib3. The demo runs
# the cloud the way nova-acc's functional tests run it (eventlet unless
# OS_NOVA_DISABLE_EVENTLET_PATCHING says otherwise). Nova's warnings about
# that choice would reach stderr through Python's last-resort handler
# before any logging is set up; they are not for demo users.
import logging
import warnings

warnings.filterwarnings('ignore', module=r'nova\.monkey_patch')
logging.getLogger('nova').addHandler(logging.NullHandler())

from nova import monkey_patch; monkey_patch.patch()  # noqa: E402,E702

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import typing as ty  # noqa: E402

from nova_acc.demo import plan  # noqa: E402
from nova_acc.demo import report  # noqa: E402
from nova_acc.demo import scenario  # noqa: E402

PROG = 'nova-acc'


def _count(name):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                '%r is not a whole number' % text) from None
        error = plan.check_count(name, value)
        if error:
            raise argparse.ArgumentTypeError(error)
        return value
    parse.__name__ = name
    return parse


def _port(text):
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            '%r is not a whole number' % text) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            'must be 0 (any free port) to 65535, got %d' % value)
    return value


def _context(text):
    try:
        plan.parse_context(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description='nova-acc: Nova servers with device contexts.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    demo = commands.add_parser(
        'demo', help='boot servers with device contexts on an in-process '
                     'cloud and show what they got',
        description=(
            'Start an all-in-one cloud in this process (Nova services with '
            "nova-acc's managers, placement on sqlite, fake libvirt hosts "
            'with fake FPGAs), boot servers with device contexts one at a '
            "time, show each server's status, host, devices (each with its "
            'device pool) and the hostdevs of its domain, then delete them '
            'and check that every device is free again. The FPGAs of a host '
            'are one device pool, its VFs (--vfs-per-host) another; a '
            'group asks for a number of devices of one pool. Exit status: 0 '
            'when all is consistent (servers beyond what the pools hold fail '
            'with a fault that says why; that is expected), 1 when '
            'something is not, 2 for bad arguments.'))
    _add_cloud_arguments(demo)
    _add_output_arguments(demo)
    demo.set_defaults(func=_demo, parser=demo)
    return parser


def _add_cloud_arguments(demo: argparse.ArgumentParser) -> None:
    """What the demo's cloud has and what its servers ask for."""
    lim = plan.LIMITS
    demo.add_argument(
        '--hosts', metavar='N', type=_count('hosts'), default=2,
        help='compute hosts to start (%d-%d, default 2)' % lim['hosts'][:2])
    demo.add_argument(
        '--devices-per-host', metavar='M', type=_count('devices_per_host'),
        default=2, help='FPGAs on each host, one device pool of resource '
                        'class FPGA with trait CUSTOM_GZIP (%d-%d, default '
                        '2)' % lim['devices_per_host'][:2])
    demo.add_argument(
        '--vfs-per-host', metavar='N', type=_count('vfs_per_host'),
        default=0, help='also give each host a PF with N VFs, a device pool '
                        'of resource class %s (ask for them with --context '
                        'resources:%s=4, say; %d-%d, default 0; not with '
                        '--backend cyborg)' % (
                            plan.VF_RESOURCE_CLASS, plan.VF_RESOURCE_CLASS,
                            *lim['vfs_per_host'][:2]))
    demo.add_argument(
        '--vgpus-per-host', metavar='N', type=_count('vgpus_per_host'),
        default=0, help='also give each host a GPU that can create N vGPUs '
                        '(mdevs of type %s), a device pool of resource class '
                        '%s with trait %s (ask for them with --context '
                        'resources:%s=1; each server then shows the UUID, '
                        'type and GPU of its mdevs; %d-%d, default 0; not '
                        'with --backend cyborg or --serve)' % (
                            plan.VGPU_TYPE, plan.VGPU_RESOURCE_CLASS,
                            plan.VGPU_TRAIT, plan.VGPU_RESOURCE_CLASS,
                            *lim['vgpus_per_host'][:2]))
    demo.add_argument(
        '--servers', metavar='K', type=_count('servers'), default=3,
        help='servers to boot, one at a time (%d-%d, default 3)'
             % lim['servers'][:2])
    demo.add_argument(
        '--context', metavar='SPEC', dest='contexts', action='append',
        type=_context,
        help='device context of each server (default %r); repeat to give '
             'each server several contexts' % plan.DEFAULT_CONTEXT)
    demo.add_argument(
        '--backend', choices=plan.BACKENDS, default=plan.DEFAULT_BACKEND,
        help="who owns the devices (default %s): 'local' for nova-acc's "
             "own fake FPGAs and --context specs; 'cyborg' to run the real "
             'Cyborg service (API and conductor) in a child process: its '
             'FPGAs are reported as cyborg-agent would, each server boots '
             "with its own Cyborg ARQ made from the demo's device profile, "
             'and after delete every ARQ must be unbound (not with '
             "--context or --serve; --log-file then also gets Cyborg's log)"
             % plan.DEFAULT_BACKEND)


def _add_output_arguments(demo: argparse.ArgumentParser) -> None:
    """How the demo reports, or serves the cloud instead."""
    demo.add_argument(
        '--json', action='store_true',
        help='print one JSON object instead of the human report')
    demo.add_argument(
        '-q', '--quiet', action='store_true',
        help='no progress messages on stderr')
    demo.add_argument(
        '--log-file', metavar='PATH',
        help="write the Nova services' log of the run to PATH")
    demo.add_argument(
        '--serve', action='store_true',
        help="boot nothing: start the hosts, serve Nova's API over HTTP on "
             '127.0.0.1 without authentication for the real openstack and '
             'nova clients, and run until SIGINT or SIGTERM; the first line '
             'on stdout is "SERVING <compute endpoint>", the second '
             '"DEVICE-CONTEXTS <endpoint of nova-acc-api>" (noauth2: create '
             'device contexts to boot with by ID), followed by how to point '
             'the clients at them (--servers, --context and --json do not '
             'apply)')
    demo.add_argument(
        '--port', metavar='PORT', type=_port, default=0,
        help='with --serve: the TCP port to listen on (default: a free one)')


def _progress(step: int, total: int, message: str) -> None:
    sys.stderr.write('[%d/%d] %s...\n' % (step, total, message))
    sys.stderr.flush()


def _isolate_stdout() -> ty.TextIO:
    """Point file descriptor 1 at /dev/null; return a stream on the old one.

    Nova's services log to stdout once its logging fixture is gone (while
    the cloud stops, even at interpreter exit), through handlers holding
    ``sys.stdout`` or the descriptor under it. Rebinding the descriptor for
    the rest of the process silences them all; the report goes to the
    returned stream, so stdout is only what the demo prints.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return open(saved, 'w')


def _serve(args) -> int:
    if args.json or args.contexts:
        args.parser.error('--serve boots no servers; --json and --context '
                          'do not apply')
    from nova_acc.demo import serve  # the standard library only
    out = _isolate_stdout()
    try:
        return serve.serve(args.hosts, args.devices_per_host, out,
                           port=args.port, vfs_per_host=args.vfs_per_host,
                           progress=None if args.quiet else _progress,
                           log_file=args.log_file)
    except KeyboardInterrupt:
        return 130
    except ImportError as e:
        return _cloud_failed(e)
    except serve.BindError as e:
        sys.stderr.write('%s demo: %s\n' % (PROG, e))
        return 1
    except Exception as e:
        return _cloud_failed(e)


def _cloud_failed(e: Exception) -> int:
    """Say why the in-process cloud could not run; the exit status."""
    if isinstance(e, ImportError):
        sys.stderr.write(
            "%s demo: cannot start the in-process cloud; it needs Nova's "
            'test fixtures (nova.tests, shipped with nova) and '
            'openstack-placement: %s\n' % (PROG, e))
    else:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.write('%s demo: the in-process cloud failed: %s: %s\n' % (
            PROG, type(e).__name__, e))
    return 1


def _demo(args) -> int:
    cyborg = args.backend == 'cyborg'
    if cyborg and args.serve:
        args.parser.error('--serve starts the local backend only; '
                          '--backend cyborg does not apply')
    if args.serve and args.vgpus_per_host:
        args.parser.error('argument --vgpus-per-host: not allowed with '
                          '--serve')
    if args.serve:
        return _serve(args)
    if args.port:
        args.parser.error('--port only applies with --serve')
    options = _options(args)
    out = _isolate_stdout()
    try:
        result = scenario.run(options,
                              progress=None if args.quiet else _progress,
                              log_file=args.log_file)
    except KeyboardInterrupt:
        sys.stderr.write('%s demo: interrupted\n' % PROG)
        return 130
    except ImportError as e:
        return _cloud_failed(e)
    except Exception as e:
        return _cloud_failed(e)
    return _report(args, result, out)


def _options(args) -> plan.Options:
    """The run's options, or a usage error for a combination not allowed.
    """
    cyborg = args.backend == 'cyborg'
    if cyborg and args.vfs_per_host:
        args.parser.error(
            'argument --vfs-per-host: not allowed with --backend cyborg: '
            'the VFs are devices of nova-acc, the local backend')
    if cyborg and args.vgpus_per_host:
        args.parser.error(
            'argument --vgpus-per-host: not allowed with --backend cyborg: '
            'the vGPUs are devices of nova-acc, the local backend')
    if cyborg and args.contexts:
        args.parser.error(
            'argument --context: not allowed with --backend cyborg: each '
            "server gets its own Cyborg ARQ, made from the demo's device "
            'profile')
    if cyborg:
        contexts = ()
    else:
        contexts = tuple(args.contexts or (plan.DEFAULT_CONTEXT,))
        error = plan.check_contexts(contexts)
        if error:
            args.parser.error('argument --context: %s' % error)
    options = plan.Options(hosts=args.hosts,
                           devices_per_host=args.devices_per_host,
                           servers=args.servers, contexts=contexts,
                           backend=args.backend,
                           vfs_per_host=args.vfs_per_host,
                           vgpus_per_host=args.vgpus_per_host)
    return options


def _report(args, result: report.Result, out: ty.TextIO) -> int:
    """Print the run's report; the exit status: 1 if it saw problems."""
    if result.traceback:
        sys.stderr.write(result.traceback)
        if not args.log_file:
            sys.stderr.write('%s demo: run again with --log-file PATH to keep '
                             'the Nova log\n' % PROG)
    out.write((report.to_json(result) if args.json
               else report.to_text(result)) + '\n')
    out.flush()
    if not args.quiet:
        sys.stderr.write('%s demo: finished in %.1f s\n' % (
            PROG, result.seconds))
    if not result.problems:
        return 0
    if args.json:
        sys.stderr.write('%s demo: INCONSISTENT, %d problem(s):\n' % (
            PROG, len(result.problems)))
        for p in result.problems:
            sys.stderr.write('  - %s\n' % p)
    else:
        sys.stderr.write('%s demo: INCONSISTENT, %d problem(s), listed in '
                         'the report above\n' % (PROG, len(result.problems)))
    return 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
