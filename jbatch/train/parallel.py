"""Data parallelism by sharding: a 1-D mesh named 'data', parameters replicated.

jax.jit inserts the all-reduce of gradients; BatchNorm statistics are taken
over the global batch, so N devices compute what one device would.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jbatch.errors import UserError


def devices_of_kind(kind):
  """Local devices of a platform ('cpu', 'gpu', 'tpu'); empty if there are none."""
  try:
    return jax.local_devices(backend=kind)
  except RuntimeError:
    return []


def available_kinds():
  return [k for k in ("cpu", "gpu", "tpu") if devices_of_kind(k)]


def present_kinds(names):
  """The kinds among `names` (a config's device_kinds) that this machine has."""
  present = available_kinds()
  return [k for k in names if k in present]


def resolve_kind(device_kind):
  """A config's device_kind with 'auto' resolved: a GPU when there is one, else the CPU."""
  if device_kind != "auto":
    return device_kind
  return "gpu" if "gpu" in available_kinds() else "cpu"


def check_kind(device_kind):
  if device_kind != "auto" and device_kind not in available_kinds():
    raise UserError(f"device_kind={device_kind!r} is not present; present: "
                    f"{', '.join(available_kinds())} (or auto)")


def make_mesh(kind="cpu", num_devices=0):
  """Every device of the kind, of every process of a multi-process run (jbatch.distributed)."""
  if num_devices < 0:
    raise UserError(f"num_devices={num_devices}; give 0 (every device) or a positive count")
  devices = jax.devices(kind) if devices_of_kind(kind) else []
  if not devices:
    raise UserError(f"no {kind} device is present; available: {', '.join(available_kinds())}")
  if num_devices:
    if num_devices > len(devices):
      raise UserError(f"num_devices={num_devices} but only {len(devices)} {kind} devices exist")
    devices = devices[:num_devices]
  # Auto axes: jit propagates the batch sharding and inserts the collectives.
  return Mesh(np.array(devices), ("data",), axis_types=(AxisType.Auto,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def replicate(tree, mesh):
  """tree (arrays, identical on every process) put whole on every device of the mesh. A
  mesh spanning processes takes host values: each process fills its own devices."""
  sharding = replicated(mesh)
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: _put_host_value(x, sharding), tree)


def to_host(tree):
  """jax.device_get that also takes arrays spread over several processes' devices: a
  replicated one from this process's copy, a sharded one gathered (every process must call
  it, as every process runs the same program)."""
  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return jax.device_get(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(get, tree)


def _put_host_value(x, sharding):
  if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(_put_host_value(jax.random.key_data(x), sharding),
                                    impl=jax.random.key_impl(x))
  return jax.device_put(np.asarray(x), sharding)


def batch_sharded(mesh):
  return NamedSharding(mesh, P("data"))
