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
"""nova-acc-api's Python client: :mod:`nova_acc_client.contexts`.

It lives in the client-only distribution (``client/``), so that the OSC
plugin installs without Nova; Nova's side imports it from here.
"""

from nova_acc_client.contexts import Context
from nova_acc_client.contexts import ContextAPIError
from nova_acc_client.contexts import ContextAPIUnavailable
from nova_acc_client.contexts import ContextConflict
from nova_acc_client.contexts import ContextNotFound
from nova_acc_client.contexts import DeviceContextClient
from nova_acc_client.contexts import PATH
from nova_acc_client.contexts import SERVICE_TYPE

__all__ = ['Context', 'ContextAPIError', 'ContextAPIUnavailable',
           'ContextConflict', 'ContextNotFound', 'DeviceContextClient',
           'PATH', 'SERVICE_TYPE']
