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
"""nova-acc-api as Nova's services reach it (``[device_context_api]``).

Nova calls the device-context API with its own service credentials, never
with the user's token: the calls that change a context (bind, unbind,
record devices) are the service's, and nova-compute's cleanup of a server
deleted while it was down has no user at all. The API is told the
server's project and enforces ownership itself.
"""

from __future__ import annotations

import threading

from keystoneauth1 import loading as ks_loading

from nova_acc.api import client as api_client
from nova_acc import conf
from nova_acc import exception

CONF = conf.CONF
GROUP = conf.CONTEXT_API_GROUP.name


class NotConfigured(exception.NovaAccException):
    """``[device_context_api]`` has no credentials: no API to ask."""


_LOCK = threading.Lock()
# (the group's settings, the session and auth loaded from them): loaded
# once, so that a token is fetched once and reused until it expires, and
# loaded again when the settings change (tests change them per test).
_LOADED: tuple[str, object, object] | None = None


def _settings_key() -> str:
    group = CONF[GROUP]
    return repr(sorted((name, repr(group[name])) for name in group))


def _session_and_auth():
    global _LOADED
    with _LOCK:
        key = _settings_key()
        if _LOADED is None or _LOADED[0] != key:
            if not CONF[GROUP].auth_type:
                raise NotConfigured(
                    '[device_context_api] auth_type is not set')
            try:
                auth = ks_loading.load_auth_from_conf_options(CONF, GROUP)
                session = ks_loading.load_session_from_conf_options(
                    CONF, GROUP, auth=auth)
            except Exception as e:  # keystoneauth's loading errors are many
                raise exception.BackendUnavailable(
                    'cannot load the credentials of [device_context_api]: '
                    '%s' % e) from e
            # The auth plugin registers its own options on first load:
            # the key is taken again so the next call finds this entry.
            _LOADED = (_settings_key(), session, auth)
        return _LOADED[1], _LOADED[2]


def is_configured() -> bool:
    return bool(CONF[GROUP].auth_type)


def client() -> api_client.DeviceContextClient:
    """A client of nova-acc-api with Nova's service credentials.

    :raises NotConfigured: no ``auth_type`` in ``[device_context_api]``.
    :raises BackendUnavailable: the credentials cannot be loaded.
    """
    session, auth = _session_and_auth()
    try:
        adapter = ks_loading.load_adapter_from_conf_options(
            CONF, GROUP, session=session, auth=auth, raise_exc=False)
    except Exception as e:  # keystoneauth's loading errors are many
        raise exception.BackendUnavailable(
            'cannot load the endpoint settings of [device_context_api]: %s'
            % e) from e
    return api_client.DeviceContextClient(adapter)
