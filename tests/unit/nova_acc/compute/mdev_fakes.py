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
"""Mdev parents, records and host mdevs for the compute rooms' unit tests."""

import itertools

import os_acc

from nova_acc.compute import ledger

GPU1 = '0000:81:00.0'
GPU2 = '0000:81:01.0'
SERVER = '11111111-1111-4111-8111-111111111111'
OTHER = '22222222-2222-4222-8222-222222222222'
POOL = 'pool-uuid'


def parent(address, mdev_type='nvidia-11', available=2, **types):
    return os_acc.Device(address=address, vendor_id='10de',
                         product_id='0ffe', resource_class='VGPU',
                         mdev_types=dict({mdev_type: available}, **types),
                         mdev_type=mdev_type)


def mdev_record(uuid, gpu=GPU1, mdev_type='nvidia-11', state=ledger.ATTACHED,
                server=SERVER):
    rec = ledger.DeviceRecord(address=uuid, parent=gpu, mdev_type=mdev_type)
    rec.claim(server, POOL, 'VGPU', (), None, 'g0')
    if state == ledger.ATTACHED:
        rec.attach()
    elif state == ledger.DIRTY:
        rec.dirty('busy')
    return rec


def host_mdev(uuid, gpu=GPU1, mdev_type='nvidia-11'):
    return os_acc.MediatedDevice(uuid, gpu, mdev_type)


def uuids():
    counter = itertools.count(1)
    return lambda: '00000000-0000-4000-8000-%012d' % next(counter)
