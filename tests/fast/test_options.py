"""Option dicts that pass without pydantic (``slurm.options``): every dict the quick check lets through, the
strict pydantic model accepts too; anything else is checked, and explained, by pydantic as before."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from slurm import options
from slurm.backends.local import LocalCommandBackend
from slurm.backends.rest import rest_backend_from_config
from slurm.backends.slurm import SlurmBackend, SSHBackend
from slurm.packaging.none import NonePackaging
from slurm.packaging.sync import SyncPackaging
from slurm.packaging.wheel import WheelPackaging
from slurm.transports.ssh import SSHTransport


def every_kind(
    name: str, ratio: float, flag: bool, count: int | None = None, names: list[str] | None = None, **more: Any
) -> None:
    """Each annotation the quick check knows, and others left to pydantic."""


def nested(items: list[list[int]], pair: tuple[int, str] = (0, ""), anything: Any = None) -> None:
    """Annotations the quick check does not try: pydantic alone decides."""


#: Factories as ``construct`` receives them, with how many leading arguments are fixed (not options).
FACTORIES = [
    (NonePackaging, 0),
    (WheelPackaging, 0),
    (SyncPackaging, 0),
    (LocalCommandBackend, 0),
    (SlurmBackend, 1),
    (SSHBackend, 0),
    (SSHTransport, 0),
    (rest_backend_from_config, 0),
    (every_kind, 0),
    (nested, 0),
]

PLAIN = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3))
VALUES = st.one_of(
    PLAIN,
    st.lists(PLAIN, max_size=3),
    st.lists(st.lists(st.integers(), max_size=2), max_size=2),
    st.tuples(st.integers(), st.text(max_size=2)),
    st.dictionaries(st.text(max_size=2), PLAIN, max_size=2),
)


@st.composite
def factory_and_options(draw):
    factory, skip = draw(st.sampled_from(FACTORIES))
    fields, _ = options._fields_of(factory, skip)
    names = st.sampled_from([*fields, "typo"])
    return factory, skip, draw(st.dictionaries(names, VALUES, max_size=len(fields) + 1))


@settings(max_examples=60)
@given(factory_and_options())
def test_what_the_quick_check_lets_through_pydantic_accepts(drawn):
    factory, skip, given_options = drawn
    if options._plainly_valid(factory, skip, given_options):
        assert options.first_problem(options._model_of(factory, skip), given_options) is None


def test_the_quick_check_lets_plain_options_through_and_leaves_the_rest():
    assert options._plainly_valid(NonePackaging, 0, {"pythonpath": ["src"], "python": "python3"})
    assert options._plainly_valid(
        every_kind, 0, {"name": "n", "ratio": 0.5, "flag": False, "extra": object()}
    )
    assert options._plainly_valid(every_kind, 0, {"name": "n", "ratio": 1.0, "flag": True, "count": None})
    for unsure in [
        {"name": "n", "ratio": 1, "flag": True},  # an int for a float: pydantic's rule, not re-implemented
        {"name": "n", "ratio": 0.5, "flag": 1},
        {"name": "n", "ratio": 0.5, "flag": True, "count": True},
        {"name": "n", "ratio": 0.5, "flag": True, "names": ("a",)},
        {"name": "n", "ratio": 0.5},  # "flag" missing
    ]:
        assert not options._plainly_valid(every_kind, 0, unsure), unsure
    assert not options._plainly_valid(NonePackaging, 0, {"pyhton": "python3"})
    assert options._plainly_valid(nested, 0, {"items": [[1], []]})
    assert not options._plainly_valid(nested, 0, {"items": [[1]], "pair": (1, "a")})


def test_a_cluster_built_from_a_plain_packaging_dict_loads_no_pydantic(tmp_path):
    """pydantic costs ~0.15 CPU-seconds to import: a script that builds its Cluster from plain, valid
    options does not pay for it."""
    probe = (
        "import sys; from slurm import Cluster; from slurm.backends.local import LocalCommandBackend; "
        f"Cluster(LocalCommandBackend({str(tmp_path / 'state')!r}), "
        "{'type': 'none', 'pythonpath': ['src'], 'python': sys.executable}); print('pydantic' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run
