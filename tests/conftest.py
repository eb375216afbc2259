"""Settings shared by every test."""

from __future__ import annotations

import os
import tempfile

# Checked programs are remembered in a folder of this test session, not in ~/.cache.
os.environ["LOYALTY_CACHE_DIR"] = tempfile.mkdtemp(prefix="loyalty-test-cache-")
