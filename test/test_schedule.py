"""core/schedule.py: the one fixed-rate schedule (wall loop, sim ticker, sim bridge, replay)."""
import pytest

from liquid_control.core.schedule import Schedule


def test_deadlines_are_absolute_for_a_period_of_fractional_nanoseconds():
    s = Schedule(1e9 / 300)  # 3333333.33 ns
    s.start(1000)
    seen = []
    for _ in range(300):
        seen.append(s.next_ns)
        s.advance()
    assert seen[0] == 1000 + 3333333
    assert s.next_ns == 1000 + 1_000_000_000 + 3333333  # 301st deadline: exactly 301 periods, no drift
    assert seen[299] == 1000 + 1_000_000_000


def test_first_deadline_at_start_when_asked():
    s = Schedule(10)
    s.start(50, first=0)
    assert s.next_ns == 50 and s.due(50) and not s.due(49)


def test_on_time_and_late_by_less_than_a_period_skip_nothing():
    s = Schedule(10)
    s.start(0)
    assert s.take(10) == (0, 0) and s.next_ns == 20
    assert s.take(29) == (9, 0) and s.next_ns == 30 and s.missed == 0


@pytest.mark.parametrize("now, skipped, next_ns", [(20, 1, 30), (29, 1, 30), (30, 2, 40), (45, 3, 50)])
def test_whole_missed_periods_are_skipped_and_counted(now, skipped, next_ns):
    s = Schedule(10)
    s.start(0)
    late, n = s.take(now)
    assert (late, n, s.next_ns, s.missed) == (now - 10, skipped, next_ns, skipped)


def test_restart_forgets_the_count():
    s = Schedule(10)
    s.start(0)
    s.take(100)
    assert s.missed == 9
    s.start(500)
    assert (s.missed, s.next_ns) == (0, 510)


@pytest.mark.parametrize("period", [0, -1, float("inf"), float("nan")])
def test_a_period_that_is_not_a_positive_time_is_refused(period):
    with pytest.raises(ValueError, match="period"):
        Schedule(period)
