"""`bench.seal_phases` attributes peak memory to the phase that made it, exactly."""

from __future__ import annotations

from bench.seal_phases import PhaseClock


def test_a_phase_peak_is_its_own_and_its_parents_not_a_later_siblings() -> None:
    """The high-water mark is reset at every boundary: memory touched in one phase shows in
    it and in the phase around it, never in a phase that starts after it was freed."""
    clock = PhaseClock()
    touched = 150 << 20
    with clock.phase("outer"):
        with clock.phase("inner"):
            block = b"x" * touched  # written, so resident
            del block
        with clock.phase("after"):
            pass
        clock.wrap("called", lambda: None)()
        clock.wrap("called", lambda: None)()
    assert list(clock.spent) == ["outer/inner", "outer/after", "outer/called", "outer"]
    inner, after, outer = (clock.spent[k][2] for k in ("outer/inner", "outer/after", "outer"))
    assert inner - after > 0.8 * touched / (1 << 20)
    assert outer >= inner
    assert clock.spent["outer/called"][3] == 2
