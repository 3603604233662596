"""Where the CLI writes: outputs checked before adapting, the model saved before the images,
distinct output names for clashing inputs, --skip-bad and --max-pixels."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest
from PIL import Image

import ttasr
from ttasr.adapters.base import Adapter
from ttasr.cli import main
from ttasr.io import load_images


@pytest.fixture
def crop(photo):
    img = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    def make(path, side, fmt=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img[:side, :side])).save(path, fmt)
        return path

    return make


@pytest.fixture
def fits(monkeypatch):
    """Records each Adapter.fit call (and still runs it)."""
    calls = []
    original = Adapter.fit

    def fit(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Adapter, "fit", fit)
    return calls


def _adapt(inputs, tiny_file, out, *extra):
    return main(["-q", "adapt", *map(str, inputs), "-m", str(tiny_file), "--method", "internal", "-o", str(out),
                 "--max-steps", "2", "--batch-size", "2", "--patch-size", "12", "--progress", "false",
                 "--device", "cpu", *extra])


def _size(path):
    return Image.open(path).size


# ---------------------------------------------------------------------- checked before adapting
def test_unwritable_output_folder_fails_before_adapting(tiny_file, crop, tmp_path, fits, capsys):
    image = crop(tmp_path / "in" / "x.png", 40)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _adapt([image], tiny_file, blocker / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith("ttasr: error: cannot write images to") and "a-file" in err
    assert fits == []


def test_bad_save_model_suffix_fails_before_adapting(tiny_file, crop, tmp_path, fits, capsys):
    image = crop(tmp_path / "in" / "x.png", 40)
    out = tmp_path / "out"
    assert _adapt([image], tiny_file, out, "--save-model", str(tmp_path / "adapted.bin")) == 2
    assert ".safetensors" in capsys.readouterr().err and fits == []
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _adapt([image], tiny_file, out, "--save-model", str(blocker / "m.safetensors")) == 1
    assert "cannot write the adapted model" in capsys.readouterr().err and fits == []
    assert not list(out.glob("*.png"))


def test_the_model_is_saved_before_the_images(tiny_file, crop, tmp_path, fits, monkeypatch):
    import ttasr.io

    def disk_full(image, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ttasr.io, "save_image", disk_full)
    image = crop(tmp_path / "in" / "x.png", 40)
    ckpt = tmp_path / "adapted.safetensors"
    assert _adapt([image], tiny_file, tmp_path / "out", "--save-model", str(ckpt)) == 1
    assert len(fits) == 1 and ckpt.is_file()


# ---------------------------------------------------------------------- distinct names
def test_same_stem_in_one_folder_keeps_the_suffix(tiny_file, crop, tmp_path):
    a = crop(tmp_path / "in" / "x.png", 40)
    b = crop(tmp_path / "in" / "x.jpg", 48)
    c = crop(tmp_path / "in" / "y.png", 56)
    out = tmp_path / "out"
    assert main(["-q", "enhance", str(a.parent), "-m", str(tiny_file), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_jpg_x2.png", "x_png_x2.png", "y_x2.png"]
    assert _size(out / "x_png_x2.png") == (80, 80) and _size(out / "x_jpg_x2.png") == (96, 96)
    assert _size(out / "y_x2.png") == (112, 112) and b.exists() and c.exists()


def test_inputs_from_several_folders_keep_their_subfolders(tiny_file, crop, tmp_path):
    a = crop(tmp_path / "in" / "a" / "x.png", 40)
    b = crop(tmp_path / "in" / "b" / "x.png", 48)
    out = tmp_path / "out"
    assert _adapt([a, b], tiny_file, out) == 0
    assert _size(out / "a" / "x_internal.png") == (80, 80)
    assert _size(out / "b" / "x_internal.png") == (96, 96)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a/x_internal.png", "b/x_internal.png"]


def test_output_names_are_distinct_in_every_case(crop, tmp_path):
    from ttasr.cli.outputs import _output_paths

    files = [crop(tmp_path / "a" / "x.png", 16), crop(tmp_path / "a" / "x.jpg", 16),
             crop(tmp_path / "a" / "x_png.png", 16), crop(tmp_path / "a" / "X.PNG", 16),
             crop(tmp_path / "b" / "c" / "x.png", 16)]
    records = load_images([*files, files[0]])  # the same file twice as well
    paths = _output_paths(records, tmp_path / "out", "t")
    rel = [str(p.relative_to(tmp_path / "out")) for p in paths]
    assert len({r.casefold() for r in rel}) == len(rel), rel
    assert rel[0] == "a/x_png_t.png" and rel[1] == "a/x_jpg_t.png" and rel[4] == "b/c/x_t.png"
    one_folder = _output_paths(load_images([files[0], files[4]])[:1], tmp_path / "out", "t")
    assert [p.name for p in one_folder] == ["x_t.png"]


# ---------------------------------------------------------------------- --skip-bad, --max-pixels
def test_skip_bad_goes_on_and_the_summary_names_the_skipped(tiny_file, crop, tmp_path, caplog, capsys):
    crop(tmp_path / "in" / "good.png", 40)
    crop(tmp_path / "in" / "fine.png", 48)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    argv = ["enhance", str(tmp_path / "in"), "-m", str(tiny_file), "-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 3 images cannot be used" in err and not list(out.glob("*"))
    with caplog.at_level(logging.INFO, logger="ttasr"):
        assert main([*argv, "--skip-bad"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fine_x2.png", "good_x2.png"]
    summary = caplog.records[-1]
    assert summary.levelno == logging.WARNING and "wrote 2 of 3 images" in summary.message
    assert "skipped 1 that cannot be used: " in summary.message and "broken.png" in summary.message


def test_max_pixels_is_passed_to_the_loader(tiny_file, crop, tmp_path, caplog, capsys):
    crop(tmp_path / "in" / "small.png", 40)  # 1,600 pixels
    crop(tmp_path / "in" / "large.png", 64)  # 4,096 pixels
    out = tmp_path / "out"
    argv = ["-q", "adapt", str(tmp_path / "in"), "-m", str(tiny_file), "--method", "internal", "-o", str(out),
            "--max-steps", "1", "--batch-size", "1", "--patch-size", "12", "--progress", "false"]
    assert main([*argv, "--max-pixels", "2000"]) == 1
    assert "large.png" in capsys.readouterr().err
    with caplog.at_level(logging.INFO, logger="ttasr"):
        assert main([*argv, "--max-pixels", "2000", "--skip-bad"]) == 0
    assert [p.name for p in out.iterdir()] == ["small_internal.png"]
    assert "large.png" in caplog.records[-1].message
    assert main([*argv, "--max-pixels", "0"]) == 0  # no limit
    assert sorted(p.name for p in out.iterdir()) == ["large_internal.png", "small_internal.png"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--max-pixels", "-1"])
    assert info.value.code == 2


def test_enhance_output_matches_the_library(tiny_file, crop, tmp_path):
    image = crop(tmp_path / "in" / "x.png", 48)
    out = tmp_path / "out"
    assert main(["-q", "enhance", str(image), "-m", str(tiny_file), "-o", str(out), "--tile", "32"]) == 0
    got = np.asarray(Image.open(out / "x_x2.png")).astype(int)
    assert np.array_equal(got, ttasr.enhance(str(tiny_file), image, tile=32).astype(int))
