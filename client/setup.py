# Plain setuptools (no pbr): this distribution is built from a
# subdirectory of the repository, with its version in setup.cfg.
import setuptools

setuptools.setup()
