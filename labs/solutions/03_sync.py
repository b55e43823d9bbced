"""Solutions to Lab 03's exercises (try them yourself first)."""

#: Section 1: 8 ranks (MOST at the default), exponential delays of mean 15 ms: 15 x (H_8 - 1) = 25.8 ms;
#: on 4 ranks (MOST where GPUVIZ_LAB_RANKS=2): 15 x (H_4 - 1) = 16.3 ms.
MOST = 8
my_wait_ms = 15 * sum(1 / i for i in range(2, MOST + 1))


def expected_wait(mean_s, n):
    """E[max of n] - E[X] for exponential delays: mean x H_n - mean = mean x (1/2 + ... + 1/n)."""
    return mean_s * sum(1 / i for i in range(2, n + 1))


def redone_steps(every, fail_step):
    """The last checkpoint before the failure holds ``every * (fail_step // every)`` steps;
    the steps from there up to the failed one (which never finished) run again."""
    last = every * (fail_step // every)
    return list(range(last, fail_step))
