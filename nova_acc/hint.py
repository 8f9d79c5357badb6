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
"""The ``device_context`` hint's vocabulary: :mod:`nova_acc_client.hint`.

It lives in the client-only distribution (``client/``), which the
command-line clients need without Nova; the scheduler, the conductor,
nova-acc-api and the demo keep importing it from here.
"""

from nova_acc_client.hint import DETACHED_PREFIX
from nova_acc_client.hint import EXAMPLE
from nova_acc_client.hint import HINT
from nova_acc_client.hint import ID
from nova_acc_client.hint import MAX_HINT_LENGTH
from nova_acc_client.hint import NO_CONTEXT
from nova_acc_client.hint import PROFILE
from nova_acc_client.hint import PROFILE_NAME_RE
from nova_acc_client.hint import PROFILE_PREFIX
from nova_acc_client.hint import SPEC
from nova_acc_client.hint import context_id
from nova_acc_client.hint import detached
from nova_acc_client.hint import is_context_id
from nova_acc_client.hint import is_detached
from nova_acc_client.hint import kind_of
from nova_acc_client.hint import profile_name
from nova_acc_client.hint import values_of

__all__ = ['DETACHED_PREFIX', 'EXAMPLE', 'HINT', 'ID', 'MAX_HINT_LENGTH',
           'NO_CONTEXT', 'PROFILE', 'PROFILE_NAME_RE', 'PROFILE_PREFIX',
           'SPEC',
           'context_id', 'detached', 'is_context_id', 'is_detached',
           'kind_of', 'profile_name', 'values_of']
