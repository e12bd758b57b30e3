"""The app's settings for its live test servers: chatsite.settings with a fast password hasher.

Tests sign in dozens of times (every browser test, every live client); PBKDF2 at Django's cost
spends about half a second of the server's CPU on each, and no test is about the hash. Used by
``chat.testing.live.start_live_app``, ``run_cluster`` and the terminal chat's tests; the
production checks and the benchmark run chatsite.settings itself.
"""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
