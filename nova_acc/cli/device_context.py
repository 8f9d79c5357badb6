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
"""Checks of ``device_context`` values: :mod:`nova_acc_client.device_context`.
"""

from nova_acc_client.device_context import EXAMPLE
from nova_acc_client.device_context import HINT
from nova_acc_client.device_context import ID
from nova_acc_client.device_context import InvalidDeviceContextValue
from nova_acc_client.device_context import PROFILE
from nova_acc_client.device_context import PROFILE_NAME_RE
from nova_acc_client.device_context import PROFILE_PREFIX
from nova_acc_client.device_context import SPEC
from nova_acc_client.device_context import check
from nova_acc_client.device_context import check_all
from nova_acc_client.device_context import check_id
from nova_acc_client.device_context import is_context_id

__all__ = ['EXAMPLE', 'HINT', 'ID', 'InvalidDeviceContextValue', 'PROFILE',
           'PROFILE_NAME_RE', 'PROFILE_PREFIX', 'SPEC', 'check', 'check_all',
           'check_id', 'is_context_id']
