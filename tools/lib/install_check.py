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
"""Where nova-acc got installed, and whether it imports: run with the Python
that is checked (tools/setup.sh, devstack/plugin.sh)::

    install_check.py check [--import MODULE]... [--find MODULE]...
        exit status 1, naming each, when a MODULE does not import (--import)
        or is not found (--find: found without importing it, for the
        driver shim where libvirt-python is missing), or when an imported
        package is a namespace package: a directory without __init__.py
        (such as a "nova" directory pip left next to an editable Nova)
        hides the real package
    install_check.py locate DISTRIBUTION PATH
        the absolute path of PATH in DISTRIBUTION's files
    install_check.py package-dir MODULE
        the directory MODULE is imported from

Run it from a directory without a checkout in it (the plugin runs it from
/): Python puts the script's directory on sys.path, not the working one.
"""

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from typing import List, Optional, Sequence


def problems(imports: Sequence[str], finds: Sequence[str]) -> List[str]:
    """What is wrong with MODULEs, one sentence each; [] when nothing."""
    found: List[str] = []
    for name in imports:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import error is the answer
            found.append('%s does not import: %s: %s'
                         % (name, type(exc).__name__, exc))
            continue
        if getattr(module, '__file__', None) is None:
            found.append('%s is a namespace package (%s): a directory '
                         'without __init__.py hides the real one'
                         % (name, ', '.join(getattr(module, '__path__', []))))
    for name in finds:
        try:
            spec = importlib.util.find_spec(name)
        except Exception as exc:
            found.append('%s cannot be looked for: %s: %s'
                         % (name, type(exc).__name__, exc))
            continue
        if spec is None:
            found.append('%s is not found' % name)
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    check = sub.add_parser('check')
    check.add_argument('--import', dest='imports', action='append',
                       default=[], metavar='MODULE')
    check.add_argument('--find', dest='finds', action='append', default=[],
                       metavar='MODULE')
    locate = sub.add_parser('locate')
    locate.add_argument('distribution')
    locate.add_argument('path')
    package_dir = sub.add_parser('package-dir')
    package_dir.add_argument('module')
    args = parser.parse_args(argv)

    try:
        if args.command == 'check':
            found = problems(args.imports, args.finds)
            for problem in found:
                print('install_check.py: %s (%s)' % (problem, sys.executable),
                      file=sys.stderr)
            return 1 if found else 0
        if args.command == 'locate':
            dist = importlib.metadata.distribution(args.distribution)
            print(dist.locate_file(args.path))
            return 0
        module = importlib.import_module(args.module)
        print(os.path.dirname(module.__file__ or ''))
        return 0
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        print('install_check.py: %s' % exc, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
