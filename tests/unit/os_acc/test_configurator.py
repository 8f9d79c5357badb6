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
"""Config data: what a device_spec entry allows, and who applies it."""

from oslotest import base

import os_acc
from os_acc import configurator
from os_acc import exception

UUID = '9d1c3f0a-6c1e-4f0b-8a52-2b3d8d7a1c11'
FPGA = os_acc.Device(address='0000:3b:00.0', vendor_id='10ee',
                     product_id='5000')
GPU = os_acc.Device(address='0000:65:00.0', vendor_id='10de',
                    product_id='2235', mdev_types={'nvidia-35': 4})
CONFIGURABLE = {'vendor_id': '10ee', 'resource_class': 'FPGA',
                'configurator': 'fpga_bitstream',
                'config': {'bitstream_id': 'uuid',
                           'mode': ['fast', 'safe'], 'label': 'string'}}


class DeviceSpecConfigTest(base.BaseTestCase):

    def test_allowed_keys_become_traits_of_the_devices(self):
        [device] = os_acc.select_devices([FPGA], [CONFIGURABLE])
        self.assertEqual({'CUSTOM_ACC_CONFIG_BITSTREAM_ID',
                          'CUSTOM_ACC_CONFIG_MODE',
                          'CUSTOM_ACC_CONFIG_LABEL'}, device.traits)

    def test_entry_without_config_adds_no_trait(self):
        [device] = os_acc.select_devices(
            [FPGA], [{'vendor_id': '10ee', 'traits': ['CUSTOM_X']}])
        self.assertEqual({'CUSTOM_X'}, device.traits)
        self.assertIsNone(os_acc.config_rules_for(device, [
            {'vendor_id': '10ee', 'traits': ['CUSTOM_X']}]))

    def test_config_trait_maps_key_characters(self):
        self.assertEqual('CUSTOM_ACC_CONFIG_A_B_C_1',
                         os_acc.config_trait('a.b-c_1'))

    def test_rules_are_those_of_the_entry_that_selected_the_device(self):
        specs = [dict(CONFIGURABLE, address='0000:3b:00.0'),
                 {'vendor_id': '10ee', 'configurator': 'other',
                  'config': {'mode': ['x']}},
                 {'vendor_id': '10de', 'mdev_type': 'nvidia-35',
                  'configurator': 'vgpu_mode', 'config': {'mode': ['a']}}]
        devices = os_acc.select_devices([FPGA, GPU], specs)
        rules = {d.address: os_acc.config_rules_for(d, specs)
                 for d in devices}
        self.assertEqual('fpga_bitstream', rules[FPGA.address].configurator)
        self.assertEqual('vgpu_mode', rules[GPU.address].configurator)

    def test_check_accepts_what_the_entry_allows(self):
        rules = os_acc.config_rules_for(FPGA, [CONFIGURABLE])
        rules.check({'bitstream_id': UUID, 'mode': 'safe',
                     'label': 'anything-the-grammar-takes'})
        rules.check({})

    def test_check_names_the_key_and_what_is_allowed(self):
        rules = os_acc.config_rules_for(FPGA, [CONFIGURABLE])
        cases = {
            ('clock', '1'): 'accel:clock is not allowed on this device; '
                            'allowed: accel:bitstream_id, accel:label, '
                            'accel:mode',
            ('mode', 'turbo'): 'accel:mode=turbo is not allowed on this '
                               'device; allowed values: fast, safe',
            ('bitstream_id', UUID.upper()): 'must be a UUID',
            ('bitstream_id', '../../etc/passwd'): 'must be a UUID',
        }
        for (key, value), message in cases.items():
            e = self.assertRaises(exception.InvalidConfig, rules.check,
                                  {key: value})
            self.assertIn(message, str(e))
            self.assertIsInstance(e, ValueError)

    def test_bad_entries_refused_naming_the_key(self):
        bad = [
            ({'configurator': 'fpga_bitstream'}, 'needs both'),
            ({'config': {'a': 'uuid'}}, 'needs both'),
            ({'configurator': '../x', 'config': {'a': 'uuid'}},
             "'configurator'"),
            ({'configurator': 'x', 'config': {}}, "'config'"),
            ({'configurator': 'x', 'config': {'a b': 'uuid'}}, "'config'"),
            ({'configurator': 'x', 'config': {'a': 'int'}}, "'config'"),
            ({'configurator': 'x', 'config': {'a': []}}, "'config'"),
            ({'configurator': 'x', 'config': {'a': ['x,y']}}, "'config'"),
            ({'configurator': 'x', 'config': {'a': [1]}}, "'config'"),
        ]
        for extra, message in bad:
            e = self.assertRaises(
                exception.InvalidDeviceSpec, os_acc.select_devices, [FPGA],
                [dict({'vendor_id': '10ee'}, **extra)])
            self.assertIn(message, str(e))


class RecordingConfigurator(configurator.ConfiguratorBase):
    def __init__(self):
        self.calls = []

    def configure(self, request):
        self.calls.append(('configure', request.address, dict(request.config)))

    def unconfigure(self, address):
        self.calls.append(('unconfigure', address))


class ConfigureTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.recorder = RecordingConfigurator()
        configurator._LOADED['recording'] = self.recorder
        self.addCleanup(configurator._LOADED.pop, 'recording', None)
        self.rules = os_acc.ConfigRules('recording',
                                        {'mode': frozenset({'a'})})

    def request(self, config):
        return os_acc.ConfigureRequest(address=FPGA.address, config=config,
                                       context_id='c', instance_uuid='i')

    def test_configure_checks_before_it_calls_the_configurator(self):
        self.assertRaises(exception.InvalidConfig, os_acc.configure,
                          self.rules, self.request({'mode': 'b'}))
        self.assertEqual([], self.recorder.calls)
        os_acc.configure(self.rules, self.request({'mode': 'a'}))
        os_acc.unconfigure(self.rules, FPGA.address)
        self.assertEqual([('configure', FPGA.address, {'mode': 'a'}),
                          ('unconfigure', FPGA.address)],
                         self.recorder.calls)

    def test_missing_configurator_names_it(self):
        e = self.assertRaises(
            exception.ConfiguratorNotFound, os_acc.configure,
            os_acc.ConfigRules('no_such_thing', {'mode': 'string'}),
            self.request({'mode': 'a'}))
        self.assertIn("'no_such_thing'", str(e))

    def test_fpga_bitstream_is_registered(self):
        # setup.cfg's entry point, as an installed nova-acc has it.
        from nova_acc.compute import fpga
        self.assertIsInstance(configurator.load('fpga_bitstream'),
                              fpga.BitstreamConfigurator)
