"""Functions by reference or by value, unpicklable inputs, and version checks, all caught at submit."""

from __future__ import annotations

import pickle
import threading

import cloudpickle
import pytest

from slurm import SerializationError, Task, task
from slurm.serialization import LOCAL_PYTHON, dump_payload, load_payload
from tests.fast import tasks


def never_probe() -> str:
    pytest.fail("the node's Python version must not be needed for by-reference payloads")


def test_importable_task_travels_by_reference_without_probing():
    data = dump_payload(tasks.add, [((1, 2), {})], never_probe)
    loaded, calls = load_payload(data)
    assert isinstance(loaded, Task) and loaded.fn is tasks.add.fn
    assert calls == [((1, 2), {})]
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

    loaded, _ = load_payload(dump_payload(local, [((1,), {})], lambda: LOCAL_PYTHON))
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
