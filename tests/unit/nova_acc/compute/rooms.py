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
"""A compute host for the rooms' unit tests: a real ledger in a temp dir.

libvirt and the host listing are fakes (what they return is spelled out in
each test); the ledger, the records and the rules are the real ones.
"""

from unittest import mock

import fixtures
import os_acc
from oslo_config import fixture as config_fixture

from nova_acc import binding
from nova_acc import conf
from nova_acc.compute import inventory
from nova_acc.compute import ledger
from nova_acc.compute import snapshot

NODE = 'node1'
A = '0000:3b:00.0'
B = '0000:3b:00.1'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'


def fpga(address):
    return os_acc.Device(address=address, vendor_id='1172',
                         product_id='0001', resource_class='FPGA')


class HostFixture(fixtures.Fixture):
    """A ``snapshot.Host`` with FPGAs A and B and a ledger of its own."""

    def _setUp(self):
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        cfg.config(group='nova_acc',
                   ledger_dir=self.useFixture(fixtures.TempDir()).path)
        self.devices = [fpga(A), fpga(B)]
        self.discover = self.useFixture(fixtures.MockPatchObject(
            inventory, 'discover',
            side_effect=lambda h, s, n: list(self.devices))).mock
        self.libvirt_host = mock.Mock()
        self.libvirt_host.get_hostname.return_value = NODE
        self.host = snapshot.Host(self.libvirt_host,
                                  [{'vendor_id': '1172'}])
        self.pool = next(iter(self.host.snapshot().pools))
        self.discover.reset_mock()

    def record(self, address, server=SERVER, group='g0', state=None):
        with self.host.ledger.transaction() as records:
            rec = records[address] = ledger.DeviceRecord(address=address)
            rec.claim(server, self.pool, 'FPGA', (), None, group)
            if state == ledger.ATTACHED:
                rec.attach()


def server(bindings=(), uuid=SERVER, migration_context=None):
    """An Instance-like server whose system metadata holds ``bindings``."""
    instance = mock.Mock(uuid=uuid, system_metadata={}, node=NODE,
                         migration_context=migration_context)
    binding.replace(instance, list(bindings))
    return instance


def pool_binding(pool, amount=1, group='g0'):
    return binding.Binding(group, pool, None, NODE, amount=amount,
                           resource_class='FPGA')
