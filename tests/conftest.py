"""Test setup: 8 simulated CPU devices, so sharded and pmapped code is exercised.

Set here, before any test touches a JAX backend.
"""

import os

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''),
     '--xla_force_host_platform_device_count=8']).strip()
