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

import string

import hypothesis
from hypothesis import strategies as st
import os_resource_classes
import os_traits
from oslotest import base

import os_acc
from os_acc import exception
from os_acc.internal import grammar

G = os_acc.DeviceContextGroup
MAX_AMOUNT = grammar.MAX_AMOUNT
FUZZ = hypothesis.settings(max_examples=500, deadline=None, database=None)


def ctx(*groups):
    return os_acc.DeviceContext(groups=list(groups))


GOOD_SPECS = [
    ('resources:FPGA=1', ctx(G(resources={'FPGA': 1}))),
    ('resources:FPGA=1,trait:CUSTOM_GZIP=required,'
     'trait:CUSTOM_SLOW=forbidden,accel:bitstream_id=abc',
     ctx(G(resources={'FPGA': 1}, required_traits={'CUSTOM_GZIP'},
           forbidden_traits={'CUSTOM_SLOW'},
           config={'bitstream_id': 'abc'}))),
    # Blanks around tokens, keys and values are not part of them.
    (' resources:VGPU = 2 ,\ttrait:HW_GPU_API_VULKAN=required ; '
     'resources:CUSTOM_X_1=2048,resources:PGPU=1 ',
     ctx(G(resources={'VGPU': 2},
           required_traits={'HW_GPU_API_VULKAN'}),
         G(resources={'CUSTOM_X_1': MAX_AMOUNT, 'PGPU': 1}))),
    ('resources:FPGA=007', ctx(G(resources={'FPGA': 7}))),
    # Values may hold blanks, colons, slashes and non-ASCII letters.
    ('resources:FPGA=1,accel:func.v-2_x=gzip v2:/lib/ü',
     ctx(G(resources={'FPGA': 1}, config={'func.v-2_x': 'gzip v2:/lib/ü'}))),
    (';'.join(['resources:FPGA=1'] * grammar.MAX_GROUPS),
     ctx(*[G(resources={'FPGA': 1})] * grammar.MAX_GROUPS)),
]

# (spec, text the error message must contain)
BAD_SPECS = [
    ('', "''"),
    (' \t ', "' \\t '"),
    ('resources:FPGA=0', "'resources:FPGA=0'"),
    ('resources:FPGA=-1', "'resources:FPGA=-1'"),
    ('resources:FPGA=+1', "'resources:FPGA=+1'"),
    ('resources:FPGA=1.5', "'resources:FPGA=1.5'"),
    ('resources:FPGA=0x10', "'resources:FPGA=0x10'"),
    ('resources:FPGA=\u0663', "'resources:FPGA=\u0663'"),
    ('resources:FPGA=', "'resources:FPGA='"),
    ('resources:FPGA=2049', 'MAX_AMOUNT'),
    ('resources:FPGA=2049', "'resources:FPGA=2049'"),
    ('resources:fpga=1', "'resources:fpga=1'"),
    ('resources:CUSTOM_=1', "'CUSTOM_'"),
    ('resources:NO_SUCH_CLASS=1', "'NO_SUCH_CLASS'"),
    ('resources:=1', "'resources:=1'"),
    ('resources:FPGA=1,trait:CUSTOM_X=maybe', "'trait:CUSTOM_X=maybe'"),
    ('resources:FPGA=1,trait:CUSTOM_X=Required', "'Required'"),
    ('resources:FPGA=1,trait:custom_x=required', "'custom_x'"),
    ('resources:FPGA=1,trait:NO_SUCH_TRAIT=required', "'NO_SUCH_TRAIT'"),
    ('resources:FPGA=1,trait:CUSTOM_X=required,trait:CUSTOM_X=forbidden',
     "'CUSTOM_X' is both required and forbidden"),
    ('resources:FPGA=1,resources:FPGA=2', "Duplicate key 'resources:FPGA'"),
    ('resources:FPGA=1,trait:CUSTOM_X=required, trait:CUSTOM_X=required',
     "Duplicate key 'trait:CUSTOM_X'"),
    ('resources:FPGA=1,accel:a=1,accel:a=2', "Duplicate key 'accel:a'"),
    ('resources:FPGA=1,resource:FPGA=1', "'resource:FPGA'"),
    ('resources:FPGA=1,FPGA=1', "'FPGA'"),
    ('resources:FPGA=1;;resources:FPGA=1',
     "'resources:FPGA=1;;resources:FPGA=1'"),
    ('resources:FPGA=1;', "'resources:FPGA=1;'"),
    (';resources:FPGA=1', "';resources:FPGA=1'"),
    ('resources:FPGA=1,', "'resources:FPGA=1,'"),
    ('resources:FPGA=1,,trait:CUSTOM_X=required',
     "'resources:FPGA=1,,trait:CUSTOM_X=required'"),
    ('resources:FPGA', "'resources:FPGA'"),
    ('resources:FPGA=1,trait:CUSTOM_X', "'trait:CUSTOM_X'"),
    ('trait:CUSTOM_X=required', "'trait:CUSTOM_X=required'"),
    ('resources:FPGA=1;accel:x=y', "'accel:x=y'"),
    ('resources:FPGA=1,accel:=x', "'accel:=x'"),
    ('resources:FPGA=1,accel:a b=x', "'accel:a b=x'"),
    ('resources:FPGA=1,accel:x=', "'accel:x='"),
    ('resources:FPGA=1,accel:x=a=b', "'accel:x=a=b'"),
    ('resources:FPGA=1,accel:x=\x07', "'accel:x=\\x07'"),
    ('resources:FPGA=1,accel:x=a\u200bb', "'accel:x=a\\u200bb'"),
    ('resources:FPGA=1,accel:x=' + 'v' * 256,
     "'accel:x=%s'" % ('v' * 256)),
    # A key name longer than 64 characters would not fit the system
    # metadata key that carries it to the compute.
    ('resources:FPGA=1,accel:%s=v' % ('k' * 65),
     "'accel:%s=v' is longer than 64" % ('k' * 65)),
    (';'.join(['resources:FPGA=1'] * (grammar.MAX_GROUPS + 1)),
     'MAX_GROUPS'),
    ('resources:CUSTOM_%s=1' % ('A' * 4080), 'MAX_SPEC_LENGTH'),
    # Standard classes that are no device's: a compute node's own, and
    # Neutron's. The token is named.
    ('resources:VCPU=1', "'resources:VCPU=1' is not a device class"),
    ('resources:PCPU=2', "'resources:PCPU=2' is not a device class"),
    ('resources:FPGA=1,resources:MEMORY_MB=512',
     "'resources:MEMORY_MB=512' is not a device class"),
    ('resources:FPGA=1;resources:DISK_GB=1',
     "'resources:DISK_GB=1' is not a device class"),
    ('resources:NET_BW_EGR_KILOBIT_PER_SEC=1000',
     "'resources:NET_BW_EGR_KILOBIT_PER_SEC=1000' is not a device class"),
    ('resources:NUMA_CORE=1', "'resources:NUMA_CORE=1'"),
    ('resources:IPV4_ADDRESS=1', "'resources:IPV4_ADDRESS=1'"),
    ('resources:MEM_ENCRYPTION_CONTEXT=1',
     "'resources:MEM_ENCRYPTION_CONTEXT=1'"),
    ('resources:VGPU_DISPLAY_HEAD=1', "'resources:VGPU_DISPLAY_HEAD=1'"),
]

#: Standard classes a device context may ask for (besides CUSTOM_ ones).
DEVICE_CLASSES = ('FPGA', 'PGPU', 'VGPU', 'PCI_DEVICE', 'SRIOV_NET_VF')


class TestParseString(base.BaseTestCase):

    def test_good(self):
        for spec, expected in GOOD_SPECS:
            with self.subTest(spec=spec):
                self.assertEqual(expected, os_acc.parse_device_context(spec))

    def test_bad(self):
        for spec, needle in BAD_SPECS:
            with self.subTest(spec=spec):
                exc = self.assertRaises(exception.InvalidDeviceContext,
                                        os_acc.parse_device_context, spec)
                self.assertIn(needle, str(exc))
                self.assertIsInstance(exc, ValueError)

    def test_length_limit_is_inclusive(self):
        head = 'resources:CUSTOM_'
        name = 'A' * (grammar.MAX_SPEC_LENGTH - len(head) - len('=1'))
        spec = head + name + '=1'
        self.assertEqual(grammar.MAX_SPEC_LENGTH, len(spec))
        self.assertEqual(ctx(G(resources={'CUSTOM_' + name: 1})),
                         os_acc.parse_device_context(spec))
        self.assertRaises(exception.InvalidDeviceContext,
                          os_acc.parse_device_context, ' ' + spec)

    def test_device_classes(self):
        for rc in DEVICE_CLASSES + ('CUSTOM_QAT_VF',):
            with self.subTest(rc=rc):
                self.assertEqual(
                    ctx(G(resources={rc: 2})),
                    os_acc.parse_device_context('resources:%s=2' % rc))

    def test_every_other_standard_class_is_refused(self):
        # Fail closed: a class os-resource-classes adds later is no
        # device's until os_acc says so.
        others = set(os_resource_classes.STANDARDS) - set(DEVICE_CLASSES)
        self.assertTrue({'VCPU', 'PCPU', 'MEMORY_MB', 'DISK_GB'} <= others)
        for rc in sorted(others):
            with self.subTest(rc=rc):
                exc = self.assertRaises(exception.InvalidDeviceContext,
                                        os_acc.parse_device_context,
                                        'resources:%s=1' % rc)
                self.assertIn('%r is not a device class' % (
                    'resources:%s=1' % rc), str(exc))

    def test_not_str_or_list(self):
        for spec in (None, 42, b'resources:FPGA=1', ('resources:FPGA=1',),
                     {'resources:FPGA': '1'}):
            with self.subTest(spec=spec):
                exc = self.assertRaises(exception.InvalidDeviceContext,
                                        os_acc.parse_device_context, spec)
                self.assertIn(type(spec).__name__, str(exc))


class TestParseList(base.BaseTestCase):

    def test_cyborg_device_profile_groups(self):
        groups = [{'resources:FPGA': '1',
                   'trait:CUSTOM_GZIP': 'required',
                   'accel:bitstream_id': 'abc'},
                  {'resources:VGPU': 2}]
        self.assertEqual(
            os_acc.parse_device_context(
                'resources:FPGA=1,trait:CUSTOM_GZIP=required,'
                'accel:bitstream_id=abc;resources:VGPU=2'),
            os_acc.parse_device_context(groups))

    def test_bad(self):
        huge = 10 ** 5000
        cases = [
            ([], '[]'),
            ([{}], 'Request group 1 is empty'),
            ([{'resources:FPGA': 1}, {}], 'Request group 2 is empty'),
            (['resources:FPGA=1'], "'resources:FPGA=1'"),
            ([None], 'None'),
            ([{1: '1'}], '1'),
            ([{'resources:FPGA': True}], 'True'),
            ([{'resources:FPGA': 1.0}], '1.0'),
            ([{'resources:FPGA': None}], 'None'),
            ([{'resources:FPGA': 0}], "'resources:FPGA'"),
            ([{'resources:FPGA': -3}], "'resources:FPGA'"),
            ([{'resources:FPGA': huge}], 'MAX_AMOUNT'),
            ([{'resources:FPGA': 1, 'accel:x': huge}], '<int>'),
            ([{'resources:FPGA': 1, huge: '1'}], '<int>'),
            ([huge], '<int>'),
            ([{'resources:FPGA': '1', 'trait:CUSTOM_X': 1}],
             "'trait:CUSTOM_X'"),
            ([{'resources:FPGA': '1', 'accel:x': b'y'}], "b'y'"),
            ([{'resources:FPGA': '1', ' resources:FPGA': '2'}],
             "Duplicate key 'resources:FPGA'"),
            ([{'resources:FPGA': 'one'}], "'resources:FPGA=one'"),
            ([{'resources:FPGA': 1}] * (grammar.MAX_GROUPS + 1),
             'MAX_GROUPS'),
            ([{'resources:FPGA': 1, 'accel:x': 'v' * 5000}],
             'MAX_SPEC_LENGTH'),
            # A Cyborg device profile group asking for a compute node's
            # resources.
            ([{'resources:VCPU': 4}], "'resources:VCPU=4' is not a device"),
            ([{'resources:FPGA': '1', 'resources:MEMORY_MB': '512'}],
             "'resources:MEMORY_MB=512' is not a device"),
        ]
        for index, (spec, needle) in enumerate(cases):
            with self.subTest(case=index):
                exc = self.assertRaises(exception.InvalidDeviceContext,
                                        os_acc.parse_device_context, spec)
                self.assertIn(needle, str(exc))


class TestToSpec(base.BaseTestCase):

    def test_canonical_order(self):
        context = ctx(
            G(resources={'VGPU': 1, 'FPGA': 2},
              required_traits={'CUSTOM_Z', 'CUSTOM_B'},
              forbidden_traits={'CUSTOM_M'},
              config={'z': '1', 'a': '2'}),
            G(resources={'PGPU': 1}))
        self.assertEqual(
            'resources:FPGA=2,resources:VGPU=1,trait:CUSTOM_B=required,'
            'trait:CUSTOM_M=forbidden,trait:CUSTOM_Z=required,'
            'accel:a=2,accel:z=1;resources:PGPU=1',
            context.to_spec())

    def test_invalid_context(self):
        cases = [
            (ctx(), 'no request groups'),
            (ctx(G()), 'no resources'),
            (ctx(G(resources={'FPGA': 1}, required_traits={'CUSTOM_A'},
                   forbidden_traits={'CUSTOM_A'})),
             "'CUSTOM_A' is both required and forbidden"),
            (ctx(G(resources={'FPGA': True})), "'resources:FPGA'"),
            (ctx(G(resources={'FPGA': 0})), "'resources:FPGA'"),
            (ctx(G(resources={'fpga': 1})), "'fpga'"),
            (ctx(G(resources={1: 1})), '1'),
            (ctx(G(resources={'FPGA': 1}, required_traits={'bad'})),
             "'bad'"),
            (ctx(G(resources={'FPGA': 1}, config={'x': ' padded'})),
             "' padded'"),
            (ctx(G(resources={'FPGA': 1}, config={'x': 'a;b'})), "'a;b'"),
            (ctx(G(resources={'FPGA': 1}, config={'x': 1})), "'accel:x'"),
            (ctx(*[G(resources={'FPGA': 1})] * (grammar.MAX_GROUPS + 1)),
             'MAX_GROUPS'),
            # What the parser refuses is never written either.
            (ctx(G(resources={'FPGA': 1, 'DISK_GB': 1})),
             "'resources:DISK_GB' is not a device class"),
        ]
        for index, (context, needle) in enumerate(cases):
            with self.subTest(case=index):
                exc = self.assertRaises(exception.InvalidDeviceContext,
                                        context.to_spec)
                self.assertIn(needle, str(exc))


# --- Property-based tests -------------------------------------------------

_CUSTOM = st.text(string.ascii_uppercase + string.digits + '_',
                  min_size=1, max_size=12).map(lambda s: 'CUSTOM_' + s)
_RESOURCE_CLASS = st.one_of(st.sampled_from(DEVICE_CLASSES), _CUSTOM)
_TRAIT = st.one_of(st.sampled_from(sorted(os_traits.get_traits())), _CUSTOM)
_ACCEL_NAME = st.text(string.ascii_letters + string.digits + '_.-',
                      min_size=1, max_size=16)
# Python's isprintable(): no "Other" nor "Separator" character but ' '.
_ACCEL_VALUE = st.text(
    st.characters(exclude_categories=('C', 'Z'), exclude_characters=',;=',
                  include_characters=' '),
    min_size=1, max_size=20).filter(lambda v: v == v.strip())


@st.composite
def _groups(draw):
    traits = draw(st.lists(_TRAIT, unique=True, max_size=4))
    split = draw(st.integers(0, len(traits)))
    return G(
        resources=draw(st.dictionaries(
            _RESOURCE_CLASS, st.integers(1, MAX_AMOUNT),
            min_size=1, max_size=3)),
        required_traits=set(traits[:split]),
        forbidden_traits=set(traits[split:]),
        config=draw(st.dictionaries(_ACCEL_NAME, _ACCEL_VALUE, max_size=3)))


_CONTEXTS = st.lists(_groups(), min_size=1, max_size=3).map(
    lambda groups: os_acc.DeviceContext(groups=groups))

# Text built from the grammar: valid tokens mixed with tokens assembled from
# good and bad pieces, so that many inputs get past the first checks (and
# some parse) and the deeper ones are exercised too.
_FRAGMENTS = st.sampled_from([
    'resources:', 'trait:', 'accel:', 'FPGA', 'VGPU', 'CUSTOM_', 'X', '_',
    'HW_CPU_X86_AVX2', '=', ',', ';', ' ', '\t', '\n', '0', '1', '2048',
    '2049', '+', '-', 'required', 'forbidden', 'a', '.', ':', '\x00',
    '\u0663', 'é', '\u200b',
])
_JUNK = st.lists(_FRAGMENTS, max_size=6).map(''.join)
_VALID_TOKEN = st.sampled_from([
    'resources:FPGA=1', 'resources:VGPU=2048', 'resources:CUSTOM_A_1=3',
    'trait:CUSTOM_A=required', 'trait:CUSTOM_A=forbidden',
    'trait:HW_CPU_X86_AVX2=required', 'accel:k=v', 'accel:x.y=a b:c',
])
_MIXED_TOKEN = st.tuples(
    st.sampled_from(['resources:', 'trait:', 'accel:', 'resource:', '',
                     ' trait: ']) | _JUNK,
    st.sampled_from(['FPGA', 'CUSTOM_A', 'HW_CPU_X86_AVX2', 'custom_a',
                     'k', '', 'a b']) | _JUNK,
    st.sampled_from(['=', '', '==', ' = ']),
    st.sampled_from(['1', '2048', '2049', '0', '007', 'required',
                     'forbidden', 'v', '', ' 7 ', '-1', '+1']) | _JUNK,
).map(''.join)
_GRAMMAR_TEXT = st.lists(
    st.lists(_VALID_TOKEN | _MIXED_TOKEN, min_size=1, max_size=5).map(
        ','.join),
    min_size=1, max_size=4).map(';'.join)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (st.lists(children, max_size=3) |
                      st.dictionaries(st.text(), children, max_size=3)),
    max_leaves=8)
_GROUP_DICTS = st.lists(
    st.dictionaries(
        st.sampled_from(['resources:FPGA', ' resources:VGPU ',
                         'trait:CUSTOM_A', 'accel:x', 'bogus']) |
        _JUNK | st.integers(),
        st.sampled_from(['1', 'required', 'forbidden', 'v']) |
        st.integers(-1, MAX_AMOUNT + 1) | _JUNK | _JSON,
        min_size=1, max_size=4) | _JSON,
    min_size=1, max_size=4)


class TestProperties(base.BaseTestCase):

    def _parse_or_reject(self, spec):
        """Parse; only InvalidDeviceContext may escape."""
        try:
            context = os_acc.parse_device_context(spec)
        except exception.InvalidDeviceContext:
            return
        # Whatever is accepted must survive a round trip.
        self.assertEqual(context,
                         os_acc.parse_device_context(context.to_spec()))

    @FUZZ
    @hypothesis.given(_CONTEXTS)
    def test_round_trip(self, context):
        spec = context.to_spec()
        parsed = os_acc.parse_device_context(spec)
        self.assertEqual(context, parsed)
        self.assertEqual(spec, parsed.to_spec())
        as_dicts = [dict(token.split('=', 1) for token in group.split(','))
                    for group in spec.split(';')]
        self.assertEqual(context, os_acc.parse_device_context(as_dicts))

    @FUZZ
    @hypothesis.given(st.text(max_size=200))
    def test_fuzz_any_text(self, spec):
        self._parse_or_reject(spec)

    @FUZZ
    @hypothesis.given(_GRAMMAR_TEXT)
    def test_fuzz_grammar_text(self, spec):
        self._parse_or_reject(spec)

    @FUZZ
    @hypothesis.given(st.one_of(_GROUP_DICTS, _JSON))
    def test_fuzz_any_structure(self, spec):
        self._parse_or_reject(spec)
