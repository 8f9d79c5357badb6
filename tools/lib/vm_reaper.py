#!/usr/bin/env python3
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
"""What PID 1 of tools/run-vfio-host.sh's VM becomes once it is up.

    vm_reaper.py SHUTDOWN_COMMAND...

The VM's init (/sbin/nova-acc-vm-init) execs this after starting its
daemons: as PID 1 it reaps every orphan (the daemons' exited children),
and on SIGTERM or SIGPWR (QEMU's system_powerdown, or ``kill 1``) runs
SHUTDOWN_COMMAND (``/sbin/nova-acc-vm-init shutdown``), which stops the
daemons and powers the VM off. Installed in the VM as
/usr/local/sbin/nova-acc-vm-reaper; standard library only.
"""

import os
import signal
import subprocess
import sys
from typing import List, Optional, Sequence


def reap_forever(shutdown: List[str]) -> None:
    """Waits for children for ever; SIGTERM/SIGPWR run SHUTDOWN."""

    def down(signum: int, frame: object) -> None:
        subprocess.call(shutdown)

    signal.signal(signal.SIGTERM, down)
    signal.signal(signal.SIGPWR, down)
    # A handler, so that SIGCHLD (ignored by default) ends pause() below.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            # No child now: sleep until a signal (an orphan that exits
            # sends SIGCHLD).
            signal.pause()
        except InterruptedError:
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print('usage: vm_reaper.py SHUTDOWN_COMMAND...', file=sys.stderr)
        return 2
    reap_forever(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
