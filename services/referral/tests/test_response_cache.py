"""The repeat cache of CDS Hooks answers (radcds_referral.handlers._ResponseCache)."""

from __future__ import annotations

import gc

from radcds_referral.handlers import _ResponseCache


def answer(n: int) -> dict[str, object]:
    return {"cards": [{"uuid": f"u{n}", "summary": "Canadian CT Head Rule: no risk factor", "suggestions": []}]}


def test_repeated_key_returns_an_equal_answer_that_is_a_new_copy():
    cache = _ResponseCache()
    cache.put("k", answer(1))
    first, second = cache.get("k"), cache.get("k")
    assert first == answer(1) == second
    assert first is not second
    first["cards"].clear()  # type: ignore[index,union-attr]
    assert cache.get("k") == answer(1)


def test_full_cache_of_answers_adds_no_objects_for_the_garbage_collector_to_walk():
    cache = _ResponseCache(size=2000)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(2000):
        cache.put(f"k{n}", answer(n))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert cache.get("k1999") == answer(1999)


def test_cache_over_its_size_forgets_the_oldest_answer():
    cache = _ResponseCache(size=2)
    for n in range(3):
        cache.put(f"k{n}", answer(n))
    assert cache.get("k0") is None
    assert cache.get("k2") == answer(2)


def test_answer_past_its_ttl_is_not_returned():
    cache = _ResponseCache(ttl_s=-1.0)
    cache.put("k", answer(1))
    assert cache.get("k") is None
