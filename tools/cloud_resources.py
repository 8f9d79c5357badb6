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
"""The resources of tools/run-cloud.sh's cloud, created when missing.

Run with the Python of Nova's venv (openstacksdk comes with
python-openstackclient)::

    python cloud_resources.py identity HOST PASSWORDS_FILE
    python cloud_resources.py compute HOST PASSWORDS_FILE IMAGE_DIR

PASSWORDS_FILE is the cloud's passwords file (``KEY_PASSWORD=VALUE``
lines, made by tools/lib/common.sh): ``ADMIN`` to log in as admin,
``DEMO`` and one per service user (``NOVA``, ``PLACEMENT``, ``GLANCE``,
``NEUTRON``, ``NOVAACCAPI``: a user's name in capitals without dashes).
Passwords are never taken from the command line, which every
user of the machine can read.

``identity``: the service project, the service users (admin in it), the
catalog (compute, placement, image, network, device-context: nova-acc-api)
and a demo project and user
(member); every one of these users gets its password from the file, also
when it exists already (a cloud whose passwords changed). ``compute``: the
guest images (aki/ari/ami from IMAGE_DIR) and the flavors. Nothing else
that exists already is changed.
"""

import os
import re
import sys

import openstack

SERVICES = [
    # name, type, port, path
    ('nova', 'compute', 8774, '/v2.1'),
    ('placement', 'placement', 8778, ''),
    ('glance', 'image', 9292, ''),
    ('neutron', 'network', 9696, ''),
    # nova-acc-api; its client adds /v1 (nova_acc.api.client).
    ('nova-acc-api', 'device-context', 8790, ''),
]
FLAVORS = [
    # name, id, vcpus, ram MiB, disk GiB
    ('m1.nano', '42', 1, 128, 1),
    ('m1.micro', '84', 1, 192, 1),
]
IMAGE = 'nova-acc-guest'
PASSWORD_LINE = re.compile(r'^([A-Z]+)_PASSWORD=([A-Za-z0-9._~-]+)$')


def password_key(user):
    """The key of USER's password in read_passwords' result."""
    return user.replace('-', '')


def read_passwords(path):
    """The passwords of PASSWORDS_FILE, by key (``admin``, ``novaaccapi``)."""
    passwords = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            match = PASSWORD_LINE.match(line)
            if not match:
                sys.exit('%s: line %d is not KEY_PASSWORD=VALUE'
                         % (path, number))
            passwords[match.group(1).lower()] = match.group(2)
    return passwords


def connect(host, password):
    return openstack.connect(
        auth_url='http://%s:5000/v3' % host, username='admin',
        password=password, project_name='admin', user_domain_name='Default',
        project_domain_name='Default', region_name='RegionOne',
        identity_api_version='3')


def ensure_user(idn, domain, name, password):
    """The user NAME with PASSWORD: created, or its password set."""
    user = idn.find_user(name, domain_id=domain.id)
    if user is None:
        return idn.create_user(name=name, password=password,
                               domain_id=domain.id)
    return idn.update_user(user, password=password)


def identity(conn, host, passwords):
    idn = conn.identity
    domain = idn.find_domain('default')
    roles = {r.name: r for r in idn.roles()}
    service_project = (idn.find_project('service', domain_id=domain.id)
                       or idn.create_project(name='service',
                                             domain_id=domain.id))
    demo_project = (idn.find_project('demo', domain_id=domain.id)
                    or idn.create_project(name='demo', domain_id=domain.id))
    for name, _, _, _ in SERVICES:
        user = ensure_user(idn, domain, name, passwords[password_key(name)])
        idn.assign_project_role_to_user(service_project, user, roles['admin'])
        if 'service' in roles:
            idn.assign_project_role_to_user(service_project, user,
                                            roles['service'])
    demo = ensure_user(idn, domain, 'demo', passwords['demo'])
    idn.assign_project_role_to_user(demo_project, demo, roles['member'])
    existing = {s.type: s for s in idn.services()}
    for name, stype, port, path in SERVICES:
        service = existing.get(stype) or idn.create_service(
            name=name, type=stype, is_enabled=True)
        have = {e.interface for e in idn.endpoints(service_id=service.id)}
        for interface in ('public', 'internal', 'admin'):
            if interface not in have:
                idn.create_endpoint(
                    service_id=service.id, interface=interface,
                    url='http://%s:%d%s' % (host, port, path),
                    region_id='RegionOne')


def compute(conn, image_dir):
    images = {i.name: i for i in conn.image.images()}
    if IMAGE not in images:
        kernel = images.get(IMAGE + '-kernel') or conn.image.create_image(
            name=IMAGE + '-kernel', filename=os.path.join(image_dir,
                                                          'vmlinuz'),
            disk_format='aki', container_format='aki', visibility='public',
            wait=True)
        ramdisk = images.get(IMAGE + '-initrd') or conn.image.create_image(
            name=IMAGE + '-initrd', filename=os.path.join(image_dir,
                                                          'initrd'),
            disk_format='ari', container_format='ari', visibility='public',
            wait=True)
        conn.image.create_image(
            name=IMAGE, filename=os.path.join(image_dir, 'disk'),
            disk_format='ami', container_format='ami', visibility='public',
            kernel_id=kernel.id, ramdisk_id=ramdisk.id, wait=True)
    have = {f.name for f in conn.compute.flavors()}
    for name, fid, vcpus, ram, disk in FLAVORS:
        if name not in have:
            conn.compute.create_flavor(name=name, id=fid, vcpus=vcpus,
                                       ram=ram, disk=disk, is_public=True)
    image = conn.image.find_image(IMAGE)
    print('image %s %s' % (IMAGE, image.id))


def main():
    phase, host, passwords_file = sys.argv[1:4]
    passwords = read_passwords(passwords_file)
    conn = connect(host, passwords['admin'])
    if phase == 'identity':
        identity(conn, host, passwords)
    elif phase == 'compute':
        compute(conn, sys.argv[4])
    else:
        sys.exit('unknown phase %r' % phase)


if __name__ == '__main__':
    main()
