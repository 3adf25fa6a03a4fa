"""Progress on stderr: redrawn on a terminal, plain periodic lines otherwise."""

import io

from audsync.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_counted_phase_on_a_terminal_redraws_its_bar_and_ends_the_line():
    out, clock = io.StringIO(), Clock()
    phase = Progress(out, tty=True, interval=0.2, clock=clock).phase("aud: delivering", total=1000)
    clock.now += 1
    phase.advance(250)
    clock.now += 1
    phase.advance(750)
    phase.close()
    frames = out.getvalue().split("\r\x1b[2K")[1:]
    assert frames[0] == "aud: delivering [------------------------] 0/1,000 (0/s)"
    assert frames[1] == "aud: delivering [######------------------] 250/1,000 (250/s)"
    assert frames[-1] == "aud: delivering [########################] 1,000/1,000 (500/s)\n"


def test_a_phase_without_counts_shows_its_label_at_once_and_its_duration_at_the_end():
    out, clock = io.StringIO(), Clock()
    phase = Progress(out, tty=True, clock=clock).phase("aud: diffing and planning", counted=False)
    assert out.getvalue() == "\r\x1b[2Kaud: diffing and planning (0.0 s)"
    clock.now += 12.34
    phase.close()
    assert out.getvalue().endswith("\r\x1b[2Kaud: diffing and planning (12.3 s)\n")


def test_off_a_terminal_a_line_every_interval_and_none_at_the_end():
    out, clock = io.StringIO(), Clock()
    phase = Progress(out, tty=False, interval=10, clock=clock).phase("aud: loading")
    for _ in range(3):
        clock.now += 6
        phase.advance(1000)
    phase.close()
    assert out.getvalue() == "aud: loading: 1,000 (167/s, 6 s)\naud: loading: 3,000 (167/s, 18 s)\n"
