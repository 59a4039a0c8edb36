"""S2, what slows training down (seeds/000, second half): input-pipeline workers.

The same JPEG folder (written once by data/jpeg_folder.py) read by tf.data,
Grain and the PyTorch DataLoader (data/loaders.py) at each worker count:
  alone  the pipeline by itself: images/s and ms per batch;
  train  the pipeline feeding a MobileNetV2 train step: ms per batch and the
         fraction of it spent waiting for the next batch.
The first batch of each measurement (worker start-up, tracing) is timed
apart. Worker counts above `max_workers` (default: 2 x cores) are left out
and the report says so.
"""

import os
import time

import jax
import ml_collections
import numpy as np

from jbatch import config as config_lib
from jbatch.bench import timing
from jbatch.data import jpeg_folder, loaders
from jbatch.errors import UserError
from jbatch import workloads
from jbatch.models import registry as model_registry
from jbatch.results import sweep
from jbatch.studies import loader_report
from jbatch.train import optim, parallel
from jbatch.train.engine import Engine

NAME = "loader"
MODES = ("alone", "train")


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.images = ml_collections.ConfigDict(dict(
      source="mnist", count=512, size=224, quality=90,
      folder=""))  # "": written to <workdir>/images; else a folder of class subfolders, read as is
  c.backends = ("tfdata", "grain", "torch")
  c.workers = (0, 1, 2, 4, 8, 16)
  c.max_workers = 0  # 0: 2 x the cores of this machine
  c.modes = MODES
  c.batch_size = 256
  c.crop_size = 224
  c.model = "mobilenet_v2"
  c.mobilenet_v2.variant = "imagenet"
  c.max_bad_fraction = 0.01
  c.device_kind = "auto"
  return c


def validate(config, workload):
  if not workloads.is_builtin(workload):
    raise UserError(f"the loader study times image pipelines on JPEG files and trains "
                    f"jbatch's own models on them; it does not take workload "
                    f"{workload.source}: drop --config.workload for it")
  loaders.check_backends(config_lib.names(config.backends))
  for mode in config_lib.names(config.modes):
    if mode not in MODES:
      raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
  for w in config.workers:
    if not isinstance(w, int) or w < -1:
      raise UserError(f"workers {w!r}: give counts >= 0 (-1: tf.data AUTOTUNE)")
  if config.crop_size <= 0 or config.batch_size <= 0:
    raise UserError("crop_size and batch_size must be positive")
  images = config.images
  if not images.folder:
    if images.source not in jpeg_folder.SOURCES:
      raise UserError(f"unknown image source {images.source!r}; choose one of "
                      f"{', '.join(jpeg_folder.SOURCES)}")
    if images.source != "synthetic":
      from jbatch.data import idx
      idx.check(images.source, config_lib.data_dir(config))
    count = images.count
  else:
    count = len(jpeg_folder.list_images(images.folder, config.max_bad_fraction)[0])
  if config.batch_size > count:
    raise UserError(f"batch_size={config.batch_size} is larger than the {count} images; "
                    "lower it or write more images (images.count)")
  model_registry.check(config)
  parallel.check_kind(config.device_kind)


def _max_workers(config):
  return config.max_workers or 2 * (os.cpu_count() or 1)


def grid(config):
  fp = config_lib.fingerprint(config, ignore=("study", "backends", "workers", "modes",
                                              "max_workers"))
  kind = parallel.resolve_kind(config.device_kind)
  return [{"run_id": f"{NAME}/{b}/w{w}/{mode}/{fp}", "framework": "torch" if b == "torch" else "jax",
           "device_kind": kind, "batch_size": config.batch_size, "backend": b, "workers": w,
           "mode": mode}
          for mode in config_lib.names(config.modes) for b in config_lib.names(config.backends)
          for w in dict.fromkeys(config.workers) if w <= _max_workers(config)]


def run(config, workload, workdir):
  folder = config.images.folder or os.path.join(workdir, "images")
  if not config.images.folder:
    i = config.images
    made = jpeg_folder.write(folder, i.source, i.count, i.size, i.quality,
                             config_lib.data_dir(config), config.seed)
    sweep.progress(f"loader: {made['files']} JPEG files, {made['bytes'] / 1e6:.1f} MB in "
                   f"{folder}" + ("" if made["written"] else " (already there)"))
  paths, labels, skipped = jpeg_folder.list_images(folder, config.max_bad_fraction)
  if skipped:
    sweep.progress(f"loader: skipped {len(skipped)} corrupt files, e.g. {skipped[0]}")
  height, width = augment_shape(paths[0])
  items = loaders.epoch_items(paths, labels, config.seed, 0, height, width)
  folder_info = {"folder": folder, "files": len(paths), "skipped_files": len(skipped),
                 "folder_bytes": sum(os.path.getsize(p) for p in paths), "cores": os.cpu_count(),
                 "max_workers": _max_workers(config), "image_hw": [height, width]}
  step = {}  # one compiled train step for every point
  sweep.run(NAME, config, workdir, grid(config),
            lambda p: {**folder_info, **_measure(config, p, items, int(labels.max()) + 1, step)})


def augment_shape(path):
  from PIL import Image
  with Image.open(path) as img:
    return img.height, img.width


def _measure(config, point, items, num_classes, step):
  b, size = config.batch_size, config.crop_size
  train = None
  if point["mode"] == "train":
    if not step:
      step.update(_train_step(config, b, size, num_classes))
    train = step
  it = loaders.batches(point["backend"], items, b, size, point["workers"])
  t0 = time.perf_counter()
  first = next(it)
  first_s = time.perf_counter() - t0
  waits, totals, state = [], [], train["state"] if train else None
  if train:
    state = _step(train, state, first)
  t_prev = time.perf_counter()
  for batch in it:
    t_got = time.perf_counter()
    if train:
      state = _step(train, state, batch)
    t_done = time.perf_counter()
    waits.append(t_got - t_prev)
    totals.append(t_done - t_prev)
    t_prev = t_done
  if train:
    train["state"] = state
  if not totals:
    raise UserError(f"{len(items)} images make one batch of {b}: nothing left to time after "
                    "the first; write more images or lower batch_size")
  total = sum(totals)
  out = {"first_batch_s": first_s, "timed_batches": len(totals),
         "batch_ms_median": 1e3 * float(np.median(totals)),
         "images_per_sec": b * len(totals) / total, "crop_size": size,
         "device_name": jax.devices()[0].device_kind, "n_devices": 1}
  if train:
    out.update(wait_fraction=sum(waits) / total, wait_ms_median=1e3 * float(np.median(waits)),
               step_compile_s=train["compile_s"], model=config.model)
  return out


def _train_step(config, b, size, num_classes):
  mesh = parallel.make_mesh(parallel.resolve_kind(config.device_kind), 1)
  platform = mesh.devices.flat[0].platform
  model = model_registry.build(config, (size, size, 3), num_classes, config.seed, platform)
  engine = Engine(model, optim.make(config.optimizer), mesh)
  x = jax.ShapeDtypeStruct((b, size, size, 3), np.float32)
  y = jax.ShapeDtypeStruct((b,), np.int32)
  fn, compile_s = timing.compile_timed(engine.jit(engine.train_step, donate_argnums=0),
                                       engine.state, x, y)
  return {"fn": fn, "compile_s": compile_s, "state": engine.state, "device": engine.device}


def _step(train, state, batch):
  x, y = jax.device_put(batch, train["device"])
  state, metrics = train["fn"](state, x, y)
  jax.block_until_ready(metrics)  # the step is done before the next batch is asked for
  return state


def report(records, workdir):
  return loader_report.report(records, workdir)
