# Plain setuptools (no pbr): this distribution is built from a
# subdirectory of the repository, with its version in setup.cfg; its
# package is the link nova_acc_client -> ../nova_acc_client, which
# setuptools follows (pip 21.3 or later builds here, in place).
import setuptools

setuptools.setup()
