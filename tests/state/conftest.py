import pytest

from audsync.state import migrate, open_store


@pytest.fixture
def store(state_url):
    migrate.upgrade(state_url)
    s = open_store(state_url)
    yield s
    s.close()
