"""Every ``inn-mobile`` verb: help, exit codes and messages on bad input, and a real round trip
(convert, pack for LiteRT, inspect, profile, run under budgets, bench) on a digits model."""

import json

import pytest
import torch

from inn_mobile.app import cli

VERBS = ["demo", "convert", "pack", "inspect", "profile", "run", "bench"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([verb, "--help"])
    assert e.value.code == 0
    assert "usage: inn-mobile " + verb in capsys.readouterr().out


def test_bad_arguments_and_files(tmp_path, capsys):
    code, _, err = run(capsys, "inspect", tmp_path / "missing.innb")
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad.innb"
    bad.write_bytes(b"INNB" + bytes(100))
    code, _, err = run(capsys, "inspect", bad)
    assert code == 1 and "error:" in err
    code, _, err = run(capsys, "convert", "--model", "no_such_module:f", "--input-shape", "1,1,8,8", "--out", bad)
    assert code == 2 and "cannot load --model" in err
    code, _, err = run(capsys, "convert", "--model", "inn_mobile.app.models", "--input-shape", "1,1,8,8", "--out", bad)
    assert code == 2 and "module:factory" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(bad), "--runtime", "litert", "--memory-budget", "lots"])
    assert e.value.code == 2 and "not a size: 'lots'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["convert", "--model", "m:f", "--input-shape", "1,0,8", "--out", str(bad)])
    assert "not a shape" in capsys.readouterr().err


def test_sizes_parse():
    assert cli.parse_bytes("8MiB") == 8 << 20 and cli.parse_bytes("512k") == 512 << 10
    assert cli.parse_bytes("1.5G") == 3 << 29 and cli.parse_bytes("100") == 100


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, digits_model):
    d = tmp_path_factory.mktemp("cli")
    torch.save(digits_model.state_dict(), d / "weights.pt")
    (d / "net.py").write_text("from inn_mobile.app import models\n\ndef net():\n"
                              "    return models.resnet(widths=(16, 32), blocks=(1, 1))\n")
    return d


def test_convert_writes_a_nodes_only_bundle(model_file, digits_data, capsys):
    x = digits_data[0]
    torch.save(x[:64], model_file / "calib.pt")
    out = model_file / "nodes.innb"
    code, text, _ = run(capsys, "convert", "--model", f"{model_file / 'net.py'}:net", "--weights",
                        model_file / "weights.pt", "--input-shape", "1,1,8,8", "--calibration",
                        model_file / "calib.pt", "--out", out)
    assert code == 0 and "nodes only" in text and out.stat().st_size > 1000
    code, text, _ = run(capsys, "inspect", out)
    assert code == 0 and "runtimes: none (nodes only)" in text
    half = model_file / "nodes16.innb"
    code, _, _ = run(capsys, "convert", "--model", f"{model_file / 'net.py'}:net", "--input-shape", "1,1,8,8",
                     "--node-dtype", "f16", "--out", half)
    assert code == 0 and half.stat().st_size < 0.6 * out.stat().st_size
    quarter = model_file / "nodes8.innb"
    code, _, _ = run(capsys, "convert", "--model", f"{model_file / 'net.py'}:net", "--input-shape", "1,1,8,8",
                     "--node-dtype", "i8", "--out", quarter)
    assert code == 0 and quarter.stat().st_size < 0.35 * out.stat().st_size


@pytest.mark.slow
def test_pack_profile_run_bench_round_trip(model_file, digits_data, capsys, tmp_path):
    pytest.importorskip("ai_edge_litert")
    x, y, xt, yt = digits_data
    torch.save(x[:64], tmp_path / "calib.pt")
    torch.save(xt[:200], tmp_path / "val.pt")
    torch.save(yt[:200], tmp_path / "val_labels.pt")
    out = tmp_path / "m.innb"
    code, text, err = run(capsys, "pack", "--model", f"{model_file / 'net.py'}:net", "--weights",
                          model_file / "weights.pt", "--input-shape", "1,1,8,8", "--calibration", tmp_path / "calib.pt",
                          "--ratios", "0.5", "1.0", "--runtime", "litert", "--validation", tmp_path / "val.pt",
                          "--validation-labels", tmp_path / "val_labels.pt", "--out", out,
                          "--cascade", "acc:1", "macs:60%", "--cascade-score", "margin", "--jobs", "2")
    assert code == 0, err
    assert "cascade acc1: " in text and "cascade macs60pct: " in text, text
    code, text, _ = run(capsys, "inspect", out)
    assert code == 0 and "runtimes: litert" in text and text.count("| litert |") == 2
    assert "cascade acc1 (margin, accuracy_drop 1): " in text and "cascade macs60pct (margin, mean_macs " in text
    code, _, err = run(capsys, "pack", "--model", f"{model_file / 'net.py'}:net", "--input-shape", "1,1,8,8",
                       "--runtime", "litert", "--out", tmp_path / "n.innb", "--cascade", "fast:2")
    assert code == 2 and "acc:<points>" in err
    code, _, err = run(capsys, "pack", "--model", f"{model_file / 'net.py'}:net", "--input-shape", "1,1,8,8",
                       "--runtime", "litert", "--out", tmp_path / "n.innb", "--cascade", "acc:1")
    assert code == 2 and "--cascade needs labelled data" in err
    prof = tmp_path / "device.json"
    code, text, err = run(capsys, "profile", out, "--runtime", "litert", "--out", prof, "--runs", "3")
    assert code == 0, err
    rows = json.loads(prof.read_text())["buckets"]
    assert len(rows) == 2 and all(r["peak_bytes"] > 0 and r["latency_ms"] > 0 for r in rows.values())
    small, wide = sorted(rows.values(), key=lambda r: r["peak_bytes"])
    code, text, err = run(capsys, "run", out, "--runtime", "litert", "--memory-budget", "1", "--profile", prof)
    assert code == 1 and "no bucket fits" in err and "needs" in err
    code, text, err = run(capsys, "run", out, "--runtime", "litert", "--memory-budget", str(wide["peak_bytes"] * 2),
                          "--profile", prof, "--input", tmp_path / "val.pt")
    assert code == 0 and "chose" in text and "input 0: class" in text
    code, text, err = run(capsys, "run", out, "--runtime", "executorch-i8", "--memory-budget", "1G")
    assert code == 1 and "no 'executorch-i8' graphs" in err
    code, text, err = run(capsys, "bench", out, "--runtime", "litert", "--runs", "2", "--plot", tmp_path / "b.png")
    assert code == 0 and text.count("| litert |") == 2 and (tmp_path / "b.png").stat().st_size > 1000


def test_inspect_reports_per_width_normalisation(capsys):
    from pathlib import Path

    vectors = Path(__file__).parent / "vectors" / "vectors.innb"  # every bucket has NORM records
    code, text, _ = run(capsys, "inspect", vectors)
    assert code == 0 and "per-width normalisation: 2/3 layers per bucket" in text, text


class _Planted:
    """Unpickling this runs code (makes a folder): what a crafted model.pt or weights.pt can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_pickles_from_user_files_do_not_run_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "model.pt"
    torch.save(_Planted(marker), evil)
    out = tmp_path / "m.innb"
    code, _, err = run(capsys, "convert", "--model", evil, "--input-shape", "1,1,8,8", "--out", out)
    assert code == 2 and "--trust-pickle" in err and len(err.splitlines()) == 1
    net = tmp_path / "net.py"
    net.write_text("import torch\n\ndef net():\n    return torch.nn.Conv2d(1, 2, 3)\n")
    code, _, err = run(capsys, "convert", "--model", f"{net}:net", "--weights", evil, "--input-shape", "1,1,8,8",
                       "--out", out)
    assert code == 2 and "--trust-pickle only if you trust it" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not out.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02not a pickle")
    code, _, err = run(capsys, "convert", "--model", f"{net}:net", "--weights", garbage, "--input-shape", "1,1,8,8",
                       "--out", out)
    assert code == 2 and err.startswith("error: cannot read --weights") and len(err.splitlines()) == 1
    torch.save({"nothing": torch.zeros(1)}, garbage)
    code, _, err = run(capsys, "convert", "--model", f"{net}:net", "--weights", garbage, "--input-shape", "1,1,8,8",
                       "--out", out)
    assert code == 2 and "does not fit --model" in err and len(err.splitlines()) == 1


def test_bad_output_and_bundle_paths_fail_before_any_work(tmp_path, capsys):
    """--out is checked first: the model named here does not even exist."""
    for out, says in ((tmp_path / "no" / "m.innb", "does not exist"), (tmp_path, "is a folder")):
        for verb in ("convert", "pack"):
            extra = ["--runtime", "litert"] if verb == "pack" else []
            code, _, err = run(capsys, verb, "--model", "no_such_module:f", "--input-shape", "1,1,8,8", "--out", out,
                               *extra)
            assert code == 2 and says in err and len(err.splitlines()) == 1, err
    code, _, err = run(capsys, "pack", "--model", "no_such_module:f", "--input-shape", "1,1,8,8", "--out",
                       tmp_path / "m.innb", "--runtime", "litert", "executorch-i8")
    assert code == 2 and err == "error: executorch-i8 is int8: give --calibration (unlabelled inputs, .pt/.npy) " \
        "for its activation ranges\n", err
    code, _, err = run(capsys, "profile", tmp_path, "--runtime", "litert", "--out", tmp_path)
    assert code == 2 and "is a folder" in err
    code, _, err = run(capsys, "inspect", tmp_path)
    assert code == 2 and "is not a file" in err and len(err.splitlines()) == 1


def test_executorch_native_notices_are_dropped_from_the_command_line_stderr():
    """ExecuTorch's bindings print cpuinfo/threadpool notices through sys.stderr (text, then a newline);
    the CLI drops exactly those lines and passes everything else, progress bars' carriage returns included."""
    import io

    from inn_mobile.app.cli import NativeNoticeFilter

    out = io.StringIO()
    f = NativeNoticeFilter(out)
    for text in ("[", "cpuinfo_utils.cpp", ":", "71", "] ", "Reading file /sys/devices/soc0/image_version", "\n",
                 "pack  50%\r", "[threadpool.cpp:66] Resetting threadpool to 1 threads.\n",
                 "error: [x] is not a bundle\n", "\n", "[", "done]\n", "[", "==>   ]\r", "[12:30] ok\n"):
        f.write(text)
    f.flush()
    assert out.getvalue() == "pack  50%\rerror: [x] is not a bundle\n\n[done]\n[==>   ]\r[12:30] ok\n"
