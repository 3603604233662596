"""Why AdaSSR loses on optical-blur: noise augmentation and the kernel, final weights side by side.

    .venv/bin/python benchmarks/noise_ablation.py PRESET STEPS IMAGES SIZE [ROWS]
    e.g. benchmarks/noise_ablation.py optical-blur 150 2 512

Rows: default (the paper's augmentations), noise-off (no Gaussian/Poisson noise on the
inputs), true-kernel, true-kernel noise-off. EMA 0.99, fixed budget, final weights; prints
PSNR-Y per image against the HR and the estimated kernel.
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import numpy as np, torch
import ttasr
from adassr_proxy import load_photos
from ttasr.degradations import degrade
from ttasr.metrics import psnr_y
from ttasr.pairs import AugmentConfig
torch.set_num_threads(2)
preset = sys.argv[1]; steps = int(sys.argv[2]); n = int(sys.argv[3]); size = int(sys.argv[4])
model = ttasr.load_model("span-x4"); s = 4
photos = load_photos(n, size)
deg = [degrade(hr, s, preset, seed=0) for _, hr in photos]
lows, highs, k = [d.lr for d in deg], [hr for _, hr in photos], deg[0].kernel
def score(net):
    return [psnr_y(ttasr.inference.enhance_tensor(net, lr), hr, s) for lr, hr in zip(lows, highs)]
base = score(model); print("unadapted", np.mean(base), flush=True)
nonoise = AugmentConfig(gaussian_noise_p=0.0, poisson_noise_p=0.0)
common = dict(max_steps=steps, progress=False, stopping="fixed", ema_decay=0.99, noise_augment="always", blend=1.0)
runs = {
 "default": dict(common),
 "noise-off": dict(common, augment_config=nonoise),
 "true-kernel": dict(common, kernel_estimator="given", kernel=k) if k is not None else dict(common, kernel_estimator="bicubic"),
 "true-kernel noise-off": (dict(common, kernel_estimator="given", kernel=k) if k is not None else dict(common, kernel_estimator="bicubic")) | dict(augment_config=nonoise),
}
only = sys.argv[5].split(",") if len(sys.argv) > 5 else list(runs)
for name in only:
    t = time.time()
    a = ttasr.create_adapter("adassr", model, **runs[name]).fit(lows)
    p = score(a.adapted_model())
    est = a.kernel_estimates[0].params if a.kernel_estimates else {}
    print(name, f"{np.mean(p):.3f} ({np.mean(p)-np.mean(base):+.3f})", [round(x - b, 2) for x, b in zip(p, base)],
          {k2: round(v, 2) for k2, v in est.items() if isinstance(v, float)}, f"{time.time()-t:.0f}s", flush=True)
