#!/usr/bin/env bash
# Why AdaSSR loses on the proxy preset optical-blur: estimated vs true kernel, with and
# without the noise augmentation (and noise_augment=auto), as rows of one `ttasr bench` run.
# SPAN x4, 2 photos of 512 px, one adaptation per row over both (mode=multi), 150 steps,
# EMA 0.99, final weights.   bash benchmarks/optical_blur_ablation.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/blur-ablation}
rows=()
for row in "est-kernel,noise-aug:consistency:always" "est-kernel,no-noise-aug:consistency:never" \
           "true-kernel,noise-aug:given:always" "true-kernel,no-noise-aug:given:never" \
           "est-kernel,noise-auto:consistency:auto"; do
  IFS=: read -r label est noise <<< "$row"
  rows+=(--variant "$label=adassr")
  for kv in mode=multi max_steps=150 ema_decay=0.99 stopping=fixed blend=1 kernel_estimator=$est noise_augment=$noise; do
    rows+=(--set "$label.$kv")
  done
  if [ "$est" = given ]; then rows+=(--set "$label.kernel=@true-kernel"); fi
done
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/ttasr bench -m span-x4 --dataset proxy:optical-blur \
  --dataset-option crop=512 --dataset-option limit=2 --metrics psnr_y,ssim_y "${rows[@]}" \
  --oracle "true-kernel,no-noise-aug" -o "$out" --resume
