"""Image folders of real JPEG files, one subfolder per class, for the loader study (S2).

`write` makes one from MNIST or Fashion-MNIST (the shared idx files, resized
to size x size and made RGB) or from synthetic images, with a count and a
JPEG quality; a marker file written last says what the folder holds, so
writing the same thing twice does nothing the second time and a half-written
folder is written again. `list_images` finds the files of a folder and skips
(and counts) files that are not whole JPEGs: a few in a large folder are a
counted skip, more than `max_bad_fraction` of them an error.
"""

import json
import os

import numpy as np

from jbatch.data import idx
from jbatch.errors import UserError

MARKER = "jbatch_images.json"
SOURCES = ("mnist", "fashion_mnist", "synthetic")
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def _source_images(source, count, data_dir, seed):
  """(uint8 images (count, h, w) or (count, h, w, 3), labels)."""
  if source == "synthetic":
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    tint = rng.integers(0, 256, (10, 1, 1, 3))
    coarse = rng.integers(0, 256, (count, 8, 8, 3))
    images = ((coarse + tint[labels]) // 2).astype(np.uint8)
    return images, labels
  images, labels = idx.raw_train(source, data_dir)  # magic numbers and sizes checked
  if count > len(images):
    raise UserError(f"{source} has {len(images)} training images; ask for at most that many")
  return images[:count], labels[:count]


def write(directory, source, count, size=224, quality=90, data_dir="", seed=0):
  """Writes the folder unless it already holds exactly this; returns what is there."""
  from PIL import Image
  if source not in SOURCES:
    raise UserError(f"unknown image source {source!r}; choose one of {', '.join(SOURCES)}")
  if count <= 0 or size <= 0 or not 1 <= quality <= 100:
    raise UserError(f"images={count}, size={size}, quality={quality}: give a positive count "
                    "and size and a quality in 1..100")
  spec = {"source": source, "count": count, "size": size, "quality": quality, "seed": seed}
  marker = os.path.join(directory, MARKER)
  if os.path.exists(marker):
    with open(marker) as f:
      held = json.load(f)
    if held == spec:
      return dict(_summary(directory), written=False)
    raise UserError(f"{directory} already holds another image set ({held}); use another folder "
                    "or delete it")
  images, labels = _source_images(source, count, data_dir, seed)
  for i, (image, label) in enumerate(zip(images, labels)):
    folder = os.path.join(directory, f"{int(label):03d}")
    os.makedirs(folder, exist_ok=True)
    img = Image.fromarray(image).convert("RGB").resize((size, size), Image.BILINEAR)
    img.save(os.path.join(folder, f"{i:07d}.jpg"), quality=quality)
  with open(marker + ".tmp", "w") as f:
    json.dump(spec, f)
  os.replace(marker + ".tmp", marker)
  return dict(_summary(directory), written=True)


def _summary(directory):
  paths, _, _ = list_images(directory)
  return {"directory": directory, "files": len(paths),
          "bytes": sum(os.path.getsize(p) for p in paths)}


def _whole_jpeg(path):
  try:
    with open(path, "rb") as f:
      head = f.read(2)
      f.seek(-2, os.SEEK_END)
      return head == _SOI and f.read(2) == _EOI
  except OSError:
    return False


def list_images(directory, max_bad_fraction=0.01):
  """(paths, labels, skipped paths): class = subfolder, in sorted order."""
  if not os.path.isdir(directory):
    raise UserError(f"image folder {directory} does not exist; write one first (see "
                    "loader.images) or give the right path")
  classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
  paths, labels, skipped = [], [], []
  for label, name in enumerate(classes):
    folder = os.path.join(directory, name)
    for file in sorted(os.listdir(folder)):
      if file.lower().endswith((".jpg", ".jpeg")):
        path = os.path.join(folder, file)
        (paths if _whole_jpeg(path) else skipped).append(path)
        if paths and paths[-1] == path:
          labels.append(label)
  if not paths:
    raise UserError(f"image folder {directory} has no readable JPEG files in class subfolders"
                    + (f" ({len(skipped)} corrupt, e.g. {skipped[0]})" if skipped else ""))
  if len(skipped) > max_bad_fraction * (len(paths) + len(skipped)):
    raise UserError(f"{len(skipped)} of {len(paths) + len(skipped)} files in {directory} are not "
                    f"whole JPEGs (e.g. {skipped[0]}); replace them")
  return paths, np.asarray(labels, np.int32), skipped
