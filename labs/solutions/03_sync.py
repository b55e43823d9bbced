"""Solutions to Lab 03's exercises (try them yourself first)."""

#: Section 1: 8 ranks, exponential delays of mean 15 ms: 15 x (H_8 - 1) = 25.8 ms.
my_wait_ms = 15 * sum(1 / i for i in range(2, 9))


def expected_wait(mean_s, n):
    """E[max of n] - E[X] for exponential delays: mean x H_n - mean = mean x (1/2 + ... + 1/n)."""
    return mean_s * sum(1 / i for i in range(2, n + 1))


def redone_steps(every, fail_step):
    """The last checkpoint before the failure holds ``every * (fail_step // every)`` steps;
    the steps from there up to the failed one (which never finished) run again."""
    last = every * (fail_step // every)
    return list(range(last, fail_step))
