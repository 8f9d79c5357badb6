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
"""nova_acc.conf: reading [nova_acc] device_spec."""

from oslo_config import fixture as config_fixture
from oslotest import base

from nova_acc import conf
from nova_acc import exception


class DeviceSpecConfigTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(conf.CONF))

    def test_json_lines(self):
        self.conf.config(group='nova_acc', device_spec=[
            '{"vendor_id": "1172", "resource_class": "FPGA"}'])
        self.assertEqual([{'vendor_id': '1172', 'resource_class': 'FPGA'}],
                         conf.device_specs())

    def test_bad_json_names_the_line(self):
        self.conf.config(group='nova_acc', device_spec=['{vendor_id: 1}'])
        e = self.assertRaises(exception.InvalidDeviceSpecConfig,
                              conf.device_specs)
        self.assertIn("[nova_acc] device_spec '{vendor_id: 1}' is not valid "
                      "JSON", str(e))

    def test_not_an_object(self):
        self.conf.config(group='nova_acc', device_spec=['["a"]'])
        self.assertRaises(exception.InvalidDeviceSpecConfig,
                          conf.device_specs)
