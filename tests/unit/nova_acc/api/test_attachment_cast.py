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
"""The attach cast on nova-acc-api's own configuration, as the service
sends it.

The functional harness casts on Nova's transport (the global CONF); the
service loads a ConfigOpts of its own (``nova_acc.api.conf.load``), on
which oslo.messaging 18.3 found no ``[oslo_messaging_tracing]`` and every
cast raised NoSuchOptError (the real cloud answered every attach 409), and
whose default exchange was oslo.messaging's, not Nova's (the cast went
nowhere: the context stayed attaching).
Here the cast goes over oslo.messaging's in-memory ``fake:/`` transport
to an RPC server on the compute topic, as nova-compute's serves it.
"""

import os
import tempfile
import threading

from oslo_context import context as oslo_context
import oslo_messaging as messaging
from oslotest import base

from nova_acc.api import attachment
from nova_acc.api import conf as api_conf

CONF_FILE = '''\
[DEFAULT]
transport_url = fake:/
[api]
auth_strategy = noauth2
[nova]
auth_type = password
auth_url = http://127.0.0.1:1/v3
username = nova-acc-api
password = secret
project_name = service
user_domain_name = Default
project_domain_name = Default
'''


class Endpoint:
    """What nova-compute's endpoint receives (namespace, version)."""

    target = messaging.Target(namespace=attachment.NAMESPACE,
                              version=attachment.RPC_VERSION)

    def __init__(self):
        self.received = []
        self.done = threading.Event()

    def attach_device_context(self, ctxt, context_id, server_id):
        self.received.append((ctxt['project_id'], context_id, server_id))
        self.done.set()


class CastTest(base.BaseTestCase):

    def test_attach_cast_reaches_the_compute_topic(self):
        fd, path = tempfile.mkstemp(suffix='.conf')
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, 'w') as f:
            f.write(CONF_FILE)
        conf = api_conf.load(default_config_files=[path])
        self.addCleanup(conf.reset)
        attachments = attachment.from_conf(conf)
        transport = attachments.compute.client.transport
        self.addCleanup(transport.cleanup)

        endpoint = Endpoint()
        # On Nova's exchange, as nova-compute listens (nova.rpc's
        # control_exchange); a cast to oslo.messaging's default exchange
        # never arrived.
        server = messaging.get_rpc_server(
            transport, messaging.Target(exchange='nova',
                                        topic=attachment.TOPIC,
                                        server='compute1'),
            [endpoint], executor='threading')
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)

        attachments.compute.cast(
            oslo_context.RequestContext(user_id='u1', project_id='p1'),
            'compute1', 'attach_device_context', 'ctx-1', 'server-1')
        self.assertTrue(endpoint.done.wait(10), 'the cast did not arrive')
        self.assertEqual([('p1', 'ctx-1', 'server-1')], endpoint.received)
