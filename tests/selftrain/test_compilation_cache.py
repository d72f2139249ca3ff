"""main.configure_compilation_cache: on the CPU a copied or moved cache keeps its programs."""

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import subprocess_env

# Compiles one program with the cache at argv[1]; prints "hit" if it came from the cache.
_PROGRAM = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    from jax import monitoring
    from gramr2_jax.main import configure_compilation_cache
    configure_compilation_cache(sys.argv[1])
    {jax_default}
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    hits = []
    monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits"
        else None)
    jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((8, 8)))
    print("hit" if hits else "compiled")
""")
# JAX's own setting, under which the cache's path is part of every key.
_JAX_DEFAULT = ("jax.config.update('jax_persistent_cache_enable_xla_caches', "
                "'xla_gpu_per_fusion_autotune_cache_dir')")


def _compile(program: str, cache) -> str:
    out = subprocess.run([sys.executable, "-c", program, str(cache)],
                         env=subprocess_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-1]


@pytest.mark.parametrize("jax_default, moved_copy", [("", "hit"), (_JAX_DEFAULT, "compiled")])
def test_a_copied_cache_keeps_its_programs_on_the_cpu(tmp_path, jax_default, moved_copy):
    program = _PROGRAM.format(jax_default=jax_default)
    assert _compile(program, tmp_path / "first") == "compiled"
    assert _compile(program, tmp_path / "first") == "hit"
    shutil.copytree(tmp_path / "first", tmp_path / "copy")
    assert _compile(program, tmp_path / "copy") == moved_copy
