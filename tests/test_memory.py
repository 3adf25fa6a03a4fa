"""audsync._memory: a long-running serve gives the pages it freed back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from audsync._memory import release_free_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_freed_memory_goes_back_to_the_system():
    # In a child: the RSS of pytest's own process would be measured with its noise.
    script = textwrap.dedent("""
        from audsync._memory import release_free_memory

        def rss_kb():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

        # Blocks past pymalloc's 512 bytes come from malloc; keeping one in ten leaves runs of
        # free pages between blocks in use, which malloc keeps unless it is asked to trim.
        blocks = [bytes(3000) for _ in range(40_000)]
        kept = blocks[::10]
        before = rss_kb()
        del blocks
        freed = rss_kb()
        assert release_free_memory()
        print(before, freed, rss_kb())
    """)
    before, freed, released = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True,
                                                      text=True, check=True).stdout.split())
    assert freed > before - 20_000, "malloc gave the pages back by itself: nothing here to test"
    assert released < freed - 60_000, (before, freed, released)  # of the ~105 MB freed


def test_release_answers_whether_it_could():
    assert release_free_memory() is sys.platform.startswith("linux")
