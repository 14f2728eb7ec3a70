"""`embodied label dataset=STORE [queries=50] [query_size=2|3] [port=8000]`: a page where a person answers
preference queries by watching rollouts side by side; each answer goes into the store's preference table at once."""

from __future__ import annotations

from embodied.configs.checks import ConfigValueError, is_loopback
from embodied.labelling.queue import LabelConfig

SCHEMA = LabelConfig


def check(job: LabelConfig) -> None:
    """Loopback unless told otherwise."""
    if not is_loopback(job.host) and not job.allow_remote:
        raise ConfigValueError(
            f"host={job.host}: the labelling page serves on loopback only; anyone who can reach {job.host} could "
            "answer, so pass allow_remote=true to mean it"
        )


def run(job: LabelConfig, run_dir) -> None:
    """Serves until Ctrl-C."""
    from embodied.labelling.app import serve
    from embodied.labelling.queue import LabellingSession

    session = LabellingSession(job)
    print(
        f"labelling {len(session.queries)} queries over {job.dataset}: open http://{job.host}:{job.port}/", flush=True
    )
    print("answers are saved as they are given; Ctrl-C stops the server", flush=True)
    serve(session)
