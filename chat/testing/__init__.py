"""Test tooling shipped with the app (as ``channels.testing`` is with Channels).

``fake_anthropic``: a fake Anthropic Messages API that the real SDK streams from, in-process or as
its own process (``python -m chat.testing.fake_anthropic``), with faults and a record of every
request. ``live``: the app as real processes (daphne, ``manage.py``, fresh databases) for tests
and the benchmark. ``live_client``: a signed-in HTTP session and chat tabs against a live app.

The pytest fixtures that use these live in ``tests/conftest.py`` and the folders' conftest files;
nothing here imports pytest.
"""
