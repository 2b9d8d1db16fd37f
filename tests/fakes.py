"""Stand-ins shared by tests."""


class FakeBenchmark:
    """pytest-benchmark's fixture reduced to what measure_point uses: ``pedantic`` runs setup and target
    warmup_rounds + rounds times (a test may use the real fixture only once, and some measure several points)."""

    def __init__(self):
        self.extra_info, self.group = {}, None

    def pedantic(self, target, setup, rounds, warmup_rounds, iterations):
        for _ in range(warmup_rounds + rounds):
            setup()
            target()
