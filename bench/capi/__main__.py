"""``python -m bench.capi [--smoke] [--json FILE]``: the C API's benchmark alone."""

import sys

from ..common import section_main
from . import __doc__ as doc
from . import run

sys.exit(section_main(run, doc))
