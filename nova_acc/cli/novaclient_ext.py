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
"""``nova boot --device-context-id``: :mod:`nova_acc_client.novaclient_ext`.

novaclient calls a module's ``__pre_parse_args__`` and
``__post_parse_args__``; both are the client package's (kept for installs
whose entry point still names this module).
"""

from nova_acc_client.novaclient_ext import __post_parse_args__
from nova_acc_client.novaclient_ext import __pre_parse_args__
from nova_acc_client.novaclient_ext import ID_DEST
from nova_acc_client.novaclient_ext import ID_OPTION
from nova_acc_client.novaclient_ext import SPEC_DEST
from nova_acc_client.novaclient_ext import SPEC_OPTION

__all__ = ['__post_parse_args__', '__pre_parse_args__', 'ID_DEST',
           'ID_OPTION', 'SPEC_DEST', 'SPEC_OPTION']
