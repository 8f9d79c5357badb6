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
"""The ``nova-acc`` command: ``nova-acc demo``.

The demo runs an all-in-one test cloud (``nova_acc.demo``), which
needs nova-acc's test dependencies; a plain ``pip install nova-acc`` on a
compute node does not have them and never imports any of it. This entry
point imports the demo only when run, and says how to get what is missing.
"""

import importlib.util
import sys

EXTRA = 'demo'
# What the demo's in-process cloud imports beyond nova-acc's requirements
# (the [demo] extra in setup.cfg).
TEST_MODULES = ('fixtures', 'testtools', 'wsgi_intercept', 'requests_mock',
                'placement', 'nova.tests.fixtures')


def missing_test_modules() -> list[str]:
    missing = []
    for name in TEST_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv=None) -> int:
    missing = missing_test_modules()
    if missing:
        print('nova-acc: the demo runs an in-process test cloud and needs '
              'test dependencies that are not installed (%s). Install them '
              'with: pip install "nova-acc[%s]"'
              % (', '.join(missing), EXTRA), file=sys.stderr)
        return 2
    from nova_acc.demo import cli
    return cli.main(argv)


if __name__ == '__main__':
    sys.exit(main())
