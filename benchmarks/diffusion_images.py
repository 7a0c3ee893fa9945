"""Diffusion-model vs GAN augmentation of low-data digits, against the same baselines, in one run.

Through the components, exactly as ``techniques_images.py augment`` measured the
GAN (its subsets, CNN, 80 epochs and evaluation): for 10 and 30 train images per
class and each seed, the CNN's eval accuracy with

* no augmentation,
* the step control (the train split repeated 5x, no augmentation),
* GAN samples (``augment(method="gan")``, to 60 images per class),
* diffusion samples (``augment(method="diffusion")``, to 60 images per class).

The generated rows of each augmented split are also scored against real digits:

* Frechet distance (FD) between the samples and the full digits set in the
  64-unit hidden layer of a fixed MLP trained on the full digits set; the same
  number for a random real draw of the same size and class counts is the floor
  (FD is biased upwards at small n, so compare with that row, not with 0);
* that MLP's accuracy on the samples (does a sample look like its class);
* within-class diversity: the mean per-pixel standard deviation within a class,
  averaged over classes, divided by the same number for all real digits (1.0 =
  as varied as real digits; the measure the GAN was reported with).

Cost: each generator is fitted once more on the seed-0 30/class subset; then
sampling 500 images is timed (median of 3) and the model size recorded; the
GAN is the baseline of the ratio. The machine's load average is printed.

    nice .venv/bin/python benchmarks/diffusion_images.py --seeds 3 [--sizes 10,30] [--no-cost] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import techniques_images as bench  # noqa: E402

CONFIGS = {
    "no augmentation": None,
    "step control: train split repeated 5x": "repeat",
    "GAN samples to 60/class": "gan",
    "diffusion samples to 60/class": "diffusion",
}
BASE_TRAIN = {"epochs": 80, "early_stopping_patience": 0, "learning_rate": 0.003, "batch_size": 32, "hidden_units": [64], "dropout": 0.25}
COST_SAMPLES = 500


class FeatureScorer:
    """A fixed MLP trained on the full digits set; scores generated digits against real ones."""

    def __init__(self) -> None:
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.neural_network import MLPClassifier

        digits = load_digits()
        self.real = digits.images.reshape(len(digits.images), -1) / 16.0
        self.labels = digits.target
        self.mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=0).fit(self.real, self.labels)
        self.real_features = self.features(self.real)
        self.real_diversity = self.diversity(self.real, self.labels)
        self.rng = np.random.default_rng(0)

    def features(self, flat: Any) -> Any:
        import numpy as np

        return np.maximum(flat @ self.mlp.coefs_[0] + self.mlp.intercepts_[0], 0.0)

    def frechet(self, flat: Any) -> float:
        import numpy as np
        from scipy import linalg

        a, b = self.features(flat), self.real_features
        mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
        cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = linalg.sqrtm(cov_a @ cov_b).real
        return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))

    @staticmethod
    def diversity(flat: Any, labels: Any) -> float:
        import numpy as np

        return float(np.mean([flat[labels == c].std(axis=0).mean() for c in np.unique(labels)]))

    def score(self, flat: Any, labels: Any) -> dict[str, float]:
        """FD, classifier accuracy and relative diversity of samples, and the FD of a real draw of the same make-up."""
        import numpy as np

        draw = np.concatenate([
            self.rng.choice(np.flatnonzero(self.labels == c), int((labels == c).sum()), replace=False)
            for c in np.unique(labels)
        ])
        return {
            "fd": self.frechet(flat), "fd_real_same_size": self.frechet(self.real[draw]),
            "classifier_accuracy": float((self.mlp.predict(flat) == labels).mean()),
            "diversity_ratio": self.diversity(flat, labels) / self.real_diversity,
        }


def synthetic_rows(examples: Any) -> tuple[Any, Any]:
    """(flattened images in [0, 1], integer labels) of the generated train rows."""
    import numpy as np

    from flywheel.components import examples_io

    images, frame = examples_io.read_images(examples, "train")
    keep = frame["synthetic"].to_numpy(dtype=bool)
    return images[keep].reshape(int(keep.sum()), -1) / 255.0, frame["label"].to_numpy()[keep].astype(int)


def accuracy_and_quality(seeds: int, work: str, sizes: tuple[int, ...], scorer: FeatureScorer) -> dict[str, Any]:
    clean = bench._ingest("sklearn-digits", os.path.join(work, "digits"))
    results: dict[str, Any] = {}
    for size in sizes:
        accuracy = {name: [] for name in CONFIGS}
        quality: dict[str, list[dict[str, float]]] = {name: [] for name, how in CONFIGS.items() if how in ("gan", "diffusion")}
        generator_seconds: dict[str, list[float]] = {name: [] for name in quality}
        for seed in range(seeds):
            subset = bench.low_data_copy(clean, os.path.join(work, f"low-{size}-{seed}"), size, seed)
            for index, (name, how) in enumerate(CONFIGS.items()):
                root = os.path.join(work, f"{size}-{seed}-{index}")
                examples = subset
                if how is not None:
                    examples, info = bench.offline_augmented(subset, root, how, seed)
                if name in quality:
                    quality[name].append(scorer.score(*synthetic_rows(examples)))
                    generator_seconds[name].append(info["seconds"])
                out = bench.run_components(examples, root, {}, {**BASE_TRAIN, "seed": seed})
                accuracy[name].append(out["overall"]["accuracy"])
            print(f"    {size}/class seed {seed}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in accuracy.items()), flush=True)
            for name, rows in quality.items():
                print(f"      {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
        results[str(size)] = {"accuracy": accuracy, "quality": quality, "generator_seconds": generator_seconds}
        print(f"  {size} per class: " + ", ".join(f"{n} {bench._summary(v)}" for n, v in accuracy.items()), flush=True)
    return results


def sampling_cost(work: str) -> dict[str, Any]:
    """Fit seconds, sampling images/s (median of 3) and model size of each generator on the seed-0 30/class subset."""
    import numpy as np

    from flywheel.components.search_augmentation import image_split
    from flywheel.techniques.diffusion import ConditionalDiffusion
    from flywheel.techniques.gan import ConditionalGAN

    images, y, _, _ = image_split(bench.low_data_copy(
        bench._ingest("sklearn-digits", os.path.join(work, "cost-digits")), os.path.join(work, "cost"), 30, 0,
    ), "train")
    generators = {"GAN": ConditionalGAN(steps=bench.GAN_STEPS, random_state=0), "diffusion": ConditionalDiffusion(random_state=0)}
    results: dict[str, Any] = {}
    for name, generator in generators.items():
        started = time.perf_counter()
        generator.fit(images, y)
        fit_seconds = time.perf_counter() - started
        per_class = COST_SAMPLES // len(generator.classes_)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            generator.sample(per_class)
            times.append(time.perf_counter() - started)
        if name == "GAN":
            parameters = int(sum(p.size for p in generator.generator_))
            path = os.path.join(work, "gan-generator.npz")
            np.savez(path, *[p.astype(np.float32) for p in generator.generator_])
        else:
            parameters = int(generator.denoiser_.count_params())
            path = os.path.join(work, "diffusion")
            generator.save(path)
            path = os.path.join(path, "denoiser.keras")
        results[name] = {
            "fit_seconds": round(fit_seconds, 1), "images_per_second": per_class * len(generator.classes_) / statistics.median(times),
            "sampling_parameters": parameters, "file_bytes": os.path.getsize(path),
        }
        print(f"  {name}: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in results[name].items()), flush=True)
    ratio = results["GAN"]["images_per_second"] / results["diffusion"]["images_per_second"]
    print(f"  diffusion samples {ratio:,.0f}x slower than the GAN (baseline)", flush=True)
    results["diffusion_slowdown_vs_gan"] = ratio
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", default="10,30", help="train images per class, comma-separated")
    parser.add_argument("--out", help="write the raw numbers as JSON here")
    parser.add_argument("--no-cost", action="store_true", help="skip the sampling-cost part")
    args = parser.parse_args(argv)
    bench._quiet()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    started = time.perf_counter()
    results: dict[str, Any] = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"load average {results['load_average_start']}, {results['cpus']} CPUs", flush=True)
    scorer = FeatureScorer()
    with tempfile.TemporaryDirectory() as work:
        if not args.no_cost:
            print("sampling cost (seed-0 30/class subset):", flush=True)
            results["cost"] = sampling_cost(work)
        print("accuracy and sample quality:", flush=True)
        results["augment"] = accuracy_and_quality(args.seeds, work, sizes, scorer)
    results["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"load average {results['load_average_end']}; {results['seconds']} s", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
