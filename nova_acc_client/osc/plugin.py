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
"""The OSC plugin module of nova-acc-api (``openstack device context ...``).

python-openstackclient loads every module of the ``openstack.cli.extension``
entry points (``openstackclient.common.clientmanager.get_plugin_modules``)
and, as osc-placement and python-cyborgclient do, expects of each:

* ``API_NAME``: the attribute of the client manager that
  :func:`make_client` fills (``self.app.client_manager.device_context``),
  and, with the major version, the entry point group of the commands:
  ``openstack.device_context.v1``;
* ``API_VERSION_OPTION``, ``DEFAULT_API_VERSION``, ``API_VERSIONS``: the
  ``--os-device-context-api-version`` option (only ``1``);
* :func:`build_option_parser` adding that option.

The client is :class:`nova_acc_client.contexts.DeviceContextClient` over
a keystoneauth1 Adapter on the CLI's session: the endpoint is the Keystone
catalog's ``device-context`` service (or ``--os-device-context-endpoint-
override``/``OS_DEVICE_CONTEXT_ENDPOINT_OVERRIDE``, as for any service).
"""

from __future__ import annotations

import argparse
import typing as ty

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exceptions
from osc_lib import utils

from nova_acc_client import contexts

API_NAME = 'device_context'
API_VERSION_OPTION = 'os_device_context_api_version'
DEFAULT_API_VERSION = '1'
API_VERSIONS = {'1': 'nova_acc_client.contexts.DeviceContextClient'}


def make_client(instance: ty.Any) -> contexts.DeviceContextClient:
    """The REST client for the client manager ``instance``."""
    # As osc-placement: the override if given, else the catalog's entry
    # (or, with an auth plugin that has no catalog, its endpoint).
    try:
        endpoint = instance.get_endpoint_for_service_type(
            contexts.SERVICE_TYPE, region_name=instance.region_name,
            interface=instance.interface)
    except ks_exceptions.EndpointNotFound:
        # The first call then says the service could not be reached.
        endpoint = None
    adapter = ks_adapter.Adapter(
        session=instance.session, service_type=contexts.SERVICE_TYPE,
        interface=instance.interface, region_name=instance.region_name,
        endpoint_override=endpoint)
    return contexts.DeviceContextClient(adapter)


def build_option_parser(parser: argparse.ArgumentParser
                        ) -> argparse.ArgumentParser:
    """Add ``--os-device-context-api-version`` (once)."""
    if any('--os-device-context-api-version' in action.option_strings
           for action in parser._actions):
        # nova-acc and nova-acc-client both installed: python-openstackclient
        # loads this module once per entry point.
        return parser
    parser.add_argument(
        '--os-device-context-api-version',
        metavar='<device-context-api-version>',
        default=utils.env('OS_DEVICE_CONTEXT_API_VERSION'),
        help='Device context (nova-acc-api) API version, default=%s '
             '(Env: OS_DEVICE_CONTEXT_API_VERSION)' % DEFAULT_API_VERSION)
    return parser
