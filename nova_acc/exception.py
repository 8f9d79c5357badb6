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
"""Exceptions nova-acc raises inside Nova services."""

from nova import exception


class DeviceBindingFailed(exception.ComputeResourcesUnavailable):
    """A bound device cannot be used on this host.

    A ComputeResourcesUnavailable, so nova-compute reschedules the server to
    an alternate host instead of failing it.
    """


class ConflictingDeviceSpec(exception.NovaException):
    msg_fmt = ('Device %(address)s is selected by both [nova_acc] '
               'device_spec and [pci] device_spec; one service must own it.')
