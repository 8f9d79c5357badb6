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
"""Hostdevs in libvirt domain XML: which PCI devices a guest uses."""

from __future__ import annotations

from xml.etree import ElementTree

import os_acc


def pci_addresses(domain_xml: str) -> set[str]:
    """PCI addresses (``0000:81:00.0``) of the PCI hostdevs of a domain."""
    return {str(os_acc.PciAddress.from_libvirt_attrs(addr.attrib))
            for addr in ElementTree.fromstring(domain_xml).findall(
                "./devices/hostdev[@type='pci']/source/address")}
