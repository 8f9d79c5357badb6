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
"""The server's RequestSpec as the list of its contexts, by index."""

import uuid

import fixtures
from nova import exception as nova_exc
from nova import objects
from oslotest import base

from nova_acc.compute import attach_spec
from nova_acc import hint

objects.register_all()

SERVER = str(uuid.uuid4())


class _GivenSpec:
    """A server's RequestSpec, read and saved through Nova's object."""

    def setUp(self):
        super().setUp()
        self.saved = []
        self.spec = None
        self.useFixture(fixtures.MockPatch(
            'nova.objects.RequestSpec.get_by_instance_uuid',
            side_effect=self._get))

    def _get(self, ctxt, instance_uuid):
        if self.spec is None:
            raise nova_exc.RequestSpecNotFound(instance_uuid=instance_uuid)
        return self.spec

    def given(self, *values):
        self.spec = objects.RequestSpec(
            instance_uuid=SERVER,
            scheduler_hints={hint.HINT: list(values), 'other': ['x']}
            if values else {'other': ['x']})
        spec = self.spec
        spec.save = lambda: self.saved.append(dict(spec.scheduler_hints))


class AttachSpecTest(_GivenSpec, base.BaseTestCase):

    def test_slot_is_the_first_unused_detached_place_else_the_end(self):
        a, b = hint.detached(str(uuid.uuid4())), str(uuid.uuid4())
        self.assertEqual(0, attach_spec.slot_for([], set()))
        self.assertEqual(1, attach_spec.slot_for([b], {0}))
        self.assertEqual(0, attach_spec.slot_for([a, b], {1}))
        # A binding of index 0 (attached before the RequestSpec named
        # attached contexts) keeps its index taken.
        self.assertEqual(2, attach_spec.slot_for([a, b], {0, 1}))
        self.assertEqual(3, attach_spec.slot_for([b], {0, 2}))

    def test_attach_appends_and_keeps_other_hints(self):
        booted, ctx = str(uuid.uuid4()), str(uuid.uuid4())
        self.given(booted)
        index, old = attach_spec.record_attached(None, SERVER, ctx, {0})
        self.assertEqual((1, [booted]), (index, old))
        self.assertEqual([{hint.HINT: [booted, ctx], 'other': ['x']}],
                         self.saved)

    def test_attach_pads_up_to_indexes_bindings_already_use(self):
        ctx = str(uuid.uuid4())
        self.given()
        index, old = attach_spec.record_attached(None, SERVER, ctx, {0})
        self.assertEqual((1, []), (index, old))
        self.assertEqual([hint.detached(None), ctx],
                         self.saved[-1][hint.HINT])

    def test_detach_keeps_the_place_unless_it_is_the_last(self):
        first, last = str(uuid.uuid4()), str(uuid.uuid4())
        self.given(first, last)
        self.assertEqual([first, last], attach_spec.record_detached(
            None, SERVER, first.upper()))
        self.assertEqual([hint.detached(first), last],
                         self.saved[-1][hint.HINT])
        self.given(hint.detached(first), last)
        attach_spec.record_detached(None, SERVER, last)
        self.assertEqual({'other': ['x']}, self.saved[-1])

    def test_detach_of_an_unnamed_context_changes_nothing(self):
        self.given(str(uuid.uuid4()))
        self.assertIsNone(attach_spec.record_detached(
            None, SERVER, str(uuid.uuid4())))
        self.assertEqual([], self.saved)

    def test_unreadable_spec_fails_closed(self):
        self.assertRaises(attach_spec.SpecNotUpdated,
                          attach_spec.record_attached, None, SERVER,
                          str(uuid.uuid4()), set())
        # A server deleted meanwhile has nothing to put back.
        attach_spec.restore(None, SERVER, [])
        self.assertEqual([], self.saved)


class BootDetachSpecTest(_GivenSpec, base.BaseTestCase):
    """A boot-time context without an ID, named by its index."""

    INLINE = 'resources:FPGA=1'

    def refuse(self, context_id):
        return 'refused: %s' % context_id

    def test_the_value_keeps_its_place_and_the_others_theirs(self):
        self.given(self.INLINE, 'profile:gzip')
        value, old = attach_spec.record_boot_detached(
            None, SERVER, 0, self.refuse)
        self.assertEqual((self.INLINE, [self.INLINE, 'profile:gzip']),
                         (value, old))
        self.assertEqual([hint.detached(None), 'profile:gzip'],
                         self.saved[-1][hint.HINT])
        self.assertEqual('x', self.saved[-1]['other'][0])

    def test_the_last_value_leaves_no_place(self):
        self.given(self.INLINE, 'profile:gzip')
        attach_spec.record_boot_detached(None, SERVER, 1, self.refuse)
        self.assertEqual([self.INLINE], self.saved[-1][hint.HINT])

    def test_nothing_there_or_detached_already(self):
        self.given(hint.detached(None), self.INLINE)
        for index in (0, 2):
            self.assertRaises(attach_spec.NoSuchContext,
                              attach_spec.record_boot_detached,
                              None, SERVER, index, self.refuse)
            self.assertRaises(attach_spec.NoSuchContext,
                              attach_spec.check_boot_detachable,
                              None, SERVER, index, self.refuse)
        self.assertEqual([], self.saved)

    def test_a_value_with_an_id_is_refused_in_any_spelling(self):
        ctx = str(uuid.uuid4())
        self.given(self.INLINE, ctx.upper())
        error = self.assertRaises(attach_spec.NotDetachable,
                                  attach_spec.record_boot_detached,
                                  None, SERVER, 1, self.refuse)
        self.assertEqual('refused: %s' % ctx, str(error))
        self.assertNotIsInstance(error, attach_spec.NoSuchContext)
        self.assertEqual([], self.saved)

    def test_check_changes_nothing(self):
        self.given(self.INLINE)
        self.assertEqual(self.INLINE, attach_spec.check_boot_detachable(
            None, SERVER, 0, self.refuse))
        self.assertEqual([], self.saved)
