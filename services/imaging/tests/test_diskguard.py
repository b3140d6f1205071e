"""Free-space guard of the instance store, against the real disk holding pytest's tmp_path."""

from __future__ import annotations

import shutil

import pytest

from radcds_imaging.adapters.diskguard import DiskSpaceGuard


def test_check_with_zero_thresholds_passes_with_empty_reason(tmp_path):
    guard = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=0.0)
    assert guard.check() is True
    assert guard.reason == ""


def test_check_needing_more_bytes_than_the_disk_holds_fails_with_bytes_reason(tmp_path):
    total = shutil.disk_usage(tmp_path).total
    guard = DiskSpaceGuard(tmp_path, min_free_bytes=total + 1, min_free_ratio=0.0)
    assert guard.check() is False
    assert "bytes free" in guard.reason and str(total + 1) in guard.reason


def test_check_needing_the_whole_disk_free_fails_with_ratio_reason(tmp_path):
    # Some bytes are always in use (at least tmp_path itself), so 100 % free never holds.
    guard = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=1.0)
    assert guard.check() is False
    assert "100.0%" in guard.reason


def test_check_after_failure_then_passing_clears_reason(tmp_path):
    guard = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=1.0)
    assert guard.check() is False
    guard.min_free_ratio = 0.0
    assert guard.check() is True and guard.reason == ""


def test_check_on_missing_path_fails_with_reason(tmp_path):
    guard = DiskSpaceGuard(tmp_path / "absent", min_free_bytes=0, min_free_ratio=0.0)
    assert guard.check() is False
    assert "cannot read free space" in guard.reason


def test_usage_reports_free_ratio_between_zero_and_one(tmp_path):
    space = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=0.0).usage()
    assert 0 < space.free_bytes <= space.total_bytes
    assert 0.0 < space.free_ratio <= 1.0


@pytest.mark.parametrize(
    ("min_free_bytes", "min_free_ratio", "message"),
    [(-1, 0.0, "min_free_bytes"), (0, -0.1, "min_free_ratio"), (0, 1.5, "min_free_ratio")],
)
def test_construct_with_invalid_thresholds_raises_value_error(tmp_path, min_free_bytes, min_free_ratio, message):
    with pytest.raises(ValueError, match=message):
        DiskSpaceGuard(tmp_path, min_free_bytes=min_free_bytes, min_free_ratio=min_free_ratio)


def test_check_counting_incoming_bytes_that_would_cross_the_minimum_fails_with_their_size(tmp_path):
    free = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=0.0).usage().free_bytes
    guard = DiskSpaceGuard(tmp_path, min_free_bytes=free // 2, min_free_ratio=0.0)
    assert guard.check() is True
    assert guard.check(incoming_bytes=free - free // 4) is False
    assert f"after the {free - free // 4} bytes to store" in guard.reason
