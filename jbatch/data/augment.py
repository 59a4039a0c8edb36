"""The loader study's augmentation, written once in NumPy and once in TensorFlow, equal.

Random resized crop (torchvision's sampling: area 8-100%, aspect 3/4-4/3, ten
tries, then a center crop), a horizontal flip, bilinear resize to size x size
with half-pixel centers (TensorFlow's tf.image.resize), ImageNet mean/std
normalization. The random parameters are drawn up front in NumPy from the
epoch's seed (`draw`), so every pipeline, tf.data, Grain and the PyTorch
DataLoader, applies the same crop and flip to the same file, and the image
each produces for fixed parameters is the same (tested).
"""

import math

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def sample_crop(rng, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """(top, left, h, w) of a random resized crop, as torchvision's RandomResizedCrop draws it."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side, side


def draw(seed, epoch, n, height, width):
  """(boxes (n, 4) int32, flips (n,) bool) for every example of one epoch."""
  rng = np.random.default_rng([seed, epoch])
  boxes = np.array([sample_crop(rng, height, width) for _ in range(n)], np.int32)
  return boxes, rng.random(n) < 0.5


def _axis_weights(out_size, in_size):
  """(lower, upper, lerp) of TensorFlow's half-pixel bilinear resize along one axis."""
  scale = in_size / out_size
  pos = (np.arange(out_size, dtype=np.float32) + 0.5) * np.float32(scale) - 0.5
  floor = np.floor(pos)
  lower = np.maximum(floor, 0).astype(np.int64)
  upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.int64)
  return lower, upper, (pos - floor).astype(np.float32)


def numpy_transform(image, box, flip, size):
  """uint8 (H, W, 3) -> float32 (size, size, 3)."""
  top, left, h, w = (int(v) for v in box)
  crop = image[top:top + h, left:left + w].astype(np.float32)
  y0, y1, fy = _axis_weights(size, h)
  x0, x1, fx = _axis_weights(size, w)
  rows = crop[y0] + (crop[y1] - crop[y0]) * fy[:, None, None]
  out = rows[:, x0] + (rows[:, x1] - rows[:, x0]) * fx[None, :, None]
  if flip:
    out = out[:, ::-1]
  return (out - MEAN) / STD


def tf_transform(image, box, flip, size):
  """The same in TensorFlow ops: uint8 tensor (H, W, 3) -> float32 (size, size, 3)."""
  import tensorflow as tf
  crop = tf.image.crop_to_bounding_box(image, box[0], box[1], box[2], box[3])
  out = tf.image.resize(tf.cast(crop, tf.float32), (size, size), method="bilinear",
                        antialias=False)
  out = tf.cond(flip, lambda: tf.image.flip_left_right(out), lambda: out)
  return (out - MEAN) / STD


def decode_pil(path):
  from PIL import Image
  with Image.open(path) as img:
    return np.asarray(img.convert("RGB"))
