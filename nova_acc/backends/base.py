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
"""The interface of an ID-based device-context backend.

Each method is one step of the flow, called where that step happens:
``resolve`` in the scheduler's request filter (and the conductor),
``bind``/``unbind`` in the conductor's pre-bind, ``wait_bound`` and
``unbind`` in nova-compute.
"""

from __future__ import annotations

import abc
import dataclasses

import os_acc


@dataclasses.dataclass(frozen=True)
class ResolvedContext:
    """What an ID-based context asks for, as a DeviceContext."""

    context_id: str
    device_context: os_acc.DeviceContext


class Backend(abc.ABC):
    #: True: the backend's service picks the devices and the compute
    #: attaches its attach handles (Cyborg). False: a context only holds a
    #: spec; its groups go to nova-acc's pools like an inline spec's, are
    #: recorded as pool bindings, and the host picks the devices from its
    #: ledger (``wait_bound`` is then never asked).
    picks_devices: bool = True
    #: Set on request groups of this backend: keeps them on the providers
    #: the owning service manages.
    required_traits: frozenset[str] = frozenset()
    forbidden_traits: frozenset[str] = frozenset()

    @abc.abstractmethod
    def resolve(self, context, request_spec, context_id: str
                ) -> ResolvedContext:
        """Fetch and check a context for the server of ``request_spec``.

        :raises ContextRefused: not usable by this server (owner, state).
        :raises BackendUnavailable:
        """

    @abc.abstractmethod
    def bind(self, context, instance, hostname: str,
             device_rps: dict[str, str]) -> None:
        """Bind contexts (id -> device provider UUID) to the instance.

        All or nothing: on failure nothing stays bound.

        :raises BackendUnavailable: or another error, with what failed.
        """

    @abc.abstractmethod
    def wait_bound(self, context, instance, virtapi,
                   device_rps: dict[str, str], hostname: str | None = None
                   ) -> dict[str, os_acc.Accelerator]:
        """On the compute: wait until bound; what to attach for each id.

        :param device_rps: context id -> the device provider UUID it was
            bound to at pre-bind. A context bound elsewhere (another host,
            provider or server) is refused, never attached.
        :param hostname: the node the server is built on (default: its
            ``node``; on evacuation Nova changes that only afterwards).
        :raises BackendUnavailable: with what is wrong.
        """

    @abc.abstractmethod
    def unbind(self, context, instance, context_ids: list[str],
               hostname: str | None = None) -> None:
        """Release the contexts; they stay available for another server.

        Only contexts still bound to ``instance`` (and, with ``hostname``,
        on that node) are unbound: one that another server holds, or that
        the same server holds on another node after a reschedule, is left
        alone.
        """

    def record_devices(self, instance_uuid: str, hostname: str,
                       held) -> None:
        """On the compute: the devices it picked for the server's contexts.

        :param held: the ledger records (``nova_acc.compute.ledger.
            DeviceRecord``) the server holds on ``hostname`` after a claim.

        Nothing by default: a backend that picks devices (Cyborg) knows
        them already.
        """

    def unbind_orphaned(self, admin_context, instance_uuid: str,
                        context_ids: list[str],
                        hostname: str | None = None) -> None:
        """Unbind contexts of a server that is gone (the compute's cleanup).

        Called by nova-compute's reconcile without a user's token, for
        example after the server was deleted while the compute was down.
        Only contexts still bound to ``instance_uuid`` (on ``hostname``,
        when given) are unbound.
        """
