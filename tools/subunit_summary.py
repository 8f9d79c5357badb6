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
"""Count a subunit v2 stream's results: ``N passed, N failed, N skipped``.

Usage:

* ``subunit_summary.py RESULTS.subunit`` (or the stream on stdin): prints
  the line and exits 1 when a test failed or none passed, else 0.
* ``subunit_summary.py --trace [--other-output FILE]``: shows the stream on
  stdin as ``stestr run`` does (one line per test, failures with their
  output), for the log; with ``--other-output``, the workers' output that
  belongs to no test is appended to FILE instead.

Each test counts once, by the last status the stream gives it:

* ``success``, ``xfail``: passed;
* ``fail``, ``uxsuccess``: failed;
* ``skip``: skipped;
* ``inprogress`` with no final status (the worker died under it): failed.

stestr reports a worker that exited non-zero as a failed pseudo-test
(``process-returncode``), and an import error while listing tests as a
failed test too, so both are counted as failures.
"""

import functools
import sys

import subunit
import testtools

PASSED = {'success', 'xfail'}
FAILED = {'fail', 'uxsuccess'}
SKIPPED = {'skip'}


class LastStatus(testtools.StreamResult):
    """Remembers each test's last meaningful status."""

    def __init__(self):
        super().__init__()
        self.by_test = {}

    def status(self, test_id=None, test_status=None, **kwargs):
        # Events without a test id are non-subunit output; 'exists' only
        # lists a test.
        if test_id is None or test_status in (None, 'exists'):
            return
        self.by_test[test_id] = test_status


def summarize(stream) -> tuple[int, int, int]:
    result = LastStatus()
    parser = subunit.ByteStreamToStreamResult(stream,
                                              non_subunit_name='stdout')
    result.startTestRun()
    try:
        parser.run(result)
    finally:
        result.stopTestRun()
    passed = failed = skipped = 0
    for status in result.by_test.values():
        if status in PASSED:
            passed += 1
        elif status in SKIPPED:
            skipped += 1
        else:
            # FAILED, or 'inprogress' left without an outcome.
            failed += 1
    return passed, failed, skipped


def trace(stream, other_output=None) -> int:
    """stestr's pretty-printer: a line per test, failures with their output.

    Output of the workers that belongs to no test (what Nova's services log
    while a test's fixtures are torn down: thousands of lines per run) goes
    to the binary file ``other_output`` when given, else with the rest.
    """
    # The body of stestr's subunit_trace.trace (stestr 4.2), but for where
    # that output goes. Its "python -m stestr.subunit_trace" entry forgets
    # the subunit.test_results import, so it is called from here.
    import subunit.test_results
    from stestr import subunit_trace
    if other_output is None:
        return subunit_trace.trace(stream, sys.stdout)
    parser = subunit.ByteStreamToStreamResult(stream,
                                              non_subunit_name='stdout')
    outcomes = testtools.StreamToDict(
        functools.partial(subunit_trace.show_outcome, sys.stdout))
    summary = testtools.StreamSummary()
    result = testtools.StreamResultRouter(
        testtools.CopyStreamResult([outcomes, summary]))
    result.add_rule(subunit.test_results.CatFiles(other_output),
                    'test_id', test_id=None)
    result.startTestRun()
    try:
        parser.run(result)
    finally:
        result.stopTestRun()
    times = [r['timestamps'] for runs in subunit_trace.RESULTS.values()
             for r in runs]
    if subunit_trace.print_full_output(
            sys.stdout, [t[0] for t in times if t[0] is not None],
            [t[1] for t in times if t[1] is not None], False, False):
        return 1
    return 0 if subunit_trace.results.wasSuccessful(summary) else 1


def main(argv) -> int:
    if argv[1:2] == ['--trace']:
        if argv[2:3] == ['--other-output'] and len(argv) == 4:
            with open(argv[3], 'ab') as other_output:
                return trace(sys.stdin.buffer, other_output)
        if len(argv) == 2:
            return trace(sys.stdin.buffer)
        print('usage: subunit_summary.py --trace [--other-output FILE]',
              file=sys.stderr)
        return 2
    if len(argv) > 1:
        with open(argv[1], 'rb') as f:
            passed, failed, skipped = summarize(f)
    else:
        passed, failed, skipped = summarize(sys.stdin.buffer)
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 1 if failed or not passed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
