import pytest

# The helper modules assert too: pytest rewrites their asserts (as it does a conftest's) so a
# failure shows the values compared.
pytest.register_assert_rewrite("tests.helpers", "tests.browser.helpers", "tests.live.helpers")
