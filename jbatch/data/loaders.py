"""Three input pipelines over the same JPEG files, for the loader study (S2).

Each reads a file, decodes it, applies the epoch's crop and flip
(data/augment.py, drawn up front so all three apply the same ones), batches,
and yields (float32 images (b, size, size, 3), int32 labels) as NumPy arrays:
  tfdata  tf.data: map with num_parallel_calls = workers on a private thread
          pool of that many threads (workers -1: AUTOTUNE, TensorFlow's pool),
          prefetch of 2 batches when workers > 0.
  grain   Grain: MapDataset -> batch -> IterDataset, worker processes by
          mp_prefetch(num_workers = workers).
  torch   the PyTorch DataLoader with num_workers = workers (the reference).
Workers 0 means in the consuming thread, with no read-ahead, in all three.
The images are decoded exactly alike (libjpeg's accurate integer IDCT).
"""

import importlib.util
import os
import threading

import numpy as np

from jbatch.data import augment
from jbatch.errors import UserError

BACKENDS = ("tfdata", "grain", "torch")


def check_backends(names):
  for name in names:
    if name not in BACKENDS:
      raise UserError(f"unknown loader backend {name!r}; choose from {', '.join(BACKENDS)}")
    module = {"tfdata": "tensorflow", "grain": "grain", "torch": "torch"}[name]
    if importlib.util.find_spec(module) is None:  # found without importing it (seconds)
      raise UserError(f"loader backend {name!r} needs {module}: pip install 'jbatch[{name}]' "
                      "or leave it out of backends")


def _trace(trace_dir):
  """Leaves a file named after the process and thread doing the work (tests count them)."""
  name = f"{os.getpid()}-{threading.get_ident()}"
  open(os.path.join(trace_dir, name), "w").close()


class LoadOne:
  """path, label, box, flip -> (image, label) in NumPy; picklable for worker processes."""

  def __init__(self, size, trace_dir=None):
    self.size, self.trace_dir = size, trace_dir

  def __call__(self, item):
    if self.trace_dir:
      _trace(self.trace_dir)
    path, label, box, flip = item
    return augment.numpy_transform(augment.decode_pil(path), box, flip, self.size), np.int32(label)


def epoch_items(paths, labels, seed, epoch, height, width):
  """The epoch's order and augmentation parameters, the same for every backend."""
  rng = np.random.default_rng([seed, epoch, 1])
  order = rng.permutation(len(paths))
  boxes, flips = augment.draw(seed, epoch, len(paths), height, width)
  return [(paths[i], int(labels[i]), boxes[i], bool(flips[i])) for i in order]


def batches(backend, items, batch_size, size, workers, trace_dir=None):
  """An iterator of (images, labels) batches; the last short batch is dropped.

  trace_dir: every load leaves a file named after its process and thread there.
  """
  return {"tfdata": _tfdata, "grain": _grain, "torch": _torch}[backend](
      items, batch_size, size, workers, trace_dir)


def _tfdata(items, batch_size, size, workers, trace_dir):
  import tensorflow as tf
  paths, labels, boxes, flips = (list(col) for col in zip(*items))
  ds = tf.data.Dataset.from_tensor_slices((paths, np.int32(labels), np.stack(boxes),
                                           np.array(flips)))

  def load(path, label, box, flip):
    if trace_dir:  # runs on the map's own thread, like the decode
      with tf.control_dependencies([tf.py_function(lambda: _trace(trace_dir), [], [])]):
        path = tf.identity(path)
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method="INTEGER_ACCURATE")
    return augment.tf_transform(image, box, flip, size), label

  parallel = tf.data.AUTOTUNE if workers < 0 else (workers or None)
  ds = ds.map(load, num_parallel_calls=parallel, deterministic=True if parallel else None)
  ds = ds.batch(batch_size, drop_remainder=True)
  if workers != 0:
    ds = ds.prefetch(2)
  options = tf.data.Options()
  if workers >= 0:
    # The map's threads come from this pool: its size makes the worker count real.
    options.threading.private_threadpool_size = max(workers, 1)
    options.autotune.enabled = False
  return ds.with_options(options).as_numpy_iterator()


def _stack(batch):
  images, labels = zip(*batch)
  return np.stack(images), np.asarray(labels, np.int32)


def _grain(items, batch_size, size, workers, trace_dir):
  import grain
  from absl import flags
  if not flags.FLAGS.is_parsed():  # Grain hands absl flags to its workers; outside the CLI
    flags.FLAGS.mark_as_parsed()
  ds = grain.MapDataset.source(items).map(LoadOne(size, trace_dir))
  ds = ds.batch(batch_size, drop_remainder=True, batch_fn=_stack)
  # No read threads: the parallelism is the worker processes alone.
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                     per_worker_buffer_size=2))
  return iter(it)


class _TorchItems:
  def __init__(self, items, size, trace_dir):
    self.items, self.load = items, LoadOne(size, trace_dir)

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    return self.load(self.items[i])


def _torch(items, batch_size, size, workers, trace_dir):
  import torch
  # spawn, not fork: this process runs XLA's threads, and a forked child of a
  # multithreaded process can deadlock.
  loader = torch.utils.data.DataLoader(
      _TorchItems(items, size, trace_dir), batch_size=batch_size, shuffle=False, drop_last=True,
      num_workers=workers, prefetch_factor=2 if workers else None,
      collate_fn=_stack, multiprocessing_context="spawn" if workers else None)
  return iter(loader)
