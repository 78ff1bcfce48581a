"""Guard: every bad input becomes one clear sentence; raters stay anonymous."""

from pathlib import Path

import pytest

from app.guard import Guard, InvalidInput, RateLimiter
from app.settings import Settings

SAMPLERS = ("DDIM", "DPM-Solver++", "Euler")
ASPECTS = ("1:1", "3:4")


@pytest.fixture
def guard() -> Guard:
    return Guard(Settings(), SAMPLERS, ASPECTS)


def generation(guard: Guard, **overrides: object):
    values = {
        "prompt": "a cat",
        "negative_prompt": "",
        "enhanced_prompt": "",
        "steps": 25,
        "cfg": 3.0,
        "seed": -1,
        "num_images": 2,
        "aspect": "1:1",
        "sampler": "DDIM",
    }
    return guard.generation(**{**values, **overrides})


def test_a_good_request_is_normalised(guard: Guard) -> None:
    request = generation(guard, prompt="  a cat\x00 ", steps=25.0, seed=42.0, enhanced_prompt=" a cat, flat ")
    assert (request.prompt, request.enhanced_prompt, request.model_prompt) == ("a cat", "a cat, flat", "a cat, flat")
    assert (request.steps, request.seed, request.negative_prompt) == (25, 42, "")
    assert generation(guard).seed is None  # -1 means random
    assert generation(guard).enhanced_prompt is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "", "Please enter a prompt."),
        ("prompt", "   \n ", "Please enter a prompt."),
        ("prompt", None, "Please enter a prompt."),
        ("prompt", "x" * 1001, "The prompt is 1001 characters long; the limit is 1000."),
        ("negative_prompt", "x" * 1001, "The negative prompt is 1001 characters long"),
        ("prompt", 12, "The prompt must be text."),
        ("steps", 0, "number of steps must be a whole number from 1 to 150 (got 0)"),
        ("steps", 151, "number of steps must be a whole number from 1 to 150 (got 151)"),
        ("steps", 2.5, "whole number"),
        ("steps", "ten", "whole number"),
        ("steps", 10**309, "number of steps must be a whole number from 1 to 150."),  # past float's range
        ("seed", float("inf"), "seed must be a whole number from -1"),
        ("num_images", 9, "number of images must be a whole number from 1 to 8"),
        ("num_images", 0, "number of images"),
        ("cfg", 0.5, "CFG scale must be a number from 1 to 20"),
        ("cfg", 21, "CFG scale"),
        ("cfg", float("nan"), "CFG scale"),
        ("seed", -2, "seed must be a whole number from -1"),
        ("seed", 2**32, "seed"),
        ("sampler", "PLMS", "Unknown sampler; choose one of DDIM, DPM-Solver++, Euler."),
        ("sampler", ["DDIM"], "Unknown sampler; choose one of"),
        ("aspect", "2:1", "Unknown aspect ratio; choose one of 1:1, 3:4."),
        ("prompt", "a \ud800 cat", "The prompt contains characters that are not valid text."),
    ],
)
def test_bad_generation_input(guard: Guard, field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        generation(guard, **{field: value})
    assert message in str(caught.value)
    if isinstance(value, str) and len(value) > 1:
        assert value not in str(caught.value)  # raw input is never echoed


def test_exactly_at_the_limits_is_fine(guard: Guard) -> None:
    request = generation(guard, prompt="x" * 1000, steps=50, num_images=8, cfg=20, seed=2**32 - 1)
    assert (len(request.prompt), request.steps, request.num_images, request.seed) == (1000, 50, 8, 2**32 - 1)
    assert generation(guard, steps=150, num_images=2).steps == 150  # 300 image-steps, within the budget
    with pytest.raises(InvalidInput, match="150 steps × 8 images is more work than one request may ask for"):
        generation(guard, steps=150, num_images=8)
    assert generation(guard, steps=1, num_images=1, cfg=1, seed=0).seed == 0


def test_best_of_needs_a_reward_model_and_counts_in_the_budget(guard: Guard, tmp_path: Path) -> None:
    assert generation(guard).best_of == 1
    with pytest.raises(InvalidInput, match="^Best of n needs a reward model, and this server has none; set best of"):
        generation(guard, best_of=2)
    ranked = Guard(Settings(reward_model=tmp_path), SAMPLERS, ASPECTS)
    request = generation(ranked, steps=25, num_images=2, best_of=4.0)
    assert (request.best_of, request.candidates) == (4, 8)
    with pytest.raises(InvalidInput, match="best of must be a whole number from 1 to 4 \\(got 5\\)"):
        generation(ranked, best_of=5)
    with pytest.raises(InvalidInput, match="50 steps × 8 images × best of 2 is more work than one request may ask"):
        generation(ranked, steps=50, num_images=8, best_of=2)


def test_votes_and_comparisons(guard: Guard) -> None:
    assert guard.vote(" 1b2c-3d ", 1.0, "  nice  ") == ("1b2c-3d", 1, "nice")
    assert guard.vote("abc", 0, "   ") == ("abc", 0, None)
    with pytest.raises(InvalidInput, match="vote must be a whole number from -1 to 1"):
        guard.vote("abc", 2, "")
    with pytest.raises(InvalidInput, match="image id is not valid"):
        guard.vote("../../etc/passwd", 1, "")
    with pytest.raises(InvalidInput, match="comment is 501 characters"):
        guard.vote("abc", 1, "x" * 501)
    assert guard.comparison("a", "b", "both_bad") == ("a", "b", "both_bad")
    with pytest.raises(InvalidInput, match="two different images"):
        guard.comparison("a", "a", "left")
    with pytest.raises(InvalidInput, match="Unknown outcome; choose one of left, tie"):
        guard.comparison("a", "b", "draw")


def test_rater_is_a_keyed_hash_of_the_token(guard: Guard) -> None:
    first = guard.rater("session-1", "10.0.0.1")
    assert first == guard.rater("session-1", "10.0.0.1")
    assert first.anon_id != guard.rater("session-2", "10.0.0.1").anon_id
    assert "session-1" not in first.anon_id and len(first.anon_id) == 32
    assert first.anon_id != Guard(Settings(), SAMPLERS, ASPECTS).rater("session-1", None).anon_id  # random key
    installed = Guard(Settings(), SAMPLERS, ASPECTS, key=b"install secret").rater("cookie-1", None)
    restarted = Guard(Settings(), SAMPLERS, ASPECTS, key=b"install secret").rater("cookie-1", None)
    assert installed == restarted  # with the install's key, a rater outlives a restart
    with pytest.raises(InvalidInput, match="no valid rater token: reload the page"):
        guard.rater(None, "10.0.0.1")


def test_limits_count_per_address_and_per_rater() -> None:
    guard = Guard(Settings(votes_per_minute=2, votes_per_minute_per_ip=3), SAMPLERS, ASPECTS)
    for rater in (1, 1):
        guard.hit("votes", "10.0.0.1")
        guard.hit("votes", "10.0.0.1", rater)
    with pytest.raises(InvalidInput, match="Too many votes from this browser; please wait"):
        guard.hit("votes", "10.0.0.1", 1)
    guard.hit("votes", "10.0.0.1")
    with pytest.raises(InvalidInput, match="Too many votes from your network; please wait"):
        guard.hit("votes", "10.0.0.1")  # checked before the rater is even looked up
    guard.hit("votes", "10.0.0.2")
    guard.hit("generations", "10.0.0.1")  # generations count apart from votes


def test_the_admin_key() -> None:
    assert not Guard(Settings(), SAMPLERS, ASPECTS).admin("")  # no key set: nobody is admin
    guard = Guard(Settings(admin_key="s3cret"), SAMPLERS, ASPECTS)
    assert guard.admin("s3cret")
    assert not any(guard.admin(key) for key in ("", "s3cre", "s3cret ", None, 7, "\ud800"))


def test_rate_limiter_counts_per_key_within_the_window() -> None:
    limiter = RateLimiter(limit=2, window_s=60)
    limiter.hit("a", "votes")
    limiter.hit("a", "votes")
    limiter.hit("b", "votes")
    with pytest.raises(InvalidInput, match="Too many votes; please wait"):
        limiter.hit("a", "votes")
    expired = RateLimiter(limit=1, window_s=0.0)
    expired.hit("a", "votes")
    expired.hit("a", "votes")  # the window is empty again
