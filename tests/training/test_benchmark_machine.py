"""The benchmarks record the CPU they ran on (`benchmarks.common.machine`)."""

from gramr2_jax.benchmarks.common import machine, parse_cpuinfo

_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx fma avx2 bmi2

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu avx512f
"""

_ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm sve
"""


def test_parse_cpuinfo_reads_the_first_processor_and_its_vector_extensions():
    info = parse_cpuinfo(_X86)
    assert info == {"cpu_model": "AMD EPYC", "cpu_family": "25", "cpu_model_number": "1",
                    "vector_isa": ["avx2", "fma", "avx", "sse4_2"]}  # not the 2nd block's avx512f
    assert parse_cpuinfo(_ARM)["vector_isa"] == ["asimd", "sve"]
    assert parse_cpuinfo("")["vector_isa"] == []


def test_machine_reads_a_cpuinfo_file_and_falls_back_without_one(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(_X86)
    info = machine(path)
    assert info["cpu_model"] == "AMD EPYC" and "avx512f" not in info["vector_isa"]
    assert info["cpu_count"] >= 1
    missing = machine(tmp_path / "absent")
    assert "vector_isa" not in missing and "cpu_model" in missing
