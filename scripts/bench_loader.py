"""Side by side, one process: tf.data vs Grain vs the PyTorch DataLoader on the same JPEG files
with the same crop, flip and normalization, at the same worker counts.

  python scripts/bench_loader.py [--workers=0,1,2,4] [--images=512] [--batch_size=64]

Writes (once) an image folder of MNIST digits as 224x224 JPEG files (synthetic
images with --source=synthetic), then for each worker count times one pass
over the files with each backend, the first batch (start-up) apart; backends
alternate within a round and the best of the rounds is kept. Prints images/s
and the ratios tf.data / DataLoader and Grain / DataLoader (>1: faster than
the DataLoader). The issue's target: tf.data at W workers at least as fast as
the DataLoader at W workers.
"""

import os
import time

from absl import app, flags

from jbatch.data import jpeg_folder, loaders

_FOLDER = flags.DEFINE_string("folder", "/tmp/jbatch_bench_images", "image folder (written if empty)")
_SOURCE = flags.DEFINE_string("source", "mnist", "mnist, fashion_mnist or synthetic")
_DATA_DIR = flags.DEFINE_string("data_dir", os.environ.get("JBATCH_DATA_DIR", "../shared/data"),
                                "MNIST idx files")
_IMAGES = flags.DEFINE_integer("images", 512, "files to write and read")
_SIZE = flags.DEFINE_integer("size", 224, "written image side")
_CROP = flags.DEFINE_integer("crop_size", 224, "output side after the random resized crop")
_BATCH = flags.DEFINE_integer("batch_size", 64, "batch size")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2", "4"], "worker counts")
_BACKENDS = flags.DEFINE_list("backends", list(loaders.BACKENDS), "backends")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "alternating rounds")


def _images_per_sec(backend, items, workers):
  it = loaders.batches(backend, items, _BATCH.value, _CROP.value, workers)
  next(it)  # start-up: workers, tracing
  t0, n = time.perf_counter(), 0
  for images, _ in it:
    n += len(images)
  return n / (time.perf_counter() - t0)


def main(_):
  made = jpeg_folder.write(_FOLDER.value, _SOURCE.value, _IMAGES.value, _SIZE.value, 90,
                           _DATA_DIR.value)
  paths, labels, _ = jpeg_folder.list_images(_FOLDER.value)
  items = loaders.epoch_items(paths, labels, 0, 0, _SIZE.value, _SIZE.value)
  print(f"{made['files']} JPEG files ({made['bytes'] / 1e6:.1f} MB) in {_FOLDER.value}; crop to "
        f"{_CROP.value}, batch {_BATCH.value}; {os.cpu_count()} cores")
  for workers in map(int, _WORKERS.value):
    best = {}
    for _ in range(_ROUNDS.value):
      for backend in _BACKENDS.value:
        rate = _images_per_sec(backend, items, workers)
        best[backend] = max(best.get(backend, 0), rate)
    line = ", ".join(f"{b} {r:,.0f} img/s" for b, r in best.items())
    ratios = ", ".join(f"{b}/torch {best[b] / best['torch']:.2f}" for b in best
                       if b != "torch" and "torch" in best)
    print(f"workers {workers}: {line}; {ratios}")


if __name__ == "__main__":
  app.run(main)
