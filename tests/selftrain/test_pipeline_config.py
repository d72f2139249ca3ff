"""The pipeline records the config a workdir was started with."""

from configs import demo
from gramr2_jax.selftrain import artifacts, pipeline


def test_the_run_records_its_first_config_and_what_a_later_start_changed(tmp_path, caplog):
    config = demo.get_config("smoke=True")
    assert pipeline.record_config(config, tmp_path) == []
    assert pipeline.record_config(config, tmp_path) == []  # the same command again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    more = demo.get_config("smoke=True")
    more.selftrain.num_rounds, more.data.num_test = 3, 9
    assert pipeline.record_config(more, tmp_path) == ["data.num_test", "selftrain.num_rounds"]
    assert "changed: data.num_test, selftrain.num_rounds" in caplog.text
    assert pipeline.record_config(more, tmp_path) == ["data.num_test", "selftrain.num_rounds"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.2.json", "config.json"]
    assert artifacts.read_json(tmp_path / "config.json")["selftrain"]["num_rounds"] == 2
    assert artifacts.read_json(tmp_path / "config.2.json")["selftrain"]["num_rounds"] == 3
