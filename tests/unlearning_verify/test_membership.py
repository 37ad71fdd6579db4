import numpy as np

from unlearning_verify.membership import matched_non_members, membership_test


def test_lower_member_losses_are_flagged_and_equal_ones_not():
    rng = np.random.default_rng(0)
    members = rng.exponential(0.05, 400)
    non = rng.exponential(0.15, 800)
    r = membership_test(members, non)
    assert r.flagged and r.auc > 0.7
    same = membership_test(rng.exponential(0.1, 400), rng.exponential(0.1, 800))
    assert not same.flagged and 0.4 < same.auc < 0.6


def test_reference_calibration_cancels_sample_difficulty():
    rng = np.random.default_rng(1)
    difficulty_m, difficulty_n = rng.exponential(1.0, 300), rng.exponential(0.2, 300)
    served_m = difficulty_m * 0.8  # members: 20 % lower loss than the reference gives them
    served_n = difficulty_n
    raw = membership_test(served_m, served_n)
    cal = membership_test(served_m, served_n, reference_member_losses=difficulty_m,
                          reference_non_member_losses=difficulty_n)
    assert not raw.flagged  # members look *harder* by raw loss
    assert cal.flagged and cal.calibrated


def test_matched_non_members_follow_member_classes():
    members = np.array([0, 0, 1, 2, 2, 2])
    pool = np.repeat(np.arange(3), 10)
    idx = matched_non_members(members, pool, 2, 0)
    assert sorted(np.bincount(pool[idx]).tolist()) == [2, 4, 6]
