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
"""os_acc.PciAddress: the one parser and formatter of PCI addresses."""

import dataclasses

import hypothesis
from hypothesis import strategies as st
from oslotest import base

import os_acc
from os_acc import exception

A = os_acc.PciAddress
_ADDRESSES = st.builds(A, st.integers(0, 0xffff), st.integers(0, 0xff),
                       st.integers(0, 0x1f), st.integers(0, 7))


class PciAddressTest(base.BaseTestCase):

    def test_str_is_sysfs_form(self):
        self.assertEqual('0000:3b:02.1', str(A(0, 0x3b, 2, 1)))
        self.assertEqual('ffff:ff:1f.7', str(A(0xffff, 0xff, 0x1f, 7)))

    def test_parse(self):
        self.assertEqual(A(0, 0x3b, 2, 1), A.parse('0000:3b:02.1'))
        self.assertEqual(A(0xabcd, 0xef, 0x1e, 7), A.parse('ABCD:EF:1E.7'))

    def test_parse_invalid(self):
        for text in ('3b:02.1', '0000:3b:02', '00000:3b:02.1',
                     '0000:3b:20.0', '0000:3b:02.8', '0000:3b:2.1',
                     '0000:3b:02.1\n', ' 0000:3b:02.1', '0000-3b-02.1',
                     'zzzz:3b:02.1', '0000:3b:02.1/..', '', None, 42,
                     b'0000:3b:02.1'):
            with self.subTest(text=text):
                exc = self.assertRaises(exception.InvalidDeviceAddress,
                                        A.parse, text)
                self.assertIsInstance(exc, ValueError)
                self.assertIn(repr(text), str(exc))

    def test_fields_are_range_checked(self):
        for fields in ((0x10000, 0, 0, 0), (0, 0x100, 0, 0),
                       (0, 0, 0x20, 0), (0, 0, 0, 8), (-1, 0, 0, 0),
                       ('0', 0, 0, 0), (0, True, 0, 0), (0, 0, 0, 1.0)):
            with self.subTest(fields=fields):
                self.assertRaises(exception.InvalidDeviceAddress,
                                  A, *fields)

    def test_immutable_hashable_ordered(self):
        a = A.parse('0000:3b:02.1')
        self.assertRaises(dataclasses.FrozenInstanceError,
                          setattr, a, 'bus', 1)
        self.assertEqual({a}, {A.parse('0000:3B:02.1')})
        self.assertLess(A.parse('0000:3b:02.1'), A.parse('0000:3b:10.0'))
        self.assertLess(A.parse('0000:ff:1f.7'), A.parse('0001:00:00.0'))

    def test_libvirt_attrs(self):
        attrs = {'domain': '0x0000', 'bus': '0x3b', 'slot': '0x02',
                 'function': '0x1'}
        a = A.from_libvirt_attrs(dict(attrs, type='pci'))
        self.assertEqual(A(0, 0x3b, 2, 1), a)
        self.assertEqual(attrs, a.libvirt_attrs())

    def test_libvirt_attrs_invalid(self):
        good = {'domain': '0x0000', 'bus': '0x3b', 'slot': '0x02',
                'function': '0x1'}
        for key, value, needle in (
                ('slot', None, 'slot'), ('bus', '', "''"),
                ('bus', '0x3g', "'0x3g'"), ('bus', ' 0x3b', "' 0x3b'"),
                ('bus', '0x_3b', "'0x_3b'"), ('bus', '-0x3b', "'-0x3b'"),
                ('domain', '0x10000', "'0x10000'"),
                ('slot', '0x20', 'slot'), ('function', '0x8', 'function')):
            attrs = dict(good, **{key: value})
            if value is None:
                del attrs[key]
            with self.subTest(attrs=attrs):
                exc = self.assertRaises(exception.InvalidDeviceAddress,
                                        A.from_libvirt_attrs, attrs)
                self.assertIn(needle, str(exc))

    def test_hex_fields(self):
        # As Nova's pci_utils.parse_address and Cyborg attach handles.
        a = A.from_hex_fields('0000', '3b', '02', '1')
        self.assertEqual(A(0, 0x3b, 2, 1), a)
        self.assertEqual(('0000', '3b', '02', '1'), a.hex_fields())
        self.assertEqual(a, A.from_hex_fields('0', '3B', '2', '0x1'))
        self.assertRaises(exception.InvalidDeviceAddress,
                          A.from_hex_fields, '0000', 59, '02', '1')

    @hypothesis.settings(max_examples=200, deadline=None, database=None)
    @hypothesis.given(_ADDRESSES)
    def test_round_trips(self, a):
        self.assertEqual(a, A.parse(str(a)))
        self.assertEqual(a, A.parse(str(a).upper()))
        self.assertEqual(a, A.from_libvirt_attrs(a.libvirt_attrs()))
        self.assertEqual(a, A.from_hex_fields(*a.hex_fields()))
        self.assertEqual(
            ('%04x:%02x:%02x.%x' % (a.domain, a.bus, a.slot, a.function)),
            str(a))

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.text(alphabet='0123456789abcdefABCDEFxX:. \n-',
                              max_size=16))
    def test_parse_accepts_only_its_own_output(self, text):
        try:
            a = A.parse(text)
        except exception.InvalidDeviceAddress:
            return
        self.assertEqual(text.lower(), str(a))
