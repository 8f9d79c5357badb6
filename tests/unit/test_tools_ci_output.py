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
"""What CI's console gets: tools/lib/console_cap.py and the stestr trace of
tools/subunit_summary.py, each run as the real program in a subprocess.
"""

import io
import os
import signal
import subprocess
import sys
import time

import fixtures
from oslotest import base
import subunit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CAP = os.path.join(REPO, 'tools', 'lib', 'console_cap.py')
SUMMARY = os.path.join(REPO, 'tools', 'subunit_summary.py')


def lines(count, width=40):
    return b''.join(b'%06d %s\n' % (i, b'x' * (width - 8))
                    for i in range(count))


class ConsoleCapTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.dir, 'all.log')

    def cap(self, data, head, tail):
        return subprocess.run(
            [sys.executable, CAP, '--head', str(head), '--tail', str(tail),
             '--log', self.log],
            input=data, capture_output=True, timeout=60, check=True).stdout

    def test_small_output_passes_unchanged(self):
        data = lines(100)
        self.assertEqual(data, self.cap(data, 10_000, 2_000))
        with open(self.log, 'rb') as f:
            self.assertEqual(data, f.read())

    def test_large_output_shows_its_head_and_its_end(self):
        data = lines(10_000) + b'12 passed, 0 failed, 0 skipped\n'
        shown = self.cap(data, 8_000, 2_000)

        self.assertLess(len(shown), 8_000 + 2_000 + 400)
        self.assertTrue(shown.startswith(data[:8_000]))
        self.assertTrue(shown.endswith(b'12 passed, 0 failed, 0 skipped\n'))
        # The end starts on a whole line, and says what was left out and
        # where all of it is.
        head, _, end = shown.partition(b'bytes left out here')
        self.assertIn(self.log.encode(), end.split(b'\n')[0])
        tail = end.split(b'\n', 1)[1]
        self.assertTrue(data.endswith(tail))
        self.assertRegex(tail.split(b'\n')[0], rb'^\d{6} x+$')
        left_out = int(head.rsplit(b'\n', 1)[1].split()[1])
        self.assertEqual(len(data), 8_000 + left_out + len(tail))
        with open(self.log, 'rb') as f:
            self.assertEqual(data, f.read())

    def test_a_console_that_stops_reading_never_blocks_the_command(self):
        # The writer gets rid of 20 MB although nothing reads the console
        # after its first bytes: the cap reads its input to the end.
        writer = subprocess.Popen(
            [sys.executable, '-c',
             'import sys; sys.stdout.buffer.write(b"y" * 20_000_000)'],
            stdout=subprocess.PIPE)
        console_r, console_w = os.pipe()
        cap = subprocess.Popen(
            [sys.executable, CAP, '--head', '1000', '--tail', '1000'],
            stdin=writer.stdout, stdout=console_w)
        writer.stdout.close()
        os.close(console_w)
        self.addCleanup(os.close, console_r)
        self.assertEqual(0, writer.wait(timeout=60))
        # What the console has (never read here) is within a pipe's size.
        self.assertEqual(0, cap.wait(timeout=60))

    def test_sigterm_shows_the_kept_end(self):
        cap = subprocess.Popen(
            [sys.executable, CAP, '--head', '100', '--tail', '1000'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        cap.stdin.write(lines(50) + b'phase tempest started\n')
        cap.stdin.flush()
        time.sleep(1)
        cap.send_signal(signal.SIGTERM)
        out = cap.stdout.read()
        cap.stdin.close()
        self.assertEqual(128 + signal.SIGTERM, cap.wait(timeout=60))
        self.assertTrue(out.endswith(b'phase tempest started\n'), out)


class TraceOtherOutputTest(base.BaseTestCase):

    def stream(self):
        """A subunit stream: a test, then output of no test between."""
        buf = io.BytesIO()
        out = subunit.StreamResultToBytes(buf)
        out.status(test_id='tests.a.T.test_one', test_status='inprogress')
        out.status(test_id='tests.a.T.test_one', test_status='success')
        buf.write(b'INFO nova.thread_pool_factory pool is shut down\n')
        out.status(test_id='tests.a.T.test_two', test_status='inprogress')
        out.status(test_id='tests.a.T.test_two', test_status='fail',
                   file_name='traceback', mime_type='text/plain',
                   file_bytes=b'AssertionError: two', eof=True)
        return buf.getvalue()

    def trace(self, *args):
        return subprocess.run(
            [sys.executable, SUMMARY, '--trace'] + list(args),
            input=self.stream(), capture_output=True, timeout=60)

    def test_output_of_no_test_goes_to_its_file(self):
        other = os.path.join(self.useFixture(fixtures.TempDir()).path,
                             'other.log')
        result = self.trace('--other-output', other)

        self.assertEqual(1, result.returncode)
        self.assertIn(b'tests.a.T.test_one', result.stdout)
        self.assertIn(b'AssertionError: two', result.stdout)
        self.assertNotIn(b'thread_pool_factory', result.stdout)
        with open(other, 'rb') as f:
            self.assertIn(b'thread_pool_factory', f.read())

    def test_without_a_file_it_is_shown(self):
        result = self.trace()

        self.assertEqual(1, result.returncode)
        self.assertIn(b'thread_pool_factory', result.stdout)
        self.assertIn(b'AssertionError: two', result.stdout)

    def test_bad_usage(self):
        result = self.trace('--other-output')
        self.assertEqual(2, result.returncode)
        self.assertIn(b'usage', result.stderr)
