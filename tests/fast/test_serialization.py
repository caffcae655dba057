"""Functions by reference or by value, unpicklable inputs, and version checks, all caught at submit."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import threading
import types

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm import SerializationError, Task, task
from slurm.node import plain
from slurm.node.outcome import dump_result
from slurm.node.payload import LOCAL_PYTHON, read_payload
from slurm.serialization import Outcome, dump_payload
from tests.fast import tasks
from tests.fast.scripted_slurm import read_call


def never_probe() -> str:
    pytest.fail("the node's Python version must not be needed for by-reference payloads")


def test_importable_task_travels_by_reference_without_probing():
    data = dump_payload(tasks.add, [((1, 2.5), {"n": [None]})], never_probe)  # plain: by name
    loaded, call = read_call(data)
    assert isinstance(loaded, Task) and loaded.fn is tasks.add.fn
    assert call == ((1, 2.5), {"n": [None]})
    assert len(data) < 100
    data = dump_payload(tasks.add, [((1, types.SimpleNamespace()), {})], never_probe)  # pickled
    loaded, call = read_call(data)
    assert isinstance(loaded, Task) and loaded.fn is tasks.add.fn
    assert call == ((1, types.SimpleNamespace()), {})
    assert len(data) < 300  # a reference, not bytecode


def test_task_variants_pickle_to_the_same_function():
    variant = tasks.add.after("7").options(cpus=4)
    restored = pickle.loads(cloudpickle.dumps(variant))
    assert restored.fn is tasks.add.fn and restored(1, 1) == 2


def test_workflow_flag_survives_pickling():
    assert pickle.loads(cloudpickle.dumps(tasks.fan_out)).is_workflow


def test_by_value_allowed_on_same_python():
    @task
    def local(x):
        return x + 1

    loaded, _ = read_call(dump_payload(local, [((1,), {})], lambda: LOCAL_PYTHON))
    assert loaded.fn(1) == 2


def test_by_value_refused_on_other_python(make_cluster):
    @task
    def local(x):
        return x + 1

    cluster = make_cluster(node_python="3.99")
    with pytest.raises(SerializationError) as info:
        cluster.submit(local, 1)
    message = str(info.value)
    assert "3.99" in message and LOCAL_PYTHON in message and "local" in message
    assert cluster.backend.job_ids() == []


def test_lambda_argument_refused_on_other_python(make_cluster):
    cluster = make_cluster(node_python="3.99")
    with pytest.raises(SerializationError, match=r"<lambda>.*3.99"):
        cluster.submit(tasks.add, lambda: 1, 2)


def test_by_reference_works_on_other_python(make_cluster):
    # The runner here is really the same Python; the point is that nothing asks for by-value bytecode.
    assert make_cluster(node_python="3.99").submit(tasks.add, 1, 2).result(timeout=30) == 3


def test_unpicklable_argument_named_at_submit(cluster):
    with pytest.raises(SerializationError, match=r"argument 1 \(lock .*cannot be pickled"):
        cluster.submit(tasks.add, 1, threading.Lock())
    with pytest.raises(SerializationError, match=r"argument 'b' \(lock"):
        cluster.submit(tasks.add, a=1, b=threading.Lock())
    assert cluster.backend.job_ids() == []


def test_unpicklable_item_named_in_map(cluster):
    with pytest.raises(SerializationError, match=r"argument 0 of item 1 \(lock"):
        cluster.map(tasks.square, [1, threading.Lock()])


def test_unpicklable_function_named_at_submit(cluster):
    lock = threading.Lock()

    @task
    def holds_lock():
        with lock:
            return 1

    with pytest.raises(SerializationError, match=r"function .*holds_lock"):
        cluster.submit(holds_lock)
    assert cluster.backend.job_ids() == []


def test_unpicklable_result_becomes_a_clear_error(cluster):
    @task
    def returns_lock():
        return threading.Lock()

    with pytest.raises(SerializationError, match="returned a lock that cannot be pickled"):
        cluster.submit(returns_lock).result(timeout=30)


def test_node_that_cannot_import_the_module_explains(cluster, tmp_path):
    module = tmp_path / "only_here.py"
    module.write_text("from slurm import task\n\n@task\ndef hello():\n    return 'hi'\n")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("only_here", module)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["only_here"] = loaded
    try:
        spec.loader.exec_module(loaded)
        job = cluster.submit(loaded.hello)
        with pytest.raises(SerializationError, match=r"cannot load the task on this node.*only_here"):
            job.result(timeout=30)
    finally:
        del sys.modules["only_here"]


class RecordingFile:
    """A payload file that remembers which byte ranges were read."""

    def __init__(self, data: bytes) -> None:
        self.file, self.ranges = io.BytesIO(data), []

    def read(self, size: int, /) -> bytes:
        start = self.file.tell()
        data = self.file.read(size)
        self.ranges.append((start, start + len(data)))
        return data

    def seek(self, offset: int, /) -> int:
        return self.file.seek(offset)


items = st.lists(st.binary(max_size=2000) | st.integers() | st.text(max_size=50), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(values=items, wrapped=st.booleans(), data=st.data())
def test_each_item_comes_back_and_a_task_reads_no_other_item(values, wrapped, data):
    """Plain items (bytes, ints, strings) and pickled ones (the same in a SimpleNamespace) alike."""
    values = [types.SimpleNamespace(v=value) for value in values] if wrapped else values
    payload = dump_payload(tasks.add, [((value,), {"i": i}) for i, value in enumerate(values)], never_probe)
    index = data.draw(st.integers(0, len(values) - 1))
    handle = RecordingFile(payload)
    is_plain, task_data, call = read_payload(handle, index)
    loads = pickle.loads if wrapped else plain.loads
    assert is_plain is not wrapped
    loaded = pickle.loads(task_data).fn if wrapped else plain.load_reference(task_data).fn
    assert loaded is tasks.add.fn
    assert loads(call) == ((values[index],), {"i": index})
    own = len(pickle.dumps(((values[index],), {"i": index}), protocol=5)) + 200
    read = sum(end - start for start, end in handle.ranges)
    assert read <= len(task_data) + 20 + 16 + own  # header, task, two offsets, this item: O(1)


def test_an_index_past_the_end_and_a_foreign_payload_are_named():
    payload = dump_payload(tasks.add, [((1, 2), {})], never_probe)
    with pytest.raises(SerializationError, match="holds 1 call"):
        read_call(payload, 1)
    with pytest.raises(SerializationError, match="another version of the SDK"):
        read_call(pickle.dumps({"task": tasks.add, "calls": []}))
    with pytest.raises(SerializationError, match="truncated"):
        read_call(payload[:-3])


@pytest.mark.parametrize("value", [b"x" * 100_000, {"a": [1, 2.5, "three"]}, None, lambda: 1])
def test_a_result_round_trips_through_its_file(value):
    outcome = Outcome.load(dump_result(value, restarts=2, facts={"payload_bytes_read": 77}))
    got = outcome.value("1")
    assert outcome.ok and outcome.restarts == 2 and outcome.fields["payload_bytes_read"] == 77
    assert got() == 1 if callable(value) else got == value


def test_a_result_file_of_the_nested_format_still_loads():
    old = pickle.dumps({"ok": True, "value": cloudpickle.dumps([1, 2]), "restarts": 0})
    assert Outcome.load(old).value("1") == [1, 2]


class Small(int):
    """An int that is not exactly an int: marshal would not keep its type."""


@pytest.mark.parametrize(
    "value",
    [bytearray(b"x"), memoryview(b"x"), Small(1), [1, Small(2)], {"k": bytearray()}, {1, 2.5, "s", (None,)}],
)
def test_only_exact_plain_types_are_plain(value):
    """What marshal would change (a buffer to bytes, a subclass to its base) is pickled instead; the
    rest comes back equal."""
    data = plain.dumps(value)
    if isinstance(value, set):
        assert data is not None and plain.loads(data) == value
    else:
        assert data is None


def test_plain_gives_up_on_cycles_and_size_and_depth():
    cycle: list[object] = []
    cycle.append(cycle)
    deep: list[object] = []
    for _ in range(3000):  # fewer objects than the limit, deeper than marshal goes
        deep = [deep]
    assert plain.dumps(cycle) is None
    assert plain.dumps(list(range(plain.MAX_OBJECTS))) is None
    assert plain.dumps(deep) is None
    assert plain.dumps(list(range(plain.MAX_OBJECTS - 1))) is not None


def test_a_workflow_or_code_by_value_is_pickled_even_with_plain_calls():
    @task
    def local(x):
        return x

    for sent in (tasks.fan_out, local):
        is_plain, _, _ = read_payload(io.BytesIO(dump_payload(sent, [((1,), {})], lambda: LOCAL_PYTHON)), 0)
        assert not is_plain, sent


def test_a_plain_result_is_marshal_data_and_ranks_get_its_pickle():
    outcome = Outcome.load(dump_result([1, "two", 3.0], restarts=1))
    assert outcome.plain and outcome.restarts == 1 and outcome.value("1") == [1, "two", 3.0]
    assert pickle.loads(outcome.value_bytes()) == [1, "two", 3.0]
    assert not Outcome.load(dump_result(types.SimpleNamespace(a=1))).plain


def test_a_plain_task_runs_on_the_node_without_pickle(tmp_path):
    """The runner on a plain payload, in a fresh interpreter: the result comes back, and neither the C
    pickler (~3 ms on Python 3.13) nor the resource checks (~40 ms) were imported."""
    (tmp_path / "payload.pkl").write_bytes(dump_payload(tasks.add, [((1, 2), {}), ((3, 4), {})], never_probe))
    probe = (
        "import sys; from slurm.node import runner\n"
        "try: runner.run()\nexcept SystemExit as end: code = end.code\n"
        "print(code, '_pickle' in sys.modules, 'slurm.task' in sys.modules, 'slurm.resources' in sys.modules)"
    )
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),  # the repo root: tests.* imports
        timeout=60,
    )
    # tests.fast.tasks imports slurm.task; its decorators name resources (add's time, cpus, mem), checked
    # when the test imported it, not again in the job.
    assert run.stdout.split() == ["0", "False", "True", "False"], run.stderr
    assert Outcome.load((tmp_path / "result-1.pkl").read_bytes()).value("1") == 7
