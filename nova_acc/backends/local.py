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
"""The default backend: inline specs and profiles only, no context IDs."""

from nova_acc.backends import base
from nova_acc import exception


class LocalBackend(base.Backend):

    def resolve(self, context, request_spec, context_id):
        raise exception.ContextRefused(
            'device_context %r looks like the ID of a device context object, '
            'but this cloud has no backend for those ([nova_acc] backend = '
            'local); use an inline spec or profile:NAME' % context_id)

    def bind(self, context, instance, hostname, device_rps):
        raise AssertionError('the local backend has no ID-based contexts')

    def wait_bound(self, context, instance, virtapi, device_rps,
                   hostname=None):
        raise AssertionError('the local backend has no ID-based contexts')

    def unbind(self, context, instance, context_ids, hostname=None):
        pass
