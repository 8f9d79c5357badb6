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
"""validation: each check on its own, what it accepts and returns."""

from oslo_utils import uuidutils
from oslotest import base

from nova_acc.api import exception
from nova_acc.api import validation


class SpecTestCase(base.BaseTestCase):

    def test_accepted_as_given(self):
        for spec in ('resources:FPGA=1',
                     'resources:FPGA=2,trait:CUSTOM_X=forbidden;'
                     'resources:CUSTOM_ACC=1,accel:mode=fast',
                     'profile:gzip'):
            self.assertEqual(spec, validation.spec(spec))

    def test_refused_naming_the_token(self):
        error = self.assertRaises(exception.BadRequest, validation.spec,
                                  'resources:FPGA=1,trait:lower=required')
        self.assertIn('lower', error.message)


class ConfigTestCase(base.BaseTestCase):

    def test_accepted(self):
        config = {'accel:bitstream_id': 'abc', 'accel:mode.x-1': 'v w'}
        self.assertEqual(config, validation.config(config))
        self.assertEqual({}, validation.config({}))

    def test_blank_around_a_value_is_refused(self):
        # It would not survive the grammar's round trip.
        self.assertRaises(exception.BadRequest, validation.config,
                          {'accel:x': ' v'})


class DevicesTestCase(base.BaseTestCase):

    def test_addresses_are_canonical(self):
        mdev = uuidutils.generate_uuid()
        self.assertEqual(
            [{'pool': 'p', 'address': '0000:81:00.1'},
             {'pool': 'p', 'mdev_uuid': mdev}],
            validation.devices([{'pool': 'p', 'address': '0000:81:00.1'},
                                {'pool': 'p', 'mdev_uuid': mdev.upper()}]))

    def test_too_many(self):
        device = {'pool': 'p', 'address': '0000:81:00.1'}
        self.assertRaises(exception.BadRequest, validation.devices,
                          [device] * (validation.MAX_DEVICES + 1))


class QueryTestCase(base.BaseTestCase):

    def test_limit(self):
        self.assertEqual(5, validation.query_limit({'limit': '5'}))
        self.assertIsNone(validation.query_limit({}))
        for value in ('0', '-1', '1.5', '١', '10000', ''):
            self.assertRaises(exception.BadRequest, validation.query_limit,
                              {'limit': value})

    def test_bool(self):
        self.assertTrue(validation.query_bool({'a': 'yes'}, 'a'))
        self.assertFalse(validation.query_bool({'a': 'false'}, 'a'))
        self.assertFalse(validation.query_bool({}, 'a'))

    def test_context_id_is_canonical(self):
        ctx = uuidutils.generate_uuid()
        self.assertEqual(ctx, validation.context_id(
            ctx.upper().replace('-', '')))
        self.assertIsNone(validation.context_id('../x'))


class BootContextPathTestCase(base.BaseTestCase):

    def test_context_index(self):
        self.assertEqual(0, validation.context_index('0'))
        self.assertEqual(9999, validation.context_index('9999'))
        for bad in ('', '-1', '+1', '1.0', ' 1', '10000', '\u0661', 'x'):
            self.assertRaises(exception.BadRequest,
                              validation.context_index, bad)

    def test_path_uuid_is_canonical_and_not_echoed(self):
        found = uuidutils.generate_uuid()
        self.assertEqual(found, validation.path_uuid(found.upper(),
                                                     'Server'))
        error = self.assertRaises(exception.NotFound, validation.path_uuid,
                                  '<script>', 'Server')
        self.assertNotIn('<script>', error.message)
