"""compile_ahead: the background compiles are the ones the calls then use, results unchanged;
a process that fails while a thread compiles exits with its own error."""

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np

from gramr2_jax.compile_ahead import DONE
from gramr2_jax.sampling import Sampler
from gramr2_jax.sampling.methods import make_method
from tests.conftest import REPO, subprocess_env
from tests.sampling.conftest import MIXED, TINY, count_compiles, logging_compiles, tiny_model

# Three calls of three shapes: prompt buckets and packed widths differ.
BATCHES = [MIXED[:2], [list(range(3, 25)), list(range(5, 9))], MIXED[2:4]]
OPTIONS = dict(max_new_tokens=5, num_samples=2, return_logprobs=True)


def _model(mlp_dim):
    # JAX's compile caches are shared by samplers of one model structure: a structure
    # of its own per test (one layer, an MLP width no other test uses) makes every shape
    # here new.
    return tiny_model(config=dataclasses.replace(TINY, num_layers=1, mlp_dim=mlp_dim))


def _run(sampler, method):
    return [sampler.generate(batch, method=method, seed=7, **OPTIONS) for batch in BATCHES]


def test_the_calls_use_the_functions_compiled_ahead_and_give_the_same_results(caplog):
    model = _model(40)
    method = make_method(1.0, None, 0.9)
    sampler = Sampler(model)
    with logging_compiles(caplog):
        sampler.compile_ahead(BATCHES, method=method, **OPTIONS).join()
        assert count_compiles(caplog) == 3  # one function per shape, compiled in the thread
        outputs = _run(sampler, method)
        assert count_compiles(caplog) == 3  # the calls compiled nothing
    # The same calls on a sampler that never compiled ahead.
    for got, want in zip(outputs, _run(Sampler(model), method)):
        np.testing.assert_array_equal(got.tokens, want.tokens)
        np.testing.assert_array_equal(got.lengths, want.lengths)
        np.testing.assert_array_equal(got.logprobs, want.logprobs)


def test_shapes_already_compiled_are_skipped_and_a_failure_is_left_to_the_call(caplog):
    sampler = Sampler(_model(44))
    method = make_method(0.0, None, None)
    with logging_compiles(caplog):
        sampler.generate(BATCHES[0], method=method, **OPTIONS)
        sampler.compile_ahead(BATCHES, method=method, **OPTIONS).join()
        assert count_compiles(caplog) == 3  # the call's shape, then the two others
    # The thread registered (and compiled) only the two shapes no call had compiled: the
    # call's shape still holds the call's marker, not an event of the thread's.
    markers = sampler._compiles.markers()
    assert len(markers) == 3 and markers[0] is DONE
    assert all(m is not DONE and m.is_set() for m in markers[1:])
    # A bad batch stops the thread with a warning; the call raises the error itself.
    sampler.compile_ahead([[]], method=method, **OPTIONS).join()
    assert "compile_ahead stopped" in caplog.text


# Fails while the compile-ahead thread is inside XLA's compiler.
_EXIT_WHILE_COMPILING = textwrap.dedent("""
    import dataclasses, threading
    import jax
    from gramr2_jax.sampling import Sampler
    from gramr2_jax.sampling.methods import make_method
    from tests.sampling.conftest import TINY, tiny_model

    inside = threading.Event()
    compile_ = jax.stages.Lowered.compile
    def compile_and_tell(self, *args, **kwargs):
        inside.set()
        return compile_(self, *args, **kwargs)
    jax.stages.Lowered.compile = compile_and_tell

    sampler = Sampler(tiny_model(config=dataclasses.replace(TINY, num_layers=4, mlp_dim=72)))
    batches = [[list(range(3, 3 + n))] * 2 for n in (5, 20, 40, 70)]
    sampler.compile_ahead(batches, method=make_method(1.0, None, 0.9), max_new_tokens=40)
    assert inside.wait(120)
    print("exiting while compiling", flush=True)
    raise RuntimeError("the main thread fails")
""")


def test_a_process_that_fails_while_a_thread_compiles_exits_with_its_error():
    # Before compile_ahead joined its threads at exit, XLA aborted the finalizing
    # process here ("terminate called ...", exit status 134), after a clean exit too.
    out = subprocess.run([sys.executable, "-c", _EXIT_WHILE_COMPILING], cwd=REPO,
                         env=subprocess_env(PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=300)
    assert "exiting while compiling" in out.stdout, out.stderr[-2000:]
    assert out.returncode == 1, out.stderr[-2000:]
    assert "RuntimeError: the main thread fails" in out.stderr
    assert "terminate called" not in out.stderr
