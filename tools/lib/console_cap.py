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
"""Pass a command's output to the console, at most so many bytes of it.

Usage: ``CMD 2>&1 | console_cap.py [--head BYTES] [--tail BYTES] [--log F]``

CI's console keeps only the first 2 MiB of a run's output (a run that
printed more showed nothing after that point, not even its result). So
the console gets the first ``--head`` bytes as they come; past them, only
the last ``--tail`` bytes are kept and shown when the input ends, after a
line saying how much was left out. ``--log`` gets all of it.

Everything is read to the end, whatever the console takes: the command
never blocks on, nor dies of, a full pipe. The exit status is 0; the
command's is the caller's to keep (``set -o pipefail``). On SIGTERM or
SIGINT the kept tail is shown before exiting, so a run stopped from
outside still shows how far it got.
"""

import argparse
import collections
import os
import signal
import sys
from typing import BinaryIO, Optional

CHUNK = 65536


class ConsoleCap:
    """The console's share of a byte stream: its head, then its tail."""

    def __init__(self, console: BinaryIO, head: int, tail: int,
                 log: Optional[BinaryIO] = None,
                 log_name: Optional[str] = None) -> None:
        self.console = console
        self.head_left = head
        self.tail_size = tail
        self.log = log
        self.log_name = log_name
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_bytes = 0
        self.left_out = 0
        self.flushed = False

    def write(self, data: bytes) -> None:
        if self.log is not None:
            self.log.write(data)
            self.log.flush()
        if self.head_left > 0:
            shown = data[:self.head_left]
            self.head_left -= len(shown)
            self._show(shown)
            data = data[len(shown):]
            if self.head_left == 0:
                self._show(b'\nconsole_cap: the console shows no more '
                           b'as it comes; the end follows when the run '
                           b'ends' + self._log_note() + b'\n')
        if data:
            self.tail.append(data)
            self.tail_bytes += len(data)
            while self.tail_bytes - len(self.tail[0]) >= self.tail_size:
                dropped = self.tail.popleft()
                self.tail_bytes -= len(dropped)
                self.left_out += len(dropped)

    def finish(self) -> None:
        """Show the kept tail (once), from its first whole line."""
        if self.flushed:
            return
        self.flushed = True
        kept = b''.join(self.tail)
        if len(kept) > self.tail_size:
            cut = len(kept) - self.tail_size
            self.left_out += cut
            kept = kept[cut:]
        if self.left_out:
            newline = kept.find(b'\n')
            if newline >= 0:
                self.left_out += newline + 1
                kept = kept[newline + 1:]
            self._show(b'console_cap: %d bytes left out here%s\n'
                       % (self.left_out, self._log_note()))
        self._show(kept)

    def _log_note(self) -> bytes:
        if not self.log_name:
            return b''
        return b' (all of it: %s)' % self.log_name.encode()

    def _show(self, data: bytes) -> None:
        try:
            self.console.write(data)
            self.console.flush()
        except OSError:
            # A console that went away must not stop the reading.
            pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--head', type=int, default=1_400_000)
    parser.add_argument('--tail', type=int, default=400_000)
    parser.add_argument('--log')
    args = parser.parse_args(argv)
    log = open(args.log, 'ab') if args.log else None
    cap = ConsoleCap(sys.stdout.buffer, args.head, args.tail, log, args.log)

    def stop(signum: int, frame: object) -> None:
        cap.finish()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stdin = sys.stdin.fileno()
    # A pipe handed over non-blocking (by a parent under eventlet, say)
    # would end the reading at the first pause of the writer.
    for fd in (stdin, sys.stdout.fileno()):
        os.set_blocking(fd, True)
    while True:
        data = os.read(stdin, CHUNK)
        if not data:
            break
        cap.write(data)
    cap.finish()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
