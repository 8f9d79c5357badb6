# Nova's services in these tests run on eventlet, as in nova-compute and
# Nova's own test suite: patch before anything else is imported (oslo.db in
# particular, whose transaction context must be a greenthread-local), the
# way nova/tests/unit/__init__.py and nova/tests/functional/__init__.py do.
# Every test module of nova-acc is under this package, so this runs first in
# every stestr worker.
from nova import monkey_patch ; monkey_patch.patch()  # noqa
