"""`embodied reward simulate dataset=STORE queries=100`: a simulated person answers preference queries over a
store's rollouts by their hidden preference cost, into the store's preference table."""

from __future__ import annotations

from embodied.rewards.person import SimulateConfig, simulate_preferences

SCHEMA = SimulateConfig


def run(job: SimulateConfig, run_dir) -> None:
    """Answers the queries and says how many the table holds."""
    added, total = simulate_preferences(job)
    print(f"{job.dataset}: {added} answers added by {job.person.name}; {total} in its preference table")
    print(f"learn a reward from them with: embodied reward align dataset={job.dataset} demos=PREFERRED_DEMOS")
