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
"""Pool identity: pool keys, provider names and UUIDs, legacy naming."""

import dataclasses
import hashlib
from unittest import mock

import os_acc
from oslo_config import fixture as config_fixture
from oslo_serialization import jsonutils
from oslotest import base

from nova_acc import conf
from nova_acc import pools

NODE = 'compute1'
GPU1 = '0000:81:00.0'
GPU2 = '0000:81:01.0'


def fpga(address, traits=(), numa_node=0, rc='FPGA'):
    return os_acc.Device(address=address, vendor_id='1172',
                         product_id='5050', resource_class=rc,
                         traits=set(traits), numa_node=numa_node)


def vf(address, parent):
    return os_acc.Device(address=address, vendor_id='8086',
                         product_id='154c', resource_class='CUSTOM_VF',
                         physfn=parent)


def parent(address, mdev_type='nvidia-11', available=2, **types):
    return os_acc.Device(address=address, vendor_id='10de',
                         product_id='0ffe', resource_class='VGPU',
                         mdev_types=dict({mdev_type: available}, **types),
                         mdev_type=mdev_type)


class PoolKeyTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def test_whole_device_pools_keep_their_names(self):
        # The digest of pools before mdev types existed: the upgrade must
        # not rename (and so re-create) every pool provider.
        key = pools.PoolKey('FPGA', ('CUSTOM_GZIP',), None, None)
        old = hashlib.sha256(jsonutils.dumps(
            ['FPGA', ['CUSTOM_GZIP'], None, None],
            sort_keys=True).encode()).hexdigest()[:10]
        self.assertEqual(old, key.digest())

    def test_mdev_pools_by_type(self):
        a = pools.PoolKey.of(parent(GPU1))
        b = pools.PoolKey.of(parent(GPU2))
        c = pools.PoolKey.of(parent(GPU1, 'nvidia-12'))
        self.assertEqual(a, b)  # the parents of one type are one pool
        self.assertNotEqual(a.digest(), c.digest())
        self.assertEqual('VGPU_nvidia-11', a.label())
        whole = dataclasses.replace(parent(GPU1), mdev_type=None)
        self.assertNotEqual(a, pools.PoolKey.of(whole))

    def test_vfs_of_each_pf_have_a_key_of_their_own(self):
        a = pools.PoolKey.of(vf('0000:81:00.1', '0000:81:00.0'))
        b = pools.PoolKey.of(vf('0000:82:00.1', '0000:82:00.0'))
        self.assertNotEqual(a, b)
        self.assertEqual('0000:81:00.0_CUSTOM_VF', a.label())

    def test_numa_node_is_in_the_key_only_when_asked(self):
        dev = fpga('0000:81:00.0', numa_node=1)
        self.assertIsNone(pools.PoolKey.of(dev).numa_node)
        self.assertEqual('FPGA', pools.PoolKey.of(dev).label())
        self.conf.config(pool_by_numa=True, group='nova_acc')
        self.assertEqual(1, pools.PoolKey.of(dev).numa_node)
        self.assertEqual('FPGA_numa1', pools.PoolKey.of(dev).label())

    def test_traits_are_in_the_key_in_a_stable_order(self):
        a = pools.PoolKey.of(fpga(GPU1, ['CUSTOM_B', 'CUSTOM_A']))
        self.assertEqual(('CUSTOM_A', 'CUSTOM_B'), a.traits)
        self.assertNotEqual(a, pools.PoolKey.of(fpga(GPU1, ['CUSTOM_A'])))


class PoolNamingTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(conf.CONF))

    def test_pool_names_and_uuids_are_stable_and_per_node(self):
        key = pools.PoolKey.of(fpga('0000:81:00.0', ['CUSTOM_GZIP']))
        self.assertEqual(pools.pool_uuid(NODE, key),
                         pools.pool_uuid(NODE, pools.PoolKey.of(
                             fpga('0000:82:00.0', ['CUSTOM_GZIP']))))
        self.assertNotEqual(pools.pool_uuid(NODE, key),
                            pools.pool_uuid('compute2', key))
        # A look-alike provider (UUID not derived from the name) is not one.
        self.assertFalse(pools.is_pool_provider(
            NODE, pools.pool_name(NODE, key), 'some-other-uuid'))
        self.assertFalse(pools.is_pool_provider(
            'compute2', pools.pool_name(NODE, key),
            pools.pool_uuid(NODE, key)))

    def test_a_pool_provider_is_recognised_by_its_name_and_uuid(self):
        key = pools.PoolKey.of(fpga('0000:81:00.0'))
        name = pools.pool_name(NODE, key)
        self.assertEqual('compute1_FPGA_%s' % key.digest(), name)
        self.assertTrue(pools.is_pool_provider(
            NODE, name, pools.pool_uuid(NODE, key)))
        # A per-device provider of before pools is not a pool.
        self.assertFalse(pools.is_pool_provider(
            NODE, pools.legacy_provider_name(NODE, '0000:81:00.0'),
            pools.legacy_provider_uuid(NODE, '0000:81:00.0')))

    def test_pools_of_groups_interchangeable_devices(self):
        devs = [fpga('0000:81:02.0'), fpga('0000:81:00.0'),
                fpga('0000:81:01.0', ['CUSTOM_GZIP'])]
        result = pools.pools_of(NODE, devs)
        self.assertEqual(2, len(result))
        plain = result[pools.pool_uuid(NODE, pools.PoolKey.of(devs[0]))]
        # Sorted: a claim picks the lowest free address first.
        self.assertEqual(['0000:81:00.0', '0000:81:02.0'], plain.addresses)
        self.assertEqual(pools.pool_name(NODE, plain.key), plain.name)
        self.assertEqual({'0000:81:00.0': plain.uuid,
                          '0000:81:02.0': plain.uuid,
                          '0000:81:01.0': pools.pool_uuid(
                              NODE, pools.PoolKey.of(devs[2]))},
                         pools.pool_of_address(NODE, devs))

    def test_pool_identity_is_worked_out_once_per_pool(self):
        # A host's update groups thousands of devices into a few pools: the
        # name and UUID (a hash of the key) are worked out per pool, once.
        for func in (pools.pool_name, pools.pool_uuid):
            clear = getattr(func, 'cache_clear', None)
            if clear is not None:
                self.addCleanup(clear)
                clear()
        devs = ([fpga('0000:81:%02x.0' % i) for i in range(50)] +
                [fpga('0000:82:%02x.0' % i, ['CUSTOM_GZIP'])
                 for i in range(50)])
        real = pools.PoolKey.digest
        digested = []

        # A plain function as the class attribute, so it is a method (an
        # autospec mock lost 'self' depending on the tests run before).
        def counting_digest(key):
            digested.append(key)
            return real(key)

        with mock.patch.object(pools.PoolKey, 'digest', counting_digest):
            for _ in range(3):
                self.assertEqual(2, len(pools.pools_of(NODE, devs)))
                self.assertEqual(100, len(pools.pool_of_address(NODE,
                                                                devs)))
        self.assertEqual(2, len(digested))


class LegacyNamingTest(base.BaseTestCase):

    def test_per_device_provider_gives_its_address_back(self):
        name = pools.legacy_provider_name(NODE, '0000:81:00.0')
        self.assertEqual('compute1_0000:81:00.0', name)
        uuid = pools.legacy_provider_uuid(NODE, '0000:81:00.0')
        self.assertEqual('0000:81:00.0',
                         pools.legacy_device_address(NODE, name, uuid))

    def test_other_providers_are_not_per_device_providers(self):
        name = pools.legacy_provider_name(NODE, '0000:81:00.0')
        uuid = pools.legacy_provider_uuid(NODE, '0000:81:00.0')
        # Another node's name, or a UUID not derived from the name.
        self.assertIsNone(pools.legacy_device_address('compute2', name,
                                                      uuid))
        self.assertIsNone(pools.legacy_device_address(NODE, name,
                                                      'some-other-uuid'))
        # A pool's provider is not one either (another UUID namespace).
        key = pools.PoolKey.of(fpga('0000:81:00.0'))
        self.assertIsNone(pools.legacy_device_address(
            NODE, pools.pool_name(NODE, key), pools.pool_uuid(NODE, key)))
